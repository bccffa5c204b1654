"""Volume-rendering core: pinhole rays, stratified samples, encodings and compositing.

Pure functions, channels last, shared by any NeRF-style model. Cameras follow OpenCV (x right,
y down, z forward); extrinsics are camera-to-world [..., 3, 4] (or [..., 4, 4]) and intrinsics
are in pixels with pixel centres at integer + 0.5. Equation numbers refer to the drivable NeRF
head paper (`shared/papers/nerf_head_model.md`).
"""
import flax.struct
import jax
import jax.numpy as jnp

from fnevr_jax.ops.rotations import euler_to_matrix

HIGHEST = jax.lax.Precision.HIGHEST
POSENC_FORMS = ("paper", "headnerf")
TRANSMITTANCE_FORMS = ("exp", "cumprod", "inclusive")


@flax.struct.dataclass
class Rays:
    origins: jax.Array      # [..., 3]
    directions: jax.Array   # [..., 3], unit length


def scale_intrinsics(intrinsics, scale):
    """Intrinsics of the same camera on an image resized by `scale` (rows 0 and 1 scaled)."""
    return intrinsics.at[..., :2, :].multiply(scale)


def inverse_3x3(m):
    """Inverse of [..., 3, 3] matrices in closed form (the adjugate over the determinant):
    elementwise operations only, so it exports to ONNX for any batch, unlike an LU."""
    rows = [m[..., i, :] for i in range(3)]
    # The adjugate's columns are cross products of the rows: inv = [r1 x r2, r2 x r0, r0 x r1] / det.
    cols = [jnp.cross(rows[1], rows[2]), jnp.cross(rows[2], rows[0]), jnp.cross(rows[0], rows[1])]
    det = jnp.sum(rows[0] * cols[0], axis=-1)
    return jnp.stack(cols, axis=-1) / det[..., None, None]


def apply_pose_delta(cam_to_world, euler, translation):
    """Orbits a camera about the world origin: R' = dR R, T' = dR T + dt (HeadNeRF's fitting)."""
    delta = euler_to_matrix(euler)
    rot = jnp.matmul(delta, cam_to_world[..., :3, :3], precision=HIGHEST)
    trans = jnp.einsum("...ij,...j->...i", delta, cam_to_world[..., :3, 3], precision=HIGHEST)
    return jnp.concatenate([rot, (trans + translation)[..., None]], axis=-1)


def look_at_origin(position, up=(0.0, 1.0, 0.0)):
    """Camera-to-world [..., 3, 4] of an OpenCV camera at `position` [..., 3] facing the origin."""
    forward = -position / jnp.linalg.norm(position, axis=-1, keepdims=True)
    right = jnp.cross(forward, jnp.asarray(up, position.dtype))
    right = right / jnp.linalg.norm(right, axis=-1, keepdims=True)
    down = jnp.cross(forward, right)
    rot = jnp.stack([right, down, forward], axis=-1)
    return jnp.concatenate([rot, position[..., None]], axis=-1)


def cast_rays(inv_intrinsics, cam_to_world, height, width, pixel_offset=0.5):
    """One ray per pixel: d = normalise(R_c2w K^-1 [u, v, 1]), o = T_c2w.

    inv_intrinsics K^-1 [..., 3, 3] for an image of `height` x `width` (HeadNeRF's
    `inv_inmat`); `pixel_offset` 0.5 casts through pixel centres, 0.0 through pixel corners
    (HeadNeRF). Returns `Rays` of shape [..., H, W, 3].
    """
    dtype = inv_intrinsics.dtype
    u = jnp.arange(width, dtype=dtype) + pixel_offset
    v = jnp.arange(height, dtype=dtype) + pixel_offset
    uu, vv = jnp.meshgrid(u, v, indexing="xy")
    pixels = jnp.stack([uu, vv, jnp.ones_like(uu)], axis=-1)
    dirs_cam = jnp.einsum("...ij,hwj->...hwi", inv_intrinsics, pixels, precision=HIGHEST)
    dirs = jnp.einsum("...ij,...hwj->...hwi", cam_to_world[..., :3, :3], dirs_cam,
                      precision=HIGHEST)
    dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
    origins = jnp.broadcast_to(cam_to_world[..., None, None, :3, 3], dirs.shape)
    return Rays(origins=origins, directions=dirs)


def z_plane_bounds(rays, z_near, z_far):
    """Distances at which each ray meets the world planes z = z_near and z = z_far.

    HeadNeRF's slab: the head sits at the origin and cameras look toward -z, so rays must have
    d_z < 0; directions with d_z >= -1e-6 are clamped to -1e-6.
    """
    dz = jnp.minimum(rays.directions[..., 2], -1e-6)
    oz = rays.origins[..., 2]
    return (z_near - oz) / dz, (z_far - oz) / dz


def stratified_samples(key, t_near, t_far, num_samples, randomized, position=0.5):
    """One sample per bin of S evenly spaced bins between t_near and t_far [...].

    Training (`randomized`, static) draws each sample uniformly inside its bin from `key`;
    evaluation takes the point `position` of the way into each bin (0.5 the midpoint, 0.0 the
    near edge as HeadNeRF's test mode). Returns sample distances [..., S] and bin lengths
    delta [..., S] (the quadrature weights of NHM eq. 7).
    """
    fractions = jnp.linspace(0.0, 1.0, num_samples + 1, dtype=t_near.dtype)
    edges = t_near[..., None] + (t_far - t_near)[..., None] * fractions
    deltas = edges[..., 1:] - edges[..., :-1]
    if randomized:
        offset = jax.random.uniform(key, deltas.shape, dtype=deltas.dtype)
    else:
        offset = position
    return edges[..., :-1] + offset * deltas, deltas


def ray_points(rays, t):
    """Points o + t d [..., S, 3] at distances t [..., S]."""
    return rays.origins[..., None, :] + t[..., None] * rays.directions[..., None, :]


def posenc_size(dims, num_freqs, form="paper"):
    """Width of `positional_encoding` for `dims` input coordinates."""
    return dims * 2 * num_freqs + (dims if form == "headnerf" else 0)


def positional_encoding(x, num_freqs, form="paper"):
    """gamma(p) per coordinate, interleaved per frequency: [sin(f0 x), cos(f0 x), sin(f1 x), ...].

    form "paper": NHM eq. 2, f_k = 2^k pi, raw input not included. form "headnerf": f_k = 2^k
    (no pi) with the raw input first, the layout of HeadNeRF's `Embedder`.
    """
    if form not in POSENC_FORMS:
        raise ValueError(f"posenc form {form!r} not in {POSENC_FORMS}")
    freqs = 2.0 ** jnp.arange(num_freqs, dtype=x.dtype)
    if form == "paper":
        freqs = freqs * jnp.pi
    scaled = x[..., None, :] * freqs[:, None]
    enc = jnp.stack([jnp.sin(scaled), jnp.cos(scaled)], axis=-2)
    enc = enc.reshape(x.shape[:-1] + (-1,))
    if form == "headnerf":
        enc = jnp.concatenate([x, enc], axis=-1)
    return enc


def compute_weights(sigma, deltas, form="exp"):
    """Discrete NHM eq. 7 over the last axis: alpha, transmittance and weights w_i = T_i alpha_i.

    alpha_i = 1 - exp(-sigma_i delta_i). form "exp": T_i = exp(-sum_{j<i} sigma_j delta_j), so
    sum_i w_i = 1 - T_{S} <= 1; form "cumprod": HeadNeRF's T_i = prod_{j<i} (1 - alpha_j +
    1e-10) (`CalcRayColor._calc_weight`); form "inclusive": FNeVR's official FVR compositing
    (FNeVR eq. 9 as coded), T_i = exp(-sum_{j<=i} sigma_j delta_j), the sample's own density
    included.
    """
    if form not in TRANSMITTANCE_FORMS:
        raise ValueError(f"transmittance form {form!r} not in {TRANSMITTANCE_FORMS}")
    tau = sigma * deltas
    alpha = 1.0 - jnp.exp(-tau)
    if form == "inclusive":
        transmittance = jnp.exp(-jnp.cumsum(tau, axis=-1))
    elif form == "exp":
        cum = jnp.cumsum(tau, axis=-1)
        exclusive = jnp.concatenate([jnp.zeros_like(cum[..., :1]), cum[..., :-1]], -1)
        transmittance = jnp.exp(-exclusive)
    else:
        factors = jnp.concatenate([jnp.ones_like(alpha[..., :1]), 1.0 - alpha[..., :-1] + 1e-10],
                                  -1)
        transmittance = jnp.cumprod(factors, axis=-1)
    return alpha, transmittance, alpha * transmittance


def composite(weights, values, background=None):
    """Integrates per-sample `values` [..., S, C] with `weights` [..., S] (NHM eq. 7).

    Returns (sum_i w_i v_i + (1 - acc) background, acc), acc = sum_i w_i the opacity.
    """
    acc = jnp.sum(weights, axis=-1)
    out = jnp.einsum("...s,...sc->...c", weights, values)
    if background is not None:
        out = out + (1.0 - acc)[..., None] * background
    return out, acc
