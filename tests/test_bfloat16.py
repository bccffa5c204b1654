"""bfloat16 mixed precision in training (`config.dtype`): every network computes in bfloat16,
the VGG loss network and the discriminator included, while parameters, optimizer state and
the losses stay float32."""
import re

import jax
import numpy as np

from fnevr_jax.training.fnevr_task import FNeVRTask
from tests import tiny

_CONV = re.compile(r"stablehlo\.convolution\((%[\w#]+), (%[\w#]+)\)")


def _convolutions(step_text):
    """[(kernel operand, operand dtypes)] of every convolution of a lowered program."""
    out = []
    for line in step_text.splitlines():
        match = _CONV.search(line)
        if match:
            out.append((match.group(2), re.findall(r"x(bf16|f32|f64)>", line)))
    return out


def test_bfloat16_step_computes_every_network_in_bfloat16_and_keeps_float32_state(tiny_data):
    results = {}
    for dtype in ("float32", "bfloat16"):
        task = FNeVRTask(tiny.config(tiny_data, dtype=dtype))
        state = jax.jit(task.init_state)(jax.random.key(0))
        batch = next(iter(task.train_data(0)))
        step = jax.jit(task.train_step)
        args = (state, batch, jax.random.key(1), task.frozen)
        results[dtype] = (_convolutions(step.lower(*args).as_text()), jax.device_get(step(*args)))
    convs32, (_, m32) = results["float32"]
    convs16, (state16, m16) = results["bfloat16"]
    assert len(convs16) == len(convs32) > 200
    assert all(types == ["f32"] * 3 for _, types in convs32)
    # Every learned conv (kernel an argument: generator, detector, dense motion, FVR, SPADE,
    # discriminator, mesh weights, and the VGG whose frozen weights are an argument too) runs in
    # bfloat16; float32 is left only to fixed filters (the anti-aliased resize's Gaussian).
    learned = [types for kernel, types in convs16 if not kernel.startswith("%cst")]
    assert len(learned) > 200 and all(types == ["bf16"] * 3 for types in learned), learned
    leaves = jax.tree.leaves({"params": state16["params"], "opt_state": state16["opt_state"]})
    assert {x.dtype for x in leaves if np.issubdtype(x.dtype, np.floating)} == {np.dtype("float32")}
    # bfloat16 has 8 mantissa bits: each loss term stays within a few per cent of float32.
    for name, value in m32.items():
        if name.startswith("loss/"):
            assert np.isfinite(m16[name]) and m16[name].dtype == np.float32, name
            np.testing.assert_allclose(m16[name], value, rtol=0.05, atol=5e-3, err_msg=name)
