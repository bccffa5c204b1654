"""Face detection, tracking and VoxCeleb-style square crops (shared with ``animate.py --crop``).

``find_crops(frames)`` does everything: it detects faces in every frame (mediapipe's full-range
face detector), groups the detections into tracks by overlap, and gives each long enough track
square crop boxes, enlarged around the face and smoothed in time. ``crop_frames`` then cuts
and resizes them; parts of a crop outside the frame repeat the border pixels (never stretch).

Boxes are ``x0, y0, x1, y1`` in pixels of the input frames.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

MAX_SIDE = 640        # frames are downscaled to this longest side for detection (FOMM)
CROP_SCALE = 1.8      # crop side / face box side
CROP_SHIFT = 0.1      # crop centre above the face centre, in face box heights


def protobuf_compat():
    """mediapipe's compiled bindings look up message classes with
    ``MessageFactory.GetPrototype``, which protobuf 5 removed (``GetMessageClass`` replaced it).
    The lookup fails and falls back, but leaves the AttributeError pending in the interpreter,
    which a Jupyter kernel then raises in the middle of a cell. This restores the method;
    call it before importing mediapipe."""
    from google.protobuf import message_factory
    if not hasattr(message_factory.MessageFactory, "GetPrototype"):
        message_factory.MessageFactory.GetPrototype = (
            lambda self, descriptor: message_factory.GetMessageClass(descriptor))


class FaceDetector:
    """mediapipe's face detector; ``detector(frame)`` gives (k, 5) boxes and scores."""

    def __init__(self, min_confidence: float = 0.5):
        protobuf_compat()
        from mediapipe.python.solutions import face_detection

        self._det = face_detection.FaceDetection(model_selection=1,
                                                 min_detection_confidence=min_confidence)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._det.close()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        scale = min(1.0, MAX_SIDE / max(h, w))
        small = frame if scale == 1 else cv2.resize(frame, (round(w * scale), round(h * scale)),
                                                    interpolation=cv2.INTER_AREA)
        result = self._det.process(np.ascontiguousarray(small))
        boxes = []
        for d in result.detections or []:
            b = d.location_data.relative_bounding_box
            boxes.append([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w,
                          (b.ymin + b.height) * h, d.score[0]])
        return np.asarray(boxes, np.float32).reshape(-1, 5)


def detect_faces(frames, detector: FaceDetector | None = None) -> list:
    """Per frame, an array (k, 5) of face boxes with scores."""
    if detector is None:
        with FaceDetector() as det:
            return [det(f) for f in frames]
    return [detector(f) for f in frames]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclasses.dataclass
class Track:
    """A face followed over frames ``start .. start + len(boxes) - 1`` (gaps interpolated)."""
    start: int
    boxes: np.ndarray           # (T, 4) face boxes

    @property
    def end(self) -> int:
        return self.start + len(self.boxes)


def face_tracks(detections, iou_threshold: float = 0.25, max_gap: int = 5) -> list:
    """Groups per-frame detections into tracks.

    A detection joins the open track whose last box overlaps it most (IoU above the
    threshold); a track closes after ``max_gap`` frames without a match.
    """
    open_tracks, done = [], []
    for t, dets in enumerate(detections):
        used = set()
        for tr in open_tracks:
            best, best_iou = None, iou_threshold
            for k, d in enumerate(dets):
                if k not in used and (v := iou(tr["boxes"][-1][1], d[:4])) > best_iou:
                    best, best_iou = k, v
            if best is not None:
                used.add(best)
                tr["boxes"].append((t, dets[best][:4]))
        for k, d in enumerate(dets):
            if k not in used:
                open_tracks.append({"boxes": [(t, d[:4])]})
        still = []
        for tr in open_tracks:
            (done if t - tr["boxes"][-1][0] >= max_gap else still).append(tr)
        open_tracks = still
    tracks = []
    for tr in done + open_tracks:
        times = np.array([t for t, _ in tr["boxes"]])
        boxes = np.array([b for _, b in tr["boxes"]], np.float32)
        full = np.arange(times[0], times[-1] + 1)
        filled = np.stack([np.interp(full, times, boxes[:, k]) for k in range(4)], 1)
        tracks.append(Track(int(times[0]), filled.astype(np.float32)))
    return sorted(tracks, key=lambda tr: tr.start)


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with edge padding."""
    if sigma <= 0 or len(x) < 2:
        return x
    r = int(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, ((r, r),) + ((0, 0),) * (x.ndim - 1), mode="edge")
    return np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(x.shape[1])], 1)


def crop_boxes(face_boxes: np.ndarray, scale: float = CROP_SCALE, shift: float = CROP_SHIFT,
               smooth: float = 5.0) -> np.ndarray:
    """Square crop boxes (T, 4) around face boxes (T, 4), smoothed over ``smooth`` frames."""
    w = face_boxes[:, 2] - face_boxes[:, 0]
    h = face_boxes[:, 3] - face_boxes[:, 1]
    cx = (face_boxes[:, 0] + face_boxes[:, 2]) / 2
    cy = (face_boxes[:, 1] + face_boxes[:, 3]) / 2 - shift * h
    side = np.maximum(w, h) * scale
    cx, cy, side = _smooth(np.stack([cx, cy, side], 1), smooth).T
    half = side / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], 1).astype(np.float32)


def crop_frames(frames, boxes: np.ndarray, size: int = 256) -> np.ndarray:
    """Cuts square ``boxes`` out of ``frames`` and resizes them to (size, size), uint8.

    Outside the frame the border pixels repeat.
    """
    out = []
    for frame, (x0, y0, x1, y1) in zip(frames, boxes):
        h, w = frame.shape[:2]
        side = max(1, int(round(x1 - x0)))
        ix, iy = int(round(x0)), int(round(y0))
        pad = max(0, -ix, -iy, ix + side - w, iy + side - h)
        src = frame
        if pad:
            src = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        patch = src[iy + pad:iy + pad + side, ix + pad:ix + pad + side]
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        out.append(cv2.resize(patch, (size, size), interpolation=interp))
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


def box_in_crop(face_boxes: np.ndarray, crops: np.ndarray, size: int) -> np.ndarray:
    """Face boxes in the normalised coordinates of their crops (``shards`` convention)."""
    side = (crops[:, 2] - crops[:, 0])[:, None]
    rel = (face_boxes - crops[:, [0, 1, 0, 1]]) / side * size - 0.5
    return (rel * 2 / (size - 1) - 1).astype(np.float32)


@dataclasses.dataclass
class FaceCrop:
    """One face track, ready to cut: frames ``start .. end - 1`` of the input."""
    start: int
    face_boxes: np.ndarray      # (T, 4), pixels of the input frames
    crop_boxes: np.ndarray      # (T, 4), square, pixels of the input frames

    @property
    def end(self) -> int:
        return self.start + len(self.crop_boxes)


def find_crops(frames, *, min_frames: int = 1, max_frames: int | None = None,
               detections=None, iou_threshold: float = 0.25, max_gap: int = 5,
               scale: float = CROP_SCALE, shift: float = CROP_SHIFT,
               smooth: float = 5.0) -> list:
    """Face crops for a sequence of RGB frames (or one image as a 1-frame sequence).

    Tracks with fewer than ``min_frames`` frames are dropped; longer than ``max_frames``
    are cut into consecutive pieces (a last piece shorter than ``min_frames`` is dropped).
    Returns ``FaceCrop``s ordered by start frame.
    """
    if detections is None:
        detections = detect_faces(frames)
    crops = []
    for tr in face_tracks(detections, iou_threshold, max_gap):
        step = max_frames or len(tr.boxes)
        for s in range(0, len(tr.boxes), step):
            boxes = tr.boxes[s:s + step]
            if len(boxes) >= min_frames:
                crops.append(FaceCrop(tr.start + s, boxes,
                                      crop_boxes(boxes, scale, shift, smooth)))
    return crops
