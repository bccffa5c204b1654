"""The official-parity fixtures: rebuild their PyTorch state dicts from the stored recipe.

Each fixture `.npz` (made with the official FNeVR / first-order-model code, see
`tests/data/README.md`) stores inputs, the official outputs, and a `manifest` from which every
state-dict entry is drawn with numpy alone; `fixture_outputs` runs the project's networks on
its inputs in float32 or float64.
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


# The outputs a fixture stores (each also as `f64:<name>`, the official float64 result).
KEYPOINT_OUTPUTS = ("kp_source_value", "kp_source_jacobian", "kp_driving_value",
                    "kp_driving_jacobian")
IMAGE_OUTPUTS = ("prediction", "render", "occlusion_map", "mask", "deformed")


def fixture_outputs(fixture, dtype=np.float32):
    """The project's outputs on a parity fixture's inputs, {fixture output name: np.ndarray}.

    Converts the fixture's state dict, builds the networks with compute dtype `dtype`, casts
    the variables and the inputs (uint8 / 255) to `dtype`, and runs the keypoint detector on
    source and driving and the generator on (source, kp_source, kp_driving), jitted. float64
    needs JAX's x64 mode (`with jax.enable_x64(True):`); it is then float64 everywhere, and is
    compared with the fixture's `f64:` outputs.
    """
    import jax
    import jax.numpy as jnp

    from fnevr_jax.convert import default_config, from_torch_state_dict
    from fnevr_jax.models import build_models, module_variables

    data = np.load(fixture) if isinstance(fixture, (str, bytes)) or hasattr(fixture, "__fspath__") \
        else fixture
    dtype = np.dtype(dtype)
    if jnp.zeros((), dtype).dtype != dtype:
        raise ValueError(f"JAX computes {dtype} as {jnp.zeros((), dtype).dtype}: "
                         "run float64 inside `with jax.enable_x64(True):`")
    state, model = fixture_state_dict(data)
    config = default_config(model)
    config.dtype = dtype.name
    cast = lambda v: np.asarray(v, dtype) if np.asarray(v).dtype.kind == "f" else v
    variables = jax.tree.map(cast, from_torch_state_dict(state, model))
    models = build_models(config)
    source, driving = (data[k].astype(dtype) / dtype.type(255) for k in ("source", "driving"))
    kp_fn = jax.jit(models["kp_detector"].apply)
    kp_vars = module_variables(variables, "kp_detector")
    kp = {"source": kp_fn(kp_vars, source), "driving": kp_fn(kp_vars, driving)}
    generated = jax.jit(models["generator"].apply)(module_variables(variables, "generator"),
                                                  source, kp["source"], kp["driving"])
    out = {f"kp_{name}_{field}": kp[name][field] for name in kp for field in ("value", "jacobian")}
    out.update({k: v for k, v in generated.items() if k in IMAGE_OUTPUTS})
    return {k: np.asarray(v) for k, v in jax.device_get(out).items()}


def headnerf_fit_problem(fixture, code_noise=0.3, seed=0):
    """A HeadNeRF fitting problem from the HeadNeRF parity fixture (numpy, batch 1).

    The target is HeadNeRF's render of the fixture's first head (`merge_img`) on white outside
    the head mask, the mask its opacity >= 0.5 at the image size (as `FittingSingleImage`
    whitens the photo outside the mask); the start codes are the true ones plus `code_noise`
    N(0, 1) (numpy seed `seed`); the camera is the fixture's. Keys: target [1, S, S, 3], mask
    [1, S, S], iden_code, expr_code, text_code, illu_code, c2w_rmats, c2w_tvecs, inv_inmats.
    """
    rng = np.random.default_rng(seed)
    scale = fixture["merge_img"].shape[1] // fixture["opacity"].shape[1]
    mask = np.kron(fixture["opacity"][0] >= 0.5, np.ones((scale, scale)))[None]
    target = np.where(mask[..., None] > 0, fixture["merge_img"][:1], 1.0)
    codes = {k: fixture[k][:1] + code_noise * rng.standard_normal(fixture[k][:1].shape)
             for k in ("iden_code", "expr_code", "text_code", "illu_code")}
    camera = {k: fixture[k][:1] for k in ("c2w_rmats", "c2w_tvecs", "inv_inmats")}
    return {k: np.asarray(v, np.float32) for k, v in
            {"target": target, "mask": mask, **codes, **camera}.items()}
