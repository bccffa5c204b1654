"""FID InceptionV3 against torch.jit.load(default_1.pt) (tests/data/pretrained/make_references.py)."""
import jax
import numpy as np
import pytest
from skimage import data

from fnevr_jax.pretrained import inception


def inception_inputs():
    """The astronaut (nearest-neighbour resampled to 299) and uniform noise, as the generator."""
    idx = (np.arange(299) * 512) // 299
    astronaut = data.astronaut()[idx][:, idx].astype(np.float32) / 127.5 - 1.0
    noise = np.random.default_rng(0).uniform(-1.0, 1.0, (299, 299, 3)).astype(np.float32)
    return np.stack([astronaut, noise])


def test_matches_torchscript(data_dir):
    with np.load(data_dir / "pretrained" / "inception_features.npz") as ref:
        expected = ref["features"]
    features = np.asarray(inception.inception_fn()(inception_inputs()))
    assert features.shape == (2, 2048) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def loaded():
    return inception.load_inception()


def test_structure_from_archive(loaded):
    model, variables = loaded
    names = [name for name, _ in model.layers]
    assert names[:7] == ["conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1"]
    assert names[-3:] == ["mixed_9", "mixed_10", "pool2"]
    nodes = dict(model.layers)
    assert nodes["pool2"] == ("pool", ("avg", 8, 8, 0))
    # mixed_9 pools with an average, mixed_10 with a max (different TorchScript classes).
    assert dict(nodes["mixed_9"][1])["tower_2_pool"] == ("pool", ("avg", 3, 1, 1))
    assert dict(nodes["mixed_10"][1])["tower_2_pool"] == ("pool", ("max", 3, 1, 1))
    tower = dict(dict(nodes["mixed_4"][1])["tower"][1])
    assert tower["conv_1"] == ("conv", (128, (1, 7), 1, (0, 3)))
    sizes = [leaf.size for leaf in jax.tree.leaves(variables)]
    assert len(sizes) == 376 and sum(sizes) == 21_802_784


def test_rejects_other_sizes(loaded):
    model, variables = loaded
    with pytest.raises(ValueError, match="299x299x3"):
        model.apply(variables, np.zeros((1, 256, 256, 3), np.float32))
