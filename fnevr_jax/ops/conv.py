"""`lax.conv_general_dilated` with a kernel gradient made of matrix products on CPU.

XLA:CPU computes the gradient of a convolution's kernel as another convolution whose window is
the whole image and whose contraction runs over the batch: for large images that is the
slowest op of a training step (47% of the vox256 step at batch 4, BENCHMARKS.md). Here, on
CPU, for stride-1, undilated, ungrouped NHWC/HWIO convolutions with at most 4x4 taps, at least
32 input and output channels, and either at most 4 taps, large outputs or many channels, the
kernel gradient is one matrix product per tap (p, q) over every output position, one tap at a
time:

    dW[p, q] = X_pad[:, p:p + H_out, q:q + W_out, :]^T dY      ([C_in, N] @ [N, C_out])

The rest (7x7 heads, few channels, small images) is as fast or faster as XLA does it on CPU
(measured in BENCHMARKS.md). GPU and TPU keep XLA's own kernel gradients (not measured here).
The value and the input gradient are always XLA's.

A stride-1, undilated NDHWC/DHWIO 3D convolution (the FVR module's density volume) is, on CPU,
a 2D convolution of the depth windows stacked along channels: [B·D_out, H, W, k_d·C_in] with
the kernel [k_h, k_w, k_d·C_in, C_out] (the same sums, in another order). XLA:CPU's own 3D
convolutions are 2-4x slower (BENCHMARKS.md). Other convolutions go to
`lax.conv_general_dilated`.
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1),
                                 out_spec=(0, 3, 1, 2))
_NDHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 4, 1, 2, 3), rhs_spec=(4, 3, 0, 1, 2),
                                  out_spec=(0, 4, 1, 2, 3))
MIN_CHANNELS, MAX_TAPS = 32, 16
MIN_OUTPUT_PIXELS, MIN_CHANNEL_PRODUCT, FEW_TAPS = 96 * 96, 128 * 256, 4   # any suffices


def _plain_cpu_conv(lhs_shape, rhs_shape, window_strides, lhs_dilation, rhs_dilation,
                    dimension_numbers, feature_group_count, batch_group_count, layout=_NHWC):
    """A stride-1, undilated, ungrouped convolution in `layout` (NHWC/HWIO or NDHWC/DHWIO), on
    CPU."""
    return (len(lhs_shape) == len(layout.lhs_spec) and jax.default_backend() == "cpu"
            and all(s == 1 for s in window_strides)
            and all(d == 1 for d in (lhs_dilation or ()) + (rhs_dilation or ()))
            and feature_group_count == 1 and batch_group_count == 1
            and lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers) == layout)


def uses_matmul_kernel_gradient(lhs_shape, rhs_shape, window_strides, padding,
                                lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                                feature_group_count=1, batch_group_count=1):
    """Whether `conv_general_dilated` computes this convolution's kernel gradient itself."""
    if isinstance(padding, str) or not _plain_cpu_conv(
            lhs_shape, rhs_shape, window_strides, lhs_dilation, rhs_dilation,
            dimension_numbers, feature_group_count, batch_group_count):
        return False
    kh, kw, ci, co = rhs_shape
    ho, wo = (lhs_shape[i] + sum(padding[i - 1]) - rhs_shape[i - 1] + 1 for i in (1, 2))
    return (kh * kw <= MAX_TAPS and min(ci, co) >= MIN_CHANNELS
            and (kh * kw <= FEW_TAPS or ho * wo >= MIN_OUTPUT_PIXELS
                 or ci * co >= MIN_CHANNEL_PRODUCT))


def _is_unpadded(lhs_shape, rhs_shape, window_strides, padding, lhs_dilation, rhs_dilation,
                 dimension_numbers, feature_group_count, batch_group_count):
    """A plain CPU convolution (`_plain_cpu_conv`) without padding."""
    unpadded = padding == "VALID" or (not isinstance(padding, str)
                                      and all(p == 0 for pair in padding for p in pair))
    return unpadded and _plain_cpu_conv(lhs_shape, rhs_shape, window_strides, lhs_dilation,
                                        rhs_dilation, dimension_numbers, feature_group_count,
                                        batch_group_count)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
    """Drop-in for `lax.conv_general_dilated` (and `nn.Conv(conv_general_dilated=...)`).

    On CPU a stride-1, undilated NDHWC 3D convolution is a 2D one over stacked depth windows
    (`_depth_stacked_conv3d`).

    On CPU an unpadded (VALID) stride-1 NHWC convolution is computed with one extra zero
    column on the right, whose output column is dropped: XLA:CPU runs unpadded convolutions
    4-5x slower than padded ones (4x4 from 64 to 128 channels at 126x126, batch 4: 174 ms
    against 34; the discriminator's and the keypoint heads' convolutions are unpadded)."""
    if not isinstance(padding, str) and _plain_cpu_conv(
            lhs.shape, rhs.shape, window_strides, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, _NDHWC):
        return _depth_stacked_conv3d(lhs, rhs, padding, precision, preferred_element_type)
    if _is_unpadded(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation,
                    dimension_numbers, feature_group_count, batch_group_count):
        return conv_general_dilated(
            lhs, rhs, window_strides, ((0, 0), (0, 1)), dimension_numbers=dimension_numbers,
            precision=precision, preferred_element_type=preferred_element_type)[:, :, :-1]
    if not uses_matmul_kernel_gradient(lhs.shape, rhs.shape, window_strides, padding,
                                       lhs_dilation, rhs_dilation, dimension_numbers,
                                       feature_group_count, batch_group_count):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type)
    return _conv(lhs, rhs, tuple(tuple(int(p) for p in pair) for pair in padding), precision,
                 preferred_element_type)


def _depth_stacked_conv3d(x, w, padding, precision, preferred_element_type):
    """The 3D convolution of x [B,D,H,W,C] with w [k_d,k_h,k_w,C,O] as one 2D convolution:
    output slice d reads input slices d..d+k_d-1 of the depth-padded x, stacked along channels
    (slice-major, as w's rows after moving k_d next to C)."""
    (d_lo, d_hi), hw_padding = padding[0], tuple(tuple(p) for p in padding[1:])
    kd, kh, kw, ci, co = w.shape
    xp = jnp.pad(x, ((0, 0), (d_lo, d_hi), (0, 0), (0, 0), (0, 0)))
    b, d_out = x.shape[0], xp.shape[1] - kd + 1
    stacked = jnp.concatenate([xp[:, i:i + d_out] for i in range(kd)], axis=-1)
    out = conv_general_dilated(stacked.reshape(b * d_out, *stacked.shape[2:]),
                               w.transpose(1, 2, 0, 3, 4).reshape(kh, kw, kd * ci, co), (1, 1),
                               hw_padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                               precision=precision,
                               preferred_element_type=preferred_element_type)
    return out.reshape(b, d_out, *out.shape[1:])


def _xla_conv(x, w, padding, precision, preferred_element_type):
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC,
                                    precision=precision,
                                    preferred_element_type=preferred_element_type)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, padding, precision, preferred_element_type):
    return _xla_conv(x, w, padding, precision, preferred_element_type)


def _conv_fwd(x, w, padding, precision, preferred_element_type):
    return _xla_conv(x, w, padding, precision, preferred_element_type), (x, w)


def kernel_gradient(x, dy, kernel_shape, padding, precision=None):
    """dL/dW [kh, kw, C_in, C_out] of a stride-1 NHWC convolution of `x` with output
    cotangent `dy`: per tap one matrix product over all output positions (a loop over the
    taps, so one shifted copy of `x` is alive), accumulated in at least float32, returned in
    `x`'s dtype."""
    kh, kw, ci, co = kernel_shape
    xp = jnp.pad(x, ((0, 0),) + padding + ((0, 0),))
    ho, wo = dy.shape[1:3]
    dy = dy.reshape(-1, co).astype(x.dtype)
    acc = jnp.promote_types(x.dtype, jnp.float32)

    def tap(t):
        window = lax.dynamic_slice(xp, (0, t // kw, t % kw, 0), (xp.shape[0], ho, wo, ci))
        return lax.dot_general(window.reshape(-1, ci), dy, (((0,), (0,)), ((), ())), precision,
                               preferred_element_type=acc)

    return lax.map(tap, jnp.arange(kh * kw)).reshape(kh, kw, ci, co).astype(x.dtype)


def _conv_bwd(padding, precision, preferred_element_type, residuals, dy):
    x, w = residuals
    _, input_vjp = jax.vjp(lambda x: _xla_conv(x, w, padding, precision,
                                               preferred_element_type), x)
    dx, = input_vjp(dy)
    return dx, kernel_gradient(x, dy, w.shape, padding, precision)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_of_nearest_upsampled(x, kernel, factor, precision=None):
    """`conv(upsample_nearest(x, factor), kernel)` (stride 1, zero padding k // 2, odd k),
    computed at `x`'s resolution: exact, with fewer products.

    Output row f·i + r reads source rows ⌊(f·i + r + d) / f⌋ = i + ⌊(r + d) / f⌋ for the taps
    d = -k//2 .. k//2, so per phase r the kernel's rows fold onto a few source offsets (for a
    3x3 kernel and f = 4: {-1, 0}, {0}, {0}, {0, 1}). Phases with the same folding share one
    convolution of `x` with the folded kernel; the phases are then interleaved. For 3x3 and f = 4
    that is 25 taps at the low resolution instead of 9 at the high one (5.8x fewer products;
    2.25x for f = 2). Used where the official code upsamples by nearest neighbour and convolves:
    the SPADE layers' shared convolution and the up-blocks (FOMM `UpBlock2d`)."""
    kh, kw = kernel.shape[:2]
    if factor == 1:
        return conv_general_dilated(x, kernel, (1, 1), ((kh // 2,) * 2, (kw // 2,) * 2),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=precision)
    rows, row_phase = _foldings(kh, factor)
    cols, col_phase = _foldings(kw, factor)
    outs = [[_folded_conv(x, kernel, rf, cf, precision) for cf in cols] for rf in rows]
    out = jnp.stack([jnp.stack([outs[a][b] for b in col_phase], 3) for a in row_phase], 2)
    b, h, _, w, _, c = out.shape                          # [B, H, f, W, f, C]
    return out.reshape(b, h * factor, w * factor, c)


def _foldings(k, factor):
    """The distinct tap → source-offset maps of the `factor` phases, and each phase's map."""
    maps = [tuple((r + d - k // 2) // factor for d in range(k)) for r in range(factor)]
    distinct = sorted(set(maps), key=maps.index)
    return distinct, [distinct.index(m) for m in maps]


def _folded_conv(x, kernel, row_map, col_map, precision):
    """The convolution of `x` with `kernel` folded onto the source offsets of one phase."""
    fold = lambda m: jnp.asarray(                            # noqa: E731  [offsets, taps]
        [[float(o == a) for o in m] for a in range(min(m), max(m) + 1)], kernel.dtype)
    folded = jnp.einsum("ad,be,deio->abio", fold(row_map), fold(col_map), kernel,
                        precision=lax.Precision.HIGHEST)
    padding = ((-min(row_map), max(row_map)), (-min(col_map), max(col_map)))
    return conv_general_dilated(x, folded, (1, 1), padding,
                                dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)
