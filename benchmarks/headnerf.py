"""HeadNeRF render and fit speed: the project's JAX `headnerf` model against HeadNeRF's PyTorch.

  python benchmarks/headnerf.py --headnerf /path/to/headnerf-checkout   # both sides
  python benchmarks/headnerf.py                                         # JAX side only

Both sides render the parity fixture's weights (tests/data/headnerf_seed7.npz: Reso32, 256x256;
with headnerf_reso32hr_seed7.npz: Reso32HR, 512x512) on its first code and camera, batch 1, in
float32 on the CPU, timed after a warm-up call (the JAX function compiled): the whole network,
rays to image, plus the background image, as HeadNeRF's forward computes both. The PyTorch
side needs torch, kornia and a checkout of CrisHY1995/headnerf (`--headnerf`); without them it
is skipped with a message. Run both from one interpreter that has jax and torch.

The fit: HeadNeRF's fitting recipe (`FittingSingleImage.perform_fitting`: offsets of the
identity, expression and appearance codes and a camera delta, Adam at its per-group rates with
lr 0.1 ** (it / iters), and `HeadNeRFLossUtils`: head MSE, non-head and background MSE to
white, VGG16 L1 at 224, the offset regularisers) on the Reso32 model, fitting its own render of
the fixture's first code and camera from codes moved by 0.3 N(0, 1). JAX runs
`nerf_head.fit.make_fit_fn` with `configs/nerf_head.py:headnerf` (one compiled scan of
`--fit-iters` iterations, compilation not timed); PyTorch runs HeadNeRF's network and its own
loss class in the loop of `perform_fitting`, after one untimed iteration. Both report seconds
per iteration (x 300 for HeadNeRF's 300-iteration fit) and the data loss before the first and
after the last update, which should agree (same weights, same recipe). HeadNeRF's loss builds
torchvision's VGG16; here torchvision's layer list is built in torch with the project's VGG16
weights (the same numbers as the JAX side), so torchvision is not needed.
"""
import json
import pathlib
import sys
import time
import types

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fnevr_jax import cli  # noqa: E402
from fnevr_jax.api import HeadModel  # noqa: E402
from fnevr_jax.convert import from_headnerf_state_dict, headnerf_config  # noqa: E402
from fnevr_jax.nerf_head import fit, losses, network  # noqa: E402
from fnevr_jax.parity import fixture_state_dict, headnerf_fit_problem  # noqa: E402
from fnevr_jax.pretrained import vgg  # noqa: E402
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


def jax_fit(para, state, problem, iters, num_samples=64):
    """{seconds (per iteration), history (data loss before each update), last (after the last),
    offsets} of the compiled HeadNeRF-mode fit (`configs/nerf_head.py:headnerf`)."""
    config = headnerf_config(para)
    config.fit.num_iters = iters
    config.model.num_samples = num_samples
    model = network.from_config(config.model)
    params = from_headnerf_state_dict(state, config)["params"]
    feature_apply, feature_params = losses.vgg16_features()
    fit_fn = fit.make_fit_fn(model, config.loss, config.fit, feature_apply)
    intrinsics, cam = fit.headnerf_camera(model, problem["c2w_rmats"], problem["c2w_tvecs"],
                                          problem["inv_inmats"])
    appearance = np.concatenate([problem["text_code"], problem["illu_code"]], -1)
    args = (params, problem["target"], problem["mask"], problem["iden_code"],
            problem["expr_code"], intrinsics, cam, feature_params, appearance)
    compiled = fit_fn.lower(*args).compile()
    start = time.perf_counter()
    offsets, history = jax.block_until_ready(compiled(*args))
    seconds = (time.perf_counter() - start) / iters
    z, b, cam, a = fit.apply_offsets(offsets, *args[3:5], cam, appearance)
    render = network.make_render_fn(model, render_background=True)
    last = losses.reconstruction_loss(render(params, z, b, intrinsics, cam, appearance=a),
                                      problem["target"], problem["mask"], config.loss,
                                      lambda x: feature_apply(feature_params, x))[0]
    return {"seconds": seconds, "history": np.asarray(history), "last": float(last),
            "offsets": {k: np.asarray(v) for k, v in offsets.items()}}


def _torch_vgg16_module(torch):
    """A stand-in for `torchvision.models` whose vgg16() has torchvision's VGG16 `features`
    layer list (13 convs, ReLUs, 5 max-pools) holding the project's VGG16 weights."""
    nn = torch.nn
    convs = vgg.load_vgg_params("vgg16")["params"]

    def vgg16(pretrained=True):
        layers, i, channels = [], 0, 3
        for width, count in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
            for _ in range(count):
                conv = nn.Conv2d(channels, width, 3, padding=1)
                if f"Conv_{i}" in convs:
                    conv.weight.data = torch.from_numpy(
                        convs[f"Conv_{i}"]["kernel"].transpose(3, 2, 0, 1).copy())
                    conv.bias.data = torch.from_numpy(convs[f"Conv_{i}"]["bias"].copy())
                layers += [conv, nn.ReLU(inplace=True)]
                channels, i = width, i + 1
            layers.append(nn.MaxPool2d(2, 2))
        module = nn.Module()
        module.features = nn.Sequential(*layers)
        return module
    return types.SimpleNamespace(vgg16=vgg16)


def torch_fit(headnerf_dir, para, state, problem, iters, num_samples=64):
    """As `jax_fit`, for HeadNeRF's fitting loop (`perform_fitting`, its network and loss
    class) on the CPU; `seconds` excludes the first iteration."""
    import torch
    sys.path.insert(0, str(headnerf_dir))
    sys.modules.setdefault("torchvision", types.SimpleNamespace(models=_torch_vgg16_module(torch)))
    try:
        import cv2  # noqa: F401  (imported, unused, by HeadNeRFLossUtils)
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")
    from HeadNeRFOptions import BaseOptions
    from NetWorks.HeadNeRFNet import HeadNeRFNet
    from Utils.HeadNeRFLossUtils import HeadNeRFLossUtils
    opt = BaseOptions(para)
    opt.num_sample_coarse = num_samples
    net = HeadNeRFNet(opt, include_vd=False, hier_sampling=False)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    net.eval()
    loss_utils = HeadNeRFLossUtils(device=torch.device("cpu"))
    x = {k: torch.from_numpy(np.asarray(v)) for k, v in problem.items()}
    gt = x["target"].permute(0, 3, 1, 2)
    mask = x["mask"][:, None]
    size = para["featmap_size"]
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), 0)
    xy = torch.from_numpy(grid.reshape(1, 2, -1).astype(np.float32))
    offsets = {"iden": torch.zeros(1, 100), "expr": torch.zeros(1, 79),
               "appea": torch.zeros(1, 127), "eulur": torch.zeros(1, 3),
               "tvec": torch.zeros(1, 3, 1)}
    for v in offsets.values():
        v.requires_grad = True
    rates = {"iden": 0.015, "expr": 0.015, "appea": 0.01, "eulur": 0.001, "tvec": 0.001}
    optimizer = torch.optim.Adam([{"params": [offsets[k]], "lr": lr} for k, lr in rates.items()],
                                 betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 0.1 ** (it / iters))

    def losses_now():
        # FittingSingleImage.build_code_and_cam: codes plus offsets, camera R' = dR R,
        # T' = dR T + dt (dR = Rz Ry Rx of the Euler delta, as its `eulurangle2Rmat`).
        shape = torch.cat([x["iden_code"] + offsets["iden"], x["expr_code"] + offsets["expr"]], -1)
        appea = torch.cat([x["text_code"], x["illu_code"]], -1) + offsets["appea"]
        c, s = torch.cos(offsets["eulur"][0]), torch.sin(offsets["eulur"][0])
        one, zero = torch.ones(()), torch.zeros(())
        rx = torch.stack([one, zero, zero, zero, c[0], -s[0], zero, s[0], c[0]]).view(3, 3)
        ry = torch.stack([c[1], zero, s[1], zero, one, zero, -s[1], zero, c[1]]).view(3, 3)
        rz = torch.stack([c[2], -s[2], zero, s[2], c[2], zero, zero, zero, one]).view(3, 3)
        delta = (rz @ ry @ rx)[None]
        pred = net("test", xy, None, None, shape, appea, delta.bmm(x["c2w_rmats"]),
                   delta.bmm(x["c2w_tvecs"]) + offsets["tvec"], x["inv_inmats"])
        terms = loss_utils.calc_total_loss(
            delta_cam_info={"delta_eulur": offsets["eulur"], "delta_tvec": offsets["tvec"]},
            opt_code_dict={"bg": None, "iden": offsets["iden"], "expr": offsets["expr"],
                           "appea": offsets["appea"]},
            pred_dict=pred, gt_rgb=gt, mask_tensor=mask)
        data = sum(terms[k].item() for k in ("bg_loss", "head_loss", "nonhaed_loss", "vgg"))
        return terms["total_loss"], data

    def step():
        total, data = losses_now()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        scheduler.step()
        return data

    history = [step()]
    start = time.perf_counter()
    for _ in range(iters - 1):
        history.append(step())
    seconds = (time.perf_counter() - start) / (iters - 1)
    with torch.no_grad():
        last = losses_now()[1]
    names = {"iden": "id", "expr": "expr", "appea": "appearance", "eulur": "euler",
             "tvec": "translation"}
    return {"seconds": seconds, "history": np.asarray(history), "last": last,
            "offsets": {names[k]: v.detach().numpy().reshape(1, -1) for k, v in offsets.items()}}


def main():
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headnerf", help="a checkout of CrisHY1995/headnerf (PyTorch side)")
    parser.add_argument("--repeats", type=int, default=5, help="timed renders per size")
    parser.add_argument("--fit-iters", type=int, default=10,
                        help="fit iterations timed per side (0: no fit; 300 is HeadNeRF's fit)")
    args = parser.parse_args()
    if args.fit_iters == 1:
        parser.error("--fit-iters must be 0 or at least 2 (PyTorch's first iteration is untimed)")
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
    if args.fit_iters:
        para, state = nets[256]
        problem = headnerf_fit_problem(data)
        jax_row = jax_fit(para, state, problem, args.fit_iters)
        torch_row = None if torch_note else torch_fit(args.headnerf, para, state, problem,
                                                     args.fit_iters)
        print(f"\n{args.fit_iters}-iteration fit, Reso32 256x256 (HeadNeRF's recipe):\n")
        print("| side | s/iteration | 300 iterations, s | data loss first | data loss last |\n"
              "|---|---|---|---|---|")
        for name, row in (("JAX", jax_row), ("PyTorch", torch_row)):
            if row is not None:
                print(f"| {name} | {row['seconds']:.3f} | {300 * row['seconds']:.0f} | "
                      f"{row['history'][0]:.5f} | {row['last']:.5f} |")
        if torch_row is not None:
            print(f"\nPyTorch / JAX per fit iteration: "
                  f"{torch_row['seconds'] / jax_row['seconds']:.2f}")
    if torch_note:
        print(torch_note)


if __name__ == "__main__":
    main()
