"""fnevr_jax.export: each artifact, run by its runtime, reproduces the JAX outputs.

StableHLO runs in a fresh process that imports no project module; ONNX runs in onnxruntime
on the CPU. Measured max abs differences (AMD EPYC, 2 cores) are beside each tolerance.
"""
import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import animate
from configs import nerf_head as nerf_configs
from fnevr_jax import api, checkpoint_io, export, loader
from fnevr_jax.nerf_head import network
from tests import xla_env
from tests.data.make_tiny_checkpoint import tiny_config

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def fomm_dir(tmp_path_factory, data_dir):
    """The tiny FOMM checkpoint (64x64) as an orbax directory that carries its config."""
    out = tmp_path_factory.mktemp("export") / "fomm"
    variables, config, *_ = loader.load(data_dir / "tiny_fomm.pth.tar", "fomm", tiny_config())
    checkpoint_io.save_variables(out, variables, {"model": "fomm", "config": config.to_dict()})
    return out


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return rng.random((2, 3, 64, 64, 3), np.float32)


def run_onnx(data, inputs):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs)))


def max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


FRESH = textwrap.dedent("""
    import sys, numpy as np, jax
    exported = jax.export.deserialize(open(sys.argv[1], "rb").read())
    inputs = dict(np.load(sys.argv[2]))
    out = {k: np.asarray(v) for k, v in exported.call(**inputs).items()}
    np.savez(sys.argv[3], **out)
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("fnevr_jax", "configs", "tests")))
""")


def test_stablehlo_frame_runs_without_project_code(fomm_dir, frames, tmp_path):
    """CLI export with a symbolic batch, deserialized and run (batch 3) in a fresh process
    with no project module imported; equals the inference core's keypoints + generate."""
    out = tmp_path / "frame.stablehlo"
    assert export.main(["--checkpoint", str(fomm_dir), "--format", "stablehlo",
                        "--function", "frame", "--out", str(out)]) == 0
    source, driving = frames
    np.savez(tmp_path / "in.npz", source=source, driving=driving)
    result = subprocess.run([sys.executable, "-c", FRESH, str(out), str(tmp_path / "in.npz"),
                             str(tmp_path / "out.npz")], capture_output=True, text=True,
                            cwd=tmp_path, env=xla_env.env(1), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout      # no project module was imported
    animator = api.load_animator(fomm_dir, batch_size=4)
    expected = animator.generate(source, animator.keypoints(source),
                                 animator.keypoints(driving))["prediction"]
    got = np.load(tmp_path / "out.npz")["prediction"]
    assert got.shape == (3, 64, 64, 3)
    # the core runs batches of 8 sharded over the suite's 8 simulated devices, the artifact
    # a batch of 3 on one: convolutions sum in another order (measured 6.6e-5)
    assert max_diff(got, expected) <= 1e-4
    # the same program in one process: the artifact is the jitted function (measured 0)
    variables, config, *_ = loader.load(fomm_dir)
    jitted = jax.jit(export.functions(variables, config)["frame"].fn)(source, driving)
    same = jax.export.deserialize(out.read_bytes()).call(source=source, driving=driving)
    assert max_diff(same["prediction"], jitted["prediction"]) <= 1e-6


def test_onnx_keypoints_and_relative_generate_match_xla(fomm_dir, frames):
    variables, config, *_ = loader.load(fomm_dir)
    fns = export.functions(variables, config, relative=True)
    source, driving = frames
    kp = {k: np.asarray(v) for k, v in jax.jit(lambda x: fns["keypoints"].fn(images=x))(source).items()}
    got = run_onnx(export.export(variables, config, "keypoints", "onnx"), {"images": source})
    assert set(got) == {"value", "jacobian"}
    assert max_diff(got["value"], kp["value"]) <= 1e-4        # measured 6.6e-6
    assert max_diff(got["jacobian"], kp["jacobian"]) <= 1e-4  # measured 3.0e-5
    inputs = {"source": source, "scale": np.array(1.3, np.float32),
              **{f"kp_{n}_{f}": kp[f][::-1] if n == "driving" else kp[f]
                 for n in ("source", "driving", "initial") for f in kp}}
    inputs["kp_initial_value"] = inputs["kp_initial_value"] + 0.05
    expected = jax.jit(lambda kw: fns["generate"].fn(**kw))(inputs)
    got = run_onnx(export.export(variables, config, "generate", "onnx", relative=True), inputs)
    assert set(got) == {"prediction", "occlusion_map", "mask", "deformed"}
    for name in got:
        assert max_diff(got[name], expected[name]) <= 1e-3, name  # measured <= 3.2e-4 (deformed)


def test_head_render_both_formats(tmp_path):
    """The NeRF head quick model: StableHLO (symbolic batch) and ONNX (fixed batch; a dynamic
    one is refused in one line) equal the network's own render."""
    config = nerf_configs.get_config("quick")
    model = network.from_config(config.model)
    params = network.init_params(model, jax.random.key(0))
    params["mlp"]["density"]["bias"] = jnp.full((1,), 2.0)   # a head, not only background
    variables = {"params": params}
    K, cam = network.default_camera(2, model.output_size, 2.0, 6.0)
    rng = np.random.default_rng(1)
    inputs = {"z_id": rng.standard_normal((2, model.id_dim)).astype(np.float32),
              "beta": rng.standard_normal((2, model.expr_dim)).astype(np.float32),
              "intrinsics": np.asarray(K), "cam_to_world": np.asarray(cam)}
    expected = network.make_render_fn(model)(params, inputs["z_id"], inputs["beta"],
                                             inputs["intrinsics"], inputs["cam_to_world"])["image"]
    shlo = jax.export.deserialize(export.export(variables, config, "render", "stablehlo"))
    assert max_diff(shlo.call(**inputs)["image"], expected) <= 1e-5   # measured 6e-8
    with pytest.raises(export.ExportError, match="fixed --batch"):
        export.export(variables, config, "render", "onnx")
    got = run_onnx(export.export(variables, config, "render", "onnx", batch=2), inputs)
    assert max_diff(got["image"], expected) <= 1e-4                    # measured 4.2e-7


@pytest.mark.parametrize("model", ["fnevr", "fomm"])
def test_every_format_on_the_parity_fixture(data_dir, model):
    """The official fixtures (256x256, batch 2): `keypoints` and `frame` as StableHLO (symbolic
    batch, deserialized and called) and as ONNX (onnxruntime) against the jitted JAX functions,
    and the prediction against the official float64 one."""
    fixture = np.load(data_dir / f"{model}_seed7.npz")
    variables, config, *_ = loader.load(data_dir / f"{model}_seed7.npz", model)
    source, driving = (fixture[k].astype(np.float32) / 255 for k in ("source", "driving"))
    fns = export.functions(variables, config)
    expected = {"keypoints": jax.jit(lambda x: fns["keypoints"].fn(images=x))(driving),
                "frame": jax.jit(fns["frame"].fn)(source, driving)}
    inputs = {"keypoints": {"images": driving}, "frame": {"source": source, "driving": driving}}
    for name, outputs in expected.items():
        shlo = jax.export.deserialize(export.export(variables, config, name, "stablehlo"))
        onnx = run_onnx(export.export(variables, config, name, "onnx"), inputs[name])
        for got in ({k: np.asarray(v) for k, v in shlo.call(**inputs[name]).items()}, onnx):
            assert set(got) == set(outputs)
            for key, value in outputs.items():
                # measured (AMD EPYC, AVX2): StableHLO 0 (the same program); ONNX keypoints
                # 5.7e-6, ONNX prediction 6.4e-4 (FNeVR) and 1.0e-5 (FOMM)
                tolerance = 1e-3 if name == "frame" else 1e-4
                assert max_diff(got[key], value) <= tolerance, (model, name, key)
    # measured 3.7e-4 (FNeVR), 7.1e-6 (FOMM)
    assert max_diff(onnx["prediction"], fixture["f64:prediction"]) <= 1e-3


@pytest.mark.parametrize("case, message", [
    ("exists", "exists; give a new output path"),
    ("unknown format", "unknown format 'tflite': use stablehlo or onnx"),
    ("wrong model", "holds a 'fomm' model, not 'fnevr'"),
    ("wrong function", "a fomm model exports"),
    ("head function", "a nerf_head model exports render, not 'frame'"),
])
def test_bad_input_is_one_line_exit_1_nothing_written(fomm_dir, tmp_path, capsys, case, message):
    out = tmp_path / "model.onnx"
    args = {"exists": ["--function", "frame"],
            "unknown format": ["--function", "frame", "--format", "tflite"],
            "wrong model": ["--model", "fnevr", "--function", "frame"],
            "wrong function": ["--function", "render"],
            "head function": ["--model", "headnerf", "--function", "frame"]}[case]
    if case == "exists":
        out.write_bytes(b"keep")
    capsys.readouterr()
    status = export.main(["--checkpoint", str(fomm_dir), "--format", "onnx", "--out", str(out),
                          *args])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == (["model.onnx"] if case == "exists" else [])
    if case == "exists":
        assert out.read_bytes() == b"keep"


def test_animate_with_onnxruntime(fomm_dir, tmp_path, data_dir):
    """animate.py --engine onnxruntime: the frames XLA gives, within the uint8 rounding."""
    onnx_path = tmp_path / "animate.onnx"
    assert export.main(["--checkpoint", str(fomm_dir), "--format", "onnx", "--function",
                        "animate", "--out", str(onnx_path)]) == 0
    import imageio.v3 as iio
    video = tmp_path / "driving.gif"
    rng = np.random.default_rng(2)
    iio.imwrite(video, (rng.random((5, 64, 64, 3)) * 255).astype(np.uint8), duration=40)
    outs = {}
    for engine in ("xla", "onnxruntime"):
        outs[engine] = tmp_path / f"{engine}.gif"
        argv = ["--checkpoint", str(fomm_dir), "--source", str(data_dir / "source.png"),
                "--driving", str(video), "--out", str(outs[engine]), "--engine", engine,
                "--batch-size", "2"] + (["--onnx", str(onnx_path)] if engine != "xla" else [])
        assert animate.main(argv) == 0
    a, b = (iio.imread(outs[e]).astype(int) for e in ("xla", "onnxruntime"))
    assert a.shape == b.shape and a.shape[0] == 5
    # GIF palettes: a colour a rounding apart can land on another palette entry, so a few
    # pixels jump (measured max 59 of 255); the frames agree everywhere else.
    diff = np.abs(a - b)
    assert diff.mean() <= 0.5 and (diff > 8).mean() <= 0.01, json.dumps(
        [float(diff.mean()), float((diff > 8).mean())])
