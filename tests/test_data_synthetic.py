"""Synthetic talking heads: ground truth agrees with the rendered pixels; determinism; CLI."""
import dataclasses
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import ndimage

from data_pipelines import landmarks, synthetic
from fnevr_jax.data import shards
from fnevr_jax.ops import rotations


@pytest.fixture(scope="module")
def clip():
    return synthetic.make_clip(3, "train", 7, 5, frames=12, size=96)


def test_projected_surface_points_land_on_the_head_mask(clip):
    lm, mask = clip["landmarks"], clip["mask"]
    size = mask.shape[-1]
    px = np.rint((lm[..., :2] + 1) * (size - 1) / 2).astype(int)
    assert px.min() >= 0 and px.max() < size
    t = np.arange(len(lm))[:, None]
    inside = mask[t, px[..., 1], px[..., 0]]
    # Points on the silhouette (seen edge-on) round to either side of it.
    assert inside.mean() > 0.95
    # So every point is within one pixel of the mask.
    grown = mask.copy()
    for axis in (1, 2):
        for shift in (-1, 1):
            grown |= np.roll(mask, shift, axis)
    assert grown[t, px[..., 1], px[..., 0]].all()
    # And the head covers a plausible part of the frame.
    assert 0.15 < mask.mean() < 0.6


def test_camera_fields_reproduce_the_landmarks_and_the_pose(clip):
    ident = synthetic.make_identity(3, 5)
    pts = synthetic.surface_points(ident)
    size = clip["frames"].shape[1]
    k, c2w = clip["intrinsics"], clip["extrinsics"]
    w2c = np.linalg.inv(c2w.astype(np.float64))
    cam = np.einsum("tij,nj->tni", w2c[:, :3, :3], pts) + w2c[:, None, :3, 3]
    uv = np.einsum("tij,tnj->tni", k, cam)
    xy = uv[..., :2] / uv[..., 2:] * 2 / (size - 1) - 1
    np.testing.assert_allclose(xy, clip["landmarks"][..., :2], atol=2e-4)
    rot = rotations.pose_to_matrix(clip["pose"])
    np.testing.assert_allclose(w2c[:, :3, :3], synthetic.BASE @ rot, atol=1e-5)
    np.testing.assert_allclose(clip["identity_code"][0], ident.code())
    assert clip["expression_code"].shape == (12, synthetic.EXPRESSION_DIM)


def test_rigid_fit_recovers_the_rendered_rotation(clip):
    ref = synthetic.surface_points(synthetic.make_identity(3, 5))
    est = landmarks.head_pose(clip["landmarks"], ref)
    assert np.abs(clip["pose"]).max() > 0.1
    np.testing.assert_allclose(est, clip["pose"], atol=np.radians(2.0))


def test_rendered_pupils_follow_the_pose():
    """Green irises: their centroids in the image are the projected 3D iris centres."""
    ident = dataclasses.replace(synthetic.make_identity(1, 2), iris=np.array([0.0, 1.0, 0.0]),
                                eye_size=0.13)
    rng = np.random.default_rng(4)
    pose, trans, expr = synthetic.make_motion(rng, 6)
    pose[:, 0] = np.linspace(-0.4, 0.4, 6)           # sweep the yaw
    expr[:, :2], expr[:, 5] = 1.0, 0.0                 # eyes open, gaze ahead
    size = 256
    light = np.array([0, 0, -1], np.float32)
    bg = np.zeros((size, size, 3), np.float32)
    video, _ = synthetic.render_clip(ident, pose, trans, expr, bg, light, size)
    rx, ry, rz = ident.radii
    want = []
    for side in (-1, 1):
        u, v = side * ident.eye_x, ident.eye_y
        centre = np.array([u * rx, v * ry, rz * np.sqrt(1 - u * u - v * v)])
        want.append((synthetic.project(centre[None], pose, trans, size)[:, 0, :2] + 1)
                    * (size - 1) / 2)
    want = np.stack(want, 1)                           # (frames, eye, xy)
    assert np.ptp(want[:, :, 0]) > 20                  # the eyes really move
    for f in range(6):
        g = video[f]
        green = (g[..., 1] > 2 * g[..., 0] + 0.1) & (g[..., 1] > 2 * g[..., 2] + 0.1)
        pix = np.stack(np.nonzero(green)[::-1], 1).astype(float)
        nearest = np.argmin(np.linalg.norm(pix[:, None] - want[f][None], axis=-1), 1)
        for eye in (0, 1):
            assert (nearest == eye).sum() > 10
            found = pix[nearest == eye].mean(0)
            assert np.abs(found - want[f, eye]).max() < 1.0, (f, eye, found, want[f, eye])


def test_deterministic_and_identities_differ():
    a = synthetic.make_clip(0, "train", 1, 1, frames=4, size=32)
    b = synthetic.make_clip(0, "train", 1, 1, frames=4, size=32)
    c = synthetic.make_clip(0, "train", 2, 2, frames=4, size=32)
    for key in ("frames", "landmarks", "pose", "mask", "expression_code"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["identity_code"], c["identity_code"])
    assert np.abs(a["frames"].astype(int) - c["frames"]).mean() > 5


def test_motion_scales_keep_the_draws():
    """--translation/--rotation scale the same random motion: 1 and 1 are the default clips,
    translation 0 keeps the head centred at the mean distance."""
    pose, trans, expr = synthetic.make_motion(np.random.default_rng(3), 32)
    pose2, trans2, expr2 = synthetic.make_motion(np.random.default_rng(3), 32, 0.0, 1.5)
    np.testing.assert_allclose(pose2, 1.5 * pose, rtol=1e-6)
    np.testing.assert_array_equal(expr2, expr)
    assert np.abs(trans[:, :2]).max() > 0.1
    np.testing.assert_array_equal(trans2, synthetic.centred_translation(32))
    clip = synthetic.make_clip(0, "train", 1, 1, frames=8, size=32, translation=0.0)
    centre = (clip["face_box"][:, :2] + clip["face_box"][:, 2:]) / 2
    assert np.abs(centre).max() < 0.15          # the face stays in the middle (±2.4 px)


def test_render_poses_turns_one_scene():
    """Only the head changes between the poses of one scene, and each pose changes it."""
    frames, masks = synthetic.render_poses(44, np.deg2rad([(0, 0, 0), (15, 0, 0), (0, 10, 0)]),
                                           size=32)
    assert frames.dtype == np.uint8 and frames.shape == (3, 32, 32, 3)
    # away from the head (masks mark pixels at least half covered: dilate by their edge)
    outside = ~ndimage.binary_dilation(masks[0] | masks[1] | masks[2])
    assert outside.mean() > 0.3
    for turned in frames[1:]:
        np.testing.assert_array_equal(turned[outside], frames[0][outside])
        assert np.abs(turned.astype(int) - frames[0])[masks[0]].mean() > 3


def test_generate_writes_a_valid_dataset_independent_of_workers(tmp_path):
    kw = dict(train_clips=5, test_clips=2, identities=3, test_identities=2, frames=6,
              size=32, points=50, clips_per_shard=2, seed=5)
    synthetic.generate(tmp_path / "w1", workers=1, **kw)
    synthetic.generate(tmp_path / "w2", workers=2, **kw)
    for split, n, ids in (("train", 5, 3), ("test", 2, 2)):
        one = shards.open_split(tmp_path / "w1", split, size=32, require=shards.FIELDS)
        two = shards.open_split(tmp_path / "w2", split)
        assert len(one) == n and len(one.identities) == ids
        assert one.clip_ids == two.clip_ids
        s1, s2 = one.source(), two.source()
        assert all(s1[i] == s2[i] for i in range(n))
    train = shards.open_split(tmp_path / "w1", "train")
    test = shards.open_split(tmp_path / "w1", "test")
    assert not set(train.identities) & set(test.identities)
    rec = shards.decode_clip(train.source()[0])
    assert rec["landmarks"].shape == (6, 50, 3) and rec["extrinsics"].shape == (6, 4, 4)


def test_generation_speed():
    """The target is 200 clips x 64 frames at 64x64 in under a minute on 2 cores:
    0.6 s per clip per core. Allow twice that here for a busy machine."""
    start = time.perf_counter()
    for i in range(4):
        clip = synthetic.make_clip(0, "train", i, i)
        shards.encode_clip(**clip)
    assert (time.perf_counter() - start) / 4 < 1.2


def test_cli(tmp_path):
    out = tmp_path / "syn"
    cmd = [sys.executable, "-m", "data_pipelines.synthetic", "--output", str(out),
           "--train-clips", "2", "--test-clips", "1", "--identities", "2",
           "--test-identities", "1", "--frames", "3", "--size", "16", "--workers", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "train: 2 clips, test: 1 clips" in r.stdout
    assert shards.open_split(out, "train").num_frames.tolist() == [3, 3]
    r = subprocess.run(cmd[:-2] + ["--workers", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(cmd + ["--size", "24"], capture_output=True, text=True)
    assert r.returncode == 1 and "other options" in r.stderr and "Traceback" not in r.stderr
