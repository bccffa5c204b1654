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


def mesh_of(tree):
    """The mesh the first sharded array of `tree` lives on (default: `make_mesh()`)."""
    for x in jax.tree.leaves(tree):
        mesh = getattr(getattr(x, "sharding", None), "mesh", None)
        if isinstance(mesh, jax.sharding.Mesh):
            return mesh
    return make_mesh()


def put_global(x, sharding):
    """A host array that every process holds alike, as a global array with `sharding` (each
    process places only its own devices' parts): an explicit transfer."""
    x = np.asarray(x)
    parts = [jax.device_put(x[index], device)
             for device, index in sharding.addressable_devices_indices_map(x.shape).items()]
    return jax.make_array_from_single_device_arrays(x.shape, sharding, parts)


def fetch(tree):
    """Host numpy copies of replicated (or fully addressable) arrays, by explicit transfers: on
    every process, the copy on its first device."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        return np.asarray(jax.device_get(x))
    return jax.tree.map(one, tree)
