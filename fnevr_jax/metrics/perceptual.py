"""LPIPS and FID: networks from the offline weight packages (`fnevr_jax.pretrained`)."""
import functools

import jax
import numpy as np
import scipy.linalg

from fnevr_jax.ops import resize_bilinear
from fnevr_jax.pretrained import inception
from fnevr_jax.pretrained import lpips as lpips_lib


def lpips(x, y, net="alex"):
    """LPIPS v0.1 distance (B,) between NHWC batches in [0, 1]; net "alex" or "vgg"."""
    return lpips_lib.lpips(x, y, net)


@functools.cache
def _features_fn():
    """The jitted resize + Inception, its weights (on the device) an argument of the program."""
    model, variables = inception.load_inception()

    @jax.jit
    def features(variables, images):
        size = inception.INPUT_SIZE
        x = resize_bilinear(images.astype(np.float32), (size, size))
        return model.apply(variables, x * 2.0 - 1.0)
    variables = jax.device_put(variables)
    return lambda images: features(variables, images)


def inception_features(images):
    """FID pool3 features (B, 2048) of NHWC images in [0, 1], any size.

    Images are resized to 299x299 bilinearly (PyTorch's `interpolate`, as pytorch-fid) and
    mapped to [-1, 1] before the TF Inception network.
    """
    return _features_fn()(images)


def feature_statistics(features):
    """Mean and covariance (float64) of features (N, D)."""
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two Gaussians (pytorch-fid's recipe:
    a diagonal offset when the product is singular, the real part of the square root)."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(features_a, features_b):
    """FID between two feature sets (N, 2048) and (M, 2048); needs at least 2 of each."""
    if len(features_a) < 2 or len(features_b) < 2:
        raise ValueError("FID needs at least 2 images in each set")
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))
