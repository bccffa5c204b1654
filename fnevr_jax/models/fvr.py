"""Face volume rendering (FVR) module, FNeVR §3.3 (FNeVR eq. 7-9), as the official `RenderModel`.

The warped feature F_w [B,H,W,C] is lifted to a H×W×D volume of colour features (P_color) and
density features (P_sigma, with 3D residual blocks), an MLP evaluates every (pixel, depth)
sample of the orthogonal rays (f_θ, FNeVR eq. 8), and the samples are composited (FNeVR eq. 9) into the
rendering feature F_r. P_t decodes F_r to the intermediate image I_m (FNeVR eq. 10).

Compositing follows the official code, not FNeVR eq. 9 as printed: s_i = ReLU(σ_i), inclusive
transmittance exp(-Σ_{j<=i} s_j), interval δ = 1, and a sigmoid on the result. The official
code applies f_θ's linear last layer (`layer6`, 128 → 256 channels) to every sample and then
composites; here it follows compositing, Σ_i w_i (W h_i + b) = W Σ_i w_i h_i + (Σ_i w_i) b (the
same function up to float rounding, without the [B,H,W,D,256] per-sample tensor).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnevr_jax import rendering
from fnevr_jax.models.blocks import ResBlock, UpBlock2d, batch_norm, conv, precise


def lift_to_volume(x, depth):
    """[B,H,W,N·D] with channel = n·D + d → [B,H,W,D,N] (the official `b (c f) h w` split)."""
    b, h, w, ch = x.shape
    return x.reshape(b, h, w, ch // depth, depth).swapaxes(-1, -2)


class ColorPredictor(nn.Module):
    """P_color (FNeVR eq. 7): one 3x3 conv, then the split into D depth slices of N_color channels."""
    channels: int = 128
    depth: int = 8
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, feature):
        return lift_to_volume(conv(self.channels, 3, 1, self.dtype, "down_conv")(feature), self.depth)


class SigmaPredictor(nn.Module):
    """P_σ: a 3x3 conv split into a D×H×W volume of N_σ channels, then 3 × (3D ResBlock, BN3d).

    Returns (F_σ [B,H,W,D,N_σ], sigma_map [B,D,H,W,N_σ]); the latter is what L_σ (FNeVR eq. 4) reads.
    """
    channels: int = 128
    depth: int = 8
    num_res_blocks: int = 3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, feature, train=False):
        vol = lift_to_volume(conv(self.channels, 3, 1, self.dtype, "down_conv")(feature), self.depth)
        vol = vol.transpose(0, 3, 1, 2, 4)  # [B,D,H,W,N]
        for i in range(self.num_res_blocks):
            vol = ResBlock(ndim=3, dtype=self.dtype, name=f"res_conv3d_{2 * i}")(vol, train)
            vol = batch_norm(train, self.dtype, f"res_conv3d_{2 * i + 1}")(vol)
        return vol.transpose(0, 2, 3, 1, 4), vol


class CompositedDense(nn.Module):
    """An affine layer y = W h + b applied after compositing: Σ_i w_i (W h_i + b) = W h̄ + a b.

    Takes h̄ = Σ_i w_i h_i [..., H] and the opacity a = Σ_i w_i [...]; the parameters are
    `nn.Dense`'s (`kernel` [H, features], `bias` [features], same initialisers), so checkpoints
    load unchanged. Exact by linearity up to float rounding.
    """
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, composited, acc):
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (composited.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        out = jnp.matmul(composited.astype(self.dtype), kernel.astype(self.dtype))
        dtype = precise(self.dtype)
        return out.astype(dtype) + acc.astype(dtype)[..., None] * bias.astype(dtype)


class RayMLP(nn.Module):
    """f_θ (FNeVR eq. 8): density from F_σ, colour feature from F_σ and F_color.

    `__call__` evaluates every sample up to the last hidden layer, (h [..., D, hidden],
    σ [..., D]); `color` is the linear last layer (`layer6`) that maps h to p_color. The
    official code applies it to every sample before compositing (FNeVR eq. 9); it is linear,
    so `FaceVolumeRenderer` applies it once per ray after compositing instead
    (`CompositedDense`).
    """
    hidden: int = 128
    out_channels: int = 256
    dtype: Any = jnp.float32

    def setup(self):
        dense = lambda n: nn.Dense(n, dtype=self.dtype)
        self.layer1, self.layer2 = dense(self.hidden), dense(self.hidden)
        self.layer3_1 = dense(1)
        self.layer3_2, self.layer3_3 = dense(self.hidden // 4), dense(self.hidden)
        self.layer4, self.layer5 = dense(self.hidden), dense(self.hidden)
        self.layer6 = CompositedDense(self.out_channels, self.dtype)

    def __call__(self, color_in, sigma_in):
        h = nn.relu(self.layer1(sigma_in))
        h = nn.relu(self.layer2(h))
        sigma = self.layer3_1(h)
        feat_sigma = nn.relu(self.layer3_2(h))
        feat_color = nn.relu(self.layer3_3(color_in))
        x = jnp.concatenate([feat_sigma, feat_color], axis=-1)
        x = nn.relu(self.layer4(x))
        return nn.relu(self.layer5(x)), sigma[..., 0]

    def color(self, hidden, acc):
        """Σ_i w_i p_color,i from h̄ = Σ_i w_i h_i and a = Σ_i w_i; per sample with a = 1."""
        return self.layer6(hidden, acc)


def volume_weights(sigma):
    """FNeVR eq. 9's compositing weights, official form: w_i = e^{-S_i} (1 - e^{-s_i}).

    sigma [..., D]; s = ReLU(σ), S_i = Σ_{j<=i} s_j (inclusive), δ = 1. At least float32.
    """
    dtype = precise(sigma.dtype)
    return rendering.compute_weights(nn.relu(sigma.astype(dtype)), 1.0, "inclusive")[2]


def volume_render(color, sigma):
    """Composites D samples per ray (FNeVR eq. 9, official form): Σ_i w_i c_i.

    color [B,H,W,D,C], sigma [B,H,W,D], weights from `volume_weights`.
    """
    weights = volume_weights(sigma)
    return rendering.composite(weights, color.astype(weights.dtype))[0]


class FaceVolumeRenderer(nn.Module):
    """The FVR module: F_w → (F_r, I_m, sigma_map)."""
    color_channels: int = 128
    sigma_channels: int = 128
    depth: int = 8
    hidden: int = 128
    num_up: int = 2  # ×2 upsamplings of P_t: the generator's down blocks (official: 2)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, feature, train=False):
        color_in = ColorPredictor(self.color_channels, self.depth, self.dtype,
                                  name="rgb_predict")(feature)
        sigma_in, sigma_map = SigmaPredictor(self.sigma_channels, self.depth, dtype=self.dtype,
                                             name="sigma_predict")(feature, train)
        mlp = RayMLP(self.hidden, feature.shape[-1], self.dtype, name="nerf_module")
        hidden, sigma = mlp(color_in, sigma_in)
        # FNeVR eq. 9 with the linear last layer moved after compositing (exact by linearity):
        # Σ_i w_i (W h_i + b) = W Σ_i w_i h_i + (Σ_i w_i) b, one matmul per ray, not per sample.
        weights = volume_weights(sigma)
        hidden, acc = rendering.composite(weights, hidden.astype(weights.dtype))
        rendered = jax.nn.sigmoid(mlp.color(hidden, acc))  # F_r
        x = UpBlock2d(64, self.dtype, self.num_up > 1, name="mini_decoder_0")(
            rendered.astype(self.dtype), train)
        x = UpBlock2d(3, self.dtype, name="mini_decoder_2")(nn.relu(x), train)
        image = jax.nn.sigmoid(x.astype(precise(self.dtype)))  # I_m = P_t(F_r); ≥ 0.5 as in the official code
        return {"feature": rendered, "render": image, "sigma_map": sigma_map}
