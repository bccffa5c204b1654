"""Test setup: 8 simulated CPU devices, set before JAX starts a backend."""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Test subprocesses (train.py runs) reuse each other's compiled programs.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="fnevr_jax_xla_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pathlib

import pytest

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir():
    return DATA


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A 32x32 synthetic dataset (8 train clips of 4 identities, 2 test clips)."""
    from tests import tiny
    return tiny.make_data(tmp_path_factory.mktemp("tiny_synthetic"))
