"""Writes the torch_io test fixtures with real torch (not run by the tests).

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchenv/bin/python tests/data/torch_io/make_fixtures.py

Outputs, beside this script:
- state_legacy.pt: the state dict below, saved with _use_new_zipfile_serialization=False;
- state_zip.pt: the same state dict in the default zip format;
- scripted.pt: a tiny torch.jit.script'ed module saved with torch.jit.save;
- expected.npz: every array of the three files under dotted keys ("state.<key>" for the
  state dict, "scripted.<key>" for the module's state_dict()). bfloat16 arrays are stored
  as float32, which is exact.
"""
import collections
import pathlib

import numpy as np
import torch

HERE = pathlib.Path(__file__).parent


def make_state():
    """A state dict covering dtypes, views, shared storage, a 0-d tensor and nesting."""
    g = torch.Generator().manual_seed(0)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    shared = torch.randn(40, generator=g)
    return collections.OrderedDict(
        f32=torch.randn(3, 4, generator=g),
        f64=torch.randn(2, 3, dtype=torch.float64, generator=g),
        i64=torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4),
        u8=torch.randint(0, 256, (5, 2), dtype=torch.uint8, generator=g),
        bool=torch.tensor([[True, False, True], [False, False, True]]),
        bf16=torch.randn(2, 5, generator=g).to(torch.bfloat16),
        f16=torch.randn(3, 3, generator=g).to(torch.float16),
        transposed=base.t(),
        strided=base[1:, 1:6:2],
        shared_head=shared[:10].view(2, 5),
        shared_tail=shared[13:37].view(4, 6).t(),
        scalar=torch.tensor(3.25),
        param=torch.nn.Parameter(torch.randn(4, generator=g)),
        nested={
            "inner": {"w": torch.randn(2, 2, 2, generator=g), "n": 7, "s": "text"},
            "lst": [torch.ones(3, dtype=torch.int32), torch.zeros(2, dtype=torch.int16)],
            "tup": (torch.tensor([1, -2], dtype=torch.int8), 1.5),
        },
    )


class Tiny(torch.nn.Module):
    """A conv, a linear layer, a buffer and a scripted int attribute."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(3, 2))
        self.register_buffer("scale", torch.tensor([0.5, 2.0]))
        self.steps = 4

    def forward(self, x):
        y = self.conv(x).mean(dim=(2, 3))
        return self.head(y) * self.scale * self.steps


def flatten(tree, prefix):
    """Dotted-key arrays of every tensor in nested dicts, lists and tuples."""
    if isinstance(tree, torch.Tensor):
        t = tree.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return {prefix: t.numpy().copy()}
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {}
    out = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}"))
    return out


def main():
    torch.manual_seed(0)
    state = make_state()
    torch.save(state, HERE / "state_legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(state, HERE / "state_zip.pt")
    module = torch.jit.script(Tiny().eval())
    torch.jit.save(module, HERE / "scripted.pt")
    expected = flatten(state, "state")
    expected.update(flatten(dict(module.state_dict()), "scripted"))
    np.savez(HERE / "expected.npz", **expected)


if __name__ == "__main__":
    main()
