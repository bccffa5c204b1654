"""The official-parity fixtures: rebuild their PyTorch state dicts from the stored recipe.

Each fixture `.npz` (made with the official FNeVR / first-order-model code, see
`tests/data/README.md`) stores inputs, the official outputs, and a `manifest` from which every
state-dict entry is drawn with numpy alone.
"""
import json
import zlib

import numpy as np


def fixture_state_dict(fixture):
    """{official key: np.ndarray} of a parity fixture (path or loaded npz), and its model name."""
    data = np.load(fixture) if isinstance(fixture, (str, bytes)) or hasattr(fixture, "__fspath__") \
        else fixture
    manifest = json.loads(str(data["manifest"]))
    state = {}
    for entry in manifest["entries"]:
        key, shape, dist = entry["key"], tuple(entry["shape"]), entry["dist"]
        rng = np.random.default_rng([manifest["seed"], zlib.crc32(key.encode())])
        if dist == "normal":
            value = rng.standard_normal(shape) * entry["std"] + entry["mean"]
        elif dist == "uniform":
            value = rng.uniform(entry["low"], entry["high"], size=shape)
        elif dist == "zeros":
            value = np.zeros(shape, np.int64)
        elif dist == "jacobian_bias":
            value = np.tile([1.0, 0.0, 0.0, 1.0], shape[0] // 4) + rng.standard_normal(shape) * entry["std"]
        elif dist == "fixed":
            value = data[f"fixed:{key}"]
        else:
            raise ValueError(f"unknown distribution {dist!r} for {key} in the fixture manifest")
        state[key] = value if dist in ("zeros", "fixed") else value.astype(np.float32)
    return state, manifest["model"]
