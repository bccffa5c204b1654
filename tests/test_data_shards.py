"""Shard format: record round trips, dataset_info/index consistency and reader validation."""
import json

import numpy as np
import pytest

from fnevr_jax.data import shards
from fnevr_jax.ops import rotations


def _clip(rng, t=3, h=8, w=10):
    return dict(frames=rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
                pose=rng.normal(size=(t, 3)).astype(np.float32),
                landmarks=rng.normal(size=(t, 5, 3)).astype(np.float32),
                mask=rng.uniform(size=(t, h, w)) > 0.5)


def _write(tmp_path, n_shards=2, per_shard=3, split="train"):
    rng = np.random.default_rng(0)
    clips = []
    for s in range(n_shards):
        recs, meta = [], []
        for j in range(per_shard):
            c = _clip(rng)
            cid = f"id{j % 2}#v{s}{j}"
            recs.append(shards.encode_clip(clip_id=cid, identity=f"id{j % 2}", fps=25, **c))
            meta.append((cid, f"id{j % 2}", 3))
            clips.append(c)
        shards.write_shard(tmp_path / shards.shard_name(split, s, n_shards), recs, meta)
    shards.finalize(tmp_path, {split: n_shards}, height=8, width=10, encoding="png",
                    fields=["pose", "landmarks", "mask"], fps=25, source="test")
    return clips


def test_png_round_trip_is_exact_and_fields_survive():
    rng = np.random.default_rng(1)
    c = _clip(rng)
    rec = shards.decode_clip(shards.encode_clip(clip_id="a#b", identity="a", fps=30.0, **c))
    assert rec["clip_id"] == "a#b" and rec["identity"] == "a" and rec["fps"] == 30.0
    assert (rec["height"], rec["width"], rec["num_frames"]) == (8, 10, 3)
    np.testing.assert_array_equal(shards.clip_frames(rec), c["frames"])
    np.testing.assert_array_equal(shards.clip_frames(rec, [2, 0]), c["frames"][[2, 0]])
    np.testing.assert_array_equal(shards.clip_masks(rec), c["mask"])
    np.testing.assert_array_equal(rec["pose"], c["pose"])
    np.testing.assert_array_equal(rec["landmarks"], c["landmarks"])


def test_jpeg_is_close_and_quality_matters():
    x = np.linspace(0, 255, 64 * 64 * 3).reshape(1, 64, 64, 3).astype(np.uint8)
    err = {}
    for q in (50, 95):
        rec = shards.decode_clip(shards.encode_clip(x, clip_id="c", identity="c", fps=25,
                                                    encoding="jpeg", quality=q))
        assert rec["encoding"] == "jpeg"
        err[q] = np.abs(shards.clip_frames(rec).astype(int) - x).mean()
    assert err[95] < 2.0 and err[95] < err[50]


def test_bad_inputs_rejected():
    with pytest.raises(ValueError, match="uint8"):
        shards.encode_clip(np.zeros((2, 4, 4, 3)), clip_id="a", identity="a", fps=25)
    with pytest.raises(ValueError, match="unknown field"):
        shards.encode_clip(np.zeros((2, 4, 4, 3), np.uint8), clip_id="a", identity="a",
                           fps=25, colour=np.zeros(2))
    with pytest.raises(ValueError, match="3 entries for 2 frames"):
        shards.encode_clip(np.zeros((2, 4, 4, 3), np.uint8), clip_id="a", identity="a",
                           fps=25, pose=np.zeros((3, 3)))


def test_euler_round_trip_and_axes():
    rng = np.random.default_rng(2)
    angles = rng.uniform(-1.2, 1.2, (20, 3))
    r = rotations.pose_to_matrix(angles)
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-12)
    np.testing.assert_allclose(rotations.matrix_to_pose(r), angles, atol=1e-10)
    # Positive yaw turns the nose (+z) towards +x; positive pitch turns it towards -y.
    np.testing.assert_allclose(rotations.pose_to_matrix([0.5, 0, 0]) @ [0, 0, 1],
                               [np.sin(0.5), 0, np.cos(0.5)], atol=1e-12)
    np.testing.assert_allclose(rotations.pose_to_matrix([0, 0.5, 0]) @ [0, 0, 1],
                               [0, -np.sin(0.5), np.cos(0.5)], atol=1e-12)


def test_split_index_info_and_records(tmp_path):
    clips = _write(tmp_path)
    split = shards.open_split(tmp_path, "train", size=(8, 10), require=["pose"])
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["splits"]["train"]["clips"] == 6 and info["splits"]["train"]["frames"] == 18
    assert split.identities == ["id0", "id1"]
    assert split.clip_ids == ["id0#v00", "id1#v01", "id0#v02", "id0#v10", "id1#v11", "id0#v12"]
    np.testing.assert_array_equal(split.identity, [0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(split.num_frames, [3] * 6)
    source = split.source()
    for i in (0, 4):
        rec = shards.decode_clip(source[i])
        assert rec["clip_id"] == split.clip_ids[i]
        np.testing.assert_array_equal(shards.clip_frames(rec), clips[i]["frames"])


@pytest.mark.parametrize("break_it, message", [
    (lambda d: (d / "dataset_info.json").unlink(), "no dataset_info.json"),
    (lambda d: (d / "train-00001-of-00002.array_record").unlink(), "shards do not match"),
    (lambda d: (d / "train-00005-of-00009.array_record").write_bytes(b""), "unexpected"),
    (lambda d: (d / "train.index.json").write_text('{"clip_id": [], "identity": [], '
                                                   '"num_frames": []}'), "0 indexed clips"),
])
def test_reader_validation_messages(tmp_path, break_it, message):
    _write(tmp_path)
    break_it(tmp_path)
    with pytest.raises(shards.DatasetError, match=message):
        shards.open_split(tmp_path, "train")


def test_reader_checks_request(tmp_path):
    _write(tmp_path)
    with pytest.raises(shards.DatasetError, match="frames are 8x10, expected 64x64"):
        shards.open_split(tmp_path, "train", size=64)
    with pytest.raises(shards.DatasetError, match=r"fields \['extrinsics'\] are required"):
        shards.open_split(tmp_path, "train", require=["extrinsics"])
    with pytest.raises(shards.DatasetError, match="no split 'test'"):
        shards.open_split(tmp_path, "test")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    info["version"] = 99
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(shards.DatasetError, match="version 99"):
        shards.open_split(tmp_path, "train")


def test_unfinished_shard_blocks_finalize(tmp_path):
    _write(tmp_path)
    (tmp_path / "train-00001-of-00002.array_record.json").unlink()
    assert not shards.shard_finished(tmp_path / "train-00001-of-00002.array_record")
    with pytest.raises(shards.DatasetError, match="unfinished"):
        shards.finalize(tmp_path, {"train": 2}, height=8, width=10, encoding="png",
                        fields=[], fps=25, source="")
