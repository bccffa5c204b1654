"""The converted networks reproduce the official PyTorch outputs (tests/data/README.md)."""
import jax
import numpy as np
import pytest

from fnevr_jax.convert import default_config, from_torch_state_dict
from fnevr_jax.models import build_models, module_variables
from fnevr_jax.parity import fixture_state_dict

KP_TOL = 1e-4
IMAGE_TOL = 1e-3


@pytest.fixture(scope="module", params=["fnevr", "fomm"])
def official(request, data_dir):
    data = np.load(data_dir / f"{request.param}_seed7.npz")
    state, model = fixture_state_dict(data)
    assert model == request.param
    variables = from_torch_state_dict(state, model)
    models = build_models(default_config(model))
    source = data["source"].astype(np.float32) / 255
    driving = data["driving"].astype(np.float32) / 255
    kp_fn = jax.jit(models["kp_detector"].apply)
    kp_vars = module_variables(variables, "kp_detector")
    kp_source, kp_driving = kp_fn(kp_vars, source), kp_fn(kp_vars, driving)
    out = jax.jit(models["generator"].apply)(module_variables(variables, "generator"), source,
                                            kp_source, kp_driving)
    return data, kp_source, kp_driving, jax.device_get(out)


def test_keypoints_match(official):
    data, kp_source, kp_driving, _ = official
    for name, kp in (("source", kp_source), ("driving", kp_driving)):
        for field in ("value", "jacobian"):
            np.testing.assert_allclose(kp[field], data[f"kp_{name}_{field}"], rtol=0, atol=KP_TOL)


def test_every_image_output_matches(official):
    data, _, _, out = official
    names = [k for k in ("prediction", "render", "occlusion_map", "mask", "deformed")
             if k in data.files]
    assert {"prediction", "occlusion_map", "mask", "deformed"} <= set(names)
    for name in names:
        np.testing.assert_allclose(out[name], data[name], rtol=0, atol=IMAGE_TOL, err_msg=name)
