"""Operations against hand-computed values, closed forms and independent references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import skimage.transform

from fnevr_jax.ops import (anti_alias_downsample, anti_alias_kernel, conv_general_dilated,
                           conv_of_nearest_upsampled, coordinate_grid, grid_sample, inv2x2,
                           kp2gaussian, max_pool, resize_bilinear, resize_nearest,
                           upsample_nearest2x)
from fnevr_jax.ops.conv import kernel_gradient, uses_matmul_kernel_gradient

IMG = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)[None, :, :, None]  # H=2, W=3

# (gx, gy) → expected value, worked out by hand from PyTorch's definitions (see module docstring
# of fnevr_jax/ops/grid_sample.py): align_corners=True maps x = (gx+1)/2·(W-1); False maps
# x = ((gx+1)·W - 1)/2; zeros drops out-of-range taps, border clamps, reflection mirrors.
CASES = {
    (True, "zeros"): {(-1, -1): 1.0, (1, 1): 6.0, (0, 0): 3.5, (1.5, 0): 2.25, (-2, -1): 0.0},
    (True, "border"): {(-1, -1): 1.0, (1, 1): 6.0, (0, 0): 3.5, (1.5, 0): 4.5, (-2, -1): 1.0},
    (True, "reflection"): {(-1, -1): 1.0, (1, 1): 6.0, (0, 0): 3.5, (1.5, 0): 4.0, (-2, -1): 2.0},
    (False, "zeros"): {(-1, -1): 0.25, (1, 1): 1.5, (0, 0): 3.5, (1, 0): 2.25, (-1.5, 0): 0.0},
    (False, "border"): {(-1, -1): 1.0, (1, 1): 6.0, (0, 0): 3.5, (1, 0): 4.5, (-1.5, 0): 2.5},
    (False, "reflection"): {(-1, -1): 1.0, (1, 1): 6.0, (0, 0): 3.5, (1, 0): 4.5,
                            (-1.5, 0): 2.75},
}


@pytest.mark.parametrize("align_corners,padding", sorted(CASES))
def test_grid_sample_hand_values(align_corners, padding):
    points = CASES[(align_corners, padding)]
    grid = jnp.asarray(list(points), jnp.float32)[None, None]  # [1,1,N,2]
    out = grid_sample(jnp.asarray(IMG), grid, padding, align_corners)[0, 0, :, 0]
    np.testing.assert_allclose(out, list(points.values()), atol=1e-6)


def test_grid_sample_identity_is_not_exact_without_align_corners():
    ones = jnp.ones((1, 4, 4, 1))
    out = grid_sample(ones, coordinate_grid((4, 4))[None])[0, :, :, 0]
    np.testing.assert_allclose(out[0, 0], 0.25, atol=1e-6)  # corners lose 3 of 4 taps
    np.testing.assert_allclose(out[0, 1:3], 0.5, atol=1e-6)  # edges lose 2
    np.testing.assert_allclose(out[1:3, 1:3], 1.0, atol=1e-6)
    exact = grid_sample(ones, coordinate_grid((4, 4))[None], align_corners=True)
    np.testing.assert_allclose(exact, 1.0, atol=1e-6)


def _reference_sample(img, gx, gy, padding, align_corners):
    """Scalar re-derivation: unnormalise, pad, then bilinear with explicit out-of-range checks."""
    h, w = img.shape

    def coord(g, size):
        c = (g + 1) / 2 * (size - 1) if align_corners else ((g + 1) * size - 1) / 2
        if padding == "border":
            c = min(max(c, 0), size - 1)
        elif padding == "reflection":
            lo, hi = (0, size - 1) if align_corners else (-0.5, size - 0.5)
            span = hi - lo
            d = abs(c - lo)
            c = lo + (d % span if int(d // span) % 2 == 0 else span - d % span)
            c = min(max(c, 0), size - 1)
        return c

    x, y = coord(gx, w), coord(gy, h)
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    total = 0.0
    for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        if 0 <= xi < w and 0 <= yi < h:
            total += (1 - abs(x - xi)) * (1 - abs(y - yi)) * img[yi, xi]
    return total


@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_random_points(padding, align_corners):
    rng = np.random.default_rng(0)
    img = rng.standard_normal((5, 7)).astype(np.float32)
    pts = rng.uniform(-2.5, 2.5, size=(64, 2)).astype(np.float32)
    out = grid_sample(jnp.asarray(img)[None, :, :, None], jnp.asarray(pts)[None, None],
                      padding, align_corners)[0, 0, :, 0]
    ref = [_reference_sample(img, gx, gy, padding, align_corners) for gx, gy in pts]
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_grid_sample_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    img = jnp.asarray(rng.standard_normal((1, 6, 6, 2)), jnp.float32)
    grid = jnp.asarray(rng.uniform(-0.9, 0.9, size=(1, 3, 3, 2)), jnp.float32)
    probe = jnp.asarray(rng.standard_normal((1, 3, 3, 2)), jnp.float32)

    def loss(img, grid):
        return jnp.sum(grid_sample(img, grid, "border") * probe)

    g_img, g_grid = jax.jit(jax.grad(loss, argnums=(0, 1)))(img, grid)
    eps = 1e-3
    for idx in [(0, 1, 2, 0), (0, 2, 0, 1)]:
        d = jnp.zeros_like(grid).at[idx].set(eps)
        fd = (loss(img, grid + d) - loss(img, grid - d)) / (2 * eps)
        np.testing.assert_allclose(g_grid[idx], fd, rtol=2e-2, atol=2e-3)
    for idx in [(0, 2, 3, 0), (0, 4, 1, 1)]:
        d = jnp.zeros_like(img).at[idx].set(eps)
        fd = (loss(img + d, grid) - loss(img - d, grid)) / (2 * eps)
        np.testing.assert_allclose(g_img[idx], fd, rtol=2e-2, atol=2e-3)
    # Every pixel gradient equals the summed bilinear weights times the probe (linear in img).
    ref = jax.vjp(lambda x: grid_sample(x, grid, "border"), img)[1](probe)[0]
    np.testing.assert_allclose(g_img, ref, atol=1e-6)


# impl="matmul" (scatter-free) against the default gather: forward and both gradients.
GRAD_CASES = [(p, a) for p in ("zeros", "border") for a in (False, True)]


@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("channels", [2, 9])  # C < W: separable path; C >= W: dense matrix
def test_grid_sample_matmul_forward_equals_gather(padding, align_corners, channels):
    rng = np.random.default_rng(3)
    img = jnp.asarray(rng.standard_normal((2, 5, 7, channels)), jnp.float32)
    grid = jnp.asarray(rng.uniform(-1.6, 1.6, size=(2, 6, 4, 2)), jnp.float32)  # some outside
    ref = grid_sample(img, grid, padding, align_corners)
    out = grid_sample(img, grid, padding, align_corners, impl="matmul")
    assert out.shape == ref.shape == (2, 6, 4, channels)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    pts = np.asarray(grid[0, 0])
    scalar = [_reference_sample(np.asarray(img[0, :, :, 1]), gx, gy, padding, align_corners)
              for gx, gy in pts]
    np.testing.assert_allclose(out[0, 0, :, 1], scalar, atol=1e-5)


def _probe_loss(impl, padding, align_corners, probe):
    def loss(img, grid):
        return jnp.sum(grid_sample(img, grid, padding, align_corners, impl) * probe)
    return loss


@pytest.mark.parametrize("impl", ["gather", "matmul"])
@pytest.mark.parametrize("padding,align_corners", GRAD_CASES)
@pytest.mark.parametrize("channels", [2, 9])
def test_grid_sample_gradients_float64_finite_differences(impl, padding, align_corners, channels):
    """Every entry of both gradients against central differences, in float64, with points inside,
    across the border and outside the image (zeros: taps dropped; border: clamped)."""
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        img = jnp.asarray(rng.standard_normal((1, 4, 5, channels)), jnp.float64)
        grid = jnp.asarray(rng.uniform(-1.4, 1.4, size=(1, 3, 4, 2)), jnp.float64)
        probe = jnp.asarray(rng.standard_normal((1, 3, 4, channels)), jnp.float64)
        loss = jax.jit(_probe_loss(impl, padding, align_corners, probe))
        g_img, g_grid = jax.grad(loss, argnums=(0, 1))(img, grid)
        eps = 1e-6
        for arg, grad in ((0, g_img), (1, g_grid)):
            base = (img, grid)[arg]
            basis = jnp.eye(base.size, dtype=jnp.float64).reshape(-1, *base.shape) * eps

            def diff(d, arg=arg):
                plus = [img, grid]
                minus = [img, grid]
                plus[arg] = plus[arg] + d
                minus[arg] = minus[arg] - d
                return (loss(*plus) - loss(*minus)) / (2 * eps)

            fd = jax.vmap(diff)(basis).reshape(base.shape)
            np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
        assert np.abs(np.asarray(g_grid)).max() > 0.1 and np.abs(np.asarray(g_img)).max() > 0.1
        # forward mode agrees with reverse mode along a random direction
        d_img = jnp.asarray(rng.standard_normal(img.shape), jnp.float64)
        d_grid = jnp.asarray(rng.standard_normal(grid.shape), jnp.float64)
        tangent = jax.jvp(loss, (img, grid), (d_img, d_grid))[1]
        np.testing.assert_allclose(tangent, jnp.sum(g_img * d_img) + jnp.sum(g_grid * d_grid),
                                   rtol=1e-10)


@pytest.mark.parametrize("padding,align_corners", GRAD_CASES + [("reflection", False)])
@pytest.mark.parametrize("channels", [3, 16])
def test_grid_sample_matmul_gradients_equal_gather(padding, align_corners, channels):
    rng = np.random.default_rng(5)
    img = jnp.asarray(rng.standard_normal((2, 8, 8, channels)), jnp.float32)
    grid = jnp.asarray(rng.uniform(-1.3, 1.3, size=(2, 8, 8, 2)), jnp.float32)
    probe = jnp.asarray(rng.standard_normal((2, 8, 8, channels)), jnp.float32)
    grads = {impl: jax.jit(jax.grad(_probe_loss(impl, padding, align_corners, probe),
                                    argnums=(0, 1)))(img, grid)
             for impl in ("gather", "matmul")}
    for ref, out in zip(grads["gather"], grads["matmul"]):
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_grid_sample_rejects_unknown_impl():
    with pytest.raises(ValueError, match="impl must be one of"):
        grid_sample(jnp.ones((1, 2, 2, 1)), jnp.zeros((1, 1, 1, 2)), impl="scatter")


def test_resize_bilinear_align_corners_true_matches_map_coordinates():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 5, 7, 2)).astype(np.float32)
    out = resize_bilinear(jnp.asarray(x), (10, 14), align_corners=True)
    ys = np.arange(10) * 4 / 9
    xs = np.arange(14) * 6 / 13
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    for c in range(2):
        ref = scipy.ndimage.map_coordinates(x[0, :, :, c], [yy, xx], order=1)
        np.testing.assert_allclose(out[0, :, :, c], ref, atol=1e-5)


def test_resize_bilinear_half_pixel_matches_skimage():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8)).astype(np.float32)
    out = resize_bilinear(jnp.asarray(x)[None, :, :, None], (12, 24))[0, :, :, 0]
    ref = skimage.transform.resize(x, (12, 24), order=1, mode="edge", anti_aliasing=False)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(resize_bilinear(jnp.asarray([[[[0.0], [1.0]]]]), (1, 4))[0, 0, :, 0],
                               [0.0, 0.25, 0.75, 1.0], atol=1e-6)


def test_resize_nearest():
    x = jnp.arange(6.0).reshape(1, 2, 3, 1)
    np.testing.assert_array_equal(upsample_nearest2x(x)[0, :, :, 0],
                                  np.repeat(np.repeat(np.arange(6.0).reshape(2, 3), 2, 0), 2, 1))
    np.testing.assert_array_equal(resize_nearest(x, (4, 6)), upsample_nearest2x(x))
    np.testing.assert_array_equal(resize_nearest(x, (1, 3))[0, 0, :, 0], [0.0, 1.0, 2.0])


@pytest.mark.parametrize("scale", [0.25, 0.5, 0.125])
@pytest.mark.parametrize("size", [(32, 32), (30, 27)])
def test_anti_alias_downsample(scale, size):
    """The polyphase form equals the blur-then-subsample (scipy), and its gradient equals that
    of the strided convolution it replaces."""
    kernel = anti_alias_kernel(scale)
    sigma = (1 / scale - 1) / 2
    assert kernel.shape[0] == 2 * round(4 * sigma) + 1
    np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-6)
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(1, *size, 2)).astype(np.float32)
    out = anti_alias_downsample(jnp.asarray(x), scale)
    k = kernel.shape[0] // 2
    step = int(1 / scale)
    for c in range(2):
        padded = np.pad(x[0, :, :, c], k)  # zero padding
        ref = scipy.signal.correlate2d(padded, kernel, mode="valid")[::step, ::step]
        np.testing.assert_allclose(out[0, :, :, c], ref, atol=1e-5)
    strided = lambda x: jax.lax.conv_general_dilated(                       # noqa: E731
        x, jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, 2))), (step, step),
        ((k, k), (k, k)), dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2,
        precision=jax.lax.Precision.HIGHEST)
    weights = jnp.asarray(rng.standard_normal(out.shape), jnp.float32)
    grad, ref_grad = (jax.grad(lambda x: jnp.sum(f(x) * weights))(jnp.asarray(x))
                      for f in (lambda x: anti_alias_downsample(x, scale), strided))
    # float32 summation order: at most 4.8e-7 apart here (AVX2 and AVX-512), entries ~1
    np.testing.assert_allclose(grad, ref_grad, atol=1e-5)


def test_coordinate_grid_and_kp2gaussian_closed_form():
    grid = coordinate_grid((5, 9))
    np.testing.assert_allclose(grid[0, 0], [-1, -1])
    np.testing.assert_allclose(grid[-1, -1], [1, 1])
    np.testing.assert_allclose(grid[2, 4], [0, 0], atol=1e-7)
    np.testing.assert_allclose(grid[0, 1], [-0.75, -1])  # x varies along the width
    kp = jnp.asarray([[[0.0, 0.0], [0.5, -1.0]]])
    heat = kp2gaussian(kp, (5, 9), 0.01)
    assert heat.shape == (1, 5, 9, 2)
    np.testing.assert_allclose(heat[0, 2, 4, 0], 1.0)
    np.testing.assert_allclose(heat[0, 2, 5, 0], np.exp(-0.25**2 / 0.02), rtol=1e-6)
    np.testing.assert_allclose(heat[0, 0, 6, 1], 1.0)


def test_inv2x2_matches_numpy():
    rng = np.random.default_rng(5)
    m = rng.standard_normal((3, 4, 2, 2)).astype(np.float32) + 2 * np.eye(2, dtype=np.float32)
    np.testing.assert_allclose(inv2x2(jnp.asarray(m)), np.linalg.inv(m), rtol=1e-5, atol=1e-5)


# (kernel, padding, C_in, C_out): 3x3 as in the blocks and SPADE, 7x7 heads, the
# discriminator's 4x4 VALID, a 1x1.
CONV_CASES = [(3, 1, 40, 24), (7, 3, 3, 8), (7, 0, 36, 5), (4, 0, 8, 16), (1, 0, 33, 7)]
DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("kernel,padding,cin,cout", CONV_CASES)
def test_conv_kernel_gradient_equals_xla(kernel, padding, cin, cout):
    """`ops.conv.kernel_gradient` (a matrix product per tap) is XLA's kernel gradient: to 1e-12
    in float64, and within bfloat16 rounding in bfloat16."""
    pad = ((padding, padding),) * 2
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(keys[0], (2, 11, 9, cin), jnp.float64)
        w = jax.random.normal(keys[1], (kernel, kernel, cin, cout), jnp.float64) / kernel
        xla = lambda w: jax.lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=DN)  # noqa
        dy = jax.random.normal(keys[2], xla(w).shape, jnp.float64)
        ref, = jax.vjp(xla, w)[1](dy)
        ours = kernel_gradient(x, dy, w.shape, pad)
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
        low = kernel_gradient(x.astype(jnp.bfloat16), dy.astype(jnp.bfloat16), w.shape, pad)
        assert low.dtype == jnp.bfloat16
        assert np.abs(np.asarray(low, np.float64) - ref).max() < 0.02 * np.abs(ref).max()


@pytest.mark.parametrize("factor,kernel", [(1, 3), (2, 3), (3, 5), (4, 3), (4, 1)])
def test_conv_of_nearest_upsampled_is_the_convolution_of_the_upsampled_image(factor, kernel):
    """`conv_of_nearest_upsampled` (the kernel folded per phase, at the low resolution) equals
    the convolution of the nearest-upsampled image, value and both gradients, to 1e-12 in
    float64; at 3x3 and x4 its program has 25 low-resolution taps' products instead of 144."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(3), 3)
        x = jax.random.normal(keys[0], (2, 5, 6, 4), jnp.float64)
        w = jax.random.normal(keys[1], (kernel, kernel, 4, 3), jnp.float64)
        pad = ((kernel // 2,) * 2,) * 2
        direct = lambda x, w: jax.lax.conv_general_dilated(                  # noqa: E731
            resize_nearest(x, (5 * factor, 6 * factor)), w, (1, 1), pad, dimension_numbers=DN)
        folded = lambda x, w: conv_of_nearest_upsampled(x, w, factor)       # noqa: E731
        dy = jax.random.normal(keys[2], (2, 5 * factor, 6 * factor, 3), jnp.float64)
        for f in (direct, folded):
            value, vjp = jax.vjp(f, x, w)
            if f is direct:
                ref = (value, *vjp(dy))
            else:
                for ours, theirs in zip((value, *vjp(dy)), ref):
                    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    if (factor, kernel) == (4, 3):
        flops = jax.jit(folded).lower(x.astype(jnp.float32), w.astype(jnp.float32)).compile()
        flops = flops.cost_analysis()["flops"]
        assert flops < 0.25 * 2 * x.size * 16 * 9 * 3


@pytest.mark.parametrize("kernel,cin,cout", [(4, 64, 64), (7, 8, 5), (1, 3, 4)])
def test_unpadded_conv_is_computed_padded_on_cpu(kernel, cin, cout):
    """An unpadded convolution through `ops.conv_general_dilated` runs padded by one column
    (in its program) and equals `lax.conv_general_dilated`: value and both gradients, to 1e-12
    in float64 (the 4x4 case takes the per-tap kernel gradient too)."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(5), 3)
        x = jax.random.normal(keys[0], (2, 100, 97, cin), jnp.float64)
        w = jax.random.normal(keys[1], (kernel, kernel, cin, cout), jnp.float64) / kernel
        dy = jax.random.normal(keys[2], (2, 101 - kernel, 98 - kernel, cout), jnp.float64)
        results = []
        for conv in (jax.lax.conv_general_dilated, conv_general_dilated):
            f = lambda x, w: conv(x, w, (1, 1), ((0, 0), (0, 0)), dimension_numbers=DN)  # noqa
            value, vjp = jax.vjp(f, x, w)
            results.append((value, *vjp(dy)))
        for ours, ref in zip(*results[::-1]):
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
        program = jax.jit(f).lower(x, w).as_text()
        assert "pad = [[0, 0], [0, 1]]" in program


@pytest.mark.parametrize("kernel,padding,cin,cout", [(3, 1, 8, 8), (3, 0, 5, 7), (1, 0, 4, 6),
                                                     (2, 1, 16, 3)])
def test_conv3d_is_a_2d_convolution_of_stacked_depth_windows_on_cpu(kernel, padding, cin, cout):
    """A 3D convolution through `ops.conv_general_dilated` (the FVR density volume's, 3x3x3
    with 8 channels in `quick`) runs as one 2D convolution (no 3D convolution in its program)
    and equals `lax.conv_general_dilated`: value and both gradients, to 1e-12 in float64, with
    symmetric, asymmetric and no padding."""
    dn3 = ("NDHWC", "DHWIO", "NDHWC")
    pad = ((padding, padding + 1), (padding, padding), (padding + 1, padding))
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(6), 3)
        x = jax.random.normal(keys[0], (2, 6, 9, 7, cin), jnp.float64)
        w = jax.random.normal(keys[1], (kernel,) * 3 + (cin, cout), jnp.float64) / kernel
        results = []
        for conv in (jax.lax.conv_general_dilated, conv_general_dilated):
            f = lambda x, w: conv(x, w, (1, 1, 1), pad, dimension_numbers=dn3)  # noqa: E731
            value, vjp = jax.vjp(f, x, w)
            dy = jax.random.normal(keys[2], value.shape, jnp.float64)
            results.append((value, *vjp(dy)))
        for ours, ref in zip(*results[::-1]):
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
        program = jax.jit(f).lower(x, w).as_text()
        assert "[b, 0, 1, f]x[0, 1, i, o]" in program and "[b, 0, 1, 2, f]" not in program


def test_conv_uses_matmul_kernel_gradient_for_large_cpu_convolutions():
    """Through `ops.conv_general_dilated` a 128x128 32-channel 3x3 convolution has XLA's value
    and input gradient and the per-tap kernel gradient (a loop of matrix products in its
    program); convolutions that XLA does as fast (7x7, few channels, small images) or that
    are not plain (strided, dilated, grouped, string padding) stay `lax.conv_general_dilated`."""
    x = jax.random.normal(jax.random.key(0), (1, 128, 128, 32))
    w = jax.random.normal(jax.random.key(1), (3, 3, 32, 32)) / 10
    pad = ((1, 1), (1, 1))
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w, (1, 1), pad, dimension_numbers=DN)))  # noqa
    ours = jax.jit(jax.grad(loss(conv_general_dilated), argnums=(0, 1)))
    xla = jax.jit(jax.grad(loss(jax.lax.conv_general_dilated), argnums=(0, 1)))
    assert "stablehlo.while" in ours.lower(x, w).as_text()
    assert "stablehlo.while" not in xla.lower(x, w).as_text()
    (dx, dw), (dx_ref, dw_ref) = ours(x, w), xla(x, w)
    np.testing.assert_array_equal(dx, dx_ref)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-4, atol=1e-3 * np.abs(dw_ref).max())

    def used(lhs, rhs, **changes):
        kwargs = dict(window_strides=(1, 1), padding=((1, 1), (1, 1)), dimension_numbers=DN)
        return uses_matmul_kernel_gradient(lhs, rhs, **{**kwargs, **changes})

    assert used((4, 256, 256, 128), (3, 3, 128, 128)) and used((4, 128, 128, 32), (3, 3, 32, 32))
    assert used((4, 126, 126, 64), (4, 4, 64, 128), padding=((0, 0), (0, 0)))   # discriminator
    assert used((4, 64, 64, 512), (3, 3, 512, 512))                  # many channels
    assert used((4, 64, 64, 128), (2, 2, 128, 128), padding=((1, 0), (0, 1)))   # few taps
    assert not used((4, 64, 64, 16), (1, 1, 16, 128), padding=((0, 0), (0, 0)))
    assert not used((4, 256, 256, 64), (7, 7, 64, 64), padding=((3, 3), (3, 3)))
    assert not used((4, 256, 256, 64), (3, 3, 64, 3))
    assert not used((4, 256, 256, 16), (3, 3, 16, 16))
    assert not used((8, 64, 64, 64), (3, 3, 64, 64))
    assert not used((4, 256, 256, 128), (3, 3, 128, 128), window_strides=(2, 2))
    assert not used((4, 256, 256, 128), (3, 3, 128, 128), padding="SAME")
    assert not used((4, 256, 256, 128), (3, 3, 128, 128), rhs_dilation=(2, 2))
    assert not used((4, 256, 256, 128), (3, 3, 64, 128), feature_group_count=2)


def _torch_max_pool(x, window, stride, dy):
    """nn.MaxPool2d's value and input gradient in numpy: each window's maximum, and the
    upstream gradient sent to the window's first maximum (row-major), as PyTorch's backward."""
    b, h, w, c = x.shape
    oh, ow = (h - window) // stride + 1, (w - window) // stride + 1
    value, grad = np.zeros((b, oh, ow, c)), np.zeros_like(x)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + window, j * stride:j * stride + window]
            flat = patch.reshape(b, window * window, c)
            first = flat.argmax(axis=1)                                   # [b, c]
            value[:, i, j] = np.take_along_axis(flat, first[:, None], 1)[:, 0]
            di, dj = np.divmod(first, window)
            for n in range(b):
                np.add.at(grad[n], (i * stride + di[n], j * stride + dj[n], np.arange(c)),
                          dy[n, i, j])
    return value, grad


@pytest.mark.parametrize("window,stride,size", [(2, 2, (8, 8)), (2, 2, (9, 7)), (3, 2, (9, 8))])
def test_max_pool_is_torch_max_pool(window, stride, size):
    """`ops.max_pool` equals nn.MaxPool2d (floor mode), value and gradient, to 1e-12 in float64;
    also after a ReLU, whose windows of zeros tie (the ReLU then passes no gradient)."""
    with jax.enable_x64(True):
        x = np.asarray(jax.random.normal(jax.random.key(3), (2, *size, 5), jnp.float64))
        h, w = ((s - window) // stride + 1 for s in size)
        dy = np.asarray(jax.random.normal(jax.random.key(4), (2, h, w, 5), jnp.float64))
        value, vjp = jax.vjp(lambda x: max_pool(x, window, stride), x)
        ref_value, ref_grad = _torch_max_pool(x, window, stride, dy)
        np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(vjp(dy)[0], ref_grad, rtol=1e-12, atol=1e-12)

        x = x - 1.0                                     # most windows of the ReLU all zero
        value, vjp = jax.vjp(lambda x: max_pool(jax.nn.relu(x), window, stride), x)
        ref_value, ref_grad = _torch_max_pool(np.maximum(x, 0.0), window, stride, dy)
        np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(vjp(dy)[0], ref_grad * (x > 0), rtol=1e-12, atol=1e-12)
