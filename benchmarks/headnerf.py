"""HeadNeRF render speed: the project's JAX `headnerf` model against HeadNeRF's PyTorch network.

  python benchmarks/headnerf.py --headnerf /path/to/headnerf-checkout   # both sides
  python benchmarks/headnerf.py                                         # JAX side only

Both sides render the parity fixture's weights (tests/data/headnerf_seed7.npz: Reso32, 256x256;
with headnerf_reso32hr_seed7.npz: Reso32HR, 512x512) on its first code and camera, batch 1, in
float32 on the CPU, timed after a warm-up call (the JAX function compiled): the whole network,
rays to image, plus the background image, as HeadNeRF's forward computes both. The PyTorch
side needs torch, kornia and a checkout of CrisHY1995/headnerf (`--headnerf`); without them it
is skipped with a message. Run both from one interpreter that has jax and torch.
"""
import json
import pathlib
import sys

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fnevr_jax import cli  # noqa: E402
from fnevr_jax.api import HeadModel  # noqa: E402
from fnevr_jax.convert import from_headnerf_state_dict, headnerf_config  # noqa: E402
from fnevr_jax.parity import fixture_state_dict  # noqa: E402
from timing import median_seconds  # noqa: E402

DATA = ROOT / "tests" / "data"
INPUTS = ("iden_code", "expr_code", "text_code", "illu_code", "c2w_rmats", "c2w_tvecs",
          "inv_inmats")


def models():
    """{output size: (para, state dict)} for Reso32 and Reso32HR from the fixtures' recipes."""
    data = dict(np.load(DATA / "headnerf_seed7.npz"))
    hr = dict(np.load(DATA / "headnerf_reso32hr_seed7.npz"))
    out = {}
    for extra in ({}, hr):
        merged = {**data, **extra}
        para = json.loads(str(merged["manifest"]))["para"]
        out[para["pred_img_size"]] = (para, fixture_state_dict(merged)[0])
    return data, out


def jax_seconds(para, state, inputs, repeats):
    config = headnerf_config(para)
    head = HeadModel(from_headnerf_state_dict(state, config)["params"], config)
    return median_seconds({"jax": lambda: jax.block_until_ready(head.render(**inputs))}, repeats)["jax"]


def torch_seconds(headnerf_dir, para, state, inputs, repeats):
    """HeadNeRF's `HeadNeRFNet` in eval/test mode, as its fitting code calls it."""
    import torch
    sys.path.insert(0, str(headnerf_dir))
    from HeadNeRFOptions import BaseOptions
    from NetWorks.HeadNeRFNet import HeadNeRFNet
    net = HeadNeRFNet(BaseOptions(para), include_vd=False, hier_sampling=False)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    net.eval()
    x = {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}
    shape = torch.cat([x["iden_code"], x["expr_code"]], 1)
    appea = torch.cat([x["text_code"], x["illu_code"]], 1)

    def run():
        with torch.no_grad():
            return net("test", x["batch_xy"], x["batch_uv"], None, shape, appea, x["c2w_rmats"],
                       x["c2w_tvecs"], x["inv_inmats"])
    return median_seconds({"torch": run}, repeats)["torch"]


def main():
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headnerf", help="a checkout of CrisHY1995/headnerf (PyTorch side)")
    parser.add_argument("--repeats", type=int, default=5, help="timed renders per size")
    args = parser.parse_args()
    data, nets = models()
    inputs = {k: data[k][:1] for k in INPUTS}
    torch_note = None
    try:
        import torch
        import kornia  # noqa: F401
    except ImportError as e:
        torch_note = f"PyTorch side skipped: {e.name} is not installed (pip install torch kornia)"
    if torch_note is None and not args.headnerf:
        torch_note = "PyTorch side skipped: pass --headnerf DIR, a checkout of HeadNeRF"
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}"
          + ("" if torch_note else f", torch {torch.__version__} ({torch.get_num_threads()} "
             "threads)"))
    rows = []
    for size, (para, state) in sorted(nets.items()):
        jax_s = jax_seconds(para, state, inputs, args.repeats)
        torch_s = None if torch_note else torch_seconds(
            args.headnerf, para, state, {**inputs, "batch_xy": data["batch_xy"][:1],
                                         "batch_uv": data["batch_uv"][:1]}, args.repeats)
        rows.append((size, jax_s, torch_s))
    print("| output | JAX s/frame | PyTorch s/frame | PyTorch / JAX |\n|---|---|---|---|")
    for size, jax_s, torch_s in rows:
        other = "skipped" if torch_s is None else f"{torch_s:.3f}"
        ratio = "-" if torch_s is None else f"{torch_s / jax_s:.2f}"
        print(f"| {size}x{size} | {jax_s:.3f} | {other} | {ratio} |")
    if torch_note:
        print(torch_note)


if __name__ == "__main__":
    main()
