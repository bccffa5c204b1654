"""Per-image L1, PSNR and SSIM of NHWC batches in [0, 1] (pure, jittable)."""
import jax
import jax.numpy as jnp
import numpy as np

SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)   # scipy.ndimage's truncate=3.5: an 11x11 window
SSIM_K1, SSIM_K2 = 0.01, 0.03


def l1(x, y):
    """Mean absolute difference per image (B,)."""
    return jnp.mean(jnp.abs(x - y), axis=(1, 2, 3))


def psnr(x, y, data_range=1.0):
    """Peak signal-to-noise ratio in dB per image (B,)."""
    mse = jnp.mean((x - y) ** 2, axis=(1, 2, 3))
    return 10.0 * jnp.log10(data_range ** 2 / mse)


def _gaussian_window():
    t = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1)
    w = np.exp(-0.5 * (t / SSIM_SIGMA) ** 2)
    return w / w.sum()


def _filter_valid(x):
    """Separable Gaussian filter over H and W, keeping only full windows ('valid')."""
    w = _gaussian_window()
    n = len(w)
    h, wd = x.shape[1] - n + 1, x.shape[2] - n + 1
    x = sum(float(w[i]) * x[:, i:i + h] for i in range(n))
    return sum(float(w[i]) * x[:, :, i:i + wd] for i in range(n))


def ssim(x, y, data_range=1.0):
    """Mean SSIM per image (B,), averaged over channels.

    Equals scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range, channel_axis=-1)`: its result is the
    mean over pixels at least 5 from the border, where the window lies inside the image.
    """
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    ux, uy = _filter_valid(x), _filter_valid(y)
    vx = _filter_valid(x * x) - ux * ux
    vy = _filter_valid(y * y) - uy * uy
    vxy = _filter_valid(x * y) - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return jnp.mean(s, axis=(1, 2, 3))


@jax.jit
def image_metrics(prediction, target):
    """{"L1", "PSNR", "SSIM"}, each (B,), for NHWC batches in [0, 1]."""
    prediction = jnp.clip(prediction, 0.0, 1.0)
    return {"L1": l1(prediction, target), "PSNR": psnr(prediction, target),
            "SSIM": ssim(prediction, target)}
