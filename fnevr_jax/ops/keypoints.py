"""Coordinate grids, keypoint Gaussians and 2x2 inverses (FOMM conventions: (x, y) in [-1, 1])."""
import numpy as np
import jax.numpy as jnp


def coordinate_grid(size, dtype=jnp.float32):
    """[h, w, 2] grid of (x, y) with the corner pixel centres at ±1 (`make_coordinate_grid`)."""
    h, w = size
    # Computed in the dtype it is used in, as the official code does (float32 for bfloat16).
    np_dtype = np.float64 if jnp.dtype(dtype) == jnp.float64 else np.float32
    x = 2 * (np.arange(w, dtype=np_dtype) / np_dtype(w - 1)) - 1
    y = 2 * (np.arange(h, dtype=np_dtype) / np_dtype(h - 1)) - 1
    grid = np.stack(np.broadcast_arrays(x[None, :], y[:, None]), axis=-1)
    return jnp.asarray(grid, dtype)


def kp2gaussian(value, size, variance):
    """Gaussians exp(-|z - p|^2 / (2 var)) of keypoints `value` [B,K,2] → [B,h,w,K]."""
    grid = coordinate_grid(size, value.dtype)
    diff = grid[None, :, :, None, :] - value[:, None, None, :, :]
    return jnp.exp(-0.5 * jnp.sum(diff**2, axis=-1) / variance)


def inv2x2(m):
    """Closed-form inverse of [..., 2, 2] matrices (`torch.inverse` on FOMM's Jacobians)."""
    a, b = m[..., 0, 0], m[..., 0, 1]
    c, d = m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    inv = jnp.stack([jnp.stack([d, -b], -1), jnp.stack([-c, a], -1)], -2)
    return inv / det[..., None, None]
