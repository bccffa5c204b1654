"""The TFDS builder rewrites clip shards as TFDS ArrayRecord shards with the same content."""
import numpy as np
import pytest

from data_pipelines import synthetic
from fnevr_jax.data import shards

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("tensorflow")


def test_tfds_data_source_matches_the_shards(tmp_path):
    from data_pipelines import tfds_builder

    src = tmp_path / "shards"
    synthetic.generate(src, train_clips=3, test_clips=1, identities=2, test_identities=1,
                       frames=4, size=16, points=20, workers=1, seed=2)
    builder = tfds_builder.fnevr_clips_builder(src, tmp_path / "tfds")
    builder.download_and_prepare()
    files = sorted(p.name for p in (tmp_path / "tfds" / "fnevr_clips" / "1.0.0").iterdir())
    assert "fnevr_clips-train.array_record-00000-of-00001" in files
    for split in ("train", "test"):
        ours = shards.open_split(src, split)
        records = {r["clip_id"]: r for r in map(shards.decode_clip, ours.source())}
        source = tfds.data_source("fnevr_clips", data_dir=str(tmp_path / "tfds"), split=split)
        assert len(source) == len(ours)
        for ex in source:
            rec = records.pop(ex["clip_id"].decode())
            assert ex["identity"].decode() == rec["identity"]
            np.testing.assert_array_equal(np.stack(ex["frames"]), shards.clip_frames(rec))
            np.testing.assert_array_equal(np.stack(ex["mask"])[..., 0] > 0,
                                          shards.clip_masks(rec))
            for name in ("pose", "landmarks", "extrinsics", "identity_code"):
                np.testing.assert_array_equal(ex[name], rec[name])
        assert not records
