"""Deployable exports of the inference functions: StableHLO (`jax.export`) and ONNX (`jax2onnx`).

    python -m fnevr_jax.export --checkpoint CKPT [--model fnevr|fomm|nerf_head] \
        --format stablehlo|onnx --function frame|keypoints|generate|render [--batch N] --out PATH

CKPT: any model source of the one loader (`fnevr_jax.loader`: a training workdir, an orbax
directory, an official `.pth.tar`, a HeadNeRF `.pth`, a parity `.npz`); `--model` is one of the
loader's families, `fnevr`, `fomm` or `nerf_head` (`headnerf`, the converter's name, is taken as
`nerf_head`), needed where the file does not say which model it holds and checked otherwise.

Functions (float32, NHWC images in [0, 1], keypoints as the core gives them), named inputs and
named outputs in every format:

| function | inputs | outputs |
|---|---|---|
| `frame` | `source`, `driving` [B,H,W,3] | `prediction` = generate(source, keypoints(source), keypoints(driving)) |
| `keypoints` | `images` [B,H,W,3] | `value` [B,K,2], `jacobian` [B,K,2,2] |
| `generate` | `source`, `kp_source_value`, `kp_source_jacobian`, `kp_driving_value`, `kp_driving_jacobian` (`--relative`: also `kp_initial_value`, `kp_initial_jacobian`, `scale` []) | `prediction`, `occlusion_map`, `mask`, `deformed` (`render` for FNeVR) |
| `animate` | `source` [1,H,W,3], `driving` [B,H,W,3], `kp_source_*`, `kp_initial_*` [1,...], `scale` [], `relative` [] (1.0 relative, 0.0 absolute) | `prediction` (clipped to [0, 1]; the core's `animate`, what `animate.py --engine onnxruntime` runs) |
| `render` (NeRF head) | `z_id`, `beta`, `intrinsics` [B,3,3], `cam_to_world` [B,3,4] (`appearance` for HeadNeRF) | `image` [B,S,S,3] |

The functions are those of the inference core (`inference.Core`, `nerf_head.network`) with the
variables embedded in the artifact as constants: one file is the whole deployable model. The
batch dimension is symbolic (`--batch dynamic`, the default: one artifact for any batch size)
or fixed (`--batch N`).

- StableHLO: `jax.export`'s serialized `Exported`; it runs with JAX alone, no project code:
  `jax.export.deserialize(open(PATH, "rb").read()).call(source=..., driving=...)` returns
  {"prediction": ...}.
- ONNX: jax2onnx (the converter that traces the JAX program itself, so the exported graph is
  the function JAX runs; grid_sample is already gathers and the Gaussian keypoint maps plain
  arithmetic), opset `ONNX_OPSET`, for onnxruntime (CPU and CUDA execution providers).

Output is written under a temporary name and renamed; an existing output is never replaced.
Errors print one line and exit 1 (2 for a bad command line, `cli`'s convention).
"""
import dataclasses
import logging
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from fnevr_jax import checkpoint_io, cli, convert, inference, loader, torch_io
from fnevr_jax.nerf_head import network

FORMATS = ("stablehlo", "onnx")
FUNCTIONS = {"fnevr": ("frame", "keypoints", "generate", "animate"),
             "fomm": ("frame", "keypoints", "generate", "animate"),
             "nerf_head": ("render",)}
ALIASES = {"headnerf": "nerf_head"}
ONNX_OPSET = 21   # onnxruntime >= 1.20 runs opset 21 on its CPU and CUDA providers


class ExportError(ValueError):
    """Bad input for an export: reported as one line."""


@dataclasses.dataclass
class Function:
    """An exportable function `fn(**inputs) -> {name: array}`; `inputs` {name: (shape, dtype)}
    with the batch axis left out of the shapes of the names in `batched`."""
    fn: object
    inputs: dict
    batched: tuple

    def specs(self, batch):
        """{name: jax.ShapeDtypeStruct} with batch size `batch` (int or symbolic)."""
        return {name: jax.ShapeDtypeStruct(((batch,) if name in self.batched else ()) + shape,
                                           dtype)
                for name, (shape, dtype) in self.inputs.items()}

    def output_names(self):
        return tuple(jax.eval_shape(lambda kw: self.fn(**kw), self.specs(1)))


def animation_functions(variables, config, relative=False):
    """{"frame", "keypoints", "generate"}: `Function`s of an FNeVR/FOMM model, the inference
    core's functions with `variables` (loader form) embedded; `relative` folds
    first-order-model's relative motion (`inference.normalize_kp`) into `generate`."""
    core = inference.Core(config, batch_size=1).functions
    params = jax.tree.map(np.asarray, inference.inference_variables(variables))
    size = config.image_size
    image = ((size, size, config.num_channels), jnp.float32)
    kp_out = jax.eval_shape(core["keypoints"], params,
                            jax.ShapeDtypeStruct((1,) + image[0], jnp.float32))
    kp_shapes = {field: kp_out[field].shape[1:] for field in ("value", "jacobian")
                 if field in kp_out}
    fields = tuple(kp_shapes)

    def keypoints(images):
        return core["keypoints"](params, images)

    def kp(inputs, name):
        return {field: inputs[f"kp_{name}_{field}"] for field in fields}

    def generate(source, **inputs):
        kp_driving = kp(inputs, "driving")
        if relative:
            kp_driving = inference.normalize_kp(kp(inputs, "source"), kp_driving,
                                                kp(inputs, "initial"), inputs["scale"])
        return core["generate"](params, source, kp(inputs, "source"), kp_driving)

    def frame(source, driving):
        out = core["generate"](params, source, keypoints(source), keypoints(driving))
        return {"prediction": out["prediction"]}

    def animate(source, driving, relative, scale, **inputs):
        # the inference core's animate (relative or absolute motion, no pose edit)
        return {"prediction": core["animate"](params, source, kp(inputs, "source"),
                                              kp(inputs, "initial"), scale, relative > 0.5,
                                              driving, None)}

    names = ("source", "driving") + (("initial",) if relative else ())
    kp_inputs = {f"kp_{name}_{field}": (kp_shapes[field], jnp.float32)
                 for name in names for field in fields}
    generate_inputs = {"source": image, **kp_inputs}
    if relative:
        generate_inputs["scale"] = ((), jnp.float32)
    return {
        "frame": Function(frame, {"source": image, "driving": image}, ("source", "driving")),
        "keypoints": Function(keypoints, {"images": image}, ("images",)),
        "animate": Function(animate, {
            "source": ((1,) + image[0], jnp.float32), "driving": image,
            **{f"kp_{name}_{field}": ((1,) + kp_shapes[field], jnp.float32)
               for name in ("source", "initial") for field in fields},
            "scale": ((), jnp.float32), "relative": ((), jnp.float32)}, ("driving",)),
        "generate": Function(generate, generate_inputs,
                             tuple(n for n in generate_inputs if n != "scale")),
    }


def head_functions(variables, config):
    """{"render"}: the NeRF head's deterministic render (`network.NeRFHead`, foreground over
    its background, as `nerf_head.render` renders), the parameters embedded."""
    model = network.from_config(config.model)
    params = jax.tree.map(np.asarray, variables["params"])

    def render(z_id, beta, intrinsics, cam_to_world, appearance=None):
        out = model.apply({"params": params}, z_id, beta, intrinsics, cam_to_world, None,
                          appearance=appearance)
        return {"image": out["image"]}

    inputs = {"z_id": ((model.id_dim,), jnp.float32), "beta": ((model.expr_dim,), jnp.float32),
              "intrinsics": ((3, 3), jnp.float32), "cam_to_world": ((3, 4), jnp.float32)}
    if model.appearance_dim:
        inputs["appearance"] = ((model.appearance_dim,), jnp.float32)
    return {"render": Function(render, inputs, tuple(inputs))}


def functions(variables, config, relative=False):
    """{name: Function} of a loaded model (`loader.load`'s variables and config)."""
    if config.get("task") == "nerf_head":
        return head_functions(variables, config)
    return animation_functions(variables, config, relative)


# --------------------------------------------------------------------------- formats
def to_stablehlo(function, batch=None):
    """The serialized `jax.export.Exported` (bytes) of `function`; `batch` None: symbolic."""
    size = jax.export.symbolic_shape("batch")[0] if batch is None else batch
    exported = jax.export.export(jax.jit(lambda **kw: function.fn(**kw)),
                                 platforms=("cpu", "cuda"))(**function.specs(size))
    return bytes(exported.serialize())


def to_onnx(function, batch=None):
    """The ONNX model (bytes) of `function` via jax2onnx; `batch` None: a dynamic "batch"."""
    try:
        import jax2onnx
    except ImportError:
        raise ExportError("ONNX export needs jax2onnx (pip install --no-deps -r "
                          "requirements-export.txt; see the README's Export section)") from None
    names = tuple(function.inputs)
    outputs = function.output_names()
    size = "batch" if batch is None else batch
    shapes = [((size,) if n in function.batched else ()) + function.inputs[n][0] for n in names]

    def positional(*args):
        out = function.fn(**dict(zip(names, args)))
        return tuple(out[k] for k in outputs)

    quiet = logging.getLogger("onnx_ir.serde")   # "value type ... not known" per constant
    level, quiet.level = quiet.level, logging.ERROR
    try:
        model = jax2onnx.to_onnx(positional, shapes, model_name="fnevr_jax", opset=ONNX_OPSET,
                                 input_names=list(names), output_names=list(outputs))
    except jax.errors.InconclusiveDimensionOperation:
        # jax2onnx 0.17.1's jax.image.resize (the NeRF head's upsampling) needs constant shapes
        raise ExportError("jax2onnx cannot give this function a dynamic batch in ONNX; "
                          "give a fixed --batch N") from None
    finally:
        quiet.level = level
    # jax2onnx annotates some intermediate shapes in NCHW where the values are NHWC;
    # onnxruntime then warns on every session. The annotations are optional: drop them.
    del model.graph.value_info[:]
    return model.SerializeToString()


def export(variables, config, function, fmt, batch=None, relative=False):
    """Bytes of `function` of a loaded model in format `fmt` ("stablehlo" or "onnx")."""
    if fmt not in FORMATS:   # before building the functions (an inference core)
        raise ExportError(f"format must be one of {FORMATS}, got {fmt!r}")
    available = functions(variables, config, relative)
    if function not in available:
        family = "nerf_head" if config.get("task") == "nerf_head" else config.model
        raise ExportError(f"a {family} model exports {', '.join(available)}, not {function!r}")
    fn = available[function]
    return to_stablehlo(fn, batch) if fmt == "stablehlo" else to_onnx(fn, batch)


def write_new(path, data):
    """Writes `data` to `path` through a temporary name; refuses an existing `path`."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.link(tmp, path)           # fails if `path` appeared meanwhile: never replaced
    except FileExistsError:
        raise ExportError(f"{path}: exists; give a new output path") from None
    except OSError as e:
        raise ExportError(f"{path}: cannot write ({e.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)


class OnnxAnimation:
    """An `animate` ONNX export run by onnxruntime (CPU unless `providers` says otherwise), with
    `api.Animator.animate_frames`'s signature (no pose edits)."""

    def __init__(self, path, providers=("CPUExecutionProvider",)):
        try:
            import onnxruntime
        except ImportError:
            raise ExportError("the onnxruntime engine needs onnxruntime "
                              "(pip install onnxruntime)") from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(str(path), options,
                                                        providers=list(providers))
        except Exception as e:  # noqa: BLE001 (onnxruntime raises its own exception types)
            raise ExportError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0]})") \
                from None
        self.inputs = {i.name: i.shape for i in self.session.get_inputs()}
        if "kp_initial_value" not in self.inputs or "relative" not in self.inputs:
            raise ExportError(f"{path}: not an `animate` export (inputs "
                              f"{', '.join(self.inputs)}); export with --function animate")

    def animate_frames(self, source, frames, kp_source, kp_initial=None, scale=1.0,
                       rotation=None, relative=True):
        if rotation is not None:
            raise ExportError("the onnxruntime engine does not edit poses")
        kp_initial = kp_source if kp_initial is None else kp_initial
        feed = {"source": np.asarray(source, np.float32),
                "driving": np.asarray(frames, np.float32),
                "scale": np.asarray(scale, np.float32),
                "relative": np.asarray(1.0 if relative else 0.0, np.float32)}
        for name, kp in (("source", kp_source), ("initial", kp_initial)):
            for field, value in kp.items():
                feed[f"kp_{name}_{field}"] = np.asarray(value, np.float32)
        n, batch = len(frames), self.inputs["driving"][0]
        if not isinstance(batch, int):                    # a dynamic-batch export
            return self.session.run(["prediction"], feed)[0]
        driving = np.concatenate([feed["driving"], np.repeat(feed["driving"][-1:], -n % batch, 0)])
        return np.concatenate([self.session.run(["prediction"], {**feed, "driving": chunk})[0]
                               for chunk in np.split(driving, len(driving) // batch)])[:n]


# --------------------------------------------------------------------------- command line
def _batch(text):
    if text == "dynamic":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(text)
    return value


def parse_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--checkpoint", required=True,
                   help="training workdir, orbax dir, official .pth.tar, HeadNeRF .pth or parity .npz")
    p.add_argument("--model", choices=loader.FAMILIES + tuple(ALIASES),
                   help="the model a file holds (default fnevr); checked for directories")
    p.add_argument("--format", required=True, help=" or ".join(FORMATS))
    p.add_argument("--function", required=True,
                   help="frame, keypoints, generate or animate (FNeVR/FOMM); render (NeRF head)")
    p.add_argument("--batch", type=_batch, default=None, metavar="N|dynamic",
                   help="batch size of the artifact (default dynamic: a symbolic batch)")
    p.add_argument("--relative", action="store_true",
                   help="generate: fold in relative motion (kp_initial_* and scale inputs)")
    p.add_argument("--out", required=True, type=pathlib.Path)
    return cli.parse(p, argv)


def main(argv=None):
    args = parse_args(argv)

    def run():
        if args.format not in FORMATS:
            raise ExportError(f"unknown format {args.format!r}: use {' or '.join(FORMATS)}")
        if args.out.exists():
            raise ExportError(f"{args.out}: exists; give a new output path")
        if not args.out.parent.is_dir():
            raise ExportError(f"{args.out.parent}: no such directory")
        model = ALIASES.get(args.model, args.model)
        if model is not None and args.function not in FUNCTIONS[model]:
            raise ExportError(f"a {model} model exports {', '.join(FUNCTIONS[model])}, "
                              f"not {args.function!r}")
        variables, config, *_ = loader.load(args.checkpoint, model)
        data = export(variables, config, args.function, args.format, args.batch, args.relative)
        write_new(args.out, data)
        batch = "dynamic batch" if args.batch is None else f"batch {args.batch}"
        print(f"wrote {args.out}: {args.format} {args.function} ({batch}, "
              f"{len(data) / 2**20:.1f} MiB, weights embedded)")

    return cli.run(run, (ExportError, loader.LoadError, convert.ConversionError,
                         checkpoint_io.CheckpointError, torch_io.TorchFileError))


if __name__ == "__main__":
    sys.exit(main())
