"""SPADE decoder of FNeVR (§3.3; Park et al. 2019), as the official `SPADE_decoder`.

The conditioning map `seg` is computed once at the feature resolution from the fused
[F_w, F_r]; every SPADE layer resizes it (nearest) to its input. Upsampling between stages is
bilinear with align_corners=True (`nn.UpsamplingBilinear2d`).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from fnevr_jax.models.blocks import ConvParams, NearestUpConv, conv, precise
from fnevr_jax.ops import conv_general_dilated, resize_bilinear, resize_nearest


def instance_norm(x, eps=1e-5):
    """Parameter-free instance norm over H, W (biased variance), as `nn.InstanceNorm2d`."""
    xp = x.astype(precise(x.dtype))
    mean = jnp.mean(xp, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(xp - mean), axis=(1, 2), keepdims=True)
    return ((xp - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class SPADELayer(nn.Module):
    """norm(x) · (1 + γ(seg)) + β(seg)."""
    hidden: int = 128
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, seg):
        factor = x.shape[1] // seg.shape[1]
        if x.shape[1:3] != (factor * seg.shape[1], factor * seg.shape[2]):
            seg, factor = resize_nearest(seg, x.shape[1:3]), 1
        actv = nn.relu(NearestUpConv(self.hidden, 3, factor, self.dtype, name="mlp_shared_0")(seg))
        # γ and β as one convolution (their kernels side by side): the same sums, one pass.
        gamma_kernel, gamma_bias = ConvParams(x.shape[-1], 3, name="mlp_gamma")(self.hidden)
        beta_kernel, beta_bias = ConvParams(x.shape[-1], 3, name="mlp_beta")(self.hidden)
        actv, kernel, bias = promote_dtype(
            actv, jnp.concatenate([gamma_kernel, beta_kernel], -1),
            jnp.concatenate([gamma_bias, beta_bias]), dtype=self.dtype)
        gamma, beta = jnp.split(conv_general_dilated(
            actv, kernel, (1, 1), ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias, 2, axis=-1)
        return instance_norm(x) * (1 + gamma) + beta


class SPADEBlock(nn.Module):
    """SPADE → ReLU → conv 3x3 → SPADE → ReLU → conv 3x3 (no shortcut)."""
    out_channels: int
    hidden: int = 128
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, seg):
        x = conv(x.shape[-1], 3, 1, self.dtype, "conv_0")(
            nn.relu(SPADELayer(self.hidden, self.dtype, name="SPADE_0")(x, seg)))
        return conv(self.out_channels, 3, 1, self.dtype, "conv_1")(
            nn.relu(SPADELayer(self.hidden, self.dtype, name="SPADE_1")(x, seg)))


class SPADEDecoder(nn.Module):
    """seg conv, then SPADE blocks C→C_0 (↑2) → C_1 (↑2) → C_1 → C_1, 7x7 conv, sigmoid.

    `block_channels` = (C_0, C_1) are the blocks' output widths: (128, 32) officially, C/4 and
    C/16 of the fused 512 channels. `hidden` is the width of every SPADE layer's shared conv
    (128 in the official code); at full resolution these convs are most of the decoder's cost.
    `num_up` (the generator's down blocks, 2 officially) is the number of ×2 upsamplings;
    with 1, only SPADE_0's.
    """
    mid_channels: int = 128
    hidden: int = 128
    block_channels: tuple = (128, 32)
    num_up: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        seg = nn.relu(conv(self.mid_channels, 3, 1, self.dtype, "seg_conv_0")(x))
        c0, c1 = self.block_channels
        up = lambda y: resize_bilinear(y, (2 * y.shape[1], 2 * y.shape[2]), align_corners=True)
        x = up(SPADEBlock(c0, self.hidden, self.dtype, name="SPADE_0")(x, seg))
        x = SPADEBlock(c1, self.hidden, self.dtype, name="SPADE_1")(x, seg)
        x = up(x) if self.num_up > 1 else x
        x = SPADEBlock(c1, self.hidden, self.dtype, name="SPADE_2")(x, seg)
        x = SPADEBlock(c1, self.hidden, self.dtype, name="SPADE_3")(x, seg)
        x = conv(3, 7, 3, self.dtype, "final_0")(x)
        return jax.nn.sigmoid(x.astype(precise(self.dtype)))
