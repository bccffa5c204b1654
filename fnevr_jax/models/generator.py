"""Occlusion-aware generators: FNeVR (FVR + SPADE decoder) and the FOMM baseline.

Both encode the source to F_S, warp it with the dense motion and mask it with the occlusion
map (F_w = O ⊙ f_w(F_S, T̂), FNeVR eq. 2). FNeVR then renders F_r with the FVR module and decodes
[F_w, F_r] with the SPADE decoder (§3.3); FOMM decodes F_w with residual and up-blocks.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnevr_jax.models.blocks import (DownBlock2d, ResBlock, SameBlock2d, UpBlock2d, conv,
                                     feature_width, precise)
from fnevr_jax.models.dense_motion import DenseMotionNetwork
from fnevr_jax.models.fvr import FaceVolumeRenderer
from fnevr_jax.models.spade import SPADEDecoder
from fnevr_jax.ops import grid_sample, resize_bilinear


def warp(x, deformation, impl="gather"):
    """Backward-warps `x` [B,H,W,C] by the flow [B,h,w,2], resizing the flow (bilinear) if needed."""
    if deformation.shape[1:3] != x.shape[1:3]:
        deformation = resize_bilinear(deformation, x.shape[1:3])
    return grid_sample(x, deformation.astype(x.dtype), impl=impl)


class OcclusionAwareGenerator(nn.Module):
    """Shared encoder/warping; subclasses define `decode(warped, out, train)`.

    `dense_motion` holds the DenseMotionNetwork fields (a tuple of (name, value) pairs).
    `grid_sample_impl` is the `impl` of the feature warp, the one warp whose backward reaches the
    image (a scatter-add with "gather"): the dense motion's sources and `deformed` sample the
    input frame, which has no gradient, so their backward has no scatter and they keep "gather".
    """
    num_kp: int = 10
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    dense_motion: tuple = ()
    dtype: Any = jnp.float32
    grid_sample_impl: str = "gather"

    def width(self, level):
        return feature_width(self.block_expansion, self.max_features, level)

    @nn.compact
    def __call__(self, source, kp_source, kp_driving, train=False):
        out = SameBlock2d(self.block_expansion, 7, 3, self.dtype, name="first")(
            source.astype(self.dtype), train)
        for i in range(self.num_down_blocks):
            out = DownBlock2d(self.width(i + 1), self.dtype, name=f"down_blocks_{i}")(out, train)
        motion = DenseMotionNetwork(num_kp=self.num_kp, dtype=self.dtype, name="dense_motion_network",
                                    **dict(self.dense_motion))(source, kp_source, kp_driving, train)
        out = warp(out, motion["deformation"], self.grid_sample_impl)
        result = {"mask": motion["mask"], "sparse_deformed": motion["sparse_deformed"],
                  "deformation": motion["deformation"],
                  "deformed": warp(source, motion["deformation"])}
        if "occlusion_map" in motion:
            occlusion = motion["occlusion_map"]
            if occlusion.shape[1:3] != out.shape[1:3]:
                occlusion = resize_bilinear(occlusion, out.shape[1:3])
            out = out * occlusion.astype(out.dtype)
            result["occlusion_map"] = motion["occlusion_map"]
        result["warped_feature"] = out  # F_w
        result.update(self.decode(out, train))
        return result


class FNeVRGenerator(OcclusionAwareGenerator):
    """FNeVR: F_r = FVR(F_w); prediction = SPADE([F_w, F_r]); `render` is I_m (FNeVR eq. 10)."""
    color_channels: int = 128
    sigma_channels: int = 128
    depth: int = 8
    hidden: int = 128
    spade_channels: int = 128
    spade_hidden: int = 128
    spade_block_channels: tuple = (128, 32)

    def decode(self, out, train):
        if self.num_down_blocks not in (1, 2):
            raise ValueError(f"FNeVR's decoders take 1 or 2 down blocks, not {self.num_down_blocks}")
        fvr = FaceVolumeRenderer(self.color_channels, self.sigma_channels, self.depth, self.hidden,
                                 self.num_down_blocks, self.dtype, name="fvr")(out, train)
        fused = jnp.concatenate([out, fvr["feature"].astype(out.dtype)], axis=-1)
        prediction = SPADEDecoder(self.spade_channels, self.spade_hidden, self.spade_block_channels,
                                  self.num_down_blocks, self.dtype, name="decoder")(fused)
        return {"prediction": prediction, "render": fvr["render"], "sigma_map": fvr["sigma_map"]}


class Bottleneck(nn.Module):
    """FOMM's stack of residual blocks r0, r1, ... at the feature resolution."""
    num_blocks: int = 6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        for i in range(self.num_blocks):
            x = ResBlock(dtype=self.dtype, name=f"r{i}")(x, train)
        return x


class FOMMGenerator(OcclusionAwareGenerator):
    """FOMM: residual bottleneck, up-blocks, 7x7 conv and sigmoid."""
    num_bottleneck_blocks: int = 6

    def decode(self, out, train):
        out = Bottleneck(self.num_bottleneck_blocks, self.dtype, name="bottleneck")(out, train)
        for i in range(self.num_down_blocks):
            out = UpBlock2d(self.width(self.num_down_blocks - i - 1), self.dtype,
                            name=f"up_blocks_{i}")(out, train)
        out = conv(3, 7, 3, self.dtype, "final")(out)
        return {"prediction": jax.nn.sigmoid(out.astype(precise(self.dtype)))}
