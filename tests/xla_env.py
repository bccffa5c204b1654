"""XLA flags of the test suite, for the suite's process and for the subprocesses it starts.

The simulated CPU device count is left out of JAX's persistent-cache key, the other flags are
not: subprocesses keep the suite's other flags so that they and the suite share compiled
programs through the cache directory conftest sets.
"""
import os

DEVICE_COUNT = "--xla_force_host_platform_device_count"
# Compile time over run time: the tests run small programs for a few steps.
DEFAULTS = {"--xla_backend_optimization_level": "0"}


def flags(devices, base="", keep_device_count=False):
    """`base` (an XLA_FLAGS value) with the suite's defaults added where it does not set them,
    and `devices` simulated CPU devices (unless `keep_device_count` and `base` sets a count)."""
    parts = base.split()
    names = {p.split("=")[0] for p in parts}
    if not (keep_device_count and DEVICE_COUNT in names):
        parts = [p for p in parts if p.split("=")[0] != DEVICE_COUNT]
        if devices != 1:
            parts.append(f"{DEVICE_COUNT}={devices}")
    parts += [f"{k}={v}" for k, v in DEFAULTS.items() if k not in names]
    return " ".join(parts)


def env(devices=1, **extra):
    """os.environ for a subprocess with `devices` CPU devices and the suite's other XLA flags."""
    return {**os.environ, "XLA_FLAGS": flags(devices, os.environ.get("XLA_FLAGS", "")), **extra}
