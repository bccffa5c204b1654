"""Reads files written by torch.save and torch.jit.save with numpy only.

Three formats are understood (offline_weights.md §4):
- the zip format of torch.save since PyTorch 1.6: `<root>/data.pkl` plus one raw blob per
  storage under `<root>/data/<key>`;
- TorchScript archives from torch.jit.save: the same layout, whose module objects load as
  `ScriptObject` dicts of their pickled state;
- the legacy format of torch.save before 1.6 (FOMM's `vox-cpk.pth.tar`): consecutive pickles
  (magic number, protocol, system info, object tree, storage keys) followed by each storage
  as an int64 element count and its raw bytes.

Tensors come back as contiguous numpy arrays, parameters as their data. The unpickler only
resolves a whitelist of globals; any other class becomes a `StandIn` that records its
arguments and state and runs no code.
"""
import collections
import dataclasses
import functools
import io
import pathlib
import pickle
import zipfile

import ml_dtypes
import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
}


class TorchFileError(ValueError):
    """A file that is missing, truncated, corrupt or not written by torch."""


class ScriptObject(dict):
    """A TorchScript object (e.g. a scripted module): a dict of its pickled state.

    `type_name` is its TorchScript class, e.g. `__torch__.torch.nn.modules.conv.Conv2d`.
    """

    type_name = ""

    def __setstate__(self, state):
        self.update(state if isinstance(state, dict) else {"__state__": state})


class StandIn:
    """An object of a class the reader does not resolve: its call arguments and state."""

    type_name = ""

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"StandIn({self.type_name})"


@functools.cache
def _stand_in_class(base, type_name):
    return type(type_name.rsplit(".", 1)[-1], (base,), {"type_name": type_name})


@dataclasses.dataclass(eq=False)
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclasses.dataclass(eq=False)
class _StorageType:
    name: str


@dataclasses.dataclass(eq=False)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage_and_start, storage_offset, size, stride, *_):
    storage, start = storage_and_start
    return _TensorRef(storage, start + storage_offset, tuple(size), tuple(stride))


def _first(value, *_):
    return value


def _latin1_bytes(text, encoding="latin1"):
    # Protocol-2 pickles spell a bytes object as _codecs.encode(text, "latin1").
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"unexpected bytes encoding {encoding!r}")
    return text.encode("latin1")


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _first,
    ("torch._utils", "_rebuild_parameter_with_state"): _first,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch.jit._pickle", "restore_type_tag"): _first,
    ("torch", "Size"): tuple,
    ("_codecs", "encode"): _latin1_bytes,
}


class _Unpickler(pickle.Unpickler):
    """Resolves whitelisted globals and storage persistent IDs; everything else is a stand-in."""

    def __init__(self, file):
        super().__init__(file, encoding="utf-8")
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in _GLOBALS:
            return _GLOBALS[module, name]
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module.startswith("__torch__"):
            return _stand_in_class(ScriptObject, f"{module}.{name}")
        return _stand_in_class(StandIn, f"{module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r:.80}")
        storage = self.storages.get(key)
        if storage is None:
            storage = _Storage(key, np.dtype(_STORAGE_DTYPES[storage_type.name]), numel)
            self.storages[key] = storage
        view = pid[5] if len(pid) > 5 else None
        # Legacy storage views: (view_key, element offset into the root storage, numel).
        return storage, (int(view[1]) if view else 0)


def _to_array(ref):
    """The strided view of a storage as a contiguous array (strides count elements)."""
    data = ref.storage.data
    if any(n == 0 for n in ref.size):
        return np.zeros(ref.size, data.dtype)
    if ref.offset < 0 or any(s < 0 for s in ref.stride) or len(ref.size) != len(ref.stride):
        raise TorchFileError(f"storage {ref.storage.key}: bad tensor geometry")
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= data.size:
        raise TorchFileError(
            f"storage {ref.storage.key}: tensor reaches element {last} of {data.size}")
    itemsize = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset:], shape=ref.size, strides=[s * itemsize for s in ref.stride],
        writeable=False)
    return np.array(view, order="C", copy=True)


def _materialize(tree, memo):
    """Replaces every tensor reference in the tree by its array (containers in place)."""
    if id(tree) in memo:
        return memo[id(tree)]
    if isinstance(tree, _TensorRef):
        memo[id(tree)] = _to_array(tree)
        return memo[id(tree)]
    memo[id(tree)] = tree
    if isinstance(tree, dict):
        for k, v in tree.items():
            tree[k] = _materialize(v, memo)
    elif isinstance(tree, list):
        tree[:] = [_materialize(v, memo) for v in tree]
    elif type(tree) is tuple:
        memo[id(tree)] = tuple(_materialize(v, memo) for v in tree)
    elif isinstance(tree, StandIn):
        tree.args = _materialize(tree.args, memo)
        tree.kwargs = _materialize(tree.kwargs, memo)
        tree.state = _materialize(tree.state, memo)
    return memo[id(tree)]


def _attach(storage, raw, what):
    """Sets a storage's elements from raw little-endian bytes."""
    nbytes = storage.numel * storage.dtype.itemsize
    if len(raw) < nbytes:
        raise TorchFileError(
            f"storage {storage.key}: {len(raw)} bytes of {nbytes} ({what}); file truncated")
    storage.data = np.frombuffer(raw, storage.dtype, count=storage.numel)


def _load_zip(path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        root = names[0].split("/", 1)[0] if names else ""
        if f"{root}/data.pkl" not in names:
            raise TorchFileError("zip archive without data.pkl: not a torch file")
        if f"{root}/byteorder" in names and zf.read(f"{root}/byteorder") != b"little":
            raise TorchFileError("big-endian torch files are not supported")
        unpickler = _Unpickler(io.BytesIO(zf.read(f"{root}/data.pkl")))
        tree = unpickler.load()
        for key, storage in unpickler.storages.items():
            entry = f"{root}/data/{key}"
            if entry not in names:
                raise TorchFileError(f"storage {key}: no archive entry {entry}")
            _attach(storage, zf.read(entry), entry)
    return tree


def _load_legacy(raw):
    stream = io.BytesIO(raw)

    def load_plain():
        return _Unpickler(stream).load()

    if load_plain() != _LEGACY_MAGIC:
        raise TorchFileError("a pickle without torch's magic number: not a torch file")
    if load_plain() != _LEGACY_PROTOCOL:
        raise TorchFileError("unsupported legacy torch protocol version")
    if not load_plain().get("little_endian", True):
        raise TorchFileError("big-endian torch files are not supported")
    unpickler = _Unpickler(stream)
    tree = unpickler.load()
    keys = load_plain()
    pos = stream.tell()
    for key in keys:
        storage = unpickler.storages.get(str(key))
        if storage is None:
            raise TorchFileError(f"storage key {key} is not referenced by the object tree")
        if pos + 8 > len(raw):
            raise TorchFileError(f"storage {key}: header past the end of the file; truncated")
        count = int.from_bytes(raw[pos:pos + 8], "little")
        if count != storage.numel:
            raise TorchFileError(f"storage {key}: {count} elements, expected {storage.numel}")
        pos += 8
        nbytes = count * storage.dtype.itemsize
        _attach(storage, raw[pos:pos + nbytes], f"at byte {pos}")
        pos += nbytes
    missing = [k for k, s in unpickler.storages.items() if s.data is None]
    if missing:
        raise TorchFileError(f"storages {missing[:3]} have no data")
    return tree


def load_torch_file(path):
    """Returns the object tree of a torch.save / torch.jit.save file, tensors as numpy arrays.

    Raises TorchFileError for a missing, truncated, corrupt or non-torch file.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise TorchFileError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(8)
    try:
        if head.startswith(b"PK\x03\x04"):
            tree = _load_zip(path)
        elif head.startswith(b"\x80"):
            tree = _load_legacy(path.read_bytes())
        else:
            raise TorchFileError(f"starts with {head!r}: not a torch file")
        return _materialize(tree, {})
    except TorchFileError as e:
        raise TorchFileError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, KeyError,
            IndexError, TypeError, AttributeError, OSError, NotImplementedError,
            MemoryError, RecursionError, OverflowError) as e:
        detail = " ".join(str(e).split())[:200]
        raise TorchFileError(
            f"{path}: corrupt or truncated torch file ({type(e).__name__}: {detail})") from None


def flatten_arrays(tree, prefix=""):
    """State-dict-style `{"a.b.weight": array}` of every array in nested dicts, lists, tuples."""
    if isinstance(tree, np.ndarray):
        return {prefix: tree}
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {}
    out = {}
    for key, value in items:
        out.update(flatten_arrays(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
