"""Training speed: one full FNeVR step (generator + keypoint detector + pose editor, then the
discriminator) on a random batch, after warm-up.

    python benchmarks/train_step.py                        # vox256, batch 4 (CPU)
    python benchmarks/train_step.py --batch-size 20        # the paper's batch, on a GPU

Needs a dataset only for its field list: pass --data (default: a 4-clip synthetic set made in a
temporary folder at the configured resolution). Prints compile time, step time, images/s and
the peak device memory (the host process's peak RSS on CPU).
"""
import platform
import resource
import tempfile
import time

import jax
import jax.numpy as jnp

from configs import fnevr as fnevr_configs
from fnevr_jax import cli
from data_pipelines import synthetic
from fnevr_jax.training.fnevr_task import FNeVRTask


def main():
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="vox256")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    config = fnevr_configs.get_config(args.variant)
    config.train.batch_size = args.batch_size
    config.data.worker_count = 0
    data = args.data or tempfile.mkdtemp(prefix="bench_data_")
    if args.data is None:
        synthetic.generate(data, train_clips=4, test_clips=1, identities=2, test_identities=1,
                           frames=4, size=config.image_size, workers=1)
    config.data.dir = data
    task = FNeVRTask(config)
    state = jax.jit(task.init_state)(jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, next(iter(task.train_data(0))))
    step = jax.jit(task.train_step, donate_argnums=(0,))
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, jax.random.key(1), task.frozen).compile()
    compile_s = time.perf_counter() - t0
    state, metrics = compiled(state, batch, jax.random.key(1), task.frozen)
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for i in range(args.iters):
        state, metrics = compiled(state, batch, jax.random.key(i), task.frozen)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - t0) / args.iters
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    memory = (f"{peak / 2**30:.1f} GiB (device)" if peak else
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB (host RSS)")
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"python {platform.python_version()}")
    print("| variant | batch | compile s | s/step | images/s | peak memory |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.variant} | {args.batch_size} | {compile_s:.1f} | {step_s:.2f} | "
          f"{args.batch_size / step_s:.2f} | {memory} |")


if __name__ == "__main__":
    main()
