"""The public API and the command lines: loading every source kind, parity through the API,
compile-once, and clear one-line errors without partial outputs."""
import subprocess
import sys

import numpy as np
import pytest

from fnevr_jax import checkpoint_io, loader
from fnevr_jax.api import AnimatorError, load_animator
from fnevr_jax.convert import main as convert_main

sys.path.insert(0, "tests/data")
from make_tiny_checkpoint import tiny_config, value  # noqa: E402


@pytest.fixture(scope="module")
def fomm_dir(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("ckpt") / "fomm"
    assert convert_main(["--checkpoint", str(data_dir / "fomm_seed7.npz"), "--model", "fomm",
                         "--out", str(out)]) == 0
    return out


def test_orbax_checkpoint_reproduces_official_outputs(fomm_dir, data_dir):
    data = np.load(data_dir / "fomm_seed7.npz")
    animator = load_animator(fomm_dir, model="fomm")
    source = data["source"].astype(np.float32) / 255
    driving = data["driving"].astype(np.float32) / 255
    kp_s, kp_d = animator.keypoints(source), animator.keypoints(driving)
    np.testing.assert_allclose(kp_d["jacobian"], data["kp_driving_jacobian"], atol=1e-4)
    out = animator.generate(source, kp_s, kp_d)
    assert set(out) == {"prediction", "occlusion_map", "mask", "deformed"}
    np.testing.assert_allclose(out["prediction"], data["prediction"], atol=1e-3)
    # Same shapes again: no recompilation.
    animator.generate(source, kp_s, kp_d)
    animator.keypoints(driving)
    assert animator.core.compiled() == {"keypoints": 1, "generate": 1, "animate": 0}


def test_official_torch_checkpoint_is_read_without_torch(data_dir):
    config = tiny_config()
    variables, *_ = loader.load(data_dir / "tiny_fomm.pth.tar", "fomm", config)
    key = "generator.down_blocks.1.conv.weight"
    w = value(key, (16, 8, 3, 3))
    np.testing.assert_array_equal(
        variables["params"]["generator"]["down_blocks_1"]["conv"]["kernel"], w.transpose(2, 3, 1, 0))
    animator = load_animator(variables, "fomm", config)
    image = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    kp = animator.keypoints(image)
    out = animator.generate(image, kp, kp)
    assert out["prediction"].shape == (2, 64, 64, 3)
    assert np.isfinite(np.asarray(out["prediction"])).all()
    assert "torch" not in sys.modules


def test_variables_dict_and_bad_sources(fomm_dir, tmp_path):
    variables, metadata = checkpoint_io.load_variables(fomm_dir)
    assert metadata["model"] == "fomm" and metadata["source"] == "fomm_seed7.npz"
    animator = load_animator(variables, "fomm")
    assert animator.model == "fomm"
    with pytest.raises(AnimatorError, match="holds a 'fomm' model, not 'fnevr'"):
        load_animator(fomm_dir, "fnevr")
    with pytest.raises(AnimatorError, match="no such checkpoint"):
        load_animator(tmp_path / "missing")
    with pytest.raises(AnimatorError, match=r"must be \[B,H,W,3\]"):
        animator.keypoints(np.zeros((64, 64, 3), np.float32))


def _run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_cli_errors_are_one_line_and_leave_no_output(tmp_path, data_dir):
    out = tmp_path / "converted"
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"\x80\x02this is not a checkpoint")
    for checkpoint, model, message in [
            (tmp_path / "nothere.pth.tar", "fnevr", "no such checkpoint file"),
            (bad, "fnevr", "corrupt or truncated torch file"),
            (data_dir / "tiny_fomm.pth.tar", "fomm", "state dict does not match the fomm network"),
            (data_dir / "fomm_seed7.npz", "fnevr", "a 'fomm' fixture, not 'fnevr'")]:
        result = _run("-m", "fnevr_jax.convert", "--checkpoint", str(checkpoint), "--model", model,
                      "--out", str(out))
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_cli_runs_an_image_pair(fomm_dir, data_dir, tmp_path):
    out = tmp_path / "pair.png"
    result = _run("-m", "fnevr_jax.api", "--checkpoint", str(fomm_dir), "--model", "fomm",
                  "--source", str(data_dir / "source.png"), "--driving",
                  str(data_dir / "driving.png"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    import imageio.v3 as iio
    picture = iio.imread(out)
    assert picture.shape == (256, 4 * 256, 3)
    np.testing.assert_array_equal(picture[:, :256], iio.imread(data_dir / "source.png"))
    missing = _run("-m", "fnevr_jax.api", "--checkpoint", str(fomm_dir), "--model", "fomm",
                   "--source", str(tmp_path / "none.png"), "--driving",
                   str(data_dir / "driving.png"), "--out", str(tmp_path / "x.png"))
    assert missing.returncode == 1 and "cannot read the image" in missing.stderr
    assert not (tmp_path / "x.png").exists()


def test_load_head_model_renders_the_paper_variant_from_export_and_workdir(tmp_path):
    """One `HeadModel` for the JUSTC variant too: its codes as iden/expr, no appearance codes;
    a model export and a training workdir give the direct render (inverse intrinsics at the
    feature resolution, as HeadNeRF passes them)."""
    import jax
    import orbax.checkpoint as ocp

    from configs import nerf_head as nerf_head_configs
    from fnevr_jax.api import load_head_model
    from fnevr_jax.nerf_head import network

    config = nerf_head_configs.get_config("quick")
    config.model.update(feature_size=4, output_size=8, feature_channels=8, num_samples=6,
                        mlp_width=16, mlp_depth=2, mlp_skip_layer=1, renderer_min_channels=4)
    model = network.from_config(config.model)
    params = network.init_params(model, jax.random.key(0))
    checkpoint_io.save_variables(tmp_path / "export", {"params": params},
                                 {"model": "nerf_head", "config": config.to_dict()})
    workdir = tmp_path / "workdir"
    manager = ocp.CheckpointManager(workdir / "checkpoints")
    manager.save(3, args=ocp.args.Composite(      # the layout train.py writes: state + export
        state=ocp.args.StandardSave({"task": {"params": params}}),
        **checkpoint_io.export_args({"params": params}, {"model": "nerf_head", "step": 3,
                                                         "config": config.to_dict()})))
    manager.wait_until_finished()
    (workdir / "config.json").write_text(config.to_json())

    rng = np.random.default_rng(0)
    z_id = rng.standard_normal((2, 16)).astype(np.float32)
    beta = rng.standard_normal((2, 6)).astype(np.float32)
    intrinsics, cam = network.default_camera(2, 8, 2.0, 6.0)
    expected = network.make_render_fn(model, render_background=True)(
        params, z_id, beta, intrinsics, cam)
    inv_inmats = np.linalg.inv(np.asarray(intrinsics) * [[[0.5], [0.5], [1.0]]])
    for source in (tmp_path / "export", workdir):
        head = load_head_model(source)
        out = head.render(iden_code=z_id, expr_code=beta, c2w_rmats=cam[:, :, :3],
                          c2w_tvecs=cam[:, :, 3:], inv_inmats=inv_inmats)
        for ours, theirs in [("image", "image"), ("featmap", "features"), ("opacity", "acc"),
                             ("background", "background_image")]:
            np.testing.assert_allclose(out[ours], expected[theirs], rtol=1e-5, atol=1e-6,
                                       err_msg=ours)
    # One compilation for the direct call above, one for both sources' renders.
    assert head._render._cache_size() == 2
    with pytest.raises(AnimatorError, match="takes no text_code"):
        head.render(iden_code=z_id, expr_code=beta, c2w_rmats=cam[:, :, :3],
                    c2w_tvecs=cam[:, :, 3:], inv_inmats=inv_inmats, text_code=z_id)
    with pytest.raises(AnimatorError, match="expr_code must have shape"):
        head.render(iden_code=z_id, expr_code=z_id, c2w_rmats=cam[:, :, :3],
                    c2w_tvecs=cam[:, :, 3:], inv_inmats=inv_inmats)
    with pytest.raises(AnimatorError, match="no such checkpoint"):
        load_head_model(tmp_path / "none.pth")


def test_animate_is_make_animation_and_compiles_once(data_dir):
    """`Animator.animate` over 2.5 batches equals first-order-model's `make_animation` computed
    frame by frame (relative keypoints from the first driving frame, adapt scale), and a run
    of animation plus the evaluation of two clips of different lengths compiles each jitted
    function of the inference core once."""
    import eval as eval_cli
    from fnevr_jax import inference
    from fnevr_jax.metrics import image as image_lib

    animator = load_animator(data_dir / "tiny_fomm.pth.tar", "fomm", tiny_config(), batch_size=4)
    rng = np.random.default_rng(0)
    source = rng.uniform(size=(1, 64, 64, 3)).astype(np.float32)
    driving = rng.uniform(size=(10, 64, 64, 3)).astype(np.float32)
    out = animator.animate(source, driving)
    kp_s, kp_0 = animator.keypoints(source), animator.keypoints(driving[:1])
    scale = np.sqrt(inference.hull_area(np.asarray(kp_s["value"])[0])
                    / inference.hull_area(np.asarray(kp_0["value"])[0]))
    for i in (0, 5, 9):
        kp_d = animator.keypoints(driving[i:i + 1])
        kp = inference.normalize_kp(kp_s, kp_d, kp_0, scale)
        want = animator.generate(source, kp_s, kp)["prediction"]
        np.testing.assert_allclose(out[i], np.clip(want[0], 0, 1), atol=1e-5)
    assert not np.allclose(out[0], out[9], atol=1e-3)    # the frames differ

    metrics_before = image_lib.image_metrics._cache_size()
    clips = [{"video": rng.uniform(size=(n, 64, 64, 3)).astype(np.float32), "clip_id": str(n),
              "identity": np.int64(n)} for n in (7, 5)]
    aggregate = eval_cli.evaluate(animator, clips, "reconstruction", ["l1"], batch_size=4)[0]
    assert 0 < aggregate["L1"] < 1
    assert animator.core.compiled() == {"keypoints": 1, "generate": 1, "animate": 1}
    assert image_lib.image_metrics._cache_size() - metrics_before <= 1
