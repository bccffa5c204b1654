"""Bilinear `grid_sample` with PyTorch semantics, NHWC.

`grid_sample(x, grid)` reads `x` [B,H,W,C] at the normalised (x, y) locations `grid`
[B,Ho,Wo,2] in [-1, 1], exactly as `torch.nn.functional.grid_sample(mode="bilinear")` does
for the same padding mode and `align_corners` (the official FNeVR code relies on the PyTorch
default, zeros padding and align_corners=False; see parity trap 1 of the spec).

Two implementations of the same function (`impl`), both differentiated by JAX:
- `"gather"` (the default): the four corner taps are read with one gather of rows from a
  flattened image, so the backward pass to the image is one scatter-add of [B, 4·Ho·Wo, C] rows.
- `"matmul"`: no gather and no scatter. Each output's bilinear weights are the outer product of
  a row weight vector over H and a column weight vector over W (two nonzeros each, built by
  comparing floor(coordinate) with an iota), so sampling is batched matrix products: with the
  dense [Ho·Wo, H·W] interpolation matrix when C ≥ W, else separably (first over H, then W).
  Forward and backward are matmuls (tensor cores, TPU MXU), but they cost about 2·Ho·Wo·H·W·C
  FLOPs against the gather's 8·Ho·Wo·C, and a [B, Ho·Wo, H·W] (or [B, Ho·Wo, W, C]) temporary.
Either way the gradient with respect to the grid flows through the bilinear weights (floor has
zero gradient), as in PyTorch; out-of-range taps get weight zero (zeros padding).
"""
import jax
import jax.numpy as jnp

PADDING_MODES = ("zeros", "border", "reflection")
IMPLS = ("gather", "matmul")


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


def grid_sample(x, grid, padding_mode="zeros", align_corners=False, impl="gather"):
    """Samples `x` [B,H,W,C] at `grid` [B,Ho,Wo,2] ((x, y) in [-1,1]) → [B,Ho,Wo,C].

    `impl` picks the formulation (module docstring): "gather" or "matmul" (scatter-free).
    """
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    b, h, w, c = x.shape
    grid = grid.astype(jnp.promote_types(grid.dtype, jnp.float32))
    gx = _source_coordinate(grid[..., 0], w, padding_mode, align_corners)
    gy = _source_coordinate(grid[..., 1], h, padding_mode, align_corners)
    if impl == "matmul":
        return _sample_matmul(x, gx, gy)
    return _sample_gather(x, gx, gy)


def _axis_weights(coord, size, dtype):
    """[..., size] linear-interpolation weights of `coord` (1 - f at floor, f at floor + 1)."""
    low = jnp.floor(coord)[..., None]
    frac = (coord[..., None] - low).astype(dtype)
    index = jnp.arange(size, dtype=low.dtype)
    return jnp.where(index == low, 1 - frac, 0) + jnp.where(index == low + 1, frac, 0)


def _sample_matmul(x, gx, gy):
    b, h, w, c = x.shape
    out_shape = gx.shape
    dtype = x.dtype  # weights cast to the image dtype, as the gather path does
    wx = _axis_weights(gx.reshape(b, -1), w, dtype)  # [B,N,W]
    wy = _axis_weights(gy.reshape(b, -1), h, dtype)  # [B,N,H]
    hi = jax.lax.Precision.HIGHEST
    if c >= w:  # the dense [N, H·W] interpolation matrix is the smaller temporary
        matrix = (wy[:, :, :, None] * wx[:, :, None, :]).reshape(b, -1, h * w)
        out = jnp.einsum("bnp,bpc->bnc", matrix, x.reshape(b, h * w, c).astype(dtype),
                         precision=hi)
    else:  # separably: rows first ([B,N,W,C] temporary), then columns
        rows = jnp.einsum("bnh,bhwc->bnwc", wy, x.astype(dtype), precision=hi)
        out = jnp.einsum("bnw,bnwc->bnc", wx, rows, precision=hi)
    return out.reshape(*out_shape, c).astype(x.dtype)


def _sample_gather(x, gx, gy):
    b, h, w, c = x.shape
    out_shape = gx.shape
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
    return _weighted_taps(weights.astype(taps.dtype), taps).astype(x.dtype)


@jax.custom_jvp
def _weighted_taps(weights, taps):
    """Σ_k weights[..., k] · taps[..., k, :] as four explicit terms: XLA:CPU ran jnp.sum over
    the size-4 tap axis about 10x slower (BENCHMARKS.md, grid_sample)."""
    return sum(weights[..., k, None] * taps[..., k, :] for k in range(4))


@_weighted_taps.defjvp
def _weighted_taps_jvp(primals, tangents):
    """The tangent as one reduction over the taps, whose transpose (the VJP) reduces over C once
    for the weights; the transpose of the four terms (four reductions) was slower."""
    weights, taps = primals
    d_weights, d_taps = tangents
    tangent = (jnp.sum(d_weights[..., None] * taps, axis=-2)
               + jnp.sum(weights[..., None] * d_taps, axis=-2))
    return _weighted_taps(weights, taps), tangent

