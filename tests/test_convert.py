"""Converter strictness and layout."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from fnevr_jax.convert import (ConversionError, default_config, from_headnerf_state_dict,
                               from_torch_state_dict, headnerf_config)
from fnevr_jax.convert import main as convert_main
from fnevr_jax.models import build_models, module_variables
from fnevr_jax.parity import fixture_state_dict


@pytest.fixture(scope="module")
def fomm_state(data_dir):
    return fixture_state_dict(data_dir / "fomm_seed7.npz")[0]


def test_layouts(fomm_state):
    v = from_torch_state_dict(fomm_state, "fomm")
    w = fomm_state["generator.first.conv.weight"]  # OIHW (64, 3, 7, 7)
    np.testing.assert_array_equal(v["params"]["generator"]["first"]["conv"]["kernel"],
                                  w.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        v["batch_stats"]["kp_detector"]["predictor"]["decoder"]["up_blocks_4"]["norm"]["var"],
        fomm_state["kp_detector.predictor.decoder.up_blocks.4.norm.running_var"])
    np.testing.assert_array_equal(
        v["params"]["generator"]["bottleneck"]["r5"]["norm2"]["scale"],
        fomm_state["generator.bottleneck.r5.norm2.weight"])


def test_rejects_renamed_key_and_changed_shape_naming_both(fomm_state):
    bad = dict(fomm_state)
    bad["generator.first.conv.weights"] = bad.pop("generator.first.conv.weight")
    bad["kp_detector.kp.bias"] = np.zeros(11, np.float32)
    with pytest.raises(ConversionError) as err:
        from_torch_state_dict(bad, "fomm")
    msg = str(err.value)
    assert "missing: generator.first.conv.weight" in msg
    assert "unexpected: generator.first.conv.weights" in msg
    assert "kp_detector.kp.bias: checkpoint (11,), model (10,)" in msg


def test_rejects_wrong_model_and_wrong_buffer(fomm_state):
    with pytest.raises(ConversionError, match="missing: generator.Render_model"):
        from_torch_state_dict(fomm_state, "fnevr")
    bad = dict(fomm_state)
    bad["kp_detector.down.weight"] = bad["kp_detector.down.weight"] * 2
    with pytest.raises(ConversionError, match="kp_detector.down.weight: fixed buffer"):
        from_torch_state_dict(bad, "fomm")


def test_discriminator_with_spectral_norm(fomm_state):
    rng = np.random.default_rng(0)
    disc = {}
    shapes = {0: (64, 3), 1: (128, 64), 2: (256, 128), 3: (512, 256)}
    for i, (o, c) in shapes.items():
        p = f"discriminator.discs.1.down_blocks.{i}."
        disc[p + "conv.weight_orig"] = rng.standard_normal((o, c, 4, 4)).astype(np.float32) * 0.05
        disc[p + "conv.bias"] = rng.standard_normal(o).astype(np.float32) * 0.05
        u, v = rng.standard_normal(o), rng.standard_normal(c * 16)
        disc[p + "conv.weight_u"] = (u / np.linalg.norm(u)).astype(np.float32)
        disc[p + "conv.weight_v"] = (v / np.linalg.norm(v)).astype(np.float32)
        if i:
            disc[p + "norm.weight"] = np.ones(o, np.float32)
            disc[p + "norm.bias"] = np.zeros(o, np.float32)
    disc["discriminator.discs.1.conv.weight_orig"] = rng.standard_normal((1, 512, 1, 1)).astype(np.float32)
    disc["discriminator.discs.1.conv.bias"] = np.zeros(1, np.float32)
    disc["discriminator.discs.1.conv.weight_u"] = np.ones(1, np.float32)
    v = rng.standard_normal(512)
    disc["discriminator.discs.1.conv.weight_v"] = (v / np.linalg.norm(v)).astype(np.float32)
    variables = from_torch_state_dict({**fomm_state, **disc}, "fomm")
    d_vars = module_variables(variables, "discriminator")
    w = disc["discriminator.discs.1.conv.weight_orig"].reshape(1, -1)
    sigma = float(disc["discriminator.discs.1.conv.weight_u"] @ (w @ disc["discriminator.discs.1.conv.weight_v"]))
    # Eval mode folds W / (u·Wv): the 1x1 head is then a linear map we can check directly.
    models = build_models(default_config("fomm"))
    x = jnp.asarray(rng.uniform(size=(1, 64, 64, 3)), jnp.float32)
    out = models["discriminator"].apply(d_vars, {1: x})[1]
    feats = np.asarray(out["feature_maps"][-1])
    expected = feats.reshape(-1, 512) @ (w[0] / sigma)
    np.testing.assert_allclose(np.asarray(out["prediction_map"]).reshape(-1), expected, rtol=1e-4,
                               atol=1e-5)


@pytest.fixture(scope="module")
def headnerf_checkpoint(data_dir, tmp_path_factory):
    """(para, state dict) of the HeadNeRF fixture and a writer of `{"para", "net"}` .pth files."""
    from tests.torch_writer import save_torch_file
    data = np.load(data_dir / "headnerf_seed7.npz")
    para = json.loads(str(data["manifest"]))["para"]
    state = fixture_state_dict(data)[0]
    tmp = tmp_path_factory.mktemp("headnerf_pth")

    def write(name, net, para=para):
        save_torch_file(tmp / name, {"para": para, "net": net})
        return tmp / name
    return para, state, write


def _cli_error(capsys, tmp_path, checkpoint):
    out = tmp_path / "out"
    assert convert_main(["--model", "headnerf", "--checkpoint", str(checkpoint),
                         "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert not out.exists()
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_headnerf_layouts(headnerf_checkpoint):
    para, state, _ = headnerf_checkpoint
    params = from_headnerf_state_dict(state, headnerf_config(para))["params"]
    w = state["fg_CD_predictor.FeaExt_module_5.weight"]  # (384, 626, 1, 1): [gamma(x), codes, h]
    np.testing.assert_array_equal(params["mlp"]["trunk_5"]["kernel"], w[:, :, 0, 0].T)
    np.testing.assert_array_equal(params["feature_out"]["bias"],
                                  state["fg_CD_predictor.RGB_layer_2.bias"])
    np.testing.assert_array_equal(
        params["renderer"]["upsample_2"]["layer_1"]["kernel"],
        state["neural_render.feat_upsample_list.2.layer_1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["background"],
                                  state["neural_render.bg_featmap"].transpose(0, 2, 3, 1))


def test_headnerf_strict_keys(headnerf_checkpoint):
    para, state, _ = headnerf_checkpoint
    bad = dict(state)
    bad["fg_CD_predictor.RGB_layer_1.weights"] = bad.pop("fg_CD_predictor.RGB_layer_1.weight")
    bad["neural_render.feat_layers.0.bias"] = np.zeros(129, np.float32)
    bad["neural_render.rgb_upsample.1.f"] = np.ones(3, np.float32)
    with pytest.raises(ConversionError) as err:
        from_headnerf_state_dict(bad, headnerf_config(para))
    msg = str(err.value)
    assert "missing: fg_CD_predictor.RGB_layer_1.weight" in msg
    assert "unexpected: fg_CD_predictor.RGB_layer_1.weights" in msg
    assert "neural_render.feat_layers.0.bias: checkpoint (129,), model (128,)" in msg
    assert "neural_render.rgb_upsample.1.f: fixed buffer" in msg
    # A Reso32HR `para` asks for a fourth renderer block that Reso32 weights do not have.
    with pytest.raises(ConversionError, match="missing: neural_render.feat_layers.3.weight"):
        from_headnerf_state_dict(state, headnerf_config({**para, "pred_img_size": 512}))
    with pytest.raises(ConversionError, match="positive integers"):
        headnerf_config({"featmap_size": 32})


def test_headnerf_cli_errors_are_one_line_and_write_nothing(headnerf_checkpoint, data_dir,
                                                            tmp_path, capsys):
    para, state, write = headnerf_checkpoint
    assert "no such checkpoint file" in _cli_error(capsys, tmp_path, tmp_path / "none.pth")
    good = write("model_Reso32.pth", state)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(good.read_bytes()[:5000])
    assert "corrupt or truncated" in _cli_error(capsys, tmp_path, corrupt)
    assert "not a HeadNeRF checkpoint" in _cli_error(capsys, tmp_path,
                                                     data_dir / "tiny_fomm.pth.tar")
    missing = {k: v for k, v in state.items() if k != "neural_render.bg_featmap"}
    err = _cli_error(capsys, tmp_path, write("missing.pth", missing))
    assert "1 missing" in err and "missing: neural_render.bg_featmap" in err
    assert convert_main(["--model", "headnerf", "--checkpoint", str(good),
                         "--out", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok").is_dir()
