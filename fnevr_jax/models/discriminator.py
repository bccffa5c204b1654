"""Multi-scale patch discriminator with spectral normalisation (FOMM's, used by L_G, §3.5)."""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnevr_jax.ops import conv_general_dilated, kp2gaussian


def _normalize(x, eps=1e-12):
    return x / jnp.maximum(jnp.linalg.norm(x), eps)


class SpectralConv(nn.Module):
    """VALID conv whose kernel is divided by its spectral norm (`nn.utils.spectral_norm`).

    The power-iteration vectors u [O] and v [I·kh·kw] live in `batch_stats`; one iteration
    runs per training call, evaluation uses the stored vectors, as in PyTorch.
    """
    features: int
    kernel_size: int
    spectral_norm: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.spectral_norm:
            w_mat = kernel.transpose(3, 2, 0, 1).reshape(self.features, -1)  # torch (O, I·kh·kw)
            u = self.variable("batch_stats", "u", lambda: _normalize(
                jax.random.normal(self.make_rng("params"), (w_mat.shape[0],))))
            v = self.variable("batch_stats", "v", lambda: _normalize(
                jax.random.normal(self.make_rng("params"), (w_mat.shape[1],))))
            if train and not self.is_initializing():
                w_sg = jax.lax.stop_gradient(w_mat)
                v.value = _normalize(w_sg.T @ u.value)
                u.value = _normalize(w_sg @ v.value)
            sigma = jnp.dot(u.value, w_mat @ v.value)
            kernel = kernel / sigma
        y = conv_general_dilated(x.astype(self.dtype), kernel.astype(self.dtype), (1, 1),
                                 ((0, 0), (0, 0)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias.astype(self.dtype)


class DownBlock(nn.Module):
    """Conv 4x4 (VALID, spectral norm) → instance norm (affine) → LeakyReLU 0.2 → avg pool."""
    features: int
    norm: bool
    pool: bool
    spectral_norm: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        x = SpectralConv(self.features, 4, self.spectral_norm, self.dtype, name="conv")(x, train)
        if self.norm:
            x = nn.InstanceNorm(epsilon=1e-5, use_fast_variance=False, dtype=self.dtype,
                                name="norm")(x)
        x = nn.leaky_relu(x, 0.2)
        return nn.avg_pool(x, (2, 2), (2, 2)) if self.pool else x


class Discriminator(nn.Module):
    """Pix2pix-style discriminator: returns (feature maps of every block, prediction map)."""
    block_expansion: int = 64
    num_blocks: int = 4
    max_features: int = 512
    spectral_norm: bool = False
    use_kp: bool = False
    kp_variance: float = 0.01
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, kp=None, train=False):
        if self.use_kp:
            heat = kp2gaussian(kp["value"], x.shape[1:3], self.kp_variance).astype(x.dtype)
            x = jnp.concatenate([x, heat], axis=-1)
        features = []
        for i in range(self.num_blocks):
            width = min(self.max_features, self.block_expansion * 2 ** (i + 1))
            x = DownBlock(width, norm=i != 0, pool=i != self.num_blocks - 1,
                          spectral_norm=self.spectral_norm, dtype=self.dtype,
                          name=f"down_blocks_{i}")(x, train)
            features.append(x)
        prediction = SpectralConv(1, 1, self.spectral_norm, self.dtype, name="conv")(x, train)
        return features, prediction


class MultiScaleDiscriminator(nn.Module):
    """One discriminator per pyramid scale; `images` maps scale → [B,H,W,3] image."""
    scales: Sequence[float] = (1,)
    discriminator: tuple = ()  # Discriminator fields as (name, value) pairs

    @nn.compact
    def __call__(self, images, kp=None, train=False):
        out = {}
        for scale in self.scales:
            name = "discs_" + str(scale).replace(".", "-")
            feats, pred = Discriminator(**dict(self.discriminator), name=name)(
                images[scale], kp, train)
            out[scale] = {"feature_maps": feats, "prediction_map": pred}
        return out
