"""The FNeVR objective (FNeVR eq. 13): L_P + L_G + L_E + L_R + L_σ + L_editor, as pure functions.

L_P, L_G (with feature matching) and L_E are first-order-model's (paper §3.5); L_R is FNeVR eq. 10,
L_σ FNeVR eq. 4-6 and L_editor FNeVR eq. 12. Images are NHWC in [0, 1].
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnevr_jax.ops import anti_alias_downsample, coordinate_grid, grid_sample, inv2x2


def image_pyramid(image, scales):
    """{scale: image downsampled by FOMM's anti-aliased Gaussian} (`ImagePyramide`)."""
    return {s: anti_alias_downsample(image, s) for s in scales}


def perceptual_pyramid(generated_features, real_features, layer_weights):
    """L_P: Σ_scales Σ_layers w_l · mean |VGG_l(gen_s) - VGG_l(real_s)| (real side detached).

    Both arguments are {scale: tuple of feature maps} of the two image pyramids.
    """
    total = 0.0
    for s in generated_features:
        for w, f, r in zip(layer_weights, generated_features[s], real_features[s]):
            if w:
                total += w * mean_abs(f, jax.lax.stop_gradient(r))
    return total


def mean_abs(a, b):
    """mean |a - b| in float32 (the inputs may be bfloat16 features)."""
    return jnp.mean(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32)))


def pixel_l1(prediction, target):
    """mean |prediction - target|: not in the paper's objective (FNeVR eq. 13); the `quick` config
    adds it so a first CPU run gets the colours right within minutes."""
    return jnp.mean(jnp.abs(prediction - target))


def lsgan_generator(prediction_maps, weight):
    """L_G for the generator: Σ_scales w · mean (1 - D(G))²."""
    return sum(weight * jnp.mean((1.0 - p.astype(jnp.float32)) ** 2) for p in prediction_maps)


def lsgan_discriminator(real_maps, fake_maps, weight):
    """Discriminator loss: Σ_scales w · mean((1 - D(real))² + D(G)²)."""
    return sum(weight * jnp.mean((1.0 - r.astype(jnp.float32)) ** 2 + f.astype(jnp.float32) ** 2)
               for r, f in zip(real_maps, fake_maps))


def feature_matching(real_features, fake_features, layer_weights):
    """Σ_scales Σ_blocks w_i · mean |D_i(real) - D_i(fake)| (real features not detached)."""
    total = 0.0
    for real, fake in zip(real_features, fake_features):
        for w, a, b in zip(layer_weights, real, fake):
            if w:
                total += w * mean_abs(a, b)
    return total


# ---------------------------------------------------------------------------------------------
# Equivariance (L_E): random affine + thin-plate-spline warps (first-order-model's `Transform`).


def random_transform(rng, batch, sigma_affine, sigma_tps, points_tps):
    """Parameters of a random warp per sample: affine θ [B,2,3] and TPS weights [B,P²]."""
    k1, k2 = jax.random.split(rng)
    theta = jnp.eye(2, 3) + sigma_affine * jax.random.normal(k1, (batch, 2, 3))
    tps = sigma_tps * jax.random.normal(k2, (batch, points_tps**2))
    return {"theta": theta, "tps": tps}


def warp_coordinates(transform, points):
    """T(z) for points [B,N,2]: θ[:, :2] z + θ[:, 2] + Σ_c w_c r_c² log(r_c + 1e-6).

    r_c is the L1 distance to the control points of a P×P grid; the TPS term is added to both
    coordinates, as in first-order-model.
    """
    theta = transform["theta"]
    out = jnp.einsum("bij,bnj->bni", theta[:, :, :2], points,
                     precision=jax.lax.Precision.HIGHEST) + theta[:, None, :, 2]
    p = int(round(transform["tps"].shape[1] ** 0.5))
    control = coordinate_grid((p, p)).reshape(-1, 2)
    r = jnp.sum(jnp.abs(points[:, :, None, :] - control[None, None]), axis=-1)  # [B,N,P²]
    tps = jnp.sum(r**2 * jnp.log(r + 1e-6) * transform["tps"][:, None, :], axis=-1)
    return out + tps[..., None]


def warp_jacobian(transform, points):
    """dT/dz [B,N,2,2] at `points` [B,N,2] (exact, by forward-mode differentiation)."""
    def single(t, z):
        return warp_coordinates(jax.tree.map(lambda a: a[None], t), z[None, None])[0, 0]
    per_point = jax.vmap(jax.jacfwd(single, argnums=1), in_axes=(None, 0))
    return jax.vmap(per_point)(transform, points)


def transform_frame(transform, frame):
    """The frame resampled at T(z) for every pixel z (reflection padding)."""
    b, h, w, _ = frame.shape
    grid = jnp.broadcast_to(coordinate_grid((h, w)).reshape(1, h * w, 2), (b, h * w, 2))
    grid = warp_coordinates(transform, grid).reshape(b, h, w, 2)
    return grid_sample(frame, grid, padding_mode="reflection")


def equivariance(kp_driving, kp_transformed, transform, value_weight, jacobian_weight):
    """L_E: keypoints of T⁻¹(driving) mapped back by T must match the driving keypoints.

    value: mean |p_D - T(p_T)|; Jacobian: mean |I - J_D⁻¹ (∂T/∂z(p_T) J_T)|.
    """
    losses = {"equivariance_value": value_weight * jnp.mean(jnp.abs(
        kp_driving["value"] - warp_coordinates(transform, kp_transformed["value"])))}
    if "jacobian" in kp_driving:
        jac = jnp.matmul(warp_jacobian(transform, kp_transformed["value"]),
                         kp_transformed["jacobian"], precision=jax.lax.Precision.HIGHEST)
        value = jnp.matmul(inv2x2(kp_driving["jacobian"]), jac, precision=jax.lax.Precision.HIGHEST)
        losses["equivariance_jacobian"] = jacobian_weight * jnp.mean(jnp.abs(jnp.eye(2) - value))
    return losses


# ---------------------------------------------------------------------------------------------
# 3D supervision of the density volume (L_σ, FNeVR eq. 4-6).


def mesh_heatmap(points, weights, shape, variance):
    """F_m = Σ_i w_i exp(-|x - v_i|² / (2σ)) on the D×H×W grid (FNeVR eq. 5-6) → [B,D,H,W].

    points [B,N,3]: x, y in the crop's [-1,1] coordinates (pixel centres at ±1), z the depth
    in [-1,1] along the rays, front (-1) first; weights [B,N]; σ = `variance`. The Gaussian
    factorises over the axes, so it is built from three 1D profiles.
    """
    d, h, w = shape

    def profile(coords, n):
        return jnp.exp(-((coords[..., None] - jnp.linspace(-1.0, 1.0, n)) ** 2) / (2 * variance))

    gx, gy, gz = profile(points[..., 0], w), profile(points[..., 1], h), profile(points[..., 2], d)
    return jnp.einsum("bn,bnd,bnh,bnw->bdhw", weights, gz, gy, gx,
                      precision=jax.lax.Precision.HIGHEST)


def sigma_matching(sigma_map, points, weights, valid, alpha1, alpha2, variance):
    """L_σ = exp(-α1 ⟨F_σ, F_m⟩) - α2 (FNeVR eq. 4), averaged over the samples where `valid`.

    sigma_map [B,D,H,W,N_σ] is F_σ; ⟨F_σ, F_m⟩ is the F_m-weighted mean over voxels of the
    channel-mean of ReLU(F_σ), i.e. Σ_x F_m(x) F̄_σ(x) / Σ_x F_m(x), so α1 acts on a scale that
    does not depend on the grid size or the number of points (the paper leaves the
    normalisation open). The ReLU (as the renderer applies to densities) keeps the product
    non-negative, so the loss stays in (-α2, 1 - α2]. Samples without points (`valid` false)
    contribute nothing.
    """
    b, d, h, w, _ = sigma_map.shape
    f_m = mesh_heatmap(points, weights, (d, h, w), variance)
    f_sigma = jnp.mean(nn.relu(sigma_map.astype(jnp.float32)), axis=-1)
    inner = jnp.sum(f_m * f_sigma, axis=(1, 2, 3)) / (jnp.sum(f_m, axis=(1, 2, 3)) + 1e-8)
    per_sample = jnp.exp(-alpha1 * inner) - alpha2
    valid = valid.astype(jnp.float32)
    return jnp.sum(per_sample * valid) / jnp.maximum(jnp.sum(valid), 1.0)


class MeshWeightPredictor(nn.Module):
    """The small CNN of FNeVR eq. 6 that predicts the weight w_i ∈ (0, 1) of each mesh point.

    It reads the warped feature F_w (aligned with the driving frame) and the points, and
    scores every point from the feature sampled at its (x, y) location.
    """
    width: int = 32
    dtype: Any = jnp.float32   # of the convs; the per-point MLP runs in float32

    @nn.compact
    def __call__(self, feature, points):
        x = nn.relu(nn.Conv(self.width, (3, 3), strides=(2, 2), dtype=self.dtype,
                            name="conv_0")(feature))
        x = nn.relu(nn.Conv(self.width, (3, 3), dtype=self.dtype, name="conv_1")(x))
        sampled = grid_sample(x, points[:, None, :, :2].astype(x.dtype))[:, 0]  # [B,N,width]
        h = jnp.concatenate([sampled.astype(jnp.float32), points[..., 2:]], axis=-1)
        h = nn.relu(nn.Dense(self.width, name="dense_0")(h))
        return jax.nn.sigmoid(nn.Dense(1, name="dense_1")(h)[..., 0])


def pose_editor_loss(kp_edit, kp_driving, lambda1, lambda2):
    """L_editor = λ1 L1(p_D, δ_value) + λ2 L1(J_D, δ_Jacobian) (FNeVR eq. 12)."""
    loss = lambda1 * jnp.mean(jnp.abs(kp_driving["value"] - kp_edit["value"]))
    if "jacobian" in kp_driving:
        loss += lambda2 * jnp.mean(jnp.abs(kp_driving["jacobian"] - kp_edit["jacobian"]))
    return loss
