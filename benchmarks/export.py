"""Per-frame latency of the exported `frame` function: XLA, deserialized StableHLO, onnxruntime,
and the official PyTorch forward.

    python benchmarks/export.py                         # FNeVR 256x256, batch 1 and 8
    python benchmarks/export.py --models fnevr fomm --batch-sizes 1 8 --iters 3 \
        --official fnevr=FNEVR_CHECKOUT fomm=FIRST_ORDER_MODEL_CHECKOUT

One `frame` (keypoints of source and driving + generation, `fnevr_jax.export`) per model with
the parity fixture's weights (`tests/data/<model>_seed7.npz`), exported once with a dynamic
batch and run by each engine on the same inputs: XLA (the jitted function), the StableHLO
artifact through `jax.export.deserialize(...).call`, the ONNX artifact through onnxruntime
(its CPU provider; CUDA where onnxruntime has it and a GPU is present) and, with `--official`,
the official code's `KPDetector` and generator (`config/vox-256.yaml`, eval mode,
`torch.no_grad`) loaded with the same state dict: `kp_detector` on source and driving, then
the generator, the parity fixtures' computation. The PyTorch side needs torch, PyYAML (and
einops for FNeVR) in the same interpreter. Prints a markdown table: ms/frame (median of
`--iters` timed calls after one warm-up), frames/s, each engine's max abs difference from XLA,
and its time relative to the official PyTorch forward.
"""
import functools
import pathlib
import platform
import sys
import time
import warnings

import jax
import numpy as np

from fnevr_jax import cli, export, loader
from fnevr_jax.parity import fixture_state_dict
from timing import median_seconds

DATA = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data"


def official_modules(model, checkout, state_dict=None):
    """The official `KPDetector` and generator of `model` (`config/vox-256.yaml`, eval mode),
    loaded with `state_dict` when given (else PyTorch's random initialisation)."""
    import torch
    import yaml
    checkout = pathlib.Path(checkout)
    for name in [m for m in sys.modules if m.split(".")[0] in ("modules", "sync_batchnorm")]:
        del sys.modules[name]                    # FNeVR and first-order-model share these names
    sys.path.insert(0, str(checkout))
    from modules import generator as generators
    from modules.keypoint_detector import KPDetector
    sys.path.remove(str(checkout))
    params = yaml.safe_load((checkout / "config" / "vox-256.yaml").read_text())["model_params"]
    generator_class = getattr(generators, "OcclusionAwareGenerator_SPADE" if model == "fnevr"
                              else "OcclusionAwareGenerator")
    kp_detector = KPDetector(**params["kp_detector_params"], **params["common_params"])
    generator = generator_class(**params["generator_params"], **params["common_params"])
    for prefix, module in (("kp_detector.", kp_detector), ("generator.", generator)):
        if state_dict is not None:
            module.load_state_dict({k[len(prefix):]: torch.from_numpy(np.asarray(v))
                                    for k, v in state_dict.items() if k.startswith(prefix)})
        module.eval()
    return kp_detector, generator


def official_frame(model, checkout, state_dict):
    """The official `frame` in PyTorch: NHWC float32 numpy in and out."""
    import torch
    kp_detector, generator = official_modules(model, checkout, state_dict)

    def frame(source, driving):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)      # grid_sample's align_corners note
            s, d = (torch.from_numpy(x).permute(0, 3, 1, 2) for x in (source, driving))
            out = generator(s, kp_source=kp_detector(s), kp_driving=kp_detector(d))
            return out["prediction"].permute(0, 2, 3, 1).numpy()

    return frame


def bench(model, batch_sizes, iters, checkout=None):
    import onnxruntime as ort
    fixture = DATA / f"{model}_seed7.npz"
    variables, config, *_ = loader.load(fixture, model)
    frame = export.functions(variables, config)["frame"]
    t0 = time.perf_counter()
    shlo = jax.export.deserialize(export.export(variables, config, "frame", "stablehlo"))
    t1 = time.perf_counter()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                 if p in ort.get_available_providers()]
    session = ort.InferenceSession(export.export(variables, config, "frame", "onnx"), options,
                                   providers=providers)
    print(f"{model}: StableHLO export {t1 - t0:.0f} s, ONNX export + session "
          f"{time.perf_counter() - t1:.0f} s", file=sys.stderr, flush=True)
    jitted = jax.jit(frame.fn)
    engines = {
        "XLA (jit)": lambda s, d: np.asarray(jitted(s, d)["prediction"]),
        "StableHLO (deserialized)": lambda s, d: np.asarray(
            shlo.call(source=s, driving=d)["prediction"]),
        f"onnxruntime ({session.get_providers()[0]})": lambda s, d: session.run(
            ["prediction"], {"source": s, "driving": d})[0],
    }
    if checkout:
        import torch
        engines[f"official PyTorch {torch.__version__}"] = official_frame(
            model, checkout, fixture_state_dict(fixture)[0])
    rows = []
    for batch in batch_sizes:
        rng = np.random.default_rng(batch)
        size = config.image_size
        source, driving = rng.random((2, batch, size, size, 3), np.float32)
        reference = engines["XLA (jit)"](source, driving)
        seconds = median_seconds({name: functools.partial(fn, source, driving)
                                  for name, fn in engines.items()}, iters)
        official = [v for k, v in seconds.items() if k.startswith("official")]
        for name, fn in engines.items():
            diff = float(np.abs(fn(source, driving) - reference).max())
            rows.append((model, batch, name, 1e3 * seconds[name] / batch, batch / seconds[name],
                         diff, f"{seconds[name] / official[0]:.2f}" if official else "-"))
    return rows


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--models", nargs="+", default=["fnevr"], choices=("fnevr", "fomm"))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--official", nargs="+", default=[], metavar="MODEL=CHECKOUT",
                   help="time the official PyTorch code too: fnevr=<zengbohan0217/FNeVR "
                        "checkout>, fomm=<AliaksandrSiarohin/first-order-model checkout>")
    args = cli.parse(p, argv)
    checkouts = dict(item.split("=", 1) for item in args.official)
    print(f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}), "
          f"jax {jax.__version__}")
    print("| model | batch | engine | ms/frame | frames/s | max abs diff vs XLA | time / official |")
    print("|---|---|---|---|---|---|---|")
    for model in args.models:
        for row in bench(model, args.batch_sizes, args.iters, checkouts.get(model)):
            print("| {} | {} | {} | {:.1f} | {:.2f} | {:.1e} | {} |".format(*row), flush=True)


if __name__ == "__main__":
    main()
