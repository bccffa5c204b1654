"""Finding and reading videos in the first-order-model layouts and in ordinary folders.

A video is one of: a video file (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ``.webm``, ``.gif``),
a folder of frame images (first-order-model names it ``<name>.mp4``), or one ``.png``/``.jpg``
strip of square frames concatenated horizontally. Frames come out as uint8 RGB.
"""
from __future__ import annotations

import dataclasses
import pathlib

import cv2
import numpy as np

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


class VideoError(Exception):
    """A video that cannot be read; ``reason`` is a short category for summaries."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    path: str
    split: str
    kind: str             # "file", "frames" or "strip"

    @property
    def name(self) -> str:
        return pathlib.Path(self.path).name

    @property
    def stem(self) -> str:
        name = self.name
        for ext in VIDEO_EXTS + IMAGE_EXTS:
            if name.lower().endswith(ext):
                return name[:-len(ext)]
        return name

    @property
    def identity(self) -> str:
        """The part of the name before the first ``#`` (VoxCeleb), else the whole stem."""
        return self.stem.split("#")[0]


def _entry(path: pathlib.Path, split: str):
    low = path.name.lower()
    if path.is_dir():
        if any(p.suffix.lower() in IMAGE_EXTS for p in path.iterdir()):
            return VideoEntry(str(path), split, "frames")
        return None
    if low.endswith(VIDEO_EXTS):
        return VideoEntry(str(path), split, "file")
    if low.endswith(IMAGE_EXTS):
        return VideoEntry(str(path), split, "strip")
    return None


def find_videos(root, default_split: str = "train") -> list:
    """All videos under ``root``, sorted.

    With ``train/`` and/or ``test/`` subfolders (first-order-model), their direct entries form
    those splits; otherwise every video file below ``root`` (recursively) and every
    ``.mp4``-named frame folder belongs to ``default_split``. Loose images are not videos.
    """
    root = pathlib.Path(root)
    splits = [s for s in ("train", "test") if (root / s).is_dir()]
    found = []
    if splits:
        for split in splits:
            for p in sorted((root / split).iterdir()):
                if (e := _entry(p, split)) is not None:
                    found.append(e)
        return found
    for p in sorted(root.rglob("*")):
        low = p.name.lower()
        if p.is_file() and low.endswith(VIDEO_EXTS):
            found.append(VideoEntry(str(p), default_split, "file"))
        elif p.is_dir() and low.endswith(VIDEO_EXTS) and (e := _entry(p, default_split)):
            found.append(e)
    return found


def _read_image(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise VideoError("unreadable", f"cannot decode {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_video(entry, fps: float = 25.0, max_frames: int | None = None):
    """Decodes a video entry (or a path) to (frames uint8 (T, H, W, 3), fps).

    Raises ``VideoError`` with reason ``unreadable`` (cannot open or decode, no frames) or
    ``truncated`` (under 90% of the frames the container declares).
    """
    if not isinstance(entry, VideoEntry):
        entry = _entry(pathlib.Path(entry), "train")
        if entry is None:
            raise VideoError("unreadable", "not a video")
    path = pathlib.Path(entry.path)
    if entry.kind == "frames":
        names = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        frames = [_read_image(p) for p in names[:max_frames]]
    elif entry.kind == "strip":
        strip = _read_image(path)
        h, w = strip.shape[:2]
        if w % h:
            raise VideoError("unreadable", f"strip width {w} is not a multiple of height {h}")
        frames = list(strip.reshape(h, w // h, h, 3).transpose(1, 0, 2, 3))[:max_frames]
    elif path.suffix.lower() == ".gif":
        import imageio.v3 as iio

        try:
            frames = [f[..., :3] for f in iio.imread(path, index=None)][:max_frames]
        except Exception as e:  # imageio raises many types for a broken file
            raise VideoError("unreadable", str(e)) from None
    else:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise VideoError("unreadable", f"cannot open {path}")
        fps = cap.get(cv2.CAP_PROP_FPS) or fps
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        while max_frames is None or len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        cap.release()
        want = declared if max_frames is None else min(declared, max_frames)
        # The declared count is an estimate; a tenth missing means a cut-off file.
        if frames and declared > 0 and len(frames) < 0.9 * want - 2:
            raise VideoError("truncated", f"decoded {len(frames)} of {declared} frames")
    if not frames:
        raise VideoError("unreadable", f"no frames in {path}")
    if len({f.shape for f in frames}) > 1:
        raise VideoError("unreadable", "frames of different sizes")
    return np.stack(frames), float(fps)
