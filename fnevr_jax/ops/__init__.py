"""Array operations with the PyTorch semantics the official FNeVR/FOMM code depends on."""
from fnevr_jax.ops.conv import conv_general_dilated, conv_of_nearest_upsampled
from fnevr_jax.ops.grid_sample import PADDING_MODES, grid_sample
from fnevr_jax.ops.keypoints import coordinate_grid, inv2x2, kp2gaussian
from fnevr_jax.ops.pool import max_pool
from fnevr_jax.ops.resize import (anti_alias_downsample, anti_alias_kernel, resize_bilinear,
                                  resize_nearest, upsample_nearest2x)

__all__ = [
    "conv_general_dilated", "conv_of_nearest_upsampled", "PADDING_MODES", "grid_sample",
    "coordinate_grid", "inv2x2", "kp2gaussian", "max_pool",
    "anti_alias_downsample", "anti_alias_kernel", "resize_bilinear", "resize_nearest",
    "upsample_nearest2x",
]
