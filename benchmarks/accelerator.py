"""Accelerator figures in one command: inference, the training step and the NeRF head model on
whatever device JAX sees, as one Markdown table.

    python -m benchmarks.accelerator                   # the paper's sizes (a GPU or TPU)
    python -m benchmarks.accelerator --small           # the same rows at quick sizes (a CPU check)

Rows (each figure the mean of `--iters` calls after compilation and a warm-up call):
- inference: FNeVR and FOMM (vox256, 256x256) per driving frame, keypoints + generation
  (`benchmarks/inference.py`), batch 1, 8 and 64, float32 and bfloat16 compute;
- training step: the full FNeVR step (`benchmarks/train_step.py`: every loss of FNeVR eq. 13,
  then the discriminator) at batch 20 per device, float32 and bfloat16 network compute, on one
  device and on all the host's devices (batch sharded, state replicated), with the scaling
  efficiency: (images/s on N devices) / (N x images/s on one);
- the NeRF head model (`benchmarks/nerf_head.py`): one 512x512 render and 300 fitting
  iterations (`paper512`).
`--small` runs the same rows with FNeVR's `quick` variant (64x64), batches 1 and 2, training
batch 2 per device, the NeRF head's `quick` variant and 2 fitting iterations (scaled to 300).
bfloat16 is the networks' compute dtype (`config.dtype`); the VGG loss network and the
discriminator stay float32 for now (issue #15, item 1).
"""
import argparse
import platform

import jax

from benchmarks import inference, nerf_head, train_step
from configs import nerf_head as nerf_head_config
from fnevr_jax import cli
from fnevr_jax.nerf_head import losses

DTYPES = ("float32", "bfloat16")


def rows(small, iters):
    """(row name, figure) pairs, computed one after the other."""
    variant = "quick" if small else None
    models = ("fnevr",) if small else ("fnevr", "fomm")
    for model in models:
        for dtype in DTYPES:
            for batch in (1, 2) if small else (1, 8, 64):
                _, ms, fps = inference.bench(model, batch, dtype, iters, variant)
                yield (f"inference {model}, batch {batch}, {dtype}",
                       f"{ms:.2f} ms/frame ({fps:.1f} frames/s)")
    per_device = 2 if small else 20
    n = jax.device_count()
    for dtype in DTYPES:
        throughput = {}
        for devices in sorted({1, n}):
            batch = per_device * devices
            _, seconds, _ = train_step.step_time("quick" if small else "vox256", batch, iters,
                                                 dtype, jax.devices()[:devices])
            throughput[devices] = batch / seconds
            yield (f"train step, {devices} device{'s' * (devices > 1)}, batch {batch}, {dtype}",
                   f"{seconds * 1e3:.0f} ms/step ({throughput[devices]:.1f} images/s)")
        if n > 1:
            yield (f"train step scaling, 1 -> {n} devices, {dtype}",
                   f"{throughput[n] / (n * throughput[1]):.2f}")
    config = nerf_head_config.get_config("quick" if small else "paper512")
    size = config.model.output_size
    yield (f"NeRF head render {size}x{size}",
           f"{nerf_head.render_fps(config, size, iters):.2f} frames/s")
    fit_iters = 2 if small else 300
    seconds = nerf_head.fit_seconds_per_300(config, fit_iters, losses.vgg16_features())
    yield f"NeRF head fit, 300 iterations at {size}x{size} ({fit_iters} run)", f"{seconds:.1f} s"


def main():
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="quick sizes: a check on a CPU")
    parser.add_argument("--iters", type=int, default=5, help="timed calls per figure")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"{device.device_kind} ({jax.default_backend()}, {jax.device_count()} devices), "
          f"jax {jax.__version__}, python {platform.python_version()}"
          f"{', quick sizes (--small)' if args.small else ''}\n", flush=True)
    print("| measure | result |\n|---|---|", flush=True)
    for name, value in rows(args.small, args.iters):
        print(f"| {name} | {value} |", flush=True)


if __name__ == "__main__":
    main()
