"""Network structure: official parameter counts, BatchNorm modes, other sizes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from configs import fnevr as fnevr_configs
from fnevr_jax.models import build_models, example_inputs, init_variables
from fnevr_jax.models.blocks import DownBlock2d


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("variant,generator_params", [("vox256", 47_179_657), ("fomm", 45_575_391)])
def test_official_parameter_counts(variant, generator_params):
    config = fnevr_configs.get_config(variant)
    variables = jax.eval_shape(lambda: init_variables(config, jax.random.key(0)))
    params = variables["params"]
    assert _count(params["kp_detector"]) == 14_215_368
    assert _count(params["generator"]) == generator_params
    assert _count(params["discriminator"]) == 2_758_849


def test_batchnorm_train_uses_global_batch_statistics_when_sharded():
    block = DownBlock2d(8)
    x = jax.random.normal(jax.random.key(1), (8, 8, 8, 3)) * 3 + 1
    variables = block.init(jax.random.key(0), x)
    step = lambda v, x: block.apply(v, x, train=True, mutable=["batch_stats"])
    ref_out, ref_stats = jax.jit(step)(variables, x)
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    rep = jax.device_put(variables, NamedSharding(mesh, P()))
    out, stats = jax.jit(step)(rep, xs)
    assert len(xs.sharding.device_set) == 8
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(stats["batch_stats"]["norm"]["mean"],
                               ref_stats["batch_stats"]["norm"]["mean"], atol=1e-6)
    # PyTorch momentum 0.1: running = 0.9 · running + 0.1 · batch mean (per channel).
    conv_out = jax.lax.conv_general_dilated(
        x, variables["params"]["conv"]["kernel"], (1, 1), ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + variables["params"]["conv"]["bias"]
    np.testing.assert_allclose(stats["batch_stats"]["norm"]["mean"],
                               0.1 * conv_out.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    # Inference uses the running statistics: output no longer depends on the batch mates.
    updated = {**variables, **stats}
    np.testing.assert_allclose(block.apply(updated, x[:1]), block.apply(updated, x)[:1], atol=1e-6)


def test_hd512_runs_keypoints_and_motion_at_64():
    config = fnevr_configs.get_config("hd512")
    models = build_models(config)
    image, kp = example_inputs(config)
    kp_shapes = jax.eval_shape(models["kp_detector"].init, jax.random.key(0), image)
    out = jax.eval_shape(lambda: models["generator"].init_with_output(
        jax.random.key(0), image, kp, kp)[0])
    assert out["prediction"].shape == (1, 512, 512, 3)
    assert out["mask"].shape == (1, 64, 64, 11)
    assert out["render"].shape == (1, 512, 512, 3)
    assert _count(kp_shapes["params"]) == 14_215_368


def test_bfloat16_compute_keeps_float32_params_and_outputs():
    config = fnevr_configs.get_config("fomm")
    config.dtype = "bfloat16"
    config.image_size = 128
    models = build_models(config)
    image, _ = example_inputs(config)
    variables = models["kp_detector"].init(jax.random.key(0), image)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    kp = models["kp_detector"].apply(variables, image + 0.5)
    assert kp["value"].dtype == jnp.float32
    assert np.isfinite(np.asarray(kp["value"])).all()
    f32 = fnevr_configs.get_config("fomm")
    f32.image_size = 128
    ref = build_models(f32)["kp_detector"].apply(variables, image + 0.5)
    np.testing.assert_allclose(kp["value"], ref["value"], atol=5e-2)


def test_one_down_block_keeps_fnevr_features_at_half_resolution():
    # quick: 64x64 images, F_w / the FVR volume at 32x32, both decoders upsampling once.
    config = fnevr_configs.get_config("quick")
    config.generator.num_down_blocks = 1
    models = build_models(config)
    image, kp = example_inputs(config)
    out = jax.eval_shape(lambda: models["generator"].init_with_output(
        jax.random.key(0), image, kp, kp)[0])
    assert out["warped_feature"].shape[1:3] == (32, 32)
    assert out["sigma_map"].shape[1:4] == (config.fvr.depth, 32, 32)
    assert out["prediction"].shape == out["render"].shape == (1, 64, 64, 3)
    config.generator.num_down_blocks = 3
    with pytest.raises(ValueError, match="1 or 2 down blocks, not 3"):
        build_models(config)["generator"].init(jax.random.key(0), image, kp, kp)


def _fvr_per_sample(fvr, variables, feature):
    """FNeVR eq. 9 in the official order: layer6 on every depth sample, then compositing."""
    from fnevr_jax.models import fvr as fvr_lib
    params = variables["params"]
    color_in = fvr_lib.ColorPredictor(fvr.color_channels, fvr.depth, fvr.dtype).apply(
        {"params": params["rgb_predict"]}, feature)
    sigma_in, _ = fvr_lib.SigmaPredictor(fvr.sigma_channels, fvr.depth, dtype=fvr.dtype).apply(
        {"params": params["sigma_predict"],
         "batch_stats": variables["batch_stats"]["sigma_predict"]}, feature)
    mlp = fvr_lib.RayMLP(fvr.hidden, feature.shape[-1], fvr.dtype)
    mlp_vars = {"params": params["nerf_module"]}
    hidden, sigma = mlp.apply(mlp_vars, color_in, sigma_in)
    color = mlp.apply(mlp_vars, hidden, jnp.ones(hidden.shape[:-1], hidden.dtype),
                      method=fvr_lib.RayMLP.color)   # W h_i + b per sample
    return color, sigma


def test_fvr_last_layer_after_compositing_equals_the_official_per_sample_order():
    """F_r = sigmoid(Σ_i w_i (W h_i + b)) (FNeVR eq. 8-9) with layer6 after compositing."""
    from fnevr_jax.models import fvr as fvr_lib
    with jax.enable_x64(True):
        fvr = fvr_lib.FaceVolumeRenderer(color_channels=32, sigma_channels=32, depth=4, hidden=16,
                                         dtype=jnp.float64)
        feature = jax.random.normal(jax.random.key(0), (2, 8, 8, 24), jnp.float64)
        variables = fvr.init(jax.random.key(1), feature)
        # Random (non-zero) biases, so the bias's Σ_i w_i factor is exercised.
        leaves, tree = jax.tree_util.tree_flatten_with_path(variables)
        keys = jax.random.split(jax.random.key(2), len(leaves))
        variables = tree.unflatten([
            jax.random.normal(k, x.shape, x.dtype) if path[-1].key == "bias" else x
            for k, (path, x) in zip(keys, leaves)])
        out = jax.jit(fvr.apply)(variables, feature)["feature"]
        color, sigma = jax.jit(lambda v, x: _fvr_per_sample(fvr, v, x))(variables, feature)
        assert color.shape == (2, 8, 8, 4, 24)
        reference = jax.nn.sigmoid(fvr_lib.volume_render(color, sigma))
        np.testing.assert_allclose(out, reference, rtol=0, atol=1e-13)
        # The bias enters with the opacity Σ_i w_i (between 0 and 1 here), not once per ray.
        acc = fvr_lib.volume_weights(sigma).sum(-1)
        assert float(acc.min()) == 0.0 and 0.1 < float(acc.max()) < 0.99
        bias = variables["params"]["nerf_module"]["layer6"]["bias"]
        once = jax.nn.sigmoid(fvr_lib.volume_render(color - bias, sigma) + bias)
        assert np.abs(np.asarray(out - once)).max() > 1e-2
        # float32: the same function to float rounding.
        fvr32 = fvr.clone(dtype=jnp.float32)
        vars32 = jax.tree.map(lambda x: x.astype(jnp.float32), variables)
        out32 = jax.jit(fvr32.apply)(vars32, feature.astype(jnp.float32))["feature"]
        np.testing.assert_allclose(out32, reference, rtol=0, atol=2e-6)



def test_grid_sample_impl_reaches_every_warp_and_keeps_the_output():
    """config.grid_sample_impl="matmul" replaces the feature warp's gather (and nothing else:
    the other warps sample the input frame, so their backward has no scatter) and keeps the
    outputs and the gradients."""
    from tests import tiny
    results = {}
    for impl in ("gather", "matmul"):
        config = tiny.config("unused", grid_sample_impl=impl)
        generator = build_models(config)["generator"]
        image, kp = example_inputs(config, batch=2)
        image = jax.random.uniform(jax.random.key(1), image.shape)
        noise = 0.1 * jax.random.normal(jax.random.key(2), kp["value"].shape)
        kp_driving = {**kp, "value": kp["value"] + noise}
        variables = generator.init(jax.random.key(0), image, kp, kp_driving)

        def loss(params, kp_value):
            out = generator.apply({**variables, "params": params}, image,
                                  {**kp, "value": kp_value}, kp_driving)
            return jnp.sum(out["prediction"] ** 2) + jnp.sum(out["deformed"] ** 2), out

        jaxpr = str(jax.make_jaxpr(loss)(variables["params"], kp["value"]))
        grads, out = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(
            variables["params"], kp["value"])
        results[impl] = (jaxpr.count(" gather["), grads, out)
    assert results["gather"][0] - results["matmul"][0] == 1
    for ref, new in zip(jax.tree.leaves(results["gather"][1:]),
                        jax.tree.leaves(results["matmul"][1:])):
        # float32 rounding through the networks (some gradients are ~0: bias before BatchNorm)
        np.testing.assert_allclose(new, ref, atol=1e-3 * float(np.abs(ref).max()) + 1e-4)
