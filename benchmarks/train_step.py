"""Training speed: one full FNeVR step (generator + keypoint detector + pose editor, then the
discriminator) on a random batch, after warm-up.

    python benchmarks/train_step.py                        # vox256, batch 4 (CPU)
    python benchmarks/train_step.py --batch-size 20        # the paper's batch, on a GPU

Needs a dataset only for its field list: pass --data (default: a 4-clip synthetic set made in a
temporary folder at the configured resolution). Prints compile time, step time, images/s and
the peak device memory (the host process's peak RSS on CPU).
"""
import math
import platform
import resource
import tempfile
import time

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import fnevr as fnevr_configs
from fnevr_jax import cli, sharding
from data_pipelines import synthetic
from fnevr_jax.training.fnevr_task import FNeVRTask


def step_time(variant, batch_size, iters, dtype="float32", devices=None, data=None):
    """(compile s, s/step, losses of the last step) of FNeVRTask.train_step at global
    `batch_size`, on a mesh over `devices` (default: the first device) as the trainer runs it:
    batch sharded, state replicated and donated."""
    config = fnevr_configs.get_config(variant)
    config.train.batch_size = batch_size
    config.dtype = dtype
    config.data.worker_count = 0
    if data is None:
        data = tempfile.mkdtemp(prefix="bench_data_")
        synthetic.generate(data, train_clips=4, test_clips=1, identities=2, test_identities=1,
                           frames=4, size=config.image_size, workers=1)
    config.data.dir = data
    task = FNeVRTask(config)
    mesh = sharding.make_mesh(devices or jax.devices()[:1])
    rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    state = jax.jit(task.init_state, out_shardings=rep)(jax.random.key(0))
    batch = jax.device_put(next(iter(task.train_data(0))), split)
    frozen, rng = jax.device_put((task.frozen, jax.random.key(1)), rep)
    step = jax.jit(task.train_step, in_shardings=(rep, split, rep, rep),
                   out_shardings=(rep, rep), donate_argnums=(0,))
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, rng, frozen).compile()
    compile_s = time.perf_counter() - t0
    state, metrics = compiled(state, batch, rng, frozen)
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for _ in range(iters):
        state, metrics = compiled(state, batch, rng, frozen)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - t0) / iters
    return compile_s, seconds, {k: float(v) for k, v in metrics.items() if k.startswith("loss/")}


def peak_memory():
    """The first device's peak memory, or the host process's peak RSS on CPU (a string)."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return (f"{peak / 2**30:.1f} GiB (device)" if peak else
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB (host RSS)")


def main():
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="vox256")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    compile_s, step_s, losses = step_time(args.variant, args.batch_size, args.iters, args.dtype,
                                          data=args.data)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"python {platform.python_version()}")
    print("| variant | dtype | batch | compile s | s/step | images/s | peak memory |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.variant} | {args.dtype} | {args.batch_size} | {compile_s:.1f} | {step_s:.2f} | "
          f"{args.batch_size / step_s:.2f} | {peak_memory()} |")
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    print("losses of the last step:", ", ".join(f"{k[5:]} {v:.4g}" for k, v in losses.items()),
          f"({'non-finite: ' + ', '.join(bad) if bad else 'all finite'})")


if __name__ == "__main__":
    main()
