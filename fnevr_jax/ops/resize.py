"""Resizes with PyTorch semantics (NHWC), and FOMM's anti-aliased Gaussian downsample."""
import numpy as np
import jax
import jax.numpy as jnp


def _bilinear_taps(in_size, out_size, align_corners):
    """Source indices (i0, i1) and weight of i1 along one axis, as torch's upsample_bilinear2d."""
    i = np.arange(out_size, dtype=np.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = i * scale
    else:
        src = np.maximum((i + 0.5) * (in_size / out_size) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, src - i0


def _lerp_axis(x, axis, out_size, align_corners):
    i0, i1, lam = _bilinear_taps(x.shape[axis], out_size, align_corners)
    shape = [1] * x.ndim
    shape[axis] = out_size
    # float64 weights for float64 x, else rounded to float32 first (as they always were).
    lam = lam if x.dtype == jnp.float64 else lam.astype(np.float32)
    lam = jnp.asarray(lam.reshape(shape), x.dtype)
    return jnp.take(x, i0, axis=axis) * (1 - lam) + jnp.take(x, i1, axis=axis) * lam


def resize_bilinear(x, size, align_corners=False):
    """Bilinear resize of `x` [B,H,W,C] to `size` (h, w), as `F.interpolate(mode="bilinear")`.

    With `align_corners=True` this is `nn.UpsamplingBilinear2d` (used by the SPADE decoder).
    """
    h, w = size
    if (h, w) == x.shape[1:3]:
        return x
    x = _lerp_axis(x, 1, h, align_corners)
    return _lerp_axis(x, 2, w, align_corners)


def resize_nearest(x, size):
    """Nearest resize of `x` [B,H,W,C] to `size` (h, w), as `F.interpolate(mode="nearest")`."""
    for axis, out_size in ((1, size[0]), (2, size[1])):
        in_size = x.shape[axis]
        if in_size != out_size:
            src = np.minimum(np.floor(np.arange(out_size) * (in_size / out_size)), in_size - 1)
            x = jnp.take(x, src.astype(np.int64), axis=axis)
    return x


def upsample_nearest2x(x):
    """Nearest ×2 upsampling of `x` [B,H,W,C] (FOMM's `UpBlock2d` interpolation)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def anti_alias_kernel(scale):
    """The normalised 2D Gaussian of FOMM's `AntiAliasInterpolation2d` (sigma = (1/s - 1)/2)."""
    sigma = (1.0 / scale - 1.0) / 2.0
    size = 2 * round(sigma * 4) + 1
    grid = np.arange(size, dtype=np.float32)
    # exp of the float32 argument, rounded once to float32: torch's float32 exp, bit for bit.
    arg = -((grid - (size - 1) / 2) ** 2) / np.float32(2 * sigma**2)
    g = np.exp(arg.astype(np.float64)).astype(np.float32)
    kernel = g[:, None] * g[None, :]
    return (kernel / kernel.sum()).astype(np.float32)


def anti_alias_downsample(x, scale):
    """Gaussian blur then subsample every 1/scale pixels from pixel 0 (zero padding).

    The strided convolution is written as a stride-1 convolution of the image's s x s
    space-to-depth blocks (s = 1/scale) with the kernel's s x s polyphase components: the same
    products, and its gradient is again a small stride-1 convolution (XLA turns the gradient of
    a strided one into a convolution over a zero-dilated image, which is slow on CPU)."""
    if scale == 1:
        return x
    kernel = anti_alias_kernel(scale)
    size = kernel.shape[0]
    ka = size // 2
    step = int(1 / scale)
    b, h, w, channels = x.shape
    taps = -(-size // step)                                   # polyphase taps per axis
    out_h, out_w = ((n + 2 * ka - size) // step + 1 for n in (h, w))
    rows, cols = step * (out_h + taps - 1), step * (out_w + taps - 1)
    x = jnp.pad(x, ((0, 0), (ka, max(rows - h - ka, 0)), (ka, max(cols - w - ka, 0)), (0, 0)))
    x = x[:, :rows, :cols].reshape(b, rows // step, step, cols // step, step, channels)
    x = x.transpose(0, 1, 3, 5, 2, 4).reshape(b, rows // step, cols // step, -1)
    k = np.pad(kernel, ((0, taps * step - size),) * 2).reshape(taps, step, taps, step)
    k = np.tile(k.transpose(0, 2, 1, 3).reshape(taps, taps, step * step, 1), (1, 1, 1, channels))
    return jax.lax.conv_general_dilated(
        x, jnp.asarray(k, x.dtype), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels, precision=jax.lax.Precision.HIGHEST)
