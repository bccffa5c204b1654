"""checkpoint_io: exact round trips, atomic replacement and clear errors."""
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from fnevr_jax.checkpoint_io import CheckpointError, load_variables, save_variables

METADATA = {"model": "fnevr", "config": {"num_kp": 10, "scales": [1, 0.5]}, "source": "test"}


def make_variables():
    rng = np.random.default_rng(0)
    return {
        "params": {
            "down": {"conv": {"kernel": rng.standard_normal((3, 3, 4, 8), np.float32),
                              "bias": jnp.asarray(rng.standard_normal(8, np.float32))}},
            "scale": np.float32(0.5) * np.ones((), np.float32),
            "half": rng.standard_normal(5).astype(ml_dtypes.bfloat16),
        },
        "batch_stats": {"bn": {"mean": rng.standard_normal(8, np.float32),
                               "count": np.arange(-3, 4, dtype=np.int32),
                               "steps": np.array([2**40, 7], np.int64)}},
    }


def assert_trees_equal(got, want):
    assert isinstance(got, dict) and sorted(got) == sorted(want)
    for key in want:
        if isinstance(want[key], dict):
            assert_trees_equal(got[key], want[key])
        else:
            assert isinstance(got[key], np.ndarray)
            assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape
            np.testing.assert_array_equal(got[key], np.asarray(want[key]))


def test_round_trip(tmp_path):
    variables = make_variables()
    path = save_variables(tmp_path / "model", variables, METADATA)
    assert path == tmp_path / "model"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    got, metadata = load_variables(path)
    assert_trees_equal(got, variables)
    assert metadata == METADATA


def test_into_existing_empty_directory(tmp_path):
    (tmp_path / "model").mkdir()
    save_variables(tmp_path / "model", {"params": {"w": np.ones(2, np.float32)}}, {})
    assert load_variables(tmp_path / "model")[1] == {}


def test_overwrite(tmp_path):
    path = tmp_path / "model"
    save_variables(path, make_variables(), METADATA)
    new = {"params": {"w": np.full((2, 2), 3.0, np.float32)}}
    with pytest.raises(CheckpointError, match="not empty; pass overwrite=True"):
        save_variables(path, new, {"model": "other"})
    assert load_variables(path)[1] == METADATA
    save_variables(path, new, {"model": "other"}, overwrite=True)
    got, metadata = load_variables(path)
    assert_trees_equal(got, new)
    assert metadata == {"model": "other"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_failed_save_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        save_variables(tmp_path / "model", make_variables(), {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load_variables(tmp_path / "absent")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a variables checkpoint") as info:
        load_variables(tmp_path)
    assert "\n" not in str(info.value)


# A failed orbax restore leaves a callback on its closed asyncio loop ("Event loop is closed").
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_checkpoint(tmp_path):
    path = save_variables(tmp_path / "model", make_variables(), METADATA)
    manifest = path / "variables" / "manifest.ocdbt"
    manifest.write_bytes(manifest.read_bytes()[:10])
    with pytest.raises(CheckpointError, match="corrupt checkpoint") as info:
        load_variables(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    (path / "metadata" / "metadata").write_text('{"model": ')
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        load_variables(path)
