"""grid_sample's implementations on the generator's warps, in isolation: time and XLA's costs.

    python benchmarks/grid_sample.py                    # batch 4, float32, 5 timed repeats
    python benchmarks/grid_sample.py --batch 20 --repeats 10

Two warps of the FNeVR generator (vox256, 256x256 input), zeros padding, align_corners=False,
with a random flow of amplitude 1.2 around the identity (some points fall outside):
- `feature`: the 64x64x256 encoder feature warp, `grid_sample(features, deformation)`; the
  backward gives the gradients to the features and to the flow (both trained);
- `sources`: the dense motion's K+1 = 11 deformed 64x64x3 sources per image; the backward gives
  the gradient to the flows only (the source image is data, so JAX never forms its gradient,
  and the gather's backward has no scatter here: the model keeps "gather" for this warp).
For each warp and `impl` ("gather": the default, scatter-add backward; "matmul": scatter-free):
the median wall time of the jitted forward and forward+backward (`jax.vjp` then the pullback
of a ones cotangent), the runs of the implementations interleaved; and, from the compiled
forward+backward, XLA's FLOPs, bytes accessed and temporary memory (`cost.costs`).
"""
import platform

import jax
import jax.numpy as jnp

from cost import costs
from fnevr_jax import cli
from fnevr_jax.ops import coordinate_grid, grid_sample
from fnevr_jax.ops.grid_sample import IMPLS
from timing import median_seconds

K1 = 11  # dense motion's K + 1 sparse motions (10 keypoints and the identity)


def warps(batch, dtype):
    """{name: (image, grid, differentiate the image too)} at the generator's shapes."""
    key_x, key_s, key_g = jax.random.split(jax.random.PRNGKey(0), 3)

    def flow(n):
        noise = jax.random.uniform(key_g, (n, 64, 64, 2), minval=-1.2, maxval=1.2)
        return (coordinate_grid((64, 64))[None] + noise).astype(dtype)

    return {
        "feature": (jax.random.normal(key_x, (batch, 64, 64, 256), dtype), flow(batch), True),
        "sources": (jax.random.uniform(key_s, (batch * K1, 64, 64, 3), dtype), flow(batch * K1),
                    False),
    }


def programs(impl, image_grad):
    def forward(x, grid):
        return grid_sample(x, grid, impl=impl)

    def forward_backward(x, grid):
        if image_grad:
            out, pull = jax.vjp(forward, x, grid)
            return out, pull(jnp.ones_like(out))
        out, pull = jax.vjp(lambda g: forward(x, g), grid)
        return out, pull(jnp.ones_like(out))

    return jax.jit(forward), jax.jit(forward_backward)


def main():
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    dtype = jnp.dtype(args.dtype)

    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"batch {args.batch}, {args.dtype}, median of {args.repeats}\n")
    print("| warp | impl | forward ms | fwd+bwd ms | fwd+bwd GFLOP | fwd+bwd GB accessed "
          "| fwd+bwd temp GiB |")
    print("|---|---|---|---|---|---|---|")
    for name, (x, grid, image_grad) in warps(args.batch, dtype).items():
        compiled = {impl: programs(impl, image_grad) for impl in IMPLS}
        cost = {impl: costs(fb.lower(x, grid).compile()) for impl, (_, fb) in compiled.items()}
        seconds = median_seconds(
            {(impl, part): (lambda fn=fn: jax.block_until_ready(fn(x, grid)))
             for impl in IMPLS for part, fn in enumerate(compiled[impl])}, args.repeats)
        for impl in IMPLS:
            fwd, fb = (1e3 * seconds[impl, part] for part in (0, 1))
            c = cost[impl]
            print(f"| {name} | {impl} | {fwd:.1f} | {fb:.1f} | {c['gflop']:.2f} | "
                  f"{c['gbytes']:.3f} | {c['temp_gib']:.3f} |")


if __name__ == "__main__":
    main()
