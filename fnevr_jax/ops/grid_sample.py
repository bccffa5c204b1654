"""Bilinear `grid_sample` with PyTorch semantics, NHWC.

`grid_sample(x, grid)` reads `x` [B,H,W,C] at the normalised (x, y) locations `grid`
[B,Ho,Wo,2] in [-1, 1], exactly as `torch.nn.functional.grid_sample(mode="bilinear")` does
for the same padding mode and `align_corners` (the official FNeVR code relies on the PyTorch
default, zeros padding and align_corners=False; see parity trap 1 of the spec).

The four corner taps are read with one gather from a flattened image, so the backward pass is
one scatter-add of the same size; the gradient with respect to the grid flows through the
bilinear weights, as in PyTorch.
"""
import jax.numpy as jnp

PADDING_MODES = ("zeros", "border", "reflection")


def _unnormalize(coord, size, align_corners):
    if align_corners:
        return (coord + 1.0) * 0.5 * (size - 1)
    return ((coord + 1.0) * size - 1.0) * 0.5


def _reflect(coord, twice_low, twice_high):
    """Reflects `coord` into [twice_low / 2, twice_high / 2] (PyTorch's reflect_coordinates)."""
    if twice_low == twice_high:
        return jnp.zeros_like(coord)
    low = twice_low / 2.0
    span = (twice_high - twice_low) / 2.0
    coord = jnp.abs(coord - low)
    extra = jnp.mod(coord, span)
    flips = jnp.floor(coord / span)
    return jnp.where(jnp.mod(flips, 2) == 0, extra + low, span - extra + low)


def _source_coordinate(coord, size, padding_mode, align_corners):
    coord = _unnormalize(coord, size, align_corners)
    if padding_mode == "border":
        coord = jnp.clip(coord, 0, size - 1)
    elif padding_mode == "reflection":
        if align_corners:
            coord = _reflect(coord, 0, 2 * (size - 1))
        else:
            coord = _reflect(coord, -1, 2 * size - 1)
        coord = jnp.clip(coord, 0, size - 1)
    return coord


def grid_sample(x, grid, padding_mode="zeros", align_corners=False):
    """Samples `x` [B,H,W,C] at `grid` [B,Ho,Wo,2] ((x, y) in [-1,1]) → [B,Ho,Wo,C]."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    b, h, w, c = x.shape
    out_shape = grid.shape[:-1]
    grid = grid.astype(jnp.promote_types(grid.dtype, jnp.float32))
    gx = _source_coordinate(grid[..., 0], w, padding_mode, align_corners)
    gy = _source_coordinate(grid[..., 1], h, padding_mode, align_corners)
    x0 = jnp.floor(gx)
    y0 = jnp.floor(gy)
    wx1 = gx - x0
    wy1 = gy - y0
    x0 = x0.astype(jnp.int32)
    y0 = y0.astype(jnp.int32)

    xs = jnp.stack([x0, x0 + 1, x0, x0 + 1], axis=-1)
    ys = jnp.stack([y0, y0, y0 + 1, y0 + 1], axis=-1)
    weights = jnp.stack(
        [(1 - wx1) * (1 - wy1), wx1 * (1 - wy1), (1 - wx1) * wy1, wx1 * wy1], axis=-1)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    weights = jnp.where(inside, weights, 0.0)
    index = jnp.clip(ys, 0, h - 1) * w + jnp.clip(xs, 0, w - 1)

    flat = x.reshape(b, h * w, c)
    taps = jnp.take_along_axis(flat, index.reshape(b, -1, 1), axis=1, mode="clip")
    taps = taps.reshape(*out_shape, 4, c)
    out = jnp.sum(weights[..., None].astype(taps.dtype) * taps, axis=-2)
    return out.astype(x.dtype)

