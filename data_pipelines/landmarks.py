"""Dense 3D face landmarks (mediapipe face mesh) and head pose from a rigid fit.

Landmarks use the shard coordinates (``fnevr_jax.data.shards``): normalised ``x, y`` in
[-1, 1] over the frame and depth ``z`` on the scale of ``x``, larger farther from the camera.
Head pose is the rotation of a similarity (Umeyama) fit of a reference shape, given in the
head frame (x right, y up, z out of the face), to the landmarks; see ``head_pose``.

mediapipe ships no canonical face model, so the reference for real video is estimated from
the data (``mean_shape``): a generalised Procrustes mean of the clip's frames, turned into the
head frame by anatomical axes (eye corners for x, chin to forehead for y).
"""
from __future__ import annotations

import numpy as np

from fnevr_jax.ops import rotations

NUM_POINTS = 468
# mediapipe face mesh indices: outer eye corners (image left, image right at rest),
# chin and forehead.
EYE_OUTER = (33, 263)
CHIN, FOREHEAD = 152, 10
_FLIP = np.diag([1.0, -1.0, -1.0])   # head frame <-> camera-axis frame (y down, z away)


def rigid_fit(source, target):
    """Similarity ``target ~ scale * rot @ source + trans`` (Umeyama), for (N, 3) points."""
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    u, sig, vt = np.linalg.svd(xt.T @ xs / len(source))
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, 1.0, d])
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / (xs * xs).sum(1).mean()
    return scale, rot, mu_t - scale * rot @ mu_s


def head_pose(landmarks, reference) -> np.ndarray:
    """Yaw, pitch, roll (T, 3) of landmarks (T, N, 3) given a head-frame reference (N, 3)."""
    out = []
    for frame in np.asarray(landmarks):
        _, rot, _ = rigid_fit(reference, frame)
        out.append(rotations.matrix_to_pose(_FLIP @ rot))
    return np.asarray(out, np.float32)


def mean_shape(landmarks, iterations: int = 3) -> np.ndarray:
    """A head-frame reference shape (N, 3) from mediapipe landmarks (T, N, 3).

    Generalised Procrustes: align every frame to the running mean, average, repeat. The
    result is centred, of unit RMS radius, and rotated so that the outer eye corners lie on
    the x axis and the chin-to-forehead direction is +y.
    """
    frames = np.asarray(landmarks, np.float64)
    mean = frames[0] - frames[0].mean(0)
    for _ in range(iterations):
        aligned = []
        for f in frames:
            s, r, t = rigid_fit(f, mean)
            aligned.append(s * f @ r.T + t)
        mean = np.mean(aligned, 0)
        mean -= mean.mean(0)
        mean /= np.sqrt((mean * mean).sum(1).mean())
    head = mean @ _FLIP.T                    # camera axes to y up, z towards the camera
    x = head[EYE_OUTER[1]] - head[EYE_OUTER[0]]
    x /= np.linalg.norm(x)
    y = head[FOREHEAD] - head[CHIN]
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    axes = np.stack([x, y, np.cross(x, y)])
    return (head @ axes.T).astype(np.float32)


class FaceMesh:
    """mediapipe's 468-point face mesh, one face per frame; use as a context manager."""

    def __init__(self, static: bool = False, min_confidence: float = 0.5):
        from data_pipelines.face_crop import protobuf_compat
        protobuf_compat()
        from mediapipe.python.solutions import face_mesh

        self._mesh = face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1,
                                        refine_landmarks=False,
                                        min_detection_confidence=min_confidence)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._mesh.close()

    def __call__(self, frames):
        """Landmarks (T, 468, 3) in shard coordinates and a (T,) found mask; uint8 RGB input."""
        frames = np.asarray(frames)
        t, h, w = frames.shape[:3]
        out = np.zeros((t, NUM_POINTS, 3), np.float32)
        found = np.zeros(t, bool)
        for i, frame in enumerate(frames):
            result = self._mesh.process(np.ascontiguousarray(frame))
            if not result.multi_face_landmarks:
                continue
            lm = result.multi_face_landmarks[0].landmark
            raw = np.array([[p.x, p.y, p.z] for p in lm[:NUM_POINTS]], np.float32)
            # mediapipe: x, y as fractions of width/height with pixel edges at 0 and 1,
            # z on the scale of x; shard coordinates put pixel centres at -1 and +1.
            out[i, :, 0] = (raw[:, 0] * w - 0.5) * 2 / (w - 1) - 1
            out[i, :, 1] = (raw[:, 1] * h - 0.5) * 2 / (h - 1) - 1
            out[i, :, 2] = raw[:, 2] * w * 2 / (w - 1)
            found[i] = True
        return out, found


def fill_missing(values, found):
    """Fills frames without a detection by linear interpolation in time (edges: nearest)."""
    values = np.asarray(values, np.float32)
    good = np.flatnonzero(found)
    if len(good) == len(values):
        return values
    flat = values.reshape(len(values), -1)
    idx = np.arange(len(values))
    filled = np.stack([np.interp(idx, good, flat[good, k]) for k in range(flat.shape[1])], 1)
    return filled.reshape(values.shape).astype(np.float32)
