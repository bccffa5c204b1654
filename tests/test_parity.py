"""The converted networks compute the official PyTorch function (tests/data/README.md).

The fixtures hold the official outputs in float32 and in float64 (`f64:<name>`). The float32
outputs of these random-weight networks depend on summation order (the official float32
prediction moves by 3e-4 between two CPUs), so no fixed float32 tolerance both holds on
every CPU and catches a convention error. Instead:

1. float64: the project's networks run in float64 (x64 mode, float64 variables, inputs and
   compute) and must equal the official float64 outputs to rounding (about 1e-12 at most).
   This is the check that catches a wrong convention (grid_sample corners, align_corners,
   BatchNorm epsilon, ...). It needs every constant in float64 too: a float32 coordinate grid,
   float32 bilinear weights or an anti-aliasing kernel 1 ulp off torch's float32 one each put
   it 1e-8 (keypoints) to 3e-6 (deformed) away.
2. float32: the project's float32 outputs must be at most FACTOR times as far from the exact
   (official float64) function as the official float32 outputs are, per output, max abs.
3. float32 against the official float32 outputs directly, on the mean absolute difference
   (a max depends on the CPU's rounding, a mean over the whole output hardly does).

Measured on an AMD EPYC (AVX2) CPU, max abs differences, float32 under the tests' 8 simulated
host devices (conftest.py) and, in brackets, in a plain process with one: the float32 results
move with XLA's thread partitioning alone. FOMM and FNeVR share the keypoint-detector and
dense-motion weights, so those rows hold for both.

| output | ours f64 vs off. f64 | off. f32 vs f64 | ours f32 vs f64 (ratio) | ours vs off. f32 |
|---|---|---|---|---|
| kp_source_value     | 6.4e-15 | 1.85e-6 | 2.50e-6 (1.35) [3.28e-6 (1.77)] | 2.09e-6 [2.86e-6] |
| kp_driving_value    | 6.5e-15 | 2.78e-6 | 3.85e-6 (1.39) [3.79e-6 (1.36)] | 2.74e-6 [2.83e-6] |
| kp_source_jacobian  | 1.6e-15 | 4.69e-7 | 5.05e-6 (10.8) [5.28e-6 (11.3)] | 5.48e-6 [5.72e-6] |
| kp_driving_jacobian | 1.6e-15 | 5.86e-7 | 7.07e-6 (12.1) [6.92e-6 (11.8)] | 7.63e-6 [7.51e-6] |
| occlusion_map       | 1.3e-14 | 7.16e-6 | 1.03e-5 (1.44) [1.01e-5 (1.41)] | 9.36e-6 [9.42e-6] |
| mask                | 1.5e-14 | 6.06e-6 | 4.88e-6 (0.81) [5.16e-6 (0.85)] | 5.41e-6 [5.86e-6] |
| deformed            | 5.8e-13 | 2.68e-4 | 4.90e-4 (1.83) [4.45e-4 (1.66)] | 5.41e-4 [6.02e-4] |
| prediction, FOMM    | 2.5e-14 | 1.12e-5 | 2.10e-5 (1.88) [1.98e-5 (1.77)] | 2.25e-5 [2.29e-5] |
| prediction, FNeVR   | 1.5e-12 | 8.96e-4 | 1.09e-3 (1.22) [9.92e-4 (1.11)] | 1.27e-3 [1.64e-3] |
| render (FNeVR)      | 4.9e-14 | 2.08e-5 | 2.26e-5 (1.09) [3.75e-5 (1.81)] | 4.34e-5 [5.83e-5] |
"""
import json

import jax
import numpy as np
import pytest

from fnevr_jax.parity import IMAGE_OUTPUTS, KEYPOINT_OUTPUTS, fixture_outputs

# 1. float64 vs official float64, max abs: about 10x the worst measured value (table above).
F64_TOL = {
    "kp_source_value": 1e-13, "kp_driving_value": 1e-13,        # measured 6.5e-15
    "kp_source_jacobian": 1e-13, "kp_driving_jacobian": 1e-13,  # measured 1.6e-15
    "occlusion_map": 1e-12, "mask": 1e-12,                      # measured 1.3e-14, 1.5e-14
    "render": 1e-12,                                            # measured 4.9e-14
    "deformed": 1e-11, "prediction": 1e-11,                     # measured 5.8e-13, 1.5e-12
}

# 2. max|ours f32 - official f64| <= FACTOR * max|official f32 - official f64|, per output.
# The worst measured ratio is 1.88 (FOMM's prediction; render went from 1.09 to 1.81 with the
# number of host devices); the official code's own max moves by a third between two CPUs
# (3e-4 of 9e-4 on FNeVR's prediction): 1.88 x 1.33 = 2.5, hence 3.
FACTOR = 3.0
# The keypoint Jacobians are the exception, measured ratio 12.1: the official code sums
# heatmap x Jacobian map over the 58x58 positions pairwise; XLA's jitted (fused) reduction on
# CPU loses more (the same float32 conv outputs give Jacobians 5.3e-6 from float64 jitted,
# 2.1e-7 unjitted; the whole detector unjitted is 1.7e-7 from float64, closer than the
# official 4.7e-7). 20 leaves about the headroom FACTOR does.
JACOBIAN_FACTOR = 20.0

# 3. mean|ours f32 - official f32| <= (factor + 1) * mean|official f32 - official f64|: the
# triangle inequality, if our mean distance to float64 is within the factor of the official
# one. Measured ratios (left side / official mean distance): 1.08 (mask) to 1.63 (render),
# [1.23 to 1.68], Jacobians 10.3 and 13.1 [10.6 and 12.7].


def _factor(name):
    return JACOBIAN_FACTOR if name.endswith("jacobian") else FACTOR


@pytest.fixture(scope="module", params=["fnevr", "fomm"])
def official(request, data_dir):
    """(fixture, output names, our float32 outputs, our float64 outputs), computed once."""
    data = np.load(data_dir / f"{request.param}_seed7.npz")
    assert json.loads(str(data["manifest"]))["model"] == request.param
    names = [k for k in KEYPOINT_OUTPUTS + IMAGE_OUTPUTS if k in data.files]
    with jax.enable_x64(True):
        out64 = fixture_outputs(data, np.float64)
    out32 = fixture_outputs(data, np.float32)
    return data, names, out32, out64


def test_fixture_has_every_output_in_float32_and_float64(official):
    data, names, out32, out64 = official
    assert set(KEYPOINT_OUTPUTS) | {"prediction", "occlusion_map", "mask", "deformed"} <= set(names)
    for name in names:
        assert data[f"f64:{name}"].dtype == np.float64
        assert data[name].shape == data[f"f64:{name}"].shape == out32[name].shape \
            == out64[name].shape, name
        assert out32[name].dtype == np.float32 and out64[name].dtype == np.float64, name


def test_float64_matches_official_float64(official):
    data, names, _, out64 = official
    for name in names:
        np.testing.assert_allclose(out64[name], data[f"f64:{name}"], rtol=0, atol=F64_TOL[name],
                                   err_msg=name)


def test_float32_as_close_to_float64_as_official_float32(official):
    data, names, out32, _ = official
    for name in names:
        exact = data[f"f64:{name}"]
        official_distance = np.abs(data[name] - exact).max()
        distance = np.abs(out32[name] - exact).max()
        assert distance <= _factor(name) * official_distance, \
            f"{name}: float32 is {distance:.3g} from float64, the official float32 " \
            f"{official_distance:.3g}"


def test_float32_matches_official_float32_on_average(official):
    data, names, out32, _ = official
    for name in names:
        official_distance = np.abs(data[name] - data[f"f64:{name}"]).mean()
        difference = np.abs(out32[name].astype(np.float64) - data[name]).mean()
        assert difference <= (_factor(name) + 1) * official_distance, \
            f"{name}: mean |ours - official| {difference:.3g}, official mean distance to float64 " \
            f"{official_distance:.3g}"
