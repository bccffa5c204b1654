"""Inference speed: keypoints + generation per driving frame, after warm-up.

    python benchmarks/inference.py                       # FNeVR and FOMM, batch 1 and 8, f32 and bf16
    python benchmarks/inference.py --models fnevr --batch-sizes 1 --dtypes float32 --iters 5

Per frame the step detects the driving keypoints and generates the frame from the source and
its (precomputed) keypoints: what `animate` runs. Weights are random (speed does not depend on
them). Prints a markdown table: compile time, ms/frame and frames/s.
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


def main():
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["fnevr", "fomm"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}, {jax.device_count()} devices), "
          f"jax {jax.__version__}, python {platform.python_version()}, 256x256")
    print("| model | batch | dtype | compile s | ms/frame | frames/s |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        for dtype in args.dtypes:
            for batch in args.batch_sizes:
                compile_s, ms, fps = bench(model, batch, dtype, args.iters)
                print(f"| {model} | {batch} | {dtype} | {compile_s:.1f} | {ms:.1f} | {fps:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
