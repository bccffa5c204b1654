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



def _dots(step_text):
    """[(operand dtypes, line)] of every dot_general of a lowered program."""
    out = []
    for line in step_text.splitlines():
        if "stablehlo.dot_general" in line:
            operands = line.split(" : (")[-1].split(") -> ")[0]
            out.append((re.findall(r"x(bf16|f32|f64)>", operands), line))
    return out


def test_nerf_head_bfloat16_step_runs_its_matmuls_and_convolutions_in_bfloat16(tiny_data):
    """The NeRF head's `config.dtype`: the MLP's matmuls and the renderer's and the VGG16 loss
    network's convolutions in bfloat16; rays, densities, compositing, losses and the state stay
    float32."""
    from configs import nerf_head as nerf_head_config
    from fnevr_jax.nerf_head.task import NerfHeadTask

    results = {}
    for dtype in ("float32", "bfloat16"):
        c = nerf_head_config.get_config("quick")
        c.dtype = dtype
        c.data.update(dir=str(tiny_data), worker_count=0, holdout_frames=2)
        c.model.output_size = c.loss.perceptual_size = 32
        task = NerfHeadTask(c)
        state = jax.jit(task.init_state)(jax.random.key(0))
        batch = next(iter(task.train_data(0)))
        step = jax.jit(task.train_step)
        args = (state, batch, jax.random.key(1), task.frozen)
        text = step.lower(*args).as_text()
        results[dtype] = (_dots(text), _convolutions(text), jax.device_get(step(*args)))
    dots32, convs32, (_, m32) = results["float32"]
    dots16, convs16, (state16, m16) = results["bfloat16"]
    assert len(dots16) == len(dots32) and len(convs16) == len(convs32) > 20
    assert all(types == ["bf16"] * 3 for _, types in convs16)
    # float32 is left to the camera rays (precision HIGHEST) and to compositing, the sum over
    # the 24 samples of each ray (forward and backward).
    kept = [line for types, line in dots16 if types != ["bf16"] * 2]
    assert len(dots16) - len(kept) > 30
    assert kept and all("HIGHEST" in line or "x24x" in line or "x24xf32" in line
                        for line in kept), kept
    leaves = jax.tree.leaves(state16)
    assert {x.dtype for x in leaves if np.issubdtype(x.dtype, np.floating)} == {np.dtype("float32")}
    for name, value in m32.items():
        if name.startswith("loss/"):
            assert np.isfinite(m16[name]) and m16[name].dtype == np.float32, name
            np.testing.assert_allclose(m16[name], value, rtol=0.05, err_msg=name)
