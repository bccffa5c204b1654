"""NeRF head model: per-image code path, render shapes and range, remat, losses."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import nerf_head as nerf_head_config
from fnevr_jax.metrics import image as image_metrics
from fnevr_jax.nerf_head import network
from fnevr_jax.nerf_head import losses

TINY = dict(feature_size=8, feature_channels=16, output_size=32, num_samples=12, id_dim=8,
            expr_dim=4, mlp_width=32, mlp_depth=4, mlp_skip_layer=2, xyz_freqs=4, dir_freqs=2,
            renderer_min_channels=8, remat=False)


def _inputs(model, batch, seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    z_id = jax.random.normal(k1, (batch, model.id_dim))
    beta = jax.random.normal(k2, (batch, model.expr_dim))
    intrinsics, cam = network.default_camera(batch, model.output_size, 2.0, 6.2)
    return z_id, beta, intrinsics, cam


def test_split_dense_equals_dense_on_concatenation():
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    pos = jax.random.normal(k[0], (2, 3, 5, 7, 10))
    codes = jax.random.normal(k[1], (2, 1, 1, 1, 6))
    layer = network.SplitDense(9)
    params = jax.jit(layer.init)(k[2], pos, codes)
    full = jnp.concatenate([pos, jnp.broadcast_to(codes, pos.shape[:-1] + (6,))], -1)
    expected = full @ params["params"]["kernel"] + params["params"]["bias"]
    apply = jax.jit(layer.apply)
    np.testing.assert_allclose(apply(params, pos, codes), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply(params, full), expected, rtol=1e-5, atol=1e-5)


def test_per_image_codes_equal_naive_concatenation():
    model = network.NeRFHead(**TINY)
    naive = network.NeRFHead(**TINY, per_image_codes=False)
    params = network.init_params(model, jax.random.PRNGKey(1))
    args = _inputs(model, 2)
    fast = jax.jit(model.apply)({"params": params}, *args)
    slow = jax.jit(naive.apply)({"params": params}, *args)
    for name in ("image", "features", "acc", "depth"):
        np.testing.assert_allclose(fast[name], slow[name], rtol=1e-5, atol=1e-5)
    assert float(jnp.std(fast["features"])) > 1e-3


def test_quick_render_shapes_and_range():
    config = nerf_head_config.get_config("quick")
    model = network.from_config(config.model)
    params = network.init_params(model, jax.random.PRNGKey(0))
    z_id, beta, intrinsics, cam = _inputs(model, 2)
    out = network.make_render_fn(model, render_background=True)(params, z_id, beta,
                                                                  intrinsics, cam)
    s, f, c = config.model.output_size, config.model.feature_size, config.model.feature_channels
    assert out["image"].shape == (2, s, s, 3)
    assert out["background_image"].shape == (1, s, s, 3)
    assert out["features"].shape == (2, f, f, c)
    assert out["acc"].shape == out["depth"].shape == (2, f, f)
    assert bool(jnp.all((out["image"] > 0) & (out["image"] < 1)))
    assert bool(jnp.all((out["acc"] >= 0) & (out["acc"] <= 1 + 1e-6)))
    assert bool(jnp.all(jnp.isfinite(out["depth"])))
    # Different codes give different images; evaluation is deterministic, training is not.
    assert float(jnp.abs(out["image"][0] - out["image"][1]).max()) > 1e-4
    train = network.make_render_fn(model, randomized=True)
    a = train(params, z_id, beta, intrinsics, cam, jax.random.PRNGKey(3))["image"]
    b = train(params, z_id, beta, intrinsics, cam, jax.random.PRNGKey(4))["image"]
    a2 = train(params, z_id, beta, intrinsics, cam, jax.random.PRNGKey(3))["image"]
    assert float(jnp.abs(a - b).max()) > 0
    np.testing.assert_array_equal(a, a2)


def test_paper512_config():
    config = nerf_head_config.get_config()
    m = config.model
    assert (m.feature_size, m.feature_channels, m.output_size, m.num_samples) == (32, 512, 512, 64)
    assert (m.id_dim, m.expr_dim) == (512, 46)
    assert network.from_config(m).num_units == 4
    assert config.loss.perceptual_weight == 10.0
    with pytest.raises(ValueError):
        nerf_head_config.get_config("nope")


def test_remat_matches_plain():
    model = network.NeRFHead(**TINY)
    remat = network.NeRFHead(**{**TINY, "remat": True})
    params = network.init_params(model, jax.random.PRNGKey(2))
    args = _inputs(model, 1)

    def loss(m, p):
        return jnp.mean(m.apply({"params": p}, *args)["image"])
    g1 = jax.jit(jax.grad(lambda p: loss(model, p)))(params)
    g2 = jax.jit(jax.grad(lambda p: loss(remat, p)))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), g1, g2)


def _loss_config(**kw):
    config = nerf_head_config.get_config("quick").loss
    config.update(kw)
    return config


def test_masked_photometric_ignores_outside_mask():
    target = jnp.zeros((1, 4, 4, 3))
    pred = target.at[:, :2].set(0.5).at[:, 2:].set(1.0)
    mask = jnp.zeros((1, 4, 4)).at[:, :2].set(1.0)
    np.testing.assert_allclose(losses.masked_photometric(pred, target, mask), 0.5)
    np.testing.assert_allclose(losses.masked_photometric(pred, target, mask, "l2"), 0.25)
    np.testing.assert_allclose(losses.composite_on_white(pred, mask)[0, 3, 0], [1, 1, 1])


@pytest.mark.parametrize("distance", ["l2sq", "l1"])
def test_perceptual_loss_with_injected_features(distance):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.uniform(k1, (2, 16, 16, 3))
    b = jax.random.uniform(k2, (2, 16, 16, 3))

    def features(x):
        return [x, x[:, ::2, ::2] * 2.0]
    got = losses.perceptual_loss(a, b, features, distance, size=16)
    d0, d1 = a - b, (a - b)[:, ::2, ::2] * 2.0
    fn = jnp.square if distance == "l2sq" else jnp.abs
    np.testing.assert_allclose(got, jnp.mean(fn(d0)) + jnp.mean(fn(d1)), rtol=1e-5)
    assert float(losses.perceptual_loss(a, a, features, distance, size=8)) == 0.0


def test_reconstruction_loss_terms():
    out = {"image": jnp.full((1, 8, 8, 3), 0.25),
           "background_image": jnp.full((1, 8, 8, 3), 0.5)}
    target = jnp.full((1, 8, 8, 3), 0.75)
    mask = jnp.zeros((1, 8, 8)).at[:, 2:6, 2:6].set(1.0)
    total, terms = losses.reconstruction_loss(out, target, mask,
                                              _loss_config(perceptual_weight=0.0))
    np.testing.assert_allclose(total, 0.5)
    assert set(terms) == {"photometric"}
    total, terms = losses.reconstruction_loss(
        out, target, mask, _loss_config(perceptual_weight=10.0, background_weight=1.0),
        feature_fn=lambda x: [x])
    np.testing.assert_allclose(terms["background"], 0.75 ** 2 + 0.5 ** 2, rtol=1e-6)
    np.testing.assert_allclose(total, terms["photometric"] + 10 * terms["perceptual"]
                               + terms["background"], rtol=1e-6)
    with pytest.raises(ValueError):
        losses.reconstruction_loss(out, target, mask, _loss_config(perceptual_weight=1.0))


def test_metrics():
    a = jnp.zeros((1, 4, 4, 3))
    np.testing.assert_allclose(image_metrics.psnr(a + 0.1, a)[0], 20.0, rtol=1e-5)
    np.testing.assert_allclose(image_metrics.l1(a + 0.1, a)[0], 0.1, rtol=1e-6)


def test_config_dims_reach_the_model():
    config = ml_collections.ConfigDict(nerf_head_config.get_config("quick").model.to_dict())
    config.id_dim, config.expr_dim = 100, 79
    model = network.from_config(config, output_size=32, feature_size=8)
    params = jax.eval_shape(lambda key: network.init_params(model, key),
                            jax.random.PRNGKey(0))
    assert params["mlp"]["trunk_0"]["kernel"].shape[0] == 100 + 79 + 3 * 2 * model.xyz_freqs
    headnerf = network.from_config(config, output_size=32, feature_size=8,
                                     posenc_form="headnerf")
    params = jax.eval_shape(lambda key: network.init_params(headnerf, key),
                            jax.random.PRNGKey(0))
    assert params["mlp"]["trunk_0"]["kernel"].shape[0] == 100 + 79 + 3 + 3 * 2 * model.xyz_freqs
    assert params["mlp"]["feature"]["kernel"].shape[0] == (
        model.mlp_width + 3 + 3 * 2 * model.dir_freqs)


def test_feature_output_after_compositing_equals_per_sample_layer():
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    hidden = jax.random.normal(k[0], (2, 3, 7, 5))
    weights = jax.nn.softmax(jax.random.normal(k[1], (2, 3, 7)), -1) * 0.8
    layer = network.FeatureOutput(4)
    composited = jnp.einsum("...s,...sc->...c", weights, hidden)
    acc = weights.sum(-1)
    params = jax.jit(layer.init)(k[2], composited, acc)["params"]
    params = {"kernel": params["kernel"], "bias": params["bias"] + 0.3}
    per_sample = hidden @ params["kernel"] + params["bias"]
    expected = jnp.einsum("...s,...sc->...c", weights, per_sample)
    np.testing.assert_allclose(layer.apply({"params": params}, composited, acc), expected,
                               rtol=1e-5, atol=1e-5)


def test_density_activations():
    """relu(raw) (HeadNeRF) or softplus(raw - 1) (mip-NeRF) of the same density layer."""
    mlp = network.ConditionalNeRFMLP(width=16, depth=2, skip_layer=1)
    pos, codes, dirs = (jax.random.normal(jax.random.PRNGKey(i), s)
                        for i, s in enumerate([(2, 5, 12), (2, 1, 4), (2, 1, 6)]))
    params = mlp.init(jax.random.PRNGKey(3), pos, codes, dirs)
    relu = mlp.apply(params, pos, codes, dirs)[0]
    soft = network.ConditionalNeRFMLP(16, 2, 1, density_activation="softplus").apply(
        params, pos, codes, dirs)[0]
    # Recover the pre-activation where relu kept it and compare softplus(raw - 1) there.
    kept = np.asarray(relu) > 0
    assert kept.any()
    np.testing.assert_allclose(np.asarray(soft)[kept],
                               np.asarray(jax.nn.softplus(relu - 1.0))[kept], rtol=1e-5)
    assert (np.asarray(soft) > 0).all()
    with pytest.raises(ValueError, match="density_activation 'elu'"):
        network.ConditionalNeRFMLP(16, 2, 1, density_activation="elu").apply(
            params, pos, codes, dirs)


def test_pixel_shuffle_is_torchs():
    """out[c, 2h + i, 2w + j] = in[4c + 2i + j, h, w] (torch.nn.functional.pixel_shuffle)."""
    x = np.arange(2 * 3 * 5 * 8, dtype=np.float32).reshape(2, 3, 5, 8)  # NHWC, C = 8
    out = np.asarray(network.pixel_shuffle(jnp.asarray(x)))
    assert out.shape == (2, 6, 10, 2)
    for c, i, j in np.ndindex(2, 2, 2):
        np.testing.assert_array_equal(out[:, i::2, j::2, c], x[..., 4 * c + 2 * i + j])


def test_headnerf_renderer_layout():
    """HeadNeRF's renderer: 1x1 convs, PixelShuffle blocks keeping C, channels halved to 32."""
    renderer = network.NeuralRenderer(num_units=2, min_channels=4, style="headnerf")
    params = jax.eval_shape(renderer.init, jax.random.PRNGKey(0),
                            jnp.zeros((1, 4, 4, 16)))["params"]
    assert params["upsample_0"]["layer_1"]["kernel"].shape == (1, 1, 16, 32)
    assert params["upsample_0"]["layer_2"]["kernel"].shape == (1, 1, 32, 64)
    assert params["unit_0"]["kernel"].shape == (1, 1, 16, 8)
    assert params["upsample_1"]["layer_2"]["kernel"].shape == (1, 1, 16, 32)
    assert params["rgb_2"]["kernel"].shape == (1, 1, 4, 3)
    with pytest.raises(ValueError, match="renderer style"):
        network.NeuralRenderer(1, style="nearest").init(jax.random.PRNGKey(0),
                                                          jnp.zeros((1, 2, 2, 4)))
