"""Cost model measured by XLA: compiled FLOPs, bytes and memory, and roofline times (estimates).

The FLOPs, bytes accessed and memory XLA compiles FNeVR's programs to, and the time they imply
on an H100 and a TPU v5e at published peaks (an estimate: nothing runs there).

    python benchmarks/cost.py                                   # inference 1/8/64, train step 20
    python benchmarks/cost.py --inference-batches 1 8 --train-batches 4

Compiles, never runs, the FNeVR (vox256, 256x256) programs on the default backend from
abstract inputs (`jax.ShapeDtypeStruct`, weights included), so no buffer of the program is
allocated: `inference` is the per-frame step of `benchmarks/inference.py` (the driving
keypoints, then the generator from the source and its keypoints); `train` is the full
`FNeVRTask.train_step` of `benchmarks/train_step.py` (generator, keypoint detector and pose
editor on every loss of FNeVR eq. 13, then the discriminator) at the given batch per device.

From `compiled.cost_analysis()`: `flops` and `bytes accessed`; from
`compiled.memory_analysis()`: the temporaries and the peak, arguments + outputs - aliased
(donated) + temporaries as XLA's buffer assignment plans them. Time is a roofline,
max(flops / peak FLOP/s, bytes / HBM bandwidth), at the published dense peaks below, with the
float32 program's counts:
- H100 TF32: the rate of float32 matmuls and convolutions at JAX's DEFAULT precision
  (`jax.lax.Precision`: TF32 on an H100);
- H100 BF16: the same FLOPs at the bfloat16 peak, bytes unchanged (a bfloat16 program moves
  fewer bytes: the memory term is an upper bound there);
- TPU v5e: the bfloat16 peak, which float32 at DEFAULT precision runs at too (one bfloat16
  pass), bytes unchanged.
Caveats: the counts are the backend's (XLA:CPU here, whose fusion decisions and byte counts
differ from XLA:GPU's and XLA:TPU's); every FLOP is priced at the matrix-unit peak, though
elementwise work runs on slower units; no overlap, launch or communication cost.
"""
import platform
import tempfile

import jax
import jax.numpy as jnp

from configs import fnevr as fnevr_configs
from data_pipelines import synthetic
from fnevr_jax import cli
from fnevr_jax.models import build_models, init_variables, module_variables

# Published dense peaks (no structured sparsity), FLOP/s and HBM bytes/s.
# H100 SXM5: NVIDIA H100 Tensor Core GPU datasheet, "H100 SXM" column
#   (https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet):
#   TF32 Tensor Core 989 and BF16 Tensor Core 1,979 TFLOPS "with sparsity" (dense: half),
#   FP32 67 TFLOPS, GPU memory bandwidth 3.35 TB/s; the dense 494.7 (TF32) and 989.4 (BF16)
#   TFLOPS as NVIDIA's H100 architecture whitepaper lists them for the H100 SXM5
#   (https://resources.nvidia.com/en-us-tensor-core/gtc22-whitepaper-hopper).
# TPU v5e: Google Cloud TPU documentation, "TPU v5e" (https://cloud.google.com/tpu/docs/v5e):
#   peak compute per chip (bf16) 197 TFLOPs, HBM2 16 GB at 819 GBps. No float32 peak is
#   published: float32 matmuls and convolutions at DEFAULT precision run as one bfloat16
#   pass (`jax.lax.Precision`), hence 197 for both.
DEVICES = {
    "H100 SXM": {"float32": 494.7e12, "bfloat16": 989.4e12, "bandwidth": 3.35e12},
    "TPU v5e": {"float32": 197e12, "bfloat16": 197e12, "bandwidth": 819e9},
}


def roofline_ms(flops, nbytes, device, dtype):
    """max(flops / peak, bytes / bandwidth) in milliseconds."""
    peak = DEVICES[device]
    return 1e3 * max(flops / peak[dtype], nbytes / peak["bandwidth"])


def abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), tree)


def costs(compiled):
    """{gflop, gbytes, temp_gib, peak_gib} of a compiled program, from XLA.

    peak = arguments + outputs - aliased (donated) + temporaries (XLA:CPU's
    `peak_memory_in_bytes` is arguments + outputs alone, the temporaries left out).
    """
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    m = compiled.memory_analysis()
    peak = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes \
        + m.temp_size_in_bytes
    return {"gflop": cost["flops"] / 1e9, "gbytes": cost["bytes accessed"] / 1e9,
            "temp_gib": m.temp_size_in_bytes / 2**30, "peak_gib": peak / 2**30}


def inference_program(batch, dtype="float32"):
    """The compiled per-frame inference step (driving keypoints + generator), vox256."""
    config = fnevr_configs.get_config("vox256")
    config.dtype = dtype
    models = build_models(config)
    variables = jax.eval_shape(
        lambda k: init_variables(config, k, with_discriminator=False), jax.random.key(0))
    kp_vars = module_variables(variables, "kp_detector")
    gen_vars = module_variables(variables, "generator")
    image = jax.ShapeDtypeStruct((batch, config.image_size, config.image_size, 3), jnp.float32)
    kp_source = jax.eval_shape(models["kp_detector"].apply, kp_vars, image)

    def frame(kp_vars, gen_vars, source, kp_source, driving):
        kp_driving = models["kp_detector"].apply(kp_vars, driving)
        return models["generator"].apply(gen_vars, source, kp_source, kp_driving)["prediction"]

    return jax.jit(frame).lower(kp_vars, gen_vars, image, kp_source, image).compile()


def train_program(batch, data_dir, variant="vox256"):
    """The compiled FNeVR training step (`FNeVRTask.train_step`) at `batch` per device."""
    from fnevr_jax.training.fnevr_task import FNeVRTask
    config = fnevr_configs.get_config(variant)
    config.train.batch_size = 1
    config.data.worker_count = 0
    config.data.dir = data_dir
    task = FNeVRTask(config)
    one = next(iter(task.train_data(0)))   # the batch's fields, shapes and dtypes
    batch_spec = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((batch,) + x.shape[1:], x.dtype), one)
    state = jax.eval_shape(task.init_state, jax.random.key(0))
    step = jax.jit(task.train_step, donate_argnums=(0,))
    return step.lower(state, batch_spec, jax.random.key(1), abstract(task.frozen)).compile()


def synthetic_data(size):
    """A 4-clip synthetic dataset at `size` in a temporary folder (only its fields are read)."""
    data = tempfile.mkdtemp(prefix="cost_data_")
    synthetic.generate(data, train_clips=4, test_clips=1, identities=2, test_identities=1,
                       frames=4, size=size, workers=1)
    return data


def main():
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inference-batches", nargs="*", type=int, default=[1, 8, 64])
    parser.add_argument("--train-batches", nargs="*", type=int, default=[20],
                        help="training-step batch sizes per device (default %(default)s)")
    parser.add_argument("--data", default=None,
                        help="shards for the training step's fields (default: a 4-clip "
                             "synthetic set in a temporary folder)")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"compiled on: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"python {platform.python_version()}; FNeVR vox256, 256x256, float32")
    print("| program | batch | GFLOP | GB accessed | FLOP/byte | temp GiB | peak GiB "
          "| H100 SXM ms (TF32 / BF16) | TPU v5e ms |")
    print("|---|---|---|---|---|---|---|---|---|")

    def row(name, batch, compiled):
        c = costs(compiled)
        flops, nbytes = c["gflop"] * 1e9, c["gbytes"] * 1e9
        h100 = [roofline_ms(flops, nbytes, "H100 SXM", d) for d in ("float32", "bfloat16")]
        v5e = roofline_ms(flops, nbytes, "TPU v5e", "bfloat16")
        print(f"| {name} | {batch} | {c['gflop']:,.1f} | {c['gbytes']:,.2f} | "
              f"{flops / nbytes:.0f} | {c['temp_gib']:.2f} | {c['peak_gib']:.2f} | "
              f"{h100[0]:.2f} / {h100[1]:.2f} | {v5e:.2f} |", flush=True)

    for batch in args.inference_batches:
        row("inference", batch, inference_program(batch))
    if args.train_batches:
        data = args.data or synthetic_data(256)
        for batch in args.train_batches:
            row("train step", batch, train_program(batch, data))


if __name__ == "__main__":
    main()
