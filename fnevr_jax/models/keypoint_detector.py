"""Keypoint detector (FNeVR §3.1, from FOMM): K keypoints p and Jacobians J from an image."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnevr_jax.models.blocks import Hourglass, conv, precise
from fnevr_jax.ops import anti_alias_downsample, coordinate_grid


class KPDetector(nn.Module):
    """Hourglass → 7x7 heatmap conv → temperature softmax → expected (x, y) and Jacobian.

    Input images [B,H,W,C] in [0,1]; returns {"value": [B,K,2], "jacobian": [B,K,2,2]}.
    """
    num_kp: int = 10
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    temperature: float = 0.1
    scale_factor: float = 0.25
    estimate_jacobian: bool = True
    single_jacobian_map: bool = False
    pad: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image, train=False):
        x = anti_alias_downsample(image.astype(self.dtype), self.scale_factor)
        feature_map = Hourglass(self.block_expansion, self.num_blocks, self.max_features,
                                self.dtype, name="predictor")(x, train)
        logits = conv(self.num_kp, 7, self.pad, self.dtype, "kp")(feature_map)
        b, h, w, k = logits.shape
        logits = logits.astype(precise(self.dtype)).reshape(b, h * w, k) / self.temperature
        heatmap = jax.nn.softmax(logits, axis=1)  # [B, h*w, K]
        grid = coordinate_grid((h, w), heatmap.dtype).reshape(h * w, 2)
        out = {"value": jnp.einsum("bnk,nc->bkc", heatmap, grid,
                                   precision=jax.lax.Precision.HIGHEST)}
        if self.estimate_jacobian:
            maps = 1 if self.single_jacobian_map else self.num_kp
            bias_init = lambda *_: jnp.tile(jnp.array([1.0, 0.0, 0.0, 1.0]), maps)
            jac = conv(4 * maps, 7, self.pad, self.dtype, "jacobian",
                       kernel_init=nn.initializers.zeros, bias_init=bias_init)(feature_map)
            jac = jac.astype(precise(self.dtype)).reshape(b, h * w, maps, 4)
            jac = jnp.sum(heatmap[..., None] * jac, axis=1)  # [B, K, 4]
            out["jacobian"] = jac.reshape(b, self.num_kp, 2, 2)
        return out
