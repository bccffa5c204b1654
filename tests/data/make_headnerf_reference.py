"""Runs HeadNeRF's own network on the parity fixture in float32 and float64 (not run by tests).

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 kornia==0.9.0
    git clone https://github.com/CrisHY1995/headnerf /tmp/headnerf  # commit f874574
    /tmp/torchenv/bin/python tests/data/make_headnerf_reference.py --headnerf /tmp/headnerf \
        --fixture ../shared/fixtures/headnerf_parity/headnerf_seed7.npz

Writes, beside this script:
- headnerf_seed7.npz: every entry of the shared fixture (recipe, inputs, HeadNeRF's float32
  outputs `featmap`, `opacity`, `merge_img`, `bg_img`), plus `f64:<name>`, the same network
  run in float64 (`net.double()`, float64 inputs) (the float32 run here is printed against
  the fixture's: it was identical bit for bit on the machine that wrote the file);
- headnerf_reso32hr_seed7.npz: the Reso32HR form (`pred_img_size` 512, a fourth renderer
  block drawn by `RESO32HR_ENTRIES`' recipe) on the same inputs: `manifest`, and for `merge_img`
  and `bg_img` the float32 (`<name>`) and float64 (`f64:<name>`) outputs at the pixels
  `HR_PIXELS` (every 4th row and column plus the last; the whole images are 9 MB each).

It also writes the state dict as HeadNeRF's checkpoint with `tests/torch_writer.py` (numpy
only) and checks that torch.load returns it exactly.
"""
import copy
import json
import pathlib
import sys
import tempfile

import numpy as np
import torch

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))
from fnevr_jax import cli  # noqa: E402
from fnevr_jax.parity import fixture_state_dict  # noqa: E402
from tests.torch_writer import save_torch_file  # noqa: E402

INPUTS = ("iden_code", "expr_code", "text_code", "illu_code", "c2w_rmats", "c2w_tvecs",
          "inv_inmats", "batch_xy", "batch_uv")
OUTPUTS = ("featmap", "opacity", "merge_img", "bg_img")
HR_PIXELS = np.r_[0:512:4, 511]


def reso32hr_manifest(manifest):
    """The Reso32HR recipe: Reso32's entries plus the fourth renderer block (32 channels)."""
    hr = copy.deepcopy(manifest)
    hr["para"] = {**manifest["para"], "pred_img_size": 512}
    p = "neural_render."
    for key, shape in [(f"{p}feat_upsample_list.3.layer_1", (64, 32)),
                       (f"{p}feat_upsample_list.3.layer_2", (128, 64)),
                       (f"{p}feat_layers.3", (32, 32)), (f"{p}feat_2_rgb_list.4", (3, 32))]:
        hr["entries"].append({"key": f"{key}.weight", "shape": [*shape, 1, 1], "dist": "normal",
                              "mean": 0.0, "std": float(np.sqrt(2.0 / shape[1]))})
        hr["entries"].append({"key": f"{key}.bias", "shape": [shape[0]], "dist": "normal",
                              "mean": 0.0, "std": 0.1})
    hr["entries"].append({"key": f"{p}feat_upsample_list.3.blur_layer.f", "shape": [3],
                          "dist": "fixed"})
    return hr


def run(net_cls, opt_cls, state, para, data, dtype):
    """HeadNeRF's outputs (NHWC numpy) in `dtype`, as its fitting code calls the network."""
    net = net_cls(opt_cls(para), include_vd=False, hier_sampling=False)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()},
                        strict=True)
    net = net.to(dtype).eval()
    captured = {}
    net.calc_color_func.register_forward_hook(
        lambda m, i, out: captured.__setitem__("opacity", 1.0 - out[1]))
    net.neural_render.register_forward_pre_hook(
        lambda m, i: captured.__setitem__("featmap", i[0]))  # the last call: the merged map
    x = {k: torch.from_numpy(data[k]).to(dtype) for k in INPUTS}
    with torch.no_grad():
        res = net("test", x["batch_xy"], x["batch_uv"], None,
                  torch.cat([x["iden_code"], x["expr_code"]], 1),
                  torch.cat([x["text_code"], x["illu_code"]], 1),
                  x["c2w_rmats"], x["c2w_tvecs"], x["inv_inmats"])["coarse_dict"]
    size = para["featmap_size"]
    return {"featmap": captured["featmap"].permute(0, 2, 3, 1).numpy(),
            "opacity": captured["opacity"].reshape(-1, size, size).numpy(),
            "merge_img": res["merge_img"].permute(0, 2, 3, 1).numpy(),
            "bg_img": res["bg_img"].permute(0, 2, 3, 1).numpy()}


def main():
    parser = cli.ArgumentParser()
    parser.add_argument("--headnerf", required=True, help="a checkout of CrisHY1995/headnerf")
    parser.add_argument("--fixture", required=True, help="the shared headnerf_seed7.npz")
    args = parser.parse_args()
    sys.path.insert(0, args.headnerf)
    from HeadNeRFOptions import BaseOptions
    from NetWorks.HeadNeRFNet import HeadNeRFNet
    torch.set_num_threads(2)

    data = dict(np.load(args.fixture))
    manifest = json.loads(str(data["manifest"]))
    state, _ = fixture_state_dict(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "model_Reso32.pth"
        save_torch_file(path, {"para": manifest["para"], "net": state})
        loaded = torch.load(path)
        assert loaded["para"] == manifest["para"] and list(loaded["net"]) == list(state)
        for k, v in state.items():
            assert np.array_equal(loaded["net"][k].numpy(), v), k

    out = {k: data[k] for k in data}
    f32 = run(HeadNeRFNet, BaseOptions, state, manifest["para"], data, torch.float32)
    f64 = run(HeadNeRFNet, BaseOptions, state, manifest["para"], data, torch.float64)
    for name in OUTPUTS:
        out[f"f64:{name}"] = f64[name]
        print(f"{name}: here f32 vs fixture f32 {np.abs(f32[name] - data[name]).max():.3g}, "
              f"fixture f32 vs f64 {np.abs(data[name] - f64[name]).max():.3g}, "
              f"here f32 vs f64 {np.abs(f32[name] - f64[name]).max():.3g}")
    np.savez_compressed(HERE / "headnerf_seed7.npz", **out)

    hr = reso32hr_manifest(manifest)
    out_hr = {"manifest": np.array(json.dumps(hr)),
              "fixed:neural_render.feat_upsample_list.3.blur_layer.f":
                  data["fixed:neural_render.feat_upsample_list.0.blur_layer.f"]}
    state_hr, _ = fixture_state_dict({**data, **out_hr})
    for dtype, prefix in ((torch.float32, ""), (torch.float64, "f64:")):
        res = run(HeadNeRFNet, BaseOptions, state_hr, hr["para"], data, dtype)
        for name in ("merge_img", "bg_img"):
            out_hr[prefix + name] = res[name][:, HR_PIXELS[:, None], HR_PIXELS[None, :]]
    for name in ("merge_img", "bg_img"):
        print(f"Reso32HR {name}: f32 vs f64 "
              f"{np.abs(out_hr[name] - out_hr['f64:' + name]).max():.3g}")
    np.savez_compressed(HERE / "headnerf_reso32hr_seed7.npz", **out_hr)


if __name__ == "__main__":
    main()
