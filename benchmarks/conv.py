"""Convolutions on CPU: XLA's own against `fnevr_jax.ops.conv_general_dilated`.

    python benchmarks/conv.py                  # the 3D cases (FVR density volume)
    python benchmarks/conv.py --2d             # and the 2D kernel-gradient cases

Times forward + backward (`jax.grad` of `sum(sin(conv))` with respect to input and kernel) of
`lax.conv_general_dilated` and of `ops.conv_general_dilated` on the same inputs, float32,
medians over rounds after a warm-up, and prints one Markdown row per case. On CPU the ops
version computes a stride-1 3D convolution as one 2D convolution of stacked depth windows and
some 2D kernel gradients as one matrix product per tap (`fnevr_jax/ops/conv.py` says which).
"""
import argparse
import os

import jax
import jax.numpy as jnp

from first_run import cpu_flags
from fnevr_jax.ops import conv_general_dilated
from timing import median_seconds

# (input shape, kernel size, padding, output channels, what it is)
CASES_3D = [
    ((8, 8, 16, 16, 8), 3, 1, 8, "FVR P_σ ResBlock, quick (batch 8)"),
    ((20, 8, 64, 64, 16), 3, 1, 16, "FVR P_σ ResBlock, vox256 (batch 20)"),
]
CASES_2D = [
    ((4, 256, 256, 128), 3, 1, 128, "SPADE at 256x256"),
    ((4, 126, 126, 64), 4, 0, 128, "discriminator"),
    ((8, 64, 64, 16), 3, 1, 16, "SPADE at 64x64, quick"),
]


def grad_fn(conv, ndim, padding):
    dn = ("NDHWC", "DHWIO", "NDHWC") if ndim == 3 else ("NHWC", "HWIO", "NHWC")
    pad = ((padding, padding),) * ndim

    def loss(x, w):
        return jnp.sum(jnp.sin(conv(x, w, (1,) * ndim, pad, dimension_numbers=dn)))
    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--2d", dest="two_d", action="store_true", help="also the 2D cases")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    cpu, isa = cpu_flags()
    print(f"{cpu}, {os.cpu_count()} cores, XLA may use {isa}; jax {jax.__version__}\n")
    print("| input, kernel → out | what | XLA ms | ops ms | ops / XLA |")
    print("|---|---|---|---|---|")
    for shape, kernel, padding, out, what in CASES_3D + (CASES_2D if a.two_d else []):
        ndim = len(shape) - 2
        keys = jax.random.split(jax.random.key(0))
        x = jax.random.normal(keys[0], shape)
        w = jax.random.normal(keys[1], (kernel,) * ndim + (shape[-1], out)) / kernel
        fns = {name: grad_fn(conv, ndim, padding) for name, conv in
               (("xla", jax.lax.conv_general_dilated), ("ops", conv_general_dilated))}
        t = median_seconds({k: (lambda f=f: jax.block_until_ready(f(x, w)))
                            for k, f in fns.items()}, a.rounds)
        taps = "x".join([str(kernel)] * ndim)
        print(f"| {'x'.join(map(str, shape))}, {taps} → {out} | {what} | {1e3 * t['xla']:.1f} | "
              f"{1e3 * t['ops']:.1f} | {t['ops'] / t['xla']:.2f} |")


if __name__ == "__main__":
    main()
