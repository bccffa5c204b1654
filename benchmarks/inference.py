"""Inference speed: keypoints + generation per driving frame, after warm-up.

    python benchmarks/inference.py                       # FNeVR and FOMM, batch 1 and 8, f32 and bf16
    python benchmarks/inference.py --models fnevr --batch-sizes 1 --dtypes float32 --iters 5

Per frame the step detects the driving keypoints and generates the frame from the source and
its (precomputed) keypoints: what `animate` runs. Weights are random (speed does not depend on
them). Prints a markdown table: compile time, ms/frame and frames/s.

    python benchmarks/inference.py --official fnevr=FNEVR_CHECKOUT fomm=FIRST_ORDER_MODEL_CHECKOUT

also times the official code's same step in the same run (`KPDetector` on the driving frames,
then the generator with the source keypoints computed once; `config/vox-256.yaml`, eval mode,
`torch.no_grad`, float32, PyTorch's random initialisation) on the GPU when PyTorch sees one,
and gives each row's time relative to it. Needs torch, PyYAML (and einops for FNeVR).
"""
import platform
import time

import jax

from configs import fnevr as fnevr_configs
from fnevr_jax import cli
from fnevr_jax.models import build_models, init_variables, module_variables


def bench(model, batch, dtype, iters, variant=None):
    """(compile s, ms/frame, frames/s); `variant` of configs/fnevr.py (default: vox256, or
    fomm for FOMM)."""
    config = fnevr_configs.get_config(variant or ("fomm" if model == "fomm" else "vox256"))
    config.dtype = dtype
    models = build_models(config)
    variables = init_variables(config, jax.random.key(0), with_discriminator=False)
    kp_vars = module_variables(variables, "kp_detector")
    gen_vars = module_variables(variables, "generator")
    size = config.image_size
    keys = jax.random.split(jax.random.key(1), 2)
    source = jax.random.uniform(keys[0], (batch, size, size, 3))
    driving = jax.random.uniform(keys[1], (batch, size, size, 3))
    kp_source = jax.jit(models["kp_detector"].apply)(kp_vars, source)

    def frame(kp_vars, gen_vars, source, kp_source, driving):
        kp_driving = models["kp_detector"].apply(kp_vars, driving)
        return models["generator"].apply(gen_vars, source, kp_source, kp_driving)["prediction"]

    args = (kp_vars, gen_vars, source, kp_source, driving)
    t0 = time.perf_counter()
    compiled = jax.jit(frame).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    compiled(*args).block_until_ready()  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        out = compiled(*args)
    out.block_until_ready()
    per_batch = (time.perf_counter() - t0) / iters
    return compile_s, 1000 * per_batch / batch, batch / per_batch


def official_bench(model, checkout, batch, iters):
    """ms/frame of the official PyTorch step of `model` at `batch` (module docstring)."""
    import warnings

    import torch
    import export as export_benchmark            # benchmarks/export.py (run as a script)
    from timing import torch_device, torch_mean_seconds
    device = torch_device()
    kp_detector, generator = (m.to(device) for m in export_benchmark.official_modules(model,
                                                                                     checkout))
    torch.manual_seed(1)
    source, driving = torch.rand(2, batch, 3, 256, 256, device=device)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # grid_sample's align_corners note
        kp_source = kp_detector(source)
        seconds = torch_mean_seconds(lambda: generator(source, kp_source=kp_source,
                                                       kp_driving=kp_detector(driving)),
                                     iters, device)
    return 1000 * seconds / batch


def main():
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["fnevr", "fomm"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--official", nargs="+", default=[], metavar="MODEL=CHECKOUT",
                        help="also time the official PyTorch code of MODEL from CHECKOUT")
    args = parser.parse_args()
    official = dict(item.split("=", 1) for item in args.official)
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}, {jax.device_count()} devices), "
          f"jax {jax.__version__}, python {platform.python_version()}, 256x256")
    print("| model | batch | dtype | compile s | ms/frame | frames/s | vs official |")
    print("|---|---|---|---|---|---|---|")
    if official:
        import torch
    for model in args.models:
        reference = {batch: official_bench(model, official[model], batch, args.iters)
                     for batch in args.batch_sizes} if model in official else {}
        for dtype in args.dtypes:
            for batch in args.batch_sizes:
                compile_s, ms, fps = bench(model, batch, dtype, args.iters)
                ratio = f"{ms / reference[batch]:.2f}" if reference else "-"
                print(f"| {model} | {batch} | {dtype} | {compile_s:.1f} | {ms:.1f} | {fps:.2f} | "
                      f"{ratio} |", flush=True)
        for batch, ms in reference.items():
            print(f"| {model} official PyTorch {torch.__version__} | {batch} | float32 | - | "
                  f"{ms:.1f} | {1000 / ms:.2f} | 1.00 |", flush=True)


if __name__ == "__main__":
    main()
