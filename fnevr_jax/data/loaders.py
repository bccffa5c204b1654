"""grain loaders over clip shards: training pairs, evaluation clips and NeRF head samples.

All frames come out as float32 NHWC in [0, 1], or as uint8 (0..255) with ``uint8=True``, the
form the trainer sends to the devices (a quarter of the bytes; the step converts them with
``frames_to_float``); masks as float32 (H, W, 1) in {0, 1}.

- ``train_pairs``: first-order-model's sampling. An epoch visits every identity
  ``num_repeats`` times in a shuffled order; a visit picks one of the identity's clips and two
  frames (uniform with replacement, sorted: source first), then augments both frames alike:
  time flip with p=0.5 (swaps source and driving), otherwise horizontal flip with p=0.5, then
  colour jitter (brightness, contrast, saturation, hue 0.1, in random order, on uint8 images as
  torchvision's PIL functions do).
- ``eval_clips``: whole clips in order, optionally capped to their first frames.
- ``nerf_samples``: single frames with mask, camera and identity/expression codes; the last
  ``holdout_frames`` of every clip can be held out, and ``nerf_heldout`` reads those.

Every pipeline is a grain ``MapDataset`` over the records, sliced per process (``process_index``
and ``process_count`` default to JAX's), so processes see disjoint parts that together make
up each epoch. Randomness comes from grain's per-element seeds, so a pipeline is a pure
function of its seed, and ``iter(ds).get_state()`` / ``set_state`` resume it exactly (also
through ``grain.checkpoint.CheckpointSave`` in an orbax checkpoint). ``global_batches`` turns
the per-process batches into global ``jax.Array`` batches sharded over a mesh axis.
"""
from __future__ import annotations

import ctypes

import cv2
import grain
import numpy as np

from fnevr_jax.data import shards

FRAME_FIELDS = ("face_box", "landmarks", "pose", "intrinsics", "extrinsics", "identity_code",
                "expression_code", "mask")
NERF_FIELDS = ("mask", "intrinsics", "extrinsics", "identity_code", "expression_code")


def _blend(base, x, factor: float) -> np.ndarray:
    """Pillow's ``Image.blend`` (``ImagingBlend``) of uint8 values ``base`` and ``x``, as uint8.

    Float32 arithmetic ``base + factor * (x - base)``, clipped to [0, 255] and truncated.
    ``ImageEnhance`` blends the image ``x`` with a degenerate image ``base``.
    """
    base = np.asarray(base, np.float32)
    y = np.asarray(x, np.float32) - base
    y *= np.float32(factor)
    y += base
    return np.clip(y, 0, 255, out=y).astype(np.uint8)


def _luma(r, g, b) -> np.ndarray:
    """Pillow's RGB -> L: ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16``."""
    acc = r * np.uint32(19595) + g * np.uint32(38470) + b * np.uint32(7471) + np.uint32(0x8000)
    return (acc >> 16).astype(np.uint8)


def _hsv_tables():
    """Pillow's RGB -> HSV (``rgb2hsv_row``, float and double arithmetic as in C) as tables.

    ``sat[c, v]`` for chroma ``c`` (max - min) and value ``v``; ``hue[k, c, d + 255]`` for the
    maximal channel ``k`` (r, g, b: the first that is maximal), chroma ``c`` and the
    difference ``d`` of the two other channels as ``_rgb_to_hsv`` forms it.
    """
    c = np.arange(256)[:, None]
    sat = np.float32(c) / np.float32(np.maximum(np.arange(256), 1))
    sat = np.clip(np.trunc(sat.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    d = np.arange(-255, 256)
    cf = np.float32(np.maximum(c, 1))
    ca = np.float32(c - np.maximum(d, 0)) / cf             # (max - a) / chroma
    cb = np.float32(c + np.minimum(d, 0)) / cf             # (max - b) / chroma
    hue = np.empty((3, 256, 511), np.uint8)
    for k, h in enumerate([ca - cb, np.float32(2.0 + np.float64(ca) - cb),
                           np.float32(4.0 + np.float64(ca) - cb)]):
        h = np.float32(np.fmod(np.float64(h) / 6.0 + 1.0, 1.0))
        hue[k] = np.where(c > 0, np.clip(np.trunc(np.float64(h) * 255.0), 0, 255), 0)
    return sat.reshape(-1), hue.reshape(-1)


def _rgb_tables():
    """Pillow's HSV -> RGB (``hsv2rgb``) as tables of saturation and hue.

    Channel values are ``v``, ``p = low[s, v]`` and ``m = round(v * mid[s, h])`` (C's
    ``round``: half away from zero); bit ``i`` of ``pick[h]`` says whether output channel
    ``i`` takes ``m``, bit ``i + 3`` whether it takes ``p`` (else ``v``), by the hue's sextant.
    """
    h = np.arange(256) * 6.0 / 255.0
    i = np.floor(h)
    f = np.float32(h - i)
    fs = np.float32(np.arange(256) / 255.0)[:, None]
    low = _round_half_away(np.arange(256) * (1.0 - np.float64(fs))).reshape(-1)
    q = 1.0 - np.float64(fs * f)
    t = 1.0 - fs * (1.0 - np.float64(f))
    odd = (i.astype(int) % 2).astype(bool)
    mid = np.where(odd, q, t).reshape(-1)
    orders = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1], [2, 1, 0], [1, 2, 0], [0, 2, 1]])
    order = orders[i.astype(int) % 6]
    pick = ((order == 1) << np.arange(3)).sum(1) + ((order == 2) << np.arange(3, 6)).sum(1)
    return low, mid, pick.astype(np.uint8)


def _round_half_away(x) -> np.ndarray:
    """C's ``round`` of non-negative doubles, as uint8."""
    lower = np.floor(x)
    return (lower + (x - lower >= 0.5)).astype(np.uint8)


_SAT, _HUE = _hsv_tables()
_LOW, _MID, _PICK = _rgb_tables()


def _rgb_to_hsv(r, g, b):
    """Pillow's ``convert("HSV")`` of uint8 channel arrays: (h, s, v) uint8."""
    v = np.maximum(np.maximum(r, g), b)
    c = v - np.minimum(np.minimum(r, g), b)
    r_max = r == v
    g_max = (g == v) > r_max
    b_max = ~(r_max | g_max)
    ri, gi, bi = (x.astype(np.int16) for x in (r, g, b))
    d = r_max * (bi - gi) + g_max * (ri - bi) + b_max * (gi - ri)
    k = g_max + 2 * b_max.astype(np.int32)
    h = np.take(_HUE, (k * 256 + c) * 511 + d + 255)
    s = np.take(_SAT, (c.astype(np.int32) << 8) + v)
    return h, s, v


def _hsv_to_rgb(h, s, v):
    """Pillow's ``convert("RGB")`` of uint8 HSV channel arrays: (r, g, b) uint8."""
    s = s.astype(np.int32) << 8
    p = np.take(_LOW, s + v)
    m = _round_half_away(v * np.take(_MID, s + h))
    dm, dp = m - v, p - v                                   # uint8, wrapping
    pick = cv2.LUT(h, _PICK)
    return [v + ((pick >> i) & 1) * dm + ((pick >> (i + 3)) & 1) * dp for i in range(3)]


def _adjust_hue(r, g, b, factor: float):
    """torchvision's PIL ``adjust_hue``: shift the uint8 hue channel, wrapping around."""
    h, s, v = _rgb_to_hsv(r, g, b)
    return _hsv_to_rgb(h + np.uint8(int(factor * 255) % 256), s, v)


def color_jitter(frames: np.ndarray, rng: np.random.Generator, brightness: float = 0.1,
                 contrast: float = 0.1, saturation: float = 0.1, hue: float = 0.1) -> np.ndarray:
    """first-order-model's ``ColorJitter`` on uint8 (T, H, W, 3) frames, the same for all.

    Factors: brightness, contrast, saturation from U[1-x, 1+x], hue from U[-x, x]; the four
    operations run in a random order, each on uint8 images, bit-identical to PIL's
    ``ImageEnhance`` and torchvision's PIL ``adjust_hue`` per frame (contrast uses each
    frame's own mean grey level). An amount of 0 leaves its operation out. Vectorised over
    all frames: tables for the blends and Pillow's integer HSV conversions.
    """
    t = len(frames)
    rgb = list(cv2.split(np.ascontiguousarray(frames).reshape(t, -1, 3)))

    def lut(table):
        return [cv2.LUT(x, table) for x in rgb]

    def contrast_op(f):
        grey = _luma(*rgb).reshape(t, -1)
        means = (grey.sum(1) / grey.shape[1] + 0.5).astype(np.uint8)  # int(mean + 0.5)
        tables = _blend(means[:, None], np.arange(256), f)
        return [np.stack([cv2.LUT(x[j], tables[j]).reshape(-1) for j in range(t)]) for x in rgb]

    def color_op(f):
        grey = _luma(*rgb).astype(np.float32)
        return [_blend(grey, x, f) for x in rgb]

    ops = []
    if brightness > 0:
        f_b = rng.uniform(max(0, 1 - brightness), 1 + brightness)
        ops.append(lambda: lut(_blend(0, np.arange(256), f_b)))
    if contrast > 0:
        f_c = rng.uniform(max(0, 1 - contrast), 1 + contrast)
        ops.append(lambda: contrast_op(f_c))
    if saturation > 0:
        f_s = rng.uniform(max(0, 1 - saturation), 1 + saturation)
        ops.append(lambda: color_op(f_s))
    if hue > 0:
        f_h = rng.uniform(-hue, hue)
        ops.append(lambda: _adjust_hue(*rgb, f_h))
    for k in rng.permutation(len(ops)):
        rgb = ops[k]()
    return cv2.merge(rgb).reshape(frames.shape)


def hflip_fields(fields: dict, width: int) -> dict:
    """Mirrors per-frame ground truth with the image (x -> -x).

    Mirrored landmarks keep their order (mediapipe's left-eye points end up on the right).
    The extrinsics describe the mirrored head in a mirrored world.
    """
    out = dict(fields)
    if "landmarks" in out:
        out["landmarks"] = out["landmarks"] * np.float32([-1, 1, 1])
    if "face_box" in out:
        b = out["face_box"]
        out["face_box"] = np.stack([-b[..., 2], b[..., 1], -b[..., 0], b[..., 3]], -1)
    if "pose" in out:                         # mirror: yaw and roll change sign
        out["pose"] = out["pose"] * np.float32([-1, 1, -1])
    if "mask" in out:
        out["mask"] = out["mask"][:, :, ::-1]
    if "extrinsics" in out:                   # S @ c2w @ S with S = diag(-1, 1, 1, 1)
        s = np.diag(np.float32([-1, 1, 1, 1]))
        out["extrinsics"] = s @ out["extrinsics"] @ s
    if "intrinsics" in out:
        k = out["intrinsics"].copy()
        k[..., 0, 2] = (width - 1) - k[..., 0, 2]
        out["intrinsics"] = k
    return out


def _frame_fields(record: dict, indices, names) -> dict:
    out = {}
    for name in names:
        if name == "mask":
            out[name] = shards.clip_masks(record, indices)
        else:
            out[name] = np.asarray(record[name][list(indices)], np.float32)
    return out


def frames_to_float(batch: dict) -> dict:
    """The batch with its uint8 frames as float32 in [0, 1] (other fields as they are); numpy
    or jax arrays, so a jitted step converts on the device what the loader sent as uint8."""
    return {k: v.astype(np.float32) / np.float32(255) if v.dtype == np.uint8 else v
            for k, v in batch.items()}


def _to_float(frames) -> np.ndarray:
    return np.divide(frames, np.float32(255), dtype=np.float32)


def _mask_float(mask) -> np.ndarray:
    return np.asarray(mask, np.float32)[..., None]


class _Records:
    """Lazily opened record source (picklable for grain worker processes)."""

    def __init__(self, split: shards.Split):
        self._paths = [str(p) for p in split.paths]
        self._source = None

    def __getitem__(self, index):
        if self._source is None:
            self._source = grain.sources.ArrayRecordDataSource(self._paths)
        return shards.decode_clip(self._source[int(index)])


class _Visit(grain.transforms.MapWithIndex):
    """Epoch position -> (sample number, identity index)."""

    def __init__(self, n: int):
        self._n = n

    def map_with_index(self, index, i):
        return index, i % self._n


class PairSampler(grain.transforms.RandomMap):
    """(sample number, identity index) -> an augmented (source, driving) pair of a clip."""

    def __init__(self, split: shards.Split, augment: bool, fields=(), jitter=(0.1,) * 4,
                 uint8: bool = False):
        self._records = _Records(split)
        self._uint8 = uint8
        self._num_frames = split.num_frames
        self._clips = [np.flatnonzero(split.identity == i) for i in range(len(split.identities))]
        self._augment = augment
        self._fields = tuple(fields)
        self._jitter = tuple(jitter)

    def random_map(self, element, rng: np.random.Generator) -> dict:
        sample, identity = element
        clip = int(rng.choice(self._clips[identity]))
        idx = np.sort(rng.integers(0, self._num_frames[clip], 2))
        record = self._records[clip]
        frames = shards.clip_frames(record, idx)
        extra = _frame_fields(record, idx, self._fields)
        if self._augment:
            if rng.uniform() < 0.5:
                frames, idx = frames[::-1], idx[::-1]
                extra = {k: v[::-1] for k, v in extra.items()}
            elif rng.uniform() < 0.5:
                frames = cv2.flip(frames.reshape(-1, *frames.shape[2:]), 1).reshape(frames.shape)
                extra = hflip_fields(extra, frames.shape[2])
            frames = color_jitter(frames, rng, *self._jitter)
        frames = np.ascontiguousarray(frames) if self._uint8 else _to_float(frames)
        out = {"source": frames[0], "driving": frames[1], "identity": np.int32(identity),
               "clip": np.int32(clip), "frames": idx.astype(np.int32),
               "sample": np.int64(sample)}
        for k, v in extra.items():
            v = _mask_float(v) if k == "mask" else v
            out["source_" + k], out["driving_" + k] = v[0], v[1]
        return out


class _NerfReader(grain.transforms.Map):
    """Global frame number -> one frame with its mask, camera and codes."""

    def __init__(self, split: shards.Split, uint8: bool = False):
        self._records = _Records(split)
        self._starts = np.concatenate([[0], np.cumsum(split.num_frames)])
        self._identity = split.identity
        self._uint8 = uint8

    def map(self, g) -> dict:
        clip = int(np.searchsorted(self._starts, g, side="right") - 1)
        frame = int(g - self._starts[clip])
        record = self._records[clip]
        fields = _frame_fields(record, [frame], NERF_FIELDS)
        image = shards.clip_frames(record, [frame])[0]
        out = {"image": np.ascontiguousarray(image) if self._uint8 else _to_float(image),
               "mask": _mask_float(fields.pop("mask")[0]),
               "identity": np.int32(self._identity[clip]), "clip": np.int32(clip),
               "frame": np.int32(frame)}
        out.update({k: v[0] for k, v in fields.items()})
        return out


class _ClipReader(grain.transforms.Map):
    """Record index -> the whole clip (first ``max_frames`` frames) and its fields."""

    def __init__(self, split: shards.Split, max_frames, fields, uint8: bool = False):
        self._records = _Records(split)
        self._split = split
        self._max_frames = max_frames
        self._fields = tuple(fields)
        self._uint8 = uint8

    def map(self, clip) -> dict:
        record = self._records[clip]
        n = record["num_frames"]
        idx = range(n if self._max_frames is None else min(n, self._max_frames))
        frames = shards.clip_frames(record, idx)
        out = {"video": np.ascontiguousarray(frames) if self._uint8 else _to_float(frames),
               "clip_id": record["clip_id"], "identity": np.int32(self._split.identity[clip]),
               "clip": np.int32(clip)}
        for k, v in _frame_fields(record, idx, self._fields).items():
            out[k] = _mask_float(v) if k == "mask" else v
        return out


def _process(process_index, process_count):
    if process_index is None or process_count is None:
        import jax

        process_index, process_count = jax.process_index(), jax.process_count()
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return process_index, process_count


def _check_fields(split: shards.Split, fields):
    unknown = [f for f in fields if f not in FRAME_FIELDS]
    if unknown:
        raise ValueError(f"unknown fields {unknown}; known: {FRAME_FIELDS}")
    absent = [f for f in fields if f not in split.fields]
    if absent:
        raise shards.DatasetError(f"{split.data_dir}: fields {absent} are required but the "
                                  f"dataset has only {split.fields}")


def _retain_freed_memory(worker_index: int, worker_count: int) -> None:
    """grain worker start: glibc serves blocks under 32 MiB from a heap it does not trim.

    A pair allocates and frees megabytes (record bytes, decoded frames, jitter temporaries).
    By default glibc maps large blocks afresh and gives freed heap memory back to the
    system, so each pair faults its pages in again: about 1700 page faults a pair, 3 ms of
    CPU on the 2-core benchmark machine (more than the colour jitter).
    """
    del worker_index, worker_count
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:                           # not glibc: leave the allocator alone
        return
    libc.mallopt(-3, 32 << 20)                # M_MMAP_THRESHOLD
    libc.mallopt(-1, 1 << 30)                 # M_TRIM_THRESHOLD


def _batched(ds: grain.MapDataset, batch_size: int, process_count: int, worker_count: int,
             num_threads: int | None) -> grain.IterDataset:
    if batch_size % process_count:
        raise ValueError(f"batch size {batch_size} is not divisible by {process_count} processes")
    if num_threads is None:                  # CPU-bound: more threads per worker fight for the GIL
        num_threads = 1 if worker_count > 0 else 16
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=64))
    it = it.batch(batch_size // process_count, drop_remainder=True)
    if worker_count > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():      # grain's workers read absl flags
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count),
                            worker_init_fn=_retain_freed_memory)
    return it


def pair_dataset(data_dir, *, seed: int = 0, split: str = "train", num_repeats: int = 75,
                 num_epochs: int | None = None, augment: bool = True, jitter=(0.1,) * 4,
                 fields=(), size=None, uint8: bool = False, process_index: int | None = None,
                 process_count: int | None = None) -> grain.MapDataset:
    """The per-process ``MapDataset`` of training pairs (see the module docstring).

    Element: ``source``, ``driving`` (H, W, 3) float32; ``identity``, ``clip`` int32;
    ``frames`` (2,) int32 frame numbers (source, driving); ``sample`` int64, the position in
    the global sample stream (epoch * epoch length + position in the epoch);
    ``source_<f>``/``driving_<f>`` for each requested per-frame field ``f`` (masks
    (H, W, 1)), flipped with the frames. ``jitter``: brightness, contrast, saturation, hue.
    ``num_epochs=None`` repeats forever. ``uint8=True`` keeps the frames uint8 (0..255).
    """
    p, n = _process(process_index, process_count)
    sp = shards.open_split(data_dir, split, size=size)
    _check_fields(sp, fields)
    n_ids = len(sp.identities)
    if n_ids == 0:
        raise shards.DatasetError(f"{data_dir}: split {split!r} is empty")
    ds = grain.MapDataset.range(n_ids * num_repeats).shuffle(seed=seed)
    ds = ds.map_with_index(_Visit(n_ids))
    ds = ds.random_map(PairSampler(sp, augment, fields, jitter, uint8), seed=seed)
    return ds[p::n].repeat(num_epochs)


def train_pairs(data_dir, *, batch_size: int, seed: int = 0, worker_count: int = 0,
                num_threads: int | None = None, uint8: bool = False,
                **kwargs) -> grain.IterDataset:
    """Batches of ``pair_dataset`` elements; ``batch_size`` is global (over all processes).

    ``worker_count`` > 0 decodes and augments in that many grain worker processes; they pass
    uint8 frames, turned into float32 in this process unless ``uint8``. ``num_threads``:
    reader threads per process (default 16 without workers, 1 in each worker).
    """
    p, n = _process(kwargs.pop("process_index", None), kwargs.pop("process_count", None))
    ds = pair_dataset(data_dir, seed=seed, process_index=p, process_count=n, uint8=True,
                      **kwargs)
    ds = _batched(ds, batch_size, n, worker_count, num_threads)
    return ds if uint8 else ds.map(frames_to_float)


def nerf_frames(split: shards.Split, holdout_frames: int = 0, heldout: bool = False):
    """Global frame numbers (clip-major) of a split: every frame of each clip but its last
    ``holdout_frames``, or with ``heldout`` only those last frames."""
    if holdout_frames < 0 or (holdout_frames and split.num_frames.min() <= holdout_frames):
        raise shards.DatasetError(
            f"{split.data_dir}: cannot hold out the last {holdout_frames} frames of clips of "
            f"{split.num_frames.min()} frames")
    starts = np.concatenate([[0], np.cumsum(split.num_frames)])
    cut = starts[1:] - holdout_frames
    lo, hi = (cut, starts[1:]) if heldout else (starts[:-1], cut)
    return np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]).astype(np.int64)


def nerf_dataset(data_dir, *, seed: int = 0, split: str = "train",
                 num_epochs: int | None = None, size=None, holdout_frames: int = 0,
                 uint8: bool = False, process_index: int | None = None,
                 process_count: int | None = None) -> grain.MapDataset:
    """Shuffled single frames for the NeRF head model, per process, without the last
    ``holdout_frames`` of each clip (``uint8``: the image as uint8).

    Element: ``image`` (H, W, 3), ``mask`` (H, W, 1), ``intrinsics`` (3, 3), ``extrinsics``
    (4, 4) camera-to-world, ``identity_code``, ``expression_code`` float32; ``identity``,
    ``clip``, ``frame`` int32.
    """
    p, n = _process(process_index, process_count)
    sp = shards.open_split(data_dir, split, size=size, require=NERF_FIELDS)
    ds = grain.MapDataset.source(nerf_frames(sp, holdout_frames)).shuffle(seed=seed)
    return ds.map(_NerfReader(sp, uint8))[p::n].repeat(num_epochs)


def nerf_heldout(data_dir, *, holdout_frames: int, split: str = "train", size=None,
                 process_index: int | None = None, process_count: int | None = None,
                 uint8: bool = False) -> grain.MapDataset:
    """The last ``holdout_frames`` of every clip in order (this process's share), unbatched:
    the frames ``nerf_dataset`` with the same ``holdout_frames`` leaves out (``uint8``: the
    images as stored)."""
    p, n = _process(process_index, process_count)
    sp = shards.open_split(data_dir, split, size=size, require=NERF_FIELDS)
    frames = nerf_frames(sp, holdout_frames, heldout=True)
    return grain.MapDataset.source(frames).map(_NerfReader(sp, uint8))[p::n]


def nerf_samples(data_dir, *, batch_size: int, seed: int = 0, worker_count: int = 0,
                 num_threads: int | None = None, **kwargs) -> grain.IterDataset:
    """Batches of ``nerf_dataset`` elements; ``batch_size`` is global."""
    p, n = _process(kwargs.pop("process_index", None), kwargs.pop("process_count", None))
    ds = nerf_dataset(data_dir, seed=seed, process_index=p, process_count=n, **kwargs)
    return _batched(ds, batch_size, n, worker_count, num_threads)


def eval_clips(data_dir, *, split: str = "test", max_frames: int | None = None, fields=(),
               size=None, process_index: int | None = None,
               process_count: int | None = None, uint8: bool = False) -> grain.MapDataset:
    """Whole clips in record order (this process's share), unbatched.

    Element: ``video`` (T, H, W, 3) float32 (``uint8``: as stored) with
    T = min(frames, ``max_frames``),
    ``clip_id`` str, ``identity`` and ``clip`` int32, and the requested per-frame fields.
    """
    p, n = _process(process_index, process_count)
    sp = shards.open_split(data_dir, split, size=size)
    _check_fields(sp, fields)
    return grain.MapDataset.range(len(sp))[p::n].map(_ClipReader(sp, max_frames, fields, uint8))


class _ToGlobal:
    def __init__(self, sharding):
        self._sharding = sharding

    def __call__(self, batch):
        import jax

        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self._sharding, np.asarray(x)),
            batch)


def global_batches(ds: grain.IterDataset, mesh, axis: str = "data",
                   prefetch: int = 2) -> grain.IterDataset:
    """Maps per-process batches to global ``jax.Array``s sharded over ``mesh``'s ``axis``,
    ``prefetch`` batches ahead on the devices (a background thread).

    The result is still a grain dataset: its iterator's state (that of the batches consumed,
    not of those prefetched) saves and restores.
    """
    from jax.sharding import NamedSharding, PartitionSpec

    ds = ds.map(_ToGlobal(NamedSharding(mesh, PartitionSpec(axis))))
    return grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch)
