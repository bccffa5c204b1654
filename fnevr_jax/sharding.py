"""The data mesh and fixed batch shapes shared by training, evaluation and inference."""
import jax
import numpy as np


def make_mesh(devices=None):
    """A 1D `data` mesh over `devices` (default: all devices of all processes)."""
    devices = np.asarray(devices if devices is not None else jax.devices())
    return jax.sharding.Mesh(devices, ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def pad_batch(x, size):
    """`x` [n, ...] (numpy or jax) padded to `size` rows by repeating the last row, so that
    every batch of a run has one shape and one compiled program."""
    pad = size - len(x)
    if pad == 0:
        return x
    xp = np if isinstance(x, np.ndarray) else jax.numpy
    return xp.concatenate([x, xp.repeat(x[-1:], pad, axis=0)])
