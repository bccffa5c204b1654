"""Per-frame latency of the exported `frame` function: XLA, deserialized StableHLO, onnxruntime.

    python benchmarks/export.py                         # FNeVR 256x256, batch 1 and 8
    python benchmarks/export.py --models fnevr fomm --batch-sizes 1 8 --iters 3

One `frame` (keypoints of source and driving + generation, `fnevr_jax.export`) per model with
random weights (speed does not depend on them), exported once with a dynamic batch and run by
each engine on the same inputs: XLA (the jitted function), the StableHLO artifact through
`jax.export.deserialize(...).call`, and the ONNX artifact through onnxruntime (its CPU
provider; CUDA where onnxruntime has it and a GPU is present). Prints a markdown table:
ms/frame (median of `--iters` timed calls after one warm-up), frames/s, and each engine's max
abs difference from XLA.
"""
import platform
import time

import jax
import numpy as np

from configs import fnevr as fnevr_configs
from fnevr_jax import cli, export
from fnevr_jax.models import init_variables


def timed(fn, iters):
    fn()                                         # warm-up (compilation, session set-up)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench(model, batch_sizes, iters):
    import onnxruntime as ort
    config = fnevr_configs.get_config("fomm" if model == "fomm" else "vox256")
    variables = init_variables(config, jax.random.key(0), with_discriminator=False)
    frame = export.functions(variables, config)["frame"]
    shlo = jax.export.deserialize(export.export(variables, config, "frame", "stablehlo"))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                 if p in ort.get_available_providers()]
    session = ort.InferenceSession(export.export(variables, config, "frame", "onnx"), options,
                                   providers=providers)
    jitted = jax.jit(frame.fn)
    rows = []
    for batch in batch_sizes:
        rng = np.random.default_rng(batch)
        size = config.image_size
        source, driving = rng.random((2, batch, size, size, 3), np.float32)
        engines = {
            "XLA (jit)": lambda: np.asarray(jitted(source, driving)["prediction"]),
            "StableHLO (deserialized)": lambda: np.asarray(
                shlo.call(source=source, driving=driving)["prediction"]),
            f"onnxruntime ({session.get_providers()[0]})": lambda: session.run(
                ["prediction"], {"source": source, "driving": driving})[0],
        }
        reference = engines["XLA (jit)"]()
        for name, fn in engines.items():
            seconds = timed(fn, iters)
            diff = float(np.abs(fn() - reference).max())
            rows.append((model, batch, name, 1e3 * seconds / batch, batch / seconds, diff))
    return rows


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--models", nargs="+", default=["fnevr"], choices=("fnevr", "fomm"))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    p.add_argument("--iters", type=int, default=3)
    args = cli.parse(p, argv)
    print(f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}), "
          f"jax {jax.__version__}")
    print("| model | batch | engine | ms/frame | frames/s | max abs diff vs XLA |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        for row in bench(model, args.batch_sizes, args.iters):
            print("| {} | {} | {} | {:.1f} | {:.2f} | {:.1e} |".format(*row), flush=True)


if __name__ == "__main__":
    main()
