"""Test setup: 8 simulated CPU devices, set before JAX starts a backend.

XLA compiles the test programs with LLVM's optimisation level 0: the suite's time is mostly
XLA compiling programs that then run a few steps on tiny inputs, and -O0 compiles them 2-4x
faster (the convolutions and matmuls are library calls either way). `tests.xla_env.env(n)`
gives subprocesses the same flags with n devices.
"""
import os
import tempfile

from tests import xla_env

os.environ["XLA_FLAGS"] = xla_env.flags(
    8, os.environ.get("XLA_FLAGS", ""), keep_device_count=True)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Test subprocesses (train.py runs) reuse each other's compiled programs.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="fnevr_jax_xla_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pathlib
import shutil
import signal

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


# The README's first run (tests/first_run.py) starts when collection finishes and runs beside
# the rest of the suite; its test goes last and waits for it.
FIRST_RUN_MODULE = "test_train_quick.py"
FIRST_RUN = pytest.StashKey()


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name == FIRST_RUN_MODULE)   # stable: others keep order


def pytest_collection_finish(session):
    if not session.config.option.collectonly and any(
            item.path.name == FIRST_RUN_MODULE for item in session.items):
        from tests import first_run
        folder = pathlib.Path(tempfile.mkdtemp(prefix="fnevr_jax_first_run_"))
        session.config.stash[FIRST_RUN] = (first_run.start(folder), folder)


def pytest_sessionfinish(session):
    proc, folder = session.config.stash.get(FIRST_RUN, (None, None))
    if proc is not None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)     # the pipeline and the train.py it runs
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def first_run(request):
    """(process, folder) of the background first run (tests/first_run.py)."""
    return request.config.stash[FIRST_RUN]
