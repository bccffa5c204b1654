"""Writes tests/data/tiny_fomm.pth.tar: a checkpoint in the official layout, saved by torch.

Run in two steps (torch is not a project dependency; any environment with torch works):
  python tests/data/make_tiny_checkpoint.py keys    # project env: tiny_fomm_keys.json
  python tests/data/make_tiny_checkpoint.py save    # torch env: the legacy-format .pth.tar
Values are numpy draws seeded by the key (see `value`), so tests can recompute them.
"""
import json
import pathlib
import sys
import zlib

import numpy as np

HERE = pathlib.Path(__file__).parent


def tiny_config():
    sys.path.insert(0, str(HERE.parent.parent))
    from configs import fnevr
    c = fnevr.get_config("fomm")
    c.image_size = 64
    c.kp_detector.update(block_expansion=4, max_features=16, num_blocks=3)
    c.generator.update(block_expansion=4, max_features=16, num_bottleneck_blocks=1)
    c.dense_motion.update(block_expansion=4, max_features=16, num_blocks=3)
    c.discriminator.update(block_expansion=4, max_features=16)
    return c


def value(key, shape):
    if key.endswith("num_batches_tracked"):
        return np.array(7, np.int64)
    draw = np.random.default_rng(zlib.crc32(key.encode())).standard_normal(shape)
    if key.endswith("running_var"):
        draw = np.abs(draw) + 0.5
    return (0.3 * draw).astype(np.float32)


if __name__ == "__main__":
    if sys.argv[1] == "keys":
        import jax
        from fnevr_jax.convert import _buffer_keys, expected_keys
        from fnevr_jax.models import init_variables
        config = tiny_config()
        template = jax.eval_shape(lambda: init_variables(config, jax.random.key(0), False))
        keys = {k: list(v[1]) for k, v in expected_keys(template).items()}
        buffers = {k: v.tolist() for k, v in _buffer_keys(config, ("kp_detector", "generator")).items()}
        (HERE / "tiny_fomm_keys.json").write_text(json.dumps({"keys": keys, "buffers": buffers}))
    else:
        import collections
        import torch
        spec = json.loads((HERE / "tiny_fomm_keys.json").read_text())
        modules = {"kp_detector": collections.OrderedDict(), "generator": collections.OrderedDict()}
        for key, shape in spec["keys"].items():
            module, name = key.split(".", 1)
            modules[module][name] = torch.from_numpy(value(key, tuple(shape)))
        for key, kernel in spec["buffers"].items():
            module, name = key.split(".", 1)
            modules[module][name] = torch.tensor(kernel, dtype=torch.float32)
        checkpoint = {**modules, "epoch": 99,
                      "optimizer_generator": {"state": {}, "param_groups": [{"lr": 2e-4}]}}
        torch.save(checkpoint, HERE / "tiny_fomm.pth.tar", _use_new_zipfile_serialization=False)
        (HERE / "tiny_fomm_keys.json").unlink()
