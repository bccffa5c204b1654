"""Fitting inverts the renderer: from perturbed codes and camera, error and code error drop."""
import json

import jax
import jax.numpy as jnp
import numpy as np

from configs import nerf_head as nerf_head_config
from fnevr_jax import convert, parity, rendering
from fnevr_jax.nerf_head import losses, network
from fnevr_jax.nerf_head import fit

TINY = dict(feature_size=8, feature_channels=16, output_size=32, num_samples=16, id_dim=8,
            expr_dim=4, mlp_width=32, mlp_depth=3, mlp_skip_layer=2, xyz_freqs=4, dir_freqs=2,
            renderer_min_channels=8, remat=False)


def test_fitting_recovers_codes_and_lowers_error():
    config = nerf_head_config.get_config("quick")
    config.loss.perceptual_weight = 0.0
    config.fit.lr_id = config.fit.lr_expr = 0.05   # the synthetic codes are O(1)
    # The regularisers pull toward the start, which here is the perturbation itself.
    config.fit.reg_id = config.fit.reg_expr = config.fit.reg_camera = 0.0
    model = network.from_config(config.model, **TINY)
    params = network.init_params(model, jax.random.PRNGKey(0))
    problem = fit.synthetic_problem(model, params, jax.random.PRNGKey(1), config.camera,
                                    code_noise=0.5, pose_noise=0.02)
    offsets, history = fit.make_fit_fn(model, config.loss, config.fit)(
        params, problem["target"], problem["mask"], problem["z_id"], problem["beta"],
        problem["intrinsics"], problem["cam_to_world"])
    assert history.shape == (config.fit.num_iters,)
    z_id, beta, cam, _ = fit.apply_offsets(offsets, problem["z_id"], problem["beta"],
                                           problem["cam_to_world"])
    render = network.make_render_fn(model)
    before = render(params, problem["z_id"], problem["beta"], problem["intrinsics"],
                    problem["cam_to_world"])["image"]
    after = render(params, z_id, beta, problem["intrinsics"], cam)["image"]
    l1_before = float(jnp.mean(jnp.abs(before - problem["target"])))
    l1_after = float(jnp.mean(jnp.abs(after - problem["target"])))
    code_before = fit.code_error(problem["z_id"], problem["beta"], problem["z_id_true"],
                                 problem["beta_true"])
    code_after = fit.code_error(z_id, beta, problem["z_id_true"], problem["beta_true"])
    cam_before = float(jnp.abs(problem["cam_to_world"] - problem["cam_to_world_true"]).max())
    cam_after = float(jnp.abs(cam - problem["cam_to_world_true"]).max())
    print(json.dumps({"l1": [l1_before, l1_after], "code_rms": [code_before, code_after],
                      "camera_max_abs": [cam_before, cam_after]}))
    assert l1_after < 0.3 * l1_before
    assert float(history[-1]) < 0.3 * float(history[0])
    assert code_after < 0.2 * code_before
    assert cam_after < 0.5 * cam_before


def test_fitting_in_headnerf_mode_recovers_codes_appearance_and_camera():
    """HeadNeRF's configuration and fitting recipe (head MSE, non-head and background MSE to
    white, per-group Adam with the appearance group) on a tiny model: from perturbed codes,
    appearance and camera back to the rendered target's."""
    config = nerf_head_config.get_config("headnerf")
    config.loss.perceptual_weight = 0.0   # VGG16 at 224 is most of the cost; tested apart
    config.fit.lr_id = config.fit.lr_expr = config.fit.lr_appearance = 0.2
    config.fit.reg_id = config.fit.reg_expr = config.fit.reg_appearance = 0.0
    config.fit.reg_camera = 0.0
    model = network.from_config(config.model, **TINY, appearance_dim=6)
    params = network.init_params(model, jax.random.PRNGKey(0))
    # A positive density bias puts the head in the slab (relu density: a random init may be
    # empty everywhere, leaving nothing to fit).
    params["mlp"]["density"]["bias"] = jnp.full((1,), 1.0)
    problem = fit.synthetic_problem(model, params, jax.random.PRNGKey(1), config.camera,
                                    code_noise=0.5, pose_noise=0.02)
    offsets, history = fit.make_fit_fn(model, config.loss, config.fit)(
        params, problem["target"], problem["mask"], problem["z_id"], problem["beta"],
        problem["intrinsics"], problem["cam_to_world"], None, problem["appearance"])
    z_id, beta, cam, appearance = fit.apply_offsets(
        offsets, problem["z_id"], problem["beta"], problem["cam_to_world"],
        problem["appearance"])
    code_before = fit.code_error(problem["z_id"], problem["beta"], problem["z_id_true"],
                                 problem["beta_true"], problem["appearance"],
                                 problem["appearance_true"])
    code_after = fit.code_error(z_id, beta, problem["z_id_true"], problem["beta_true"],
                                appearance, problem["appearance_true"])
    appearance_before = float(jnp.sqrt(jnp.mean(
        (problem["appearance"] - problem["appearance_true"]) ** 2)))
    appearance_after = float(jnp.sqrt(jnp.mean((appearance - problem["appearance_true"]) ** 2)))
    cam_before = float(jnp.abs(problem["cam_to_world"] - problem["cam_to_world_true"]).max())
    cam_after = float(jnp.abs(cam - problem["cam_to_world_true"]).max())
    render = network.make_render_fn(model)
    before = render(params, problem["z_id"], problem["beta"], problem["intrinsics"],
                    problem["cam_to_world"], appearance=problem["appearance"])["image"]
    after = render(params, z_id, beta, problem["intrinsics"], cam, appearance=appearance)["image"]
    l1_before = float(jnp.mean(jnp.abs(before - problem["target"])))
    l1_after = float(jnp.mean(jnp.abs(after - problem["target"])))
    print(json.dumps({"loss": [float(history[0]), float(history[-1])], "l1": [l1_before, l1_after],
                      "code_rms": [code_before, code_after],
                      "appearance_rms": [appearance_before, appearance_after],
                      "camera_max_abs": [cam_before, cam_after]}))
    # After/before ratios for problem seeds 1 (this one), 2, 3: image L1 0.013 / 0.035 / 0.027,
    # code RMS (all codes) 0.14 / 0.32 / 0.34, appearance RMS 0.24 / 0.37 / 0.56, camera
    # 0.06 / 0.20 / 0.14. A tiny random network does not pin every code down, so the code
    # bounds are looser than the quick test's. The data term barely moves: the background
    # render's MSE to white (0.25) is constant in the codes.
    assert l1_after < 0.2 * l1_before
    assert float(history[-1]) < float(history[0])
    assert code_after < 0.6 * code_before
    assert appearance_after < 0.85 * appearance_before
    assert cam_after < 0.5 * cam_before


def test_headnerf_fit_follows_headnerfs_own_fitting_loop(data_dir):
    """HeadNeRF's fitting recipe on the parity fixture's model against HeadNeRF's own loop.

    Both fit the fixture's Reso32 render (256x256) of its first head from codes moved by
    0.3 N(0, 1): ours is `fit.make_fit_fn` with `configs/nerf_head.py:headnerf` (head MSE,
    non-head and background MSE to white, VGG16 L1 at 224, per-group Adam, lr decay, offset
    regularisers, camera delta); HeadNeRF's is `FittingSingleImage.perform_fitting`'s loop with
    its network and `HeadNeRFLossUtils`, recorded by tests/data/make_headnerf_fit_reference.py
    (20 iterations, 16 samples per ray for CI time; the weights do not depend on either).
    """
    data = dict(np.load(data_dir / "headnerf_seed7.npz"))
    ref = np.load(data_dir / "headnerf_fit_seed7.npz")
    config = convert.headnerf_config(json.loads(str(data["manifest"]))["para"])
    config.fit.num_iters = int(ref["iters"])
    config.model.num_samples = int(ref["num_samples"])
    model = network.from_config(config.model)
    params = convert.from_headnerf_state_dict(parity.fixture_state_dict(data)[0],
                                              config)["params"]
    problem = parity.headnerf_fit_problem(data, float(ref["code_noise"]), int(ref["seed"]))
    intrinsics, cam = fit.headnerf_camera(model, problem["c2w_rmats"], problem["c2w_tvecs"],
                                          problem["inv_inmats"])
    appearance = np.concatenate([problem["text_code"], problem["illu_code"]], -1)
    feature_apply, feature_params = losses.vgg16_features()
    args = (params, problem["target"], problem["mask"], problem["iden_code"],
            problem["expr_code"], intrinsics, cam, feature_params, appearance)
    # Compiled at XLA's usual optimisation level: at the suite's -O0 (tests/xla_env.py) this
    # program runs over 100x slower.
    offsets, history = fit.make_fit_fn(model, config.loss, config.fit, feature_apply).lower(
        *args).compile({"xla_backend_optimization_level": 2})(*args)
    history = np.asarray(history)
    theirs = {k: jnp.asarray(ref[f"offset_{k}"]) for k in offsets}
    zero = jax.tree.map(jnp.zeros_like, theirs)

    def image_l1(offsets):
        z, b, c, a = fit.apply_offsets(offsets, problem["iden_code"], problem["expr_code"], cam,
                                       appearance)
        image = network.make_render_fn(model)(params, z, b, intrinsics, c, appearance=a)["image"]
        return float(jnp.mean(jnp.abs(losses.composite_on_white(image, problem["mask"])
                                      - problem["target"])))

    def code_rms(offsets):
        true = np.concatenate([data[k][:1] for k in ("iden_code", "expr_code", "text_code",
                                                      "illu_code")], -1)
        start = np.concatenate([problem["iden_code"], problem["expr_code"], appearance], -1)
        fitted = start + np.concatenate([offsets[k] for k in ("id", "expr", "appearance")], -1)
        return float(np.sqrt(np.mean((fitted - true) ** 2)))

    cosine = {k: float(jnp.sum(offsets[k] * theirs[k]) / jnp.linalg.norm(offsets[k])
                       / jnp.linalg.norm(theirs[k])) for k in offsets}
    report = {"history_rel_diff": np.abs(history / ref["history"] - 1).round(6).tolist(),
              "image_l1": {"start": image_l1(zero), "ours": image_l1(offsets),
                           "HeadNeRF": image_l1(theirs)},
              "code_rms": {"start": code_rms(zero), "ours": code_rms(offsets),
                           "HeadNeRF": code_rms(theirs)},
              "offset_cosine": cosine}
    print(json.dumps(report))
    # Measured (AMD EPYC, AVX2): the loss before the first update within 4e-6 relative of
    # HeadNeRF's and after it within 1.4e-5 (same objective, same gradients, same Adam step);
    # later Adam's normalised steps amplify rounding in the weakly determined code directions
    # (at most 2.5e-3 relative over the 20 iterations). Image L1 on white: start 0.0418, ours
    # 0.0155, HeadNeRF's 0.0154.
    np.testing.assert_allclose(history[:2], ref["history"][:2], rtol=1e-4)
    np.testing.assert_allclose(history, ref["history"], rtol=1e-2)
    l1 = report["image_l1"]
    assert l1["ours"] < 0.5 * l1["start"]
    assert abs(l1["ours"] - l1["HeadNeRF"]) < 0.02 * l1["start"]
    codes = report["code_rms"]   # start 0.3104, ours 0.3078, HeadNeRF's 0.3080
    assert abs(codes["ours"] - codes["HeadNeRF"]) < 0.01 * codes["start"]
    for k, c in cosine.items():   # 0.974 (translation) to 0.999 (id); the camera offsets are
        assert c > 0.9, (k, c)    # tiny (3e-3), so their direction has the most rounding


def test_optimizer_groups_and_offsets():
    config = nerf_head_config.get_config("quick").fit
    offsets = fit.init_offsets(2, 5, 3)
    assert {k: v.shape for k, v in offsets.items()} == {
        "id": (2, 5), "expr": (2, 3), "euler": (2, 3), "translation": (2, 3)}
    grads = jax.tree.map(jnp.ones_like, offsets)
    optimizer = fit.make_optimizer(config)
    updates, _ = optimizer.update(grads, optimizer.init(offsets), offsets)
    np.testing.assert_allclose(updates["id"], -config.lr_id, rtol=1e-3)
    np.testing.assert_allclose(updates["translation"], -config.lr_camera, rtol=1e-3)
    cam = rendering.look_at_origin(jnp.array([[0.0, 0.0, 6.0]] * 2))
    z, b, moved, _ = fit.apply_offsets(offsets, jnp.ones((2, 5)), jnp.ones((2, 3)), cam)
    np.testing.assert_allclose(moved, cam, atol=1e-6)
    assert float(fit.regulariser(offsets, config)) == 0.0


def test_fit_command_line_synthetic(tmp_path):
    config = nerf_head_config.get_config("quick")
    config.model.update(TINY)
    config.loss.perceptual_weight = 0.0
    config.fit.num_iters = 20

    class Flags:
        synthetic = True

    metrics = fit.run(config, tmp_path, Flags)
    assert (tmp_path / "render.png").exists() and (tmp_path / "codes.npz").exists()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["fitted"]["psnr"] > saved["start"]["psnr"]
    assert set(np.load(tmp_path / "codes.npz")) >= {"z_id", "beta", "intrinsics", "cam_to_world"}
    assert metrics["iterations"] == 20 and metrics["fit_seconds"] > 0


def test_fit_command_line_image_checkpoint_and_codes(tmp_path):
    from PIL import Image

    from fnevr_jax import checkpoint_io
    config = nerf_head_config.get_config("quick")
    config.model.update(TINY)
    config.loss.perceptual_weight = 0.0
    config.fit.num_iters = 10
    model = network.from_config(config.model)
    params = network.init_params(model, jax.random.PRNGKey(0))
    checkpoint_io.save_variables(tmp_path / "model", {"params": params},
                                 {"model": "nerf_head", "config": config.to_dict()})
    problem = fit.synthetic_problem(model, params, jax.random.PRNGKey(1), config.camera)
    Image.fromarray(np.uint8(np.asarray(problem["target"][0]) * 255)).save(tmp_path / "t.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[4:28, 6:26] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    np.savez(tmp_path / "init.npz", z_id=np.asarray(problem["z_id"][0]),
             beta=np.asarray(problem["beta"][0]))

    class Flags:
        synthetic = False
        checkpoint = str(tmp_path / "model")
        image = str(tmp_path / "t.png")
        mask = str(tmp_path / "m.png")
        init_codes = str(tmp_path / "init.npz")

    metrics = fit.run(config, tmp_path / "out", Flags)
    assert metrics["fitted"]["l1"] < metrics["start"]["l1"]
    codes = np.load(tmp_path / "out" / "codes.npz")
    assert codes["z_id"].shape == (TINY["id_dim"],) and codes["cam_to_world"].shape == (3, 4)
