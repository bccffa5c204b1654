"""Synthetic talking heads: procedurally ray-cast 3D heads with full ground truth.

Each identity is an ellipsoid head with its own proportions, skin, hair (a cap of extra
volume with strands), ears, a nose, eyes (sclera, iris, pupil, eyelids that blink, gaze),
brows and a mouth that opens and smiles. Each clip moves the head with smooth random yaw,
pitch, roll, translation and expression in front of a static textured background
(``--translation 0`` keeps the head centred; ``--rotation`` scales the turns; ``render_poses``
renders one scene at chosen poses). Rendering is analytic ray casting, vectorised over pixels
and frames, at any resolution.

Every frame carries its ground truth in the shard format of ``fnevr_jax.data.shards``:
``landmarks`` (3D points on the head surface), ``pose``, ``face_box``, ``mask`` (the
foreground: head, hair, ears and neck, as a portrait matting gives), ``intrinsics``/``extrinsics`` and ``identity_code``/
``expression_code``. Everything is a function of the seed.

CLI: ``python -m data_pipelines.synthetic --output DIR [--train-clips 200 --frames 64 ...]``.
"""
from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import json
import multiprocessing
import os
import pathlib
import sys
import time

import numpy as np

from fnevr_jax import cli
from fnevr_jax.data import shards
from fnevr_jax.ops import rotations

FOCAL = 2.0           # focal length in units of the frame width
DISTANCE = 6.2        # mean camera-to-head-centre distance, in head units (head radius ~1)
FPS = 25.0
BASE = np.diag([1.0, -1.0, -1.0])   # head frame (y up, z out of the face) to camera axes
IDENTITY_DIM = 16
EXPRESSION_DIM = 6
EXPRESSION_NAMES = ("eye_open_left", "eye_open_right", "jaw_open", "smile", "brow_raise",
                    "gaze")
SPLIT_IDS = {"train": 0, "test": 1}
PLAN = "synthetic_plan.json"

_HAIR = np.array([[0.08, 0.06, 0.05], [0.30, 0.18, 0.09], [0.75, 0.60, 0.35],
                  [0.55, 0.22, 0.08], [0.62, 0.62, 0.62]])
_IRIS = np.array([[0.25, 0.40, 0.75], [0.35, 0.20, 0.10], [0.25, 0.50, 0.30]])


@dataclasses.dataclass(frozen=True)
class Identity:
    """Per-identity shape and appearance."""
    radii: np.ndarray       # skull ellipsoid (x, y, z)
    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    hairline: float         # hair starts at this fraction of the skull height, in front
    hair_volume: float
    eye_x: float
    eye_y: float
    eye_size: float
    nose: float
    mouth_width: float
    mouth_y: float

    def code(self) -> np.ndarray:
        """The identity code: the parameters above, roughly in [-1, 1]."""
        return np.concatenate([
            (self.radii - [0.78, 1.01, 0.9]) / 0.07, self.skin * 2 - 1, self.hair * 2 - 1,
            [(self.hairline - 0.5) / 0.15, (self.hair_volume - 1.09) / 0.06,
             (self.eye_x - 0.32) / 0.04, (self.eye_y - 0.17) / 0.05,
             (self.eye_size - 0.115) / 0.015, (self.nose - 1.0) / 0.2,
             (self.mouth_width - 0.27) / 0.05],
        ]).astype(np.float32)


def make_identity(seed: int, index: int) -> Identity:
    rng = np.random.default_rng([seed, 0, index])
    tone = rng.uniform()
    skin = (1 - tone) * np.array([0.96, 0.80, 0.69]) + tone * np.array([0.45, 0.30, 0.21])
    skin = np.clip(skin + rng.normal(0, 0.02, 3), 0, 1)
    hair = np.clip(_HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 0.03, 3), 0, 1)
    return Identity(
        radii=np.array([rng.uniform(0.71, 0.85), rng.uniform(0.94, 1.08), rng.uniform(0.83, 0.97)]),
        skin=skin, hair=hair, iris=_IRIS[rng.integers(len(_IRIS))],
        lips=np.clip(skin * np.array([0.85, 0.55, 0.55]) + [0.1, 0, 0], 0, 1),
        hairline=rng.uniform(0.35, 0.65), hair_volume=rng.uniform(1.03, 1.15),
        eye_x=rng.uniform(0.28, 0.36), eye_y=rng.uniform(0.12, 0.22),
        eye_size=rng.uniform(0.10, 0.13), nose=rng.uniform(0.8, 1.2),
        mouth_width=rng.uniform(0.22, 0.32), mouth_y=rng.uniform(-0.48, -0.38))


def _neck(identity: Identity):
    """The neck: an elliptic cylinder along y (centre z, (x, z) radii, top y)."""
    rx, ry, rz = identity.radii
    return -0.15, (0.42 * rx, 0.5 * rz), -0.5 * ry


def surface_points(identity: Identity, count: int = 468) -> np.ndarray:
    """``count`` points spread evenly over the skull ellipsoid, in the head frame (count, 3).

    Points where the neck joins the skull (not on the visible surface) are left out.
    """
    cz, (nx, nz), top = _neck(identity)
    total = count
    while True:
        i = np.arange(total) + 0.5
        y = 1 - 2 * i / total
        r = np.sqrt(1 - y * y)
        phi = np.pi * (3 - np.sqrt(5)) * i
        p = np.stack([r * np.sin(phi), y, r * np.cos(phi)], -1) * identity.radii
        keep = ~((p[:, 1] < top) & ((p[:, 0] / nx) ** 2 + ((p[:, 2] - cz) / nz) ** 2 < 1))
        if keep.sum() >= count:
            return p[keep][:count].astype(np.float32)
        total += count - keep.sum()


def _smooth(rng, t, count=3):
    """A smooth random signal in [-1, 1] sampled at times ``t`` (seconds)."""
    freq = rng.uniform(0.08, 0.5, count)
    phase = rng.uniform(0, 2 * np.pi, count)
    amp = rng.uniform(0.3, 1.0, count)
    s = (amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t + phase[:, None])).sum(0)
    return s / amp.sum()


def make_motion(rng, frames: int, translation: float = 1.0, rotation: float = 1.0):
    """Per-frame pose (T, 3), translation (T, 3) and expression code (T, 6).

    `translation` and `rotation` scale the head's 2D/depth translation and its rotation
    amplitudes (the same random draws: 1 and 1 give the default clips). Translation 0 keeps the
    head centred, as face-aligned crops of talking-head datasets do (VoxCeleb's), so that
    rotation and expression are the keypoints' only motion.
    """
    t = np.arange(frames) / FPS
    scale = rng.uniform(0.4, 1.0) * rotation
    pose = np.stack([0.5 * scale * _smooth(rng, t), 0.28 * scale * _smooth(rng, t),
                     0.18 * scale * _smooth(rng, t)], -1)
    # Up to ±0.5 (x) and ±0.4 (y) head units: ±10 px at 64 px, a loosely framed talking head.
    trans = np.stack([0.5 * translation * _smooth(rng, t), 0.4 * translation * _smooth(rng, t),
                      DISTANCE + 0.4 * translation * _smooth(rng, t)], -1)
    eyes = np.ones(frames)
    start = rng.uniform(-2.0, 1.0)
    while start < t[-1] + 1:                  # blinks: 0.25 s dips every 1.5-4 s
        eyes = np.minimum(eyes, np.clip(np.abs(t - start) / 0.12, 0, 1) ** 2)
        start += rng.uniform(1.5, 4.0)
    wink = np.clip(1 + 0.1 * _smooth(rng, t), 0, 1)
    jaw = np.clip(_smooth(rng, t, 4) * 1.2 + 0.2, 0, 1)
    smile = np.clip(_smooth(rng, t) * 1.3, -0.5, 1)
    brow = np.clip(_smooth(rng, t) * 1.3, -1, 1)
    gaze = _smooth(rng, t)
    expr = np.stack([eyes * wink, eyes, jaw, smile, brow, gaze], -1)
    return pose.astype(np.float32), trans.astype(np.float32), expr.astype(np.float32)


def make_background(rng, size: int) -> np.ndarray:
    """A static textured background: a gradient, soft blobs and stripes, (size, size, 3)."""
    g = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(g, g)
    c0, c1 = rng.uniform(0.15, 0.9, 3), rng.uniform(0.15, 0.9, 3)
    w = (x * np.cos(a := rng.uniform(0, np.pi)) + y * np.sin(a))[..., None]
    img = c0 * (1 - w) + c1 * w
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - 0.7 * blob) + 0.7 * blob * rng.uniform(0, 1, 3)
    freq, ang = rng.uniform(6, 20), rng.uniform(0, np.pi)
    img *= 1 + 0.08 * np.sin(2 * np.pi * freq * (x * np.cos(ang) + y * np.sin(ang)))[..., None]
    return np.clip(img, 0, 1).astype(np.float32)


def intrinsics(size: int) -> np.ndarray:
    c = (size - 1) / 2
    f = FOCAL * size
    return np.array([[f, 0, c], [0, f, c], [0, 0, 1]], np.float32)


def _ellipsoid_hit(o, d, centre, radii):
    """Nearest positive ray parameter of ellipsoid hits, inf on a miss; o, d: (3, N)."""
    oc = [(o[k] - centre[k]) / radii[k] for k in range(3)]
    ds = [d[k] / radii[k] for k in range(3)]
    a = ds[0] * ds[0] + ds[1] * ds[1] + ds[2] * ds[2]
    b = oc[0] * ds[0] + oc[1] * ds[1] + oc[2] * ds[2]
    c = oc[0] * oc[0] + oc[1] * oc[1] + oc[2] * oc[2] - 1
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    return np.where((disc > 0) & (t > 0), t, np.float32(np.inf))


def _neck_hit(o, d, centre_z, radii, top):
    """Hits of an elliptic cylinder along the head's y axis, below ``y = top``."""
    ox, oz = o[0] / radii[0], (o[2] - centre_z) / radii[1]
    dx, dz = d[0] / radii[0], d[2] / radii[1]
    a = dx * dx + dz * dz + 1e-12
    b = ox * dx + oz * dz
    disc = b * b - a * (ox * ox + oz * oz - 1)
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    y = o[1] + t * d[1]
    return np.where((disc > 0) & (t > 0) & (y < top), t, np.float32(np.inf))


def _shade_face(ident: Identity, u, v, expr, colour):
    """Paints eyes, brows and mouth on face-front points (u, v in skull radii units)."""
    ex, ey, ew = ident.eye_x, ident.eye_y, ident.eye_size
    eh = 0.55 * ew
    skin = ident.skin.astype(np.float32)
    for side, k in ((-1, 0), (1, 1)):
        du = u - side * ex
        dv = v - ey
        in_eye = (du / ew) ** 2 + (dv / eh) ** 2 < 1
        visible = in_eye & (np.abs(dv) < eh * expr[k])
        gx = du - 0.35 * ew * expr[5]
        r2 = gx * gx + dv * dv
        iris_r2 = (0.5 * eh) ** 2
        colour[in_eye & ~visible] = skin * 0.8
        colour[visible] = (0.95, 0.95, 0.93)
        colour[visible & (r2 < iris_r2)] = ident.iris
        colour[visible & (r2 < 0.2 * iris_r2)] = 0.05
        bv = v - (ey + eh + 0.07 + 0.05 * expr[4])
        brow = (np.abs(du) < 1.25 * ew) & (
            np.abs(bv - 0.04 * (1 - (du / (1.25 * ew)) ** 2)) < 0.022)
        colour[brow] = ident.hair * 0.6
    q = u / (ident.mouth_width * (1 + 0.2 * expr[3]))
    inside = np.abs(q) < 1
    q2 = np.minimum(q * q, 1)
    dv = np.abs(v - ident.mouth_y - expr[3] * 0.06 * (q2 - 0.3))
    half = expr[2] * 0.09 * (1 - q2)
    colour[inside & (dv < half + 0.035 * np.sqrt(1 - q2) + 0.008)] = ident.lips
    colour[inside & (dv < half)] = (0.25, 0.05, 0.06)
    colour[inside & (dv < half) & (v - ident.mouth_y - expr[3] * 0.06 * (q2 - 0.3)
                                   > 0.35 * half)] = (0.9, 0.88, 0.8)


def _render_rays(ident: Identity, rot, trans, expr, light, dirs_cam):
    """Casts the rays ``dirs_cam`` (P, 3) for T frames.

    Returns colour (T*P, 3) and the foreground (T*P,): head, hair, ears and neck.
    """
    f32 = np.float32
    frames, rays = len(rot), len(dirs_cam)
    m = BASE @ rot                                   # head -> camera rotation, (T, 3, 3)
    origin = -np.einsum("tji,tj->ti", m, trans).astype(f32)
    frame = np.repeat(np.arange(frames), rays)
    d = np.ascontiguousarray((dirs_cam[None].astype(f32) @ m.astype(f32)).reshape(-1, 3).T)
    o = np.ascontiguousarray(origin[frame].T)
    rx, ry, rz = (float(r) for r in ident.radii)
    vol = ident.hair_volume
    n = ident.nose
    parts = [((0, 0, 0), (rx, ry, rz)),                                      # skull
             ((0, -0.02, rz * 0.93), (0.09 * n, 0.19 * n, 0.17 * n)),        # nose
             ((-rx * 0.96, ident.eye_y - 0.12, -0.08), (0.07, 0.2, 0.13)),   # ears
             ((rx * 0.96, ident.eye_y - 0.12, -0.08), (0.07, 0.2, 0.13)),
             ((0, 0.06, -0.06), (rx * vol, ry * vol, rz * vol))]              # hair
    neck = _neck(ident)

    def hairline(z):
        front = np.clip(z / rz, -1, 1)
        return ry * (ident.hairline * (1 + front) / 2 - 0.15 * (1 - front) / 2)

    near = np.flatnonzero(np.isfinite(_ellipsoid_hit(o, d, (0, 0.06, -0.06), (1.25,) * 3)))
    on, dn = o[:, near], d[:, near]
    ts = np.stack([_ellipsoid_hit(on, dn, c, r) for c, r in parts])
    hair_p = on + ts[4] * dn
    ts[4] = np.where(hair_p[1] > hairline(hair_p[2]) + 0.04, ts[4], np.inf)
    t_all = np.full((len(parts) + 1, o.shape[1]), np.inf, f32)
    t_all[:-1, near] = ts
    t_all[-1] = _neck_hit(o, d, *neck)
    which = np.argmin(t_all, 0)
    t = np.min(t_all, 0)
    fg = np.isfinite(t)
    idx = np.flatnonzero(fg)
    w = which[idx]
    p = o[:, idx] + t[idx] * d[:, idx]
    centres = np.array([c for c, _ in parts] + [(0, 0, neck[0])], f32)
    radii = np.array([r for _, r in parts] + [(neck[1][0], np.inf, neck[1][1])], f32)
    normal = (p - centres[w].T) / radii[w].T ** 2
    normal /= np.sqrt((normal * normal).sum(0)) + 1e-8

    skin = ident.skin.astype(f32)
    colour = np.empty((len(idx), 3), f32)
    colour[:] = skin
    colour[w == 5] = skin * 0.85
    is_hair = (w == 4) | ((w == 0) & (p[1] > hairline(p[2])))
    strands = 0.8 + 0.2 * np.sin(60 * np.arctan2(p[0, is_hair], p[2, is_hair]) + 9 * p[1, is_hair])
    colour[is_hair] = ident.hair.astype(f32) * strands[:, None]
    face = np.flatnonzero((w == 0) & (p[2] > 0.3 * rz) & ~is_hair)
    face_colour = colour[face]
    _shade_face(ident, p[0, face] / rx, p[1, face] / ry, expr[frame[idx[face]]].T, face_colour)
    colour[face] = face_colour

    light_h = (m.transpose(0, 2, 1) @ light).astype(f32)     # light direction, head frame
    lambert = np.maximum((normal * light_h[frame[idx]].T).sum(0), 0)
    colour *= (0.35 + 0.7 * lambert)[:, None]
    out = np.zeros((o.shape[1], 3), f32)
    out[idx] = colour
    return out, fg


def render_clip(ident: Identity, pose, trans, expr, background, light, size: int,
                supersample: int = 2, max_rays: int = 1 << 18):
    """Renders (T, size, size, 3) float frames in [0, 1] and (T, size, size) foreground masks."""
    s = size * supersample
    k = intrinsics(size)
    g = (np.arange(s, dtype=np.float32) + 0.5) / supersample - 0.5
    uu, vv = np.meshgrid(g, g)
    dirs = np.stack([(uu - k[0, 2]) / k[0, 0], (vv - k[1, 2]) / k[1, 1], np.ones_like(uu)],
                    -1).reshape(-1, 3).astype(np.float32)
    rot = rotations.pose_to_matrix(pose)
    bg = background
    if supersample > 1:
        bg = np.repeat(np.repeat(background, supersample, 0), supersample, 1)
    bg = bg.reshape(1, -1, 3)
    frames, masks = [], []
    step = max(1, max_rays // len(dirs))
    for i in range(0, len(pose), step):
        sl = slice(i, i + step)
        colour, fg = _render_rays(ident, rot[sl], trans[sl], expr[sl], light, dirs)
        n = len(rot[sl])
        img = np.where(fg.reshape(n, -1, 1), colour.reshape(n, -1, 3), bg)
        img = img.reshape(n, size, supersample, size, supersample, 3).mean((2, 4))
        frac = fg.reshape(n, size, supersample, size, supersample).mean((2, 4))
        frames.append(img)
        masks.append(frac >= 0.5)
    return np.clip(np.concatenate(frames), 0, 1), np.concatenate(masks)


def project(points, pose, trans, size: int):
    """Head-frame points (N, 3) to normalised (x, y, depth) per frame, (T, N, 3).

    Depth is relative to the head centre and scaled like x (shards module docstring).
    """
    rot = BASE @ rotations.pose_to_matrix(pose)
    cam = np.einsum("tij,nj->tni", rot, points) + trans[:, None, :]
    k = intrinsics(size)
    u = k[0, 0] * cam[..., 0] / cam[..., 2] + k[0, 2]
    v = k[1, 1] * cam[..., 1] / cam[..., 2] + k[1, 2]
    scale = 2.0 / (size - 1)
    depth = (cam[..., 2] - trans[:, None, 2]) * k[0, 0] / trans[:, None, 2] * scale
    return np.stack([u * scale - 1, v * scale - 1, depth], -1).astype(np.float32)


def extrinsics(pose, trans) -> np.ndarray:
    """Camera-to-world (T, 4, 4) with the head frame as world."""
    w2c_r = BASE @ rotations.pose_to_matrix(pose)
    c2w = np.tile(np.eye(4), (len(pose), 1, 1))
    c2w[:, :3, :3] = np.transpose(w2c_r, (0, 2, 1))
    c2w[:, :3, 3] = -np.einsum("tji,tj->ti", w2c_r, trans)
    return c2w.astype(np.float32)


def _scene(rng, size: int):
    """A clip's static background (size, size, 3) and unit light direction (3,)."""
    background = make_background(rng, size)
    light = rng.normal(size=3) * [0.6, 0.4, 0.3] + [0.0, -0.5, -1.0]
    return background, (light / np.linalg.norm(light)).astype(np.float32)


def make_clip(seed: int, split: str, index: int, identity_index: int, *, frames: int = 64,
              size: int = 64, points: int = 468, supersample: int = 2, translation: float = 1.0,
              rotation: float = 1.0) -> dict:
    """One clip with its ground truth, as keyword arguments of ``shards.encode_clip``."""
    ident = make_identity(seed, identity_index)
    rng = np.random.default_rng([seed, 1, SPLIT_IDS.get(split, 2), index])
    pose, trans, expr = make_motion(rng, frames, translation, rotation)
    background, light = _scene(rng, size)
    video, mask = render_clip(ident, pose, trans, expr, background, light, size, supersample)
    lm = project(surface_points(ident, points), pose, trans, size)
    front = lm[:, surface_points(ident, points)[:, 2] > 0]
    box = np.concatenate([front[..., :2].min(1), front[..., :2].max(1)], -1)
    name = f"synth{identity_index:04d}"
    return dict(frames=(video * 255 + 0.5).astype(np.uint8), clip_id=f"{name}#{split}{index:05d}",
                identity=name, fps=FPS, landmarks=lm, pose=pose, face_box=box, mask=mask,
                intrinsics=np.tile(intrinsics(size), (frames, 1, 1)),
                extrinsics=extrinsics(pose, trans),
                identity_code=np.tile(ident.code(), (frames, 1)), expression_code=expr)


NEUTRAL = np.array([1.0, 1.0, 0.2, 0.0, 0.0, 0.0], np.float32)   # eyes open, mouth nearly shut


def render_poses(identity_index: int, pose, *, seed: int = 0, scene: int = 0, size: int = 64,
                 expression=NEUTRAL, supersample: int = 2):
    """One head at each of the poses ``pose`` (N, 3: yaw, pitch, roll in radians), centred,
    with one expression, light and background (drawn from ``scene``): the ground truth of a
    pose edit (FNeVR §3.4). Returns uint8 frames (N, size, size, 3) and foreground masks
    (N, size, size); the head's translation is `centred_translation(N)`."""
    background, light = _scene(np.random.default_rng([seed, 3, scene]), size)
    pose = np.asarray(pose, np.float32).reshape(-1, 3)
    expr = np.tile(np.asarray(expression, np.float32), (len(pose), 1))
    frames, masks = render_clip(make_identity(seed, identity_index), pose,
                                centred_translation(len(pose)), expr, background, light, size,
                                supersample)
    return (frames * 255 + 0.5).astype(np.uint8), masks


def centred_translation(frames: int) -> np.ndarray:
    """(frames, 3): the head centred at the mean camera distance."""
    return np.tile(np.float32([0.0, 0.0, DISTANCE]), (frames, 1))


def _write_shard(path, seed, split, clip_indices, identity_of, encoding, quality, opts):
    records, clips = [], []
    for i in clip_indices:
        clip = make_clip(seed, split, i, identity_of(split, i), **opts)
        records.append(shards.encode_clip(encoding=encoding, quality=quality, **clip))
        clips.append((clip["clip_id"], clip["identity"], len(clip["frames"])))
    shards.write_shard(path, records, clips)
    return len(records)


class _IdentityOf:
    """Clip ``i`` of a split belongs to identity ``offset + i % count`` (picklable)."""

    def __init__(self, counts):
        self.counts = counts

    def __call__(self, split, i):
        offset = sum(n for s, n in self.counts.items() if SPLIT_IDS[s] < SPLIT_IDS[split])
        return offset + i % self.counts[split]


def generate(output, *, train_clips: int = 200, test_clips: int = 20, identities: int = 40,
             test_identities: int = 4, frames: int = 64, size: int = 64, points: int = 468,
             supersample: int = 2, encoding: str = "png", quality: int = 95,
             clips_per_shard: int = 25, workers: int = 2, seed: int = 0,
             translation: float = 1.0, rotation: float = 1.0) -> shards.DatasetInfo:
    """Writes a synthetic dataset (train and test splits, disjoint identities) to ``output``.

    Finished shards of an earlier identical run are kept; an earlier run with other options
    raises ``shards.DatasetError``.
    """
    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    plan = dict(train_clips=train_clips, test_clips=test_clips, identities=identities,
                test_identities=test_identities, frames=frames, size=size, points=points,
                supersample=supersample, encoding=encoding, quality=quality,
                clips_per_shard=clips_per_shard, seed=seed)
    # Motion scales enter the plan only where changed: plans of default datasets stay valid.
    plan.update({k: v for k, v in (("translation", translation), ("rotation", rotation))
                 if v != 1.0})
    plan_path = output / PLAN
    if plan_path.exists() and json.loads(plan_path.read_text()) != plan:
        raise shards.DatasetError(f"{output} holds a synthetic dataset with other options; "
                                  "use a new --output or the same arguments")
    shards.atomic_write(plan_path, json.dumps(plan, indent=1))
    counts = {"train": train_clips, "test": test_clips}
    identity_of = _IdentityOf({"train": identities, "test": test_identities})
    opts = dict(frames=frames, size=size, points=points, supersample=supersample,
                translation=translation, rotation=rotation)
    tasks, n_shards = [], {}
    for split, n in counts.items():
        n_shards[split] = max(1, -(-n // clips_per_shard))
        for j in range(n_shards[split]):
            path = output / shards.shard_name(split, j, n_shards[split])
            if not shards.shard_finished(path):
                idx = range(j * clips_per_shard, min(n, (j + 1) * clips_per_shard))
                tasks.append((path, seed, split, idx, identity_of, encoding, quality, opts))
    if workers > 1 and len(tasks) > 1:
        ctx = multiprocessing.get_context("spawn")
        with futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for f in [pool.submit(_write_shard, *t) for t in tasks]:
                f.result()
    else:
        for t in tasks:
            _write_shard(*t)
    return shards.finalize(output, n_shards, height=size, width=size, encoding=encoding,
                           fields=shards.FIELDS, fps=FPS, source=f"synthetic seed={seed}")


def write_examples(output, *, seed: int = 0, test_identities: int = 4, train_identities: int = 40,
                   frames: int = 64, size: int = 64, supersample: int = 2,
                   translation: float = 1.0, rotation: float = 1.0) -> pathlib.Path:
    """``output/examples/``: ``source.png`` and ``driving.mp4``, the first frame and the whole of
    held-out test clip 0 (identities never seen in training), for ``animate.py``."""
    import imageio.v3 as iio
    import imageio_ffmpeg

    out = pathlib.Path(output) / "examples"
    out.mkdir(parents=True, exist_ok=True)
    identity = _IdentityOf({"train": train_identities, "test": test_identities})("test", 0)
    video = make_clip(seed, "test", 0, identity, frames=frames, size=size, points=1,
                      supersample=supersample, translation=translation,
                      rotation=rotation)["frames"]
    shards.atomic_write(out / "source.png", iio.imwrite("<bytes>", video[0], extension=".png"))
    tmp = out / f".driving.tmp-{os.getpid()}.mp4"
    try:
        writer = imageio_ffmpeg.write_frames(str(tmp), (size, size), fps=FPS, quality=9,
                                             macro_block_size=1, ffmpeg_log_level="error")
        writer.send(None)
        for frame in video:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        os.replace(tmp, out / "driving.mp4")
    finally:
        tmp.unlink(missing_ok=True)
    return out


def main(argv=None) -> int:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True, help="dataset directory to write")
    p.add_argument("--train-clips", type=int, default=200)
    p.add_argument("--test-clips", type=int, default=20)
    p.add_argument("--identities", type=int, default=40, help="train identities")
    p.add_argument("--test-identities", type=int, default=4)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--points", type=int, default=468, help="3D surface points per frame")
    p.add_argument("--supersample", type=int, default=2,
                   help="anti-aliasing: rays per pixel along each axis")
    p.add_argument("--encoding", choices=shards.ENCODINGS, default="png")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    p.add_argument("--clips-per-shard", type=int, default=25)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--translation", type=float, default=1.0,
                   help="scale of the head's translation (0: centred, as face-aligned crops)")
    p.add_argument("--rotation", type=float, default=1.0,
                   help="scale of the head's rotation amplitudes")
    a = p.parse_args(argv)
    if min(a.identities, a.test_identities, a.frames, a.size, a.points, a.supersample,
           a.clips_per_shard, a.workers) < 1 or min(a.train_clips, a.test_clips) < 0:
        p.error("counts and sizes must be positive")
    if min(a.translation, a.rotation) < 0:
        p.error("--translation and --rotation must be >= 0")
    start = time.time()
    try:
        info = generate(a.output, train_clips=a.train_clips, test_clips=a.test_clips,
                        identities=a.identities, test_identities=a.test_identities,
                        frames=a.frames, size=a.size, points=a.points,
                        supersample=a.supersample, encoding=a.encoding, quality=a.quality,
                        clips_per_shard=a.clips_per_shard, workers=a.workers, seed=a.seed,
                        translation=a.translation, rotation=a.rotation)
    except shards.DatasetError as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    if a.test_clips:
        write_examples(a.output, seed=a.seed, test_identities=a.test_identities,
                       train_identities=a.identities, frames=a.frames, size=a.size,
                       supersample=a.supersample, translation=a.translation,
                       rotation=a.rotation)
    counts = ", ".join(f"{s}: {v['clips']} clips" for s, v in info.splits.items())
    print(f"wrote {a.output} ({counts}) in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
