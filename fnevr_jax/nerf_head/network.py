"""Drivable conditional-NeRF head model (Wang and Guo, JUSTC 2025; spec section 2.2).

A conditional MLP maps (gamma(x), z_id, beta) to density and (with gamma(d)) to a feature
vector (NHM eq. 6); volume rendering integrates the features into a low-resolution feature map
over a learnable background feature map (NHM eq. 7), and a GIRAFFE-style 2D neural renderer turns
it into the RGB image (NHM eq. 8). NHWC throughout.

HeadNeRF (Hong et al., CVPR 2022; CrisHY1995/headnerf, `NetWorks/`) is the same model in
another configuration (`configs/nerf_head.py:headnerf`): appearance codes instead of the view
encoding in the feature branch, rays through pixel corners from its inverse intrinsics,
samples at the near edge of each bin, its cumulative-product transmittance and its
PixelShuffle neural renderer of 1x1 convolutions.

`dtype` is the compute dtype of the MLP's and the renderer's matmuls and convolutions (None:
that of the inputs and parameters); bfloat16 is mixed precision: parameters, the position
encoding, densities, compositing weights and the output sigmoid stay float32.

The codes enter the MLP once per image: the first layer's kernel (and the skip layer's) is one
parameter whose rows are split between the per-sample position encoding and the per-image
codes, W [gamma(x); z] = W_x gamma(x) + (W_z z) broadcast over rays and samples; the view
encoding likewise enters once per ray. The MLP's last feature layer is affine, so it is
applied after compositing, once per ray: sum_i w_i (W f_i + b) = W (sum_i w_i f_i) + acc b.
"""
import functools
import math
from typing import Any, Callable

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
import jax.numpy as jnp

from fnevr_jax import rendering
from fnevr_jax.ops import upsample_nearest2x

DENSITY_ACTIVATIONS = ("relu", "softplus")


class SplitDense(nn.Module):
    """Dense layer over the concatenation of `parts` without building the concatenation.

    The kernel rows follow the order of `parts`; each part is multiplied by its row block and
    the products broadcast against each other, so a part of shape [B, 1, 1, 1, Z] costs one
    matmul per image. Called with a single concatenated input, it is a plain `nn.Dense`.
    """
    features: int
    kernel_init: Callable = nn.initializers.glorot_uniform()
    dtype: Any = None

    @nn.compact
    def __call__(self, *parts):
        widths = [p.shape[-1] for p in parts]
        kernel = self.param("kernel", self.kernel_init, (sum(widths), self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        *parts, kernel, bias = promote_dtype(*parts, kernel, bias, dtype=self.dtype)
        starts = [sum(widths[:i]) for i in range(len(parts))]
        blocks = sorted(zip(parts, starts, widths), key=lambda block: block[0].size)
        out = bias
        for part, start, width in blocks:
            out = out + jnp.matmul(part, kernel[start:start + width])
        return out


class ConditionalNeRFMLP(nn.Module):
    """f_theta: (gamma(x), gamma(d), beta, z_id) -> (sigma, F) (NHM eq. 6).

    A trunk of `depth` ReLU layers on [gamma(x), codes], the trunk input concatenated again
    into layer `skip_layer`; sigma = relu(Dense_1(h)) depends on position and codes only; the
    view encoding (or HeadNeRF's appearance code, or both: `feature_cond`) joins a linear
    bottleneck in the feature branch (section 2.2.2). The branch stops before its last, affine
    layer (`FeatureOutput`), which runs after compositing.
    `per_image_codes=False` concatenates the codes to every sample instead (the reference path).
    `density_activation` "relu" is HeadNeRF's; "softplus" is mip-NeRF's softplus(x - 1), whose
    gradient never vanishes, so a density that starts negative everywhere (the pre-activation
    w . h of non-negative h often has one sign for every sample of a random init) still trains.
    """
    width: int = 384
    depth: int = 8
    skip_layer: int = 5
    per_image_codes: bool = True
    density_activation: str = "relu"
    dtype: Any = None

    @nn.compact
    def __call__(self, pos_enc, codes, feature_cond):
        """pos_enc [..., S, P]; codes [..., Z] and feature_cond [..., D] broadcastable against it.

        Returns sigma [..., S] and the feature branch's hidden layer [..., S, width / 2].
        """
        if self.per_image_codes:
            trunk_input = (pos_enc, codes)
        else:
            lead = pos_enc.shape[:-1]
            codes = jnp.broadcast_to(codes, lead + codes.shape[-1:])
            feature_cond = jnp.broadcast_to(feature_cond, lead + feature_cond.shape[-1:])
            trunk_input = (jnp.concatenate([pos_enc, codes], axis=-1),)
        dense = functools.partial(nn.Dense, kernel_init=nn.initializers.glorot_uniform(),
                                  dtype=self.dtype)
        h = nn.relu(SplitDense(self.width, dtype=self.dtype, name="trunk_0")(*trunk_input))
        for i in range(1, self.depth):
            if i == self.skip_layer:
                h = SplitDense(self.width, dtype=self.dtype, name=f"trunk_{i}")(*trunk_input, h)
            else:
                h = dense(self.width, name=f"trunk_{i}")(h)
            h = nn.relu(h)
        raw = dense(1, name="density")(h)[..., 0].astype(jnp.promote_types(pos_enc.dtype,
                                                                            jnp.float32))
        if self.density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(f"density_activation {self.density_activation!r} not in "
                             f"{DENSITY_ACTIVATIONS}")
        sigma = nn.relu(raw) if self.density_activation == "relu" else nn.softplus(raw - 1.0)
        bottleneck = dense(self.width, name="bottleneck")(h)
        feature = SplitDense(self.width // 2, dtype=self.dtype, name="feature")(bottleneck,
                                                                             feature_cond)
        return sigma, nn.relu(feature)


class FeatureOutput(nn.Module):
    """The feature branch's last (affine) layer on composited hidden features.

    Given sum_i w_i f_i [..., H] and acc = sum_i w_i it returns sum_i w_i (W f_i + b), the
    feature map of NHM eq. 7, with one matmul per ray instead of one per sample.
    """
    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, composited, acc):
        kernel = self.param("kernel", nn.initializers.glorot_uniform(),
                            (composited.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        composited, kernel = promote_dtype(composited, kernel, dtype=self.dtype)
        return jnp.matmul(composited, kernel) + acc[..., None] * bias


def blur(x):
    """Depthwise [1, 2, 1]^T [1, 2, 1] / 16 filter with reflect padding (kornia's `filter2d`)."""
    taps = jnp.array([1.0, 2.0, 1.0], x.dtype) / 4.0
    kernel = jnp.tile((taps[:, None] * taps[None, :])[:, :, None, None], (1, 1, 1, x.shape[-1]))
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=x.shape[-1])


def upsample_rgb(x):
    """x2 bilinear upsampling (half-pixel centres) followed by `blur` (GIRAFFE's RGB path)."""
    b, h, w, c = x.shape
    # antialias acts only when shrinking (identical output here); off, ONNX converters take it
    return blur(jax.image.resize(x, (b, 2 * h, 2 * w, c), "bilinear", antialias=False))


def pixel_shuffle(x, factor=2):
    """torch's `pixel_shuffle` in NHWC: channel c * f^2 + i * f + j -> channel c at (i, j)."""
    b, h, w, c = x.shape
    c_out = c // factor ** 2
    x = x.reshape(b, h, w, c_out, factor, factor).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * factor, w * factor, c_out)


class PixelShuffleUp(nn.Module):
    """HeadNeRF's `PixelShuffleUpsample`: x2 upsampling that keeps the channel count.

    blur(pixel_shuffle(h + tile(x, 4))), h = lrelu(W2 lrelu(W1 x)) with 1x1 convs C -> 2C ->
    4C; the residual repeats the channels four times as torch's `x.repeat(1, 4, 1, 1)` does.
    """
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        conv = functools.partial(nn.Conv, kernel_size=(1, 1), dtype=self.dtype)
        h = nn.leaky_relu(conv(2 * c, name="layer_1")(x), negative_slope=0.2)
        h = nn.leaky_relu(conv(4 * c, name="layer_2")(h), negative_slope=0.2)
        return blur(pixel_shuffle(h + jnp.tile(x, (1, 1, 1, 4))))


RENDERER_STYLES = ("giraffe", "headnerf")


class NeuralRenderer(nn.Module):
    """pi_xi: feature map -> RGB image (NHM eq. 8; section 2.2.3, Fig. 2).

    Each of `num_units` units doubles the resolution, then a feature conv (channels halved, at
    least `min_channels`) and LeakyReLU(0.2). A colour conv decodes the input and every unit's
    output to RGB; the RGB images are summed level by level, the running sum upsampled
    bilinearly and blurred between levels, and squashed by a sigmoid. `style` "giraffe" (the
    paper's, like GIRAFFE): nearest upsampling and 3x3 convs; "headnerf": `PixelShuffleUp` and
    1x1 convs (HeadNeRF's `NeuralRenderer`).
    """
    num_units: int
    min_channels: int = 32
    style: str = "giraffe"
    dtype: Any = None

    @nn.compact
    def __call__(self, features):
        if self.style not in RENDERER_STYLES:
            raise ValueError(f"renderer style {self.style!r} not in {RENDERER_STYLES}")
        conv = functools.partial(nn.Conv, kernel_size=(3, 3) if self.style == "giraffe"
                                 else (1, 1), dtype=self.dtype)
        channels = features.shape[-1]
        x = features
        rgb = conv(3, name="rgb_0")(x)
        for i in range(self.num_units):
            rgb = upsample_rgb(rgb)
            channels = max(channels // 2, self.min_channels)
            up = (upsample_nearest2x(x) if self.style == "giraffe"
                  else PixelShuffleUp(self.dtype, name=f"upsample_{i}")(x))
            x = nn.leaky_relu(conv(channels, name=f"unit_{i}")(up), negative_slope=0.2)
            rgb = rgb + conv(3, name=f"rgb_{i + 1}")(x)
        return nn.sigmoid(rgb.astype(jnp.promote_types(features.dtype, jnp.float32)))


class NeRFHead(nn.Module):
    """The full model: rays -> samples -> conditional MLP -> feature map -> neural renderer.

    Field meanings are documented in `configs/nerf_head.py` (`config.model`).
    """
    feature_size: int = 32
    feature_channels: int = 512
    output_size: int = 512
    num_samples: int = 64
    id_dim: int = 512
    expr_dim: int = 46
    mlp_width: int = 384
    mlp_depth: int = 8
    mlp_skip_layer: int = 5
    xyz_freqs: int = 10
    dir_freqs: int = 4
    posenc_form: str = "paper"
    z_near: float = 2.5
    z_far: float = -3.5
    pixel_offset: float = 0.5
    renderer_min_channels: int = 32
    background_init: float = 1.0
    remat: bool = False
    per_image_codes: bool = True
    density_activation: str = "relu"
    appearance_dim: int = 0
    view_dirs: bool = True
    sample_position: float = 0.5
    transmittance: str = "exp"
    renderer_style: str = "giraffe"
    dtype: Any = None

    @property
    def num_units(self):
        units = math.log2(self.output_size / self.feature_size)
        if units < 1 or units != int(units):
            raise ValueError(f"output_size / feature_size = {self.output_size}/"
                             f"{self.feature_size} must be a power of two >= 2")
        return int(units)

    @nn.compact
    def __call__(self, z_id, beta, intrinsics, cam_to_world, key=None, randomized=False,
                 render_background=False, appearance=None, inv_intrinsics=None):
        """Renders images of heads with codes z_id [B, id_dim], beta [B, expr_dim].

        intrinsics [B, 3, 3] are for the output image; or, with intrinsics None,
        inv_intrinsics [B, 3, 3] are the inverse intrinsics at the feature-map resolution
        (HeadNeRF's `inv_inmat`). cam_to_world [B, 3, 4]; appearance [B, appearance_dim] (the
        feature branch's codes, HeadNeRF's texture and illumination). `randomized` (static)
        jitters the samples with `key`. Returns a dict with image [B, S, S, 3] in (0, 1),
        features [B, s, s, C] (with background), acc and depth [B, s, s], and with
        `render_background` also background_image, the renderer applied to the background map.
        """
        size = self.feature_size
        if inv_intrinsics is None:
            inv_intrinsics = rendering.inverse_3x3(
                rendering.scale_intrinsics(intrinsics, size / self.output_size))
        rays = rendering.cast_rays(inv_intrinsics, cam_to_world, size, size, self.pixel_offset)
        t_near, t_far = rendering.z_plane_bounds(rays, self.z_near, self.z_far)
        t, deltas = rendering.stratified_samples(key, t_near, t_far, self.num_samples,
                                                 randomized, self.sample_position)
        pos_enc = rendering.positional_encoding(rendering.ray_points(rays, t), self.xyz_freqs,
                                                self.posenc_form)
        codes = jnp.concatenate([z_id, beta], axis=-1)[:, None, None, None, :]
        feature_cond = []
        if self.view_dirs:
            feature_cond.append(rendering.positional_encoding(
                rays.directions, self.dir_freqs, self.posenc_form)[..., None, :])
        if self.appearance_dim:
            per_ray = rays.directions.shape[:-1] + (1, self.appearance_dim)
            feature_cond.append(jnp.broadcast_to(appearance[:, None, None, None, :], per_ray))
        if not feature_cond:
            raise ValueError("the feature branch needs view_dirs or appearance_dim > 0")
        feature_cond = jnp.concatenate(feature_cond, axis=-1)
        mlp_cls = nn.remat(ConditionalNeRFMLP) if self.remat else ConditionalNeRFMLP
        sigma, hidden = mlp_cls(self.mlp_width, self.mlp_depth, self.mlp_skip_layer,
                                self.per_image_codes, self.density_activation, self.dtype,
                                name="mlp")(pos_enc, codes, feature_cond)
        _, _, weights = rendering.compute_weights(sigma, deltas, self.transmittance)
        hidden, acc = rendering.composite(weights, hidden)
        features = FeatureOutput(self.feature_channels, self.dtype, name="feature_out")(hidden,
                                                                                     acc)
        background = self.param("background", nn.initializers.constant(self.background_init),
                                (1, size, size, self.feature_channels))
        features = features + (1.0 - acc)[..., None] * background
        renderer = NeuralRenderer(self.num_units, self.renderer_min_channels,
                                  self.renderer_style, self.dtype, name="renderer")
        out = {
            "image": renderer(features),
            "features": features,
            "acc": acc,
            "depth": jnp.sum(weights * t, axis=-1),
        }
        if render_background:
            out["background_image"] = renderer(background)
        return out


def from_config(model_config, **overrides):
    """`NeRFHead` with the fields of `config.model`."""
    return NeRFHead(**{**model_config.to_dict(), **overrides})


def default_camera(batch, output_size, focal_scale, distance):
    """Intrinsics [B, 3, 3] and cam_to_world [B, 3, 4] of a frontal camera on +z.

    The focal length is `focal_scale * output_size` px, the principal point the image centre.
    """
    focal = focal_scale * output_size
    centre = output_size / 2.0
    intrinsics = jnp.array([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]],
                           jnp.float32)
    position = jnp.array([0.0, 0.0, distance], jnp.float32)
    cam_to_world = rendering.look_at_origin(position)
    return (jnp.broadcast_to(intrinsics, (batch, 3, 3)),
            jnp.broadcast_to(cam_to_world, (batch, 3, 4)))


def init_params(model, key):
    """Initial parameters for `model`, from dummy codes of its configured dimensions."""
    intrinsics, cam_to_world = default_camera(1, model.output_size, 2.0, 6.0)
    init = functools.partial(model.init, appearance=jnp.zeros((1, model.appearance_dim)))
    variables = jax.jit(init)(key, jnp.zeros((1, model.id_dim)),
                              jnp.zeros((1, model.expr_dim)), intrinsics, cam_to_world)
    return variables["params"]


@functools.cache
def make_render_fn(model, randomized=False, render_background=False):
    """One jitted function render(params, z_id, beta, intrinsics, cam_to_world, key,
    appearance=None, inv_intrinsics=None) -> dict (the arguments of `NeRFHead.__call__`).

    Cached per (model, flags), so every caller shares one compilation per input shape.
    """
    def render(params, z_id, beta, intrinsics, cam_to_world, key=None, appearance=None,
               inv_intrinsics=None):
        return model.apply({"params": params}, z_id, beta, intrinsics, cam_to_world, key,
                           randomized=randomized, render_background=render_background,
                           appearance=appearance, inv_intrinsics=inv_intrinsics)
    return jax.jit(render)
