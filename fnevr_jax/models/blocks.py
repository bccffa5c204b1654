"""Building blocks shared by the FOMM/FNeVR networks (FOMM `modules/util.py`), NHWC.

BatchNorm follows PyTorch: eps 1e-5, momentum 0.1 (Flax momentum 0.9). In training it uses the
statistics of the whole (global) batch: under `jax.jit` with a batch sharded over a mesh the
mean is taken across devices by the compiler, so no axis name is needed.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from fnevr_jax.ops import conv_general_dilated, conv_of_nearest_upsampled


def precise(dtype):
    """The dtype for softmax, sigmoid and normalisation statistics: at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def batch_norm(train, dtype, name=None):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                        name=name)


def conv(features, kernel, padding, dtype, name=None, ndim=2, **kwargs):
    """nn.Conv with explicit symmetric padding and `ops.conv_general_dilated` (its kernel
    gradient is a matrix product per tap)."""
    return nn.Conv(features, (kernel,) * ndim, padding=((padding, padding),) * ndim, dtype=dtype,
                   name=name, conv_general_dilated=conv_general_dilated, **kwargs)


def conv_params(module, in_features, features, kernel):
    """An `nn.Conv`'s parameters declared in `module`: same names, shapes and initialisers."""
    return (module.param("kernel", nn.initializers.lecun_normal(),
                         (kernel, kernel, in_features, features)),
            module.param("bias", nn.initializers.zeros_init(), (features,)))


class ConvParams(nn.Module):
    """The kernel and bias of a convolution computed together with others (SPADE's γ and β)."""
    features: int
    kernel: int

    @nn.compact
    def __call__(self, in_features):
        return conv_params(self, in_features, self.features, self.kernel)


class NearestUpConv(nn.Module):
    """Nearest ×`factor` upsampling, then a conv with padding k // 2, computed at the input's
    resolution (`ops.conv_of_nearest_upsampled`, exact); an `nn.Conv`'s parameters."""
    features: int
    kernel: int = 3
    factor: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel, bias = conv_params(self, x.shape[-1], self.features, self.kernel)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        return conv_of_nearest_upsampled(x, kernel, self.factor) + bias


class SameBlock2d(nn.Module):
    """Conv → BN → ReLU at constant resolution."""
    features: int
    kernel: int = 3
    padding: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        x = conv(self.features, self.kernel, self.padding, self.dtype, name="conv")(x)
        return nn.relu(batch_norm(train, self.dtype, "norm")(x))


class DownBlock2d(nn.Module):
    """Conv 3x3 → BN → ReLU → 2x2 average pool."""
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        x = conv(self.features, 3, 1, self.dtype, name="conv")(x)
        x = nn.relu(batch_norm(train, self.dtype, "norm")(x))
        return nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))


class UpBlock2d(nn.Module):
    """Nearest ×2 → conv 3x3 → BN → ReLU (`upsample=False`: without the ×2)."""
    features: int
    dtype: Any = jnp.float32
    upsample: bool = True

    @nn.compact
    def __call__(self, x, train=False):
        x = NearestUpConv(self.features, 3, 2 if self.upsample else 1, self.dtype, name="conv")(x)
        return nn.relu(batch_norm(train, self.dtype, "norm")(x))


class ResBlock(nn.Module):
    """Pre-activation residual block (BN → ReLU → conv) × 2 + x, in 2D or 3D."""
    ndim: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        features = x.shape[-1]
        out = nn.relu(batch_norm(train, self.dtype, "norm1")(x))
        out = conv(features, 3, 1, self.dtype, "conv1", self.ndim)(out)
        out = nn.relu(batch_norm(train, self.dtype, "norm2")(out))
        out = conv(features, 3, 1, self.dtype, "conv2", self.ndim)(out)
        return out + x


def feature_width(block_expansion, max_features, level):
    """Channels at depth `level` of FOMM's encoders: min(max_features, block_expansion 2^level)."""
    return min(max_features, block_expansion * 2**level)


class Encoder(nn.Module):
    """Hourglass encoder: returns [x, d1, ..., dn]."""
    block_expansion: int
    num_blocks: int
    max_features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        outs = [x]
        for i in range(self.num_blocks):
            features = feature_width(self.block_expansion, self.max_features, i + 1)
            outs.append(DownBlock2d(features, self.dtype, name=f"down_blocks_{i}")(outs[-1], train))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: up-blocks from the bottom, each concatenated with its skip [up, skip]."""
    block_expansion: int
    num_blocks: int
    max_features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, skips, train=False):
        out = skips[-1]
        for j, i in enumerate(reversed(range(self.num_blocks))):
            features = feature_width(self.block_expansion, self.max_features, i)
            out = UpBlock2d(features, self.dtype, name=f"up_blocks_{j}")(out, train)
            out = jnp.concatenate([out, skips[-2 - j]], axis=-1)
        return out


class Hourglass(nn.Module):
    """U-Net style hourglass; output channels = block_expansion + input channels."""
    block_expansion: int
    num_blocks: int = 3
    max_features: int = 256
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        args = (self.block_expansion, self.num_blocks, self.max_features, self.dtype)
        return Decoder(*args, name="decoder")(Encoder(*args, name="encoder")(x, train), train)
