"""Clip shard format: ArrayRecord files of one record per video clip, with a validated index.

A dataset directory holds, per split (``train``, ``test``, ...):

- ``{split}-{i:05d}-of-{n:05d}.array_record``: the records, one msgpack map per clip;
- ``{split}-{i:05d}-of-{n:05d}.array_record.json``: the shard's clip list, written after the
  shard itself, so a shard without it is unfinished;
- ``{split}.index.json``: per record (in shard order): clip id, identity index, frame count;

and one ``dataset_info.json``: format version, frame size, encoding, optional fields, and per
split the clip, frame and shard counts, the shard lengths and the identity names. Datasets
with expression codes from ``data_pipelines.head_codes`` also hold their basis,
``expression_pca.npz``.

Coordinates. A point at pixel column ``u`` and row ``v`` (pixel centres at integers) has the
normalised crop coordinates ``x = 2u/(W-1) - 1`` and ``y = 2v/(H-1) - 1``, so -1 and +1 are the
centres of the first and last pixels (first-order-model's ``make_coordinate_grid``). Depth
uses the scale of ``x``: one unit is half the frame width at the head's distance.

Record fields (always present):

- ``clip_id`` (str), ``identity`` (str: the name before the first ``#`` for VoxCeleb);
- ``fps`` (float), ``height``, ``width``, ``num_frames`` (int);
- ``encoding`` (``"png"`` or ``"jpeg"``) and ``frames``: ``num_frames`` encoded RGB images.

Optional per-frame fields (leading axis ``T = num_frames``; ``dataset_info.json`` lists which
exist, and every clip of a dataset has the same ones):

- ``face_box`` (T, 4) float32: the face box ``x0, y0, x1, y1`` in normalised coordinates.
- ``landmarks`` (T, N, 3) float32: dense 3D face points; ``x, y`` normalised, ``z`` the depth
  relative to the head centre (larger is farther from the camera). mediapipe's 468-point face
  mesh for real video; head surface points for the synthetic heads.
- ``pose`` (T, 3) float32: yaw, pitch, roll in radians. The head frame has x to the image
  right, y up and z out of the face; the head rotation is ``Rz(roll) @ Ry(yaw) @ Rx(pitch)``
  (see ``fnevr_jax.ops.rotations.pose_to_matrix``), and a head point ``p`` lies at ``diag(1,-1,-1) @ R @ p + t`` in
  OpenCV camera coordinates (x right, y down, z forward).
- ``mask`` (T encoded single-channel PNGs): the foreground (head, hair, neck) mask, 255 inside.
- ``intrinsics`` (T, 3, 3) float32: the pinhole matrix K in pixels of the stored frame.
- ``extrinsics`` (T, 4, 4) float32: camera-to-world for an OpenCV camera, the world being the
  head frame (head pose folded into the camera, as in HeadNeRF).
- ``identity_code`` (T, Di) and ``expression_code`` (T, De) float32.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re

import cv2
import msgpack
import numpy as np

FORMAT = "fnevr_jax.clips"
VERSION = 1
ENCODINGS = ("png", "jpeg")
ARRAY_FIELDS = ("face_box", "landmarks", "pose", "intrinsics", "extrinsics",
                "identity_code", "expression_code")
FIELDS = ARRAY_FIELDS + ("mask",)
INFO_NAME = "dataset_info.json"
WRITER_OPTIONS = "group_size:1,uncompressed"


class DatasetError(ValueError):
    """A dataset directory that is missing, incomplete, or not what the caller asked for."""


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.array_record"


def encode_image(image: np.ndarray, encoding: str = "png", quality: int = 95) -> bytes:
    """Encodes an (H, W, 3) RGB or (H, W) uint8 image."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if encoding == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    elif encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        raise ValueError(f"unknown encoding {encoding!r}; use one of {ENCODINGS}")
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as {encoding}")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """Decodes to uint8 (H, W, 3) RGB, or (H, W) for a single-channel image."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("undecodable image")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def _pack_array(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def _unpack_array(d: dict) -> np.ndarray:
    return np.frombuffer(d["data"], np.dtype(d["dtype"])).reshape(d["shape"])


def encode_clip(frames, *, clip_id: str, identity: str, fps: float, encoding: str = "png",
                quality: int = 95, **fields) -> bytes:
    """Serialises one clip: uint8 (T, H, W, 3) frames plus optional per-frame ``fields``.

    ``mask`` is (T, H, W) bool or uint8; the other fields are arrays with leading axis T.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    record = {"clip_id": str(clip_id), "identity": str(identity), "fps": float(fps),
              "height": h, "width": w, "num_frames": t, "encoding": encoding,
              "frames": [encode_image(f, encoding, quality) for f in frames]}
    _set_fields(record, fields)
    return msgpack.packb(record, use_bin_type=True)


def _set_fields(record: dict, fields: dict) -> None:
    t = record["num_frames"]
    for name, value in fields.items():
        if name not in FIELDS:
            raise ValueError(f"unknown field {name!r}; known: {FIELDS}")
        if value is None:
            continue
        value = np.asarray(value)
        if len(value) != t:
            raise ValueError(f"field {name!r} has {len(value)} entries for {t} frames")
        if name == "mask":
            record[name] = [encode_image(np.where(m > 0, 255, 0).astype(np.uint8), "png")
                            for m in value]
        else:
            record[name] = _pack_array(value.astype(np.float32))


def update_clip(data: bytes, **fields) -> bytes:
    """A serialised clip with per-frame ``fields`` added or replaced (as ``encode_clip``
    takes them); frames and the other fields are copied as they are, not re-encoded."""
    record = msgpack.unpackb(data, raw=False)
    _set_fields(record, fields)
    return msgpack.packb(record, use_bin_type=True)


def decode_clip(data: bytes) -> dict:
    """Parses a record; frames and masks stay encoded (see ``clip_frames``, ``clip_masks``)."""
    record = msgpack.unpackb(data, raw=False)
    for name in ARRAY_FIELDS:
        if name in record:
            record[name] = _unpack_array(record[name])
    return record


def clip_frames(record: dict, indices=None) -> np.ndarray:
    """Decoded uint8 (len(indices), H, W, 3) frames of a parsed record (all by default)."""
    indices = range(record["num_frames"]) if indices is None else indices
    return np.stack([decode_image(record["frames"][i]) for i in indices])


def clip_masks(record: dict, indices=None) -> np.ndarray:
    """Decoded bool (len(indices), H, W) masks of a parsed record."""
    indices = range(record["num_frames"]) if indices is None else indices
    return np.stack([decode_image(record["mask"][i]) > 127 for i in indices])


def atomic_write(path, data: bytes | str) -> None:
    """Writes ``path`` through a temporary name in the same directory and a rename; a failed
    write leaves neither file behind."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        with open(tmp, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_shard(path, records, clips, **meta) -> None:
    """Writes encoded ``records`` to an ArrayRecord shard, then its clip list ``clips``.

    ``clips`` is a list of ``(clip_id, identity, num_frames)`` in record order; ``meta`` is
    stored beside it (JSON-serialisable; e.g. the inputs that were skipped). The shard is
    written under a temporary name and renamed, then the ``.json`` clip list is written the
    same way: a shard counts as finished only when both exist.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    writer = ArrayRecordWriter(str(tmp), WRITER_OPTIONS)
    try:
        for record in records:
            writer.write(record)
        writer.close()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    atomic_write(str(path) + ".json", json.dumps({"clips": [list(c) for c in clips], **meta}))


def shard_meta(path) -> dict:
    """The ``.json`` written beside a finished shard."""
    return json.loads(pathlib.Path(str(path) + ".json").read_text())


def shard_finished(path) -> bool:
    path = pathlib.Path(path)
    return path.exists() and pathlib.Path(str(path) + ".json").exists()


@dataclasses.dataclass
class DatasetInfo:
    """Contents of ``dataset_info.json``."""
    height: int
    width: int
    encoding: str
    fields: list
    splits: dict
    fps: float = 25.0
    source: str = ""
    format: str = FORMAT
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)


def finalize(out_dir, splits: dict, *, height: int, width: int, encoding: str, fields,
             fps: float, source: str) -> DatasetInfo:
    """Builds the indexes and ``dataset_info.json`` from finished shards.

    ``splits`` maps a split name to its shard count. Every shard must be finished.
    """
    out_dir = pathlib.Path(out_dir)
    info_splits = {}
    for split, count in splits.items():
        clips = []
        lengths = []
        for i in range(count):
            path = out_dir / shard_name(split, i, count)
            if not shard_finished(path):
                raise DatasetError(f"{path} is unfinished")
            shard_clips = shard_meta(path)["clips"]
            clips.extend(shard_clips)
            lengths.append(len(shard_clips))
        identities = sorted({c[1] for c in clips})
        lookup = {name: i for i, name in enumerate(identities)}
        index = {"clip_id": [c[0] for c in clips], "identity": [lookup[c[1]] for c in clips],
                 "num_frames": [int(c[2]) for c in clips]}
        atomic_write(out_dir / f"{split}.index.json", json.dumps(index))
        info_splits[split] = {"clips": len(clips), "frames": int(sum(index["num_frames"])),
                              "shards": count, "shard_lengths": lengths,
                              "identities": identities}
    info = DatasetInfo(height=int(height), width=int(width), encoding=encoding,
                       fields=sorted(fields), splits=info_splits, fps=float(fps), source=source)
    atomic_write(out_dir / INFO_NAME, info.to_json())
    return info


def read_info(data_dir) -> DatasetInfo:
    """Reads and checks ``dataset_info.json``; raises ``DatasetError`` with a clear message."""
    path = pathlib.Path(data_dir) / INFO_NAME
    if not path.exists():
        raise DatasetError(f"{data_dir}: no {INFO_NAME} (not a dataset directory, or its "
                           "preprocessing did not finish)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise DatasetError(f"{path}: format {raw.get('format')!r} version {raw.get('version')!r}, "
                           f"expected {FORMAT!r} version {VERSION}")
    known = {f.name for f in dataclasses.fields(DatasetInfo)}
    missing = known - set(raw) - {"fps", "source"}
    if missing:
        raise DatasetError(f"{path}: missing keys {sorted(missing)}")
    return DatasetInfo(**{k: v for k, v in raw.items() if k in known})


@dataclasses.dataclass
class Split:
    """One validated split: its info, index arrays and an ``ArrayRecordDataSource``."""
    data_dir: pathlib.Path
    name: str
    info: DatasetInfo
    paths: list
    clip_ids: list
    identity: np.ndarray
    num_frames: np.ndarray

    @property
    def identities(self) -> list:
        return self.info.splits[self.name]["identities"]

    @property
    def fields(self) -> list:
        return self.info.fields

    def __len__(self) -> int:
        return len(self.clip_ids)

    def source(self):
        import grain

        return grain.sources.ArrayRecordDataSource([str(p) for p in self.paths])


def open_split(data_dir, split: str, *, size=None, require=()) -> Split:
    """Validates a dataset split and returns it.

    ``size``: the expected (height, width) or int; ``require``: optional fields that must exist.
    Raises ``DatasetError`` naming what is wrong.
    """
    data_dir = pathlib.Path(data_dir)
    info = read_info(data_dir)
    if split not in info.splits:
        raise DatasetError(f"{data_dir}: no split {split!r} (it has {sorted(info.splits)})")
    if size is not None:
        want = (size, size) if isinstance(size, int) else tuple(size)
        if want != (info.height, info.width):
            raise DatasetError(f"{data_dir}: frames are {info.height}x{info.width}, "
                               f"expected {want[0]}x{want[1]}")
    absent = [f for f in require if f not in info.fields]
    if absent:
        raise DatasetError(f"{data_dir}: fields {absent} are required but the dataset has "
                           f"only {info.fields}")
    meta = info.splits[split]
    count = meta["shards"]
    pattern = re.compile(rf"{re.escape(split)}-\d{{5}}-of-(\d{{5}})\.array_record")
    found = sorted(p.name for p in data_dir.iterdir() if pattern.fullmatch(p.name))
    expected = [shard_name(split, i, count) for i in range(count)]
    if found != expected:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        raise DatasetError(f"{data_dir}: split {split!r} shards do not match {INFO_NAME} "
                           f"(missing {missing[:3]}, unexpected {extra[:3]})")
    index_path = data_dir / f"{split}.index.json"
    if not index_path.exists():
        raise DatasetError(f"{data_dir}: no {index_path.name}")
    index = json.loads(index_path.read_text())
    if len(index["clip_id"]) != meta["clips"] or sum(meta["shard_lengths"]) != meta["clips"]:
        raise DatasetError(f"{data_dir}: split {split!r} has {len(index['clip_id'])} indexed "
                           f"clips, {INFO_NAME} says {meta['clips']}")
    paths = [data_dir / name for name, n in zip(expected, meta["shard_lengths"]) if n]
    result = Split(data_dir, split, info, paths, index["clip_id"],
                   np.asarray(index["identity"], np.int32),
                   np.asarray(index["num_frames"], np.int32))
    actual = len(result.source()) if paths else 0
    if actual != meta["clips"]:
        raise DatasetError(f"{data_dir}: split {split!r} shards hold {actual} records, "
                           f"{INFO_NAME} says {meta['clips']}")
    return result
