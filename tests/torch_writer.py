"""Writes torch.save's zip format with numpy alone, for tests that need a real checkpoint file.

`save_torch_file(path, tree)` stores nested dicts (plain or OrderedDict), lists, tuples,
strings, numbers and numpy arrays (as CPU tensors) the way torch.save does: a zip archive with
`archive/data.pkl` (pickle protocol 2, tensors as `torch._utils._rebuild_tensor_v2` of a
persistent storage id) and one raw little-endian blob per tensor under `archive/data/<key>`.
`tests/data/make_headnerf_reference.py` checks that torch.load reads such a file back exactly.
"""
import collections
import pickle
import struct
import zipfile

import numpy as np

_STORAGES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
             np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage",
             np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage"}


def _global(module, name):
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


class _Writer:
    def __init__(self):
        self.blobs = []

    def dump(self, obj):
        if isinstance(obj, np.ndarray):
            return self.tensor(obj)
        if isinstance(obj, dict):
            out = (_global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
                   if isinstance(obj, collections.OrderedDict) else pickle.EMPTY_DICT)
            for key, value in obj.items():
                out += self.dump(key) + self.dump(value) + pickle.SETITEM
            return out
        if isinstance(obj, (list, tuple)):
            items = b"".join(self.dump(v) for v in obj)
            if isinstance(obj, list):
                return pickle.EMPTY_LIST + pickle.MARK + items + pickle.APPENDS
            return pickle.MARK + items + pickle.TUPLE
        if obj is None:
            return pickle.NONE
        if isinstance(obj, bool):
            return pickle.NEWTRUE if obj else pickle.NEWFALSE
        if isinstance(obj, int):
            return pickle.BININT + struct.pack("<i", obj)
        if isinstance(obj, float):
            return pickle.BINFLOAT + struct.pack(">d", obj)
        if isinstance(obj, str):
            raw = obj.encode()
            return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw
        raise TypeError(f"cannot write {type(obj).__name__} in a torch file")

    def tensor(self, array):
        array = np.ascontiguousarray(array)
        key = str(len(self.blobs))
        self.blobs.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
        strides = tuple(s // array.itemsize for s in array.strides)
        storage = (pickle.MARK + self.dump("storage")
                   + _global("torch", _STORAGES[array.dtype]) + self.dump(key)
                   + self.dump("cpu") + self.dump(int(array.size)) + pickle.TUPLE
                   + pickle.BINPERSID)
        args = (pickle.MARK + storage + self.dump(0) + self.dump(tuple(array.shape))
                + self.dump(strides) + pickle.NEWFALSE
                + _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
                + pickle.TUPLE)
        return _global("torch._utils", "_rebuild_tensor_v2") + args + pickle.REDUCE


def save_torch_file(path, tree):
    """Writes `tree` to `path` in torch.save's (zip) format."""
    writer = _Writer()
    data = pickle.PROTO + bytes([2]) + writer.dump(tree) + pickle.STOP
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", data)
        zf.writestr("archive/byteorder", "little")
        for key, blob in enumerate(writer.blobs):
            zf.writestr(f"archive/data/{key}", blob)
        zf.writestr("archive/version", "3\n")
