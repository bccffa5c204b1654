"""The `headnerf` NeRF head computes HeadNeRF's own network (tests/data/README.md).

The fixture's state dict (rebuilt from its recipe) is written as HeadNeRF's checkpoint
(`torch.save({"para", "net"})`, with `tests/torch_writer.py`), converted by the CLI, loaded by
`load_head_model` and rendered on the fixture's codes and cameras, in float32 and in float64.
As in test_parity.py: float64 is held to rounding against HeadNeRF's float64 run, and float32
is judged by its distance to that float64 reference against HeadNeRF's own float32 distance.

Measured max abs differences (AMD EPYC, AVX2; float32 under the tests' 8 host devices):

| output | ours f64 vs off. f64 | off. f32 vs f64 | ours f32 vs f64 (ratio) | ours vs off. f32 |
|---|---|---|---|---|
| featmap   | 3.2e-13 | 2.13e-4 | 1.53e-4 (0.72) | 1.57e-4 |
| opacity   | 7.7e-14 | 5.20e-5 | 3.69e-5 (0.71) | 3.83e-5 |
| merge_img | 4.8e-14 | 2.16e-5 | 1.75e-5 (0.81) | 2.43e-5 |
| bg_img    | 1.1e-15 | 4.74e-7 | 6.22e-7 (1.31) | 5.96e-7 |
| Reso32HR merge_img | 4.6e-14 | 2.09e-5 | 1.63e-5 (0.78) | 2.19e-5 |
| Reso32HR bg_img    | 1.2e-15 | 5.27e-7 | 5.67e-7 (1.08) | 6.85e-7 |

(HeadNeRF's float32 run on this machine equals the fixture's bit for bit. Reso32HR: the same
weights plus a fourth renderer block, 512x512 images compared at every 4th pixel, both heads;
the test renders the first head in float32 only.)

HeadNeRF's own float32 featmap is 2.1e-4 from its float64 one (the positional encoding's
sin(2^9 x) multiplies the rounding of every sample position by 512), so issue #16's fixed
1e-4 on featmap and opacity is not asserted: no float32 implementation can promise it (ours is
1.6e-4 from HeadNeRF's float32 featmap while closer to the exact function than HeadNeRF's).
Matching HeadNeRF's rounding instead does not work in a compiled program: written in
HeadNeRF's operation order (`GenSamplePoints`: elementwise 3x3 products, d / |d|,
o + (d l) z), the sample points equal HeadNeRF's bit for bit op by op, but inside one jitted
program XLA contracts multiply-adds into FMAs and turns d / sqrt(.) into d * rsqrt(.), so 57%
of the points move by an ulp and that featmap lands 2.3e-4 from HeadNeRF's (measured
2026-11-26). Its 1e-3 on the images holds with a 40x margin and is asserted.
"""
import json

import jax
import numpy as np
import pytest

from fnevr_jax import convert
from fnevr_jax.api import AnimatorError, load_head_model
from fnevr_jax.parity import fixture_state_dict
from tests.torch_writer import save_torch_file

OUTPUTS = ("featmap", "opacity", "merge_img", "bg_img")
OURS = {"featmap": "featmap", "opacity": "opacity", "merge_img": "image", "bg_img": "background"}
# 1. float64 vs HeadNeRF's float64, max abs: about 10x the worst measured (docstring table).
F64_TOL = {"featmap": 1e-11, "opacity": 1e-12, "merge_img": 1e-12, "bg_img": 1e-13}
# 2. max|ours f32 - off. f64| <= FACTOR * max|off. f32 - off. f64| (test_parity.py's factor).
FACTOR = 3.0
# 3. max|ours f32 - off. f32| on the images: the bound.
IMAGE_TOL = 1e-3

INPUTS = ("iden_code", "expr_code", "text_code", "illu_code", "c2w_rmats", "c2w_tvecs",
          "inv_inmats")


def _render(head, data):
    out = head.render(**{k: data[k] for k in INPUTS})
    return {name: np.asarray(out[OURS[name]]) for name in OUTPUTS}


@pytest.fixture(scope="module")
def converted(tmp_path_factory, data_dir):
    """(fixture, orbax dir): the recipe written as HeadNeRF's checkpoint, converted by the CLI."""
    data = np.load(data_dir / "headnerf_seed7.npz")
    tmp = tmp_path_factory.mktemp("headnerf")
    state, model = fixture_state_dict(data)
    assert model == "headnerf"
    para = json.loads(str(data["manifest"]))["para"]
    save_torch_file(tmp / "model_Reso32.pth", {"para": para, "net": state})
    assert convert.main(["--model", "headnerf", "--checkpoint", str(tmp / "model_Reso32.pth"),
                         "--out", str(tmp / "orbax")]) == 0
    return data, tmp


@pytest.fixture(scope="module")
def outputs(converted):
    data, tmp = converted
    out32 = _render(load_head_model(tmp / "orbax"), data)
    with jax.enable_x64(True):
        out64 = _render(load_head_model(tmp / "orbax", np.float64), data)
    return data, out32, out64


def test_shapes_and_dtypes(outputs):
    data, out32, out64 = outputs
    for name in OUTPUTS:
        assert out32[name].shape == out64[name].shape == data[f"f64:{name}"].shape, name
        assert out32[name].dtype == np.float32 and out64[name].dtype == np.float64, name


def test_float64_matches_headnerf_float64(outputs):
    data, _, out64 = outputs
    for name in OUTPUTS:
        np.testing.assert_allclose(out64[name], data[f"f64:{name}"], rtol=0, atol=F64_TOL[name],
                                   err_msg=name)


def test_float32_as_close_to_float64_as_headnerf_float32(outputs):
    data, out32, _ = outputs
    for name in OUTPUTS:
        exact = data[f"f64:{name}"]
        official = np.abs(data[name] - exact).max()
        ours = np.abs(out32[name] - exact).max()
        assert ours <= FACTOR * official, \
            f"{name}: float32 is {ours:.3g} from float64, HeadNeRF's float32 {official:.3g}"


def test_float32_images_match_headnerf_float32(outputs):
    data, out32, _ = outputs
    for name in ("merge_img", "bg_img"):
        np.testing.assert_allclose(out32[name], data[name], rtol=0, atol=IMAGE_TOL, err_msg=name)


def test_pth_loads_directly_to_the_same_model(converted):
    data, tmp = converted
    direct, via_orbax = load_head_model(tmp / "model_Reso32.pth"), load_head_model(tmp / "orbax")
    assert direct.model == via_orbax.model
    jax.tree.map(np.testing.assert_array_equal, direct.params, via_orbax.params)
    with pytest.raises(AnimatorError, match="text_code and illu_code"):
        load_head_model(tmp / "orbax").render(**{k: data[k] for k in INPUTS[:2] + INPUTS[4:]})


def test_reso32hr_converts_and_renders_at_512(data_dir, tmp_path):
    """A HeadNeRF checkpoint of another size (Reso32HR, `para` pred_img_size 512)."""
    data = np.load(data_dir / "headnerf_seed7.npz")
    hr = np.load(data_dir / "headnerf_reso32hr_seed7.npz")
    state, _ = fixture_state_dict({**data, **hr})
    para = json.loads(str(hr["manifest"]))["para"]
    save_torch_file(tmp_path / "model_Reso32HR.pth", {"para": para, "net": state})
    head = load_head_model(tmp_path / "model_Reso32HR.pth")
    out = head.render(**{k: data[k][:1] for k in INPUTS})  # the first head: half the time
    assert out["image"].shape == (1, 512, 512, 3) and out["background"].shape == (1, 512, 512, 3)
    pixels = np.r_[0:512:4, 511]
    for name in ("merge_img", "bg_img"):
        ours = np.asarray(out[OURS[name]])[:, pixels[:, None], pixels[None, :]]
        exact = hr[f"f64:{name}"][:1]
        official = np.abs(hr[name][:1] - exact).max()
        assert np.abs(ours - exact).max() <= FACTOR * official, name
        np.testing.assert_allclose(ours, hr[name][:1], rtol=0, atol=IMAGE_TOL, err_msg=name)
