"""The public inference API: load a model from any supported source, detect keypoints, generate.

    animator = load_animator("ckpt/fnevr")           # orbax dir, official .pth.tar, or variables
    kp_s = animator.keypoints(source)                # float32 [B,H,W,3] in [0,1]
    kp_d = animator.keypoints(driving)
    out = animator.generate(source, kp_s, kp_d)      # {"prediction", "render", ...} NHWC

Both calls are jitted and compile once per input shape. The NeRF head model (HeadNeRF's
published checkpoints, their conversions, or a NeRF head training workdir) renders from codes
and cameras:

    head = load_head_model("model_Reso32.pth")       # or an orbax dir, or a training workdir
    out = head.render(iden_code=..., expr_code=..., text_code=..., illu_code=...,
                      c2w_rmats=..., c2w_tvecs=..., inv_inmats=...)
    out["image"]                                     # [B,S,S,3] float32, HeadNeRF's merge_img

The command line runs the networks on an image pair and writes a picture of the result:

    python -m fnevr_jax.api --checkpoint ckpt/fnevr --source a.png --driving b.png --out pair.png
"""
import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fnevr_jax import checkpoint_io, torch_io
from fnevr_jax.convert import (ConversionError, default_config, from_headnerf_state_dict,
                               from_torch_state_dict, read_headnerf, read_state_dict)
from fnevr_jax.models import MODELS, build_models, module_variables, nerf_head

OUTPUTS = ("prediction", "occlusion_map", "mask", "deformed", "render")


class AnimatorError(ValueError):
    """A model source that cannot be loaded, or inputs of the wrong form."""


def load_variables(source, model="fnevr", config=None):
    """(variables, config, metadata) from an orbax directory, official checkpoint, fixture or dict."""
    if model not in MODELS:
        raise AnimatorError(f"model must be one of {MODELS}, got {model!r}")
    metadata = {"model": model}
    if isinstance(source, dict):
        variables = source
    else:
        path = pathlib.Path(source)
        if path.is_dir():
            variables, metadata = checkpoint_io.load_variables(path)
            if metadata.get("model") != model:
                raise AnimatorError(f"{path}: holds a {metadata.get('model')!r} model, "
                                    f"not {model!r}; pass model={metadata.get('model')!r}")
            if config is None and "config" in metadata:
                config = ml_collections.ConfigDict(metadata["config"])
        elif not path.exists():
            raise AnimatorError(f"{path}: no such checkpoint file or directory")
        else:
            variables = from_torch_state_dict(read_state_dict(path, model), model, config)
    config = config or default_config(model)
    if config.model != model:
        raise AnimatorError(f"config is for model {config.model!r}, not {model!r}")
    if "params" not in variables or "generator" not in variables["params"]:
        raise AnimatorError("variables must be {'params': {'kp_detector', 'generator', ...}, ...}")
    return variables, config, metadata


class Animator:
    """Jitted keypoint detection and generation with fixed variables."""

    def __init__(self, variables, config):
        self.config = config
        self.model = config.model
        models = build_models(config)
        self.kp_variables = jax.device_put(module_variables(variables, "kp_detector"))
        self.generator_variables = jax.device_put(module_variables(variables, "generator"))
        self._keypoints = jax.jit(models["kp_detector"].apply)

        def generate(variables, source, kp_source, kp_driving):
            out = models["generator"].apply(variables, source, kp_source, kp_driving)
            return {k: out[k] for k in OUTPUTS if k in out}

        self._generate = jax.jit(generate)

    def _images(self, images, name):
        images = jnp.asarray(images)
        if images.ndim != 4 or images.shape[-1] != self.config.num_channels:
            raise AnimatorError(f"{name} must be [B,H,W,{self.config.num_channels}], "
                                f"got shape {images.shape}")
        return images.astype(jnp.float32)

    def keypoints(self, images):
        """{"value": [B,K,2], "jacobian": [B,K,2,2]} for float32 images [B,H,W,3] in [0,1]."""
        return self._keypoints(self.kp_variables, self._images(images, "images"))

    def generate(self, source, kp_source, kp_driving):
        """The source animated to the driving keypoints: NHWC `prediction`, `occlusion_map`,
        `mask`, `deformed`, and for FNeVR `render` (the intermediate image I_m)."""
        return self._generate(self.generator_variables, self._images(source, "source"),
                              kp_source, kp_driving)


def load_animator(source, model="fnevr", config=None):
    """An `Animator` from an orbax directory, an official `.pth.tar`, a parity `.npz` or variables."""
    variables, config, _ = load_variables(source, model, config)
    return Animator(variables, config)


class HeadModel:
    """A NeRF head model with fixed parameters; `render` is jitted once per input shape."""

    def __init__(self, params, config, dtype=np.float32):
        self.config = config
        self.model = nerf_head.from_config(config.model)
        self.dtype = np.dtype(dtype)
        if jnp.zeros((), self.dtype).dtype != self.dtype:
            raise AnimatorError(f"JAX computes {self.dtype} as {jnp.zeros((), self.dtype).dtype}:"
                                " render float64 inside `with jax.enable_x64(True):`")
        self.params = jax.device_put(jax.tree.map(lambda v: np.asarray(v, self.dtype), params))
        self._render = nerf_head.make_render_fn(self.model, render_background=True)

    def _array(self, value, name, shape):
        value = np.asarray(value, self.dtype)
        if value.shape != shape:
            raise AnimatorError(f"{name} must have shape {shape}, got {value.shape}")
        return value

    def render(self, *, iden_code, expr_code, c2w_rmats, c2w_tvecs, inv_inmats, text_code=None,
               illu_code=None):
        """Renders B heads; HeadNeRF's argument names and conventions (`HeadNeRFNet.forward`).

        iden_code [B, id_dim] and expr_code [B, expr_dim] enter the density trunk (for the
        paper's variant: z_id and beta); text_code [B, 100] and illu_code [B, 27] the feature
        branch (HeadNeRF only); c2w_rmats [B, 3, 3] and c2w_tvecs [B, 3(, 1)] the camera-to-world
        rotation and camera centre; inv_inmats [B, 3, 3] the inverse intrinsics at the feature-map
        resolution. Returns NHWC `image` [B, S, S, 3] (HeadNeRF's merge_img), `background`
        [1, S, S, 3] (bg_img, the renderer on the background feature map), `featmap`
        [B, s, s, C] (the merged feature map) and `opacity` [B, s, s].
        """
        m = self.model
        b = np.shape(iden_code)[0]
        args = {"z_id": self._array(iden_code, "iden_code", (b, m.id_dim)),
                "beta": self._array(expr_code, "expr_code", (b, m.expr_dim))}
        if m.appearance_dim:
            if text_code is None or illu_code is None:
                raise AnimatorError("this model needs text_code and illu_code")
            text, illu = np.asarray(text_code), np.asarray(illu_code)
            args["appearance"] = self._array(np.concatenate([text, illu], -1),
                                             "[text_code, illu_code]", (b, m.appearance_dim))
        elif text_code is not None or illu_code is not None:
            raise AnimatorError("this model takes no text_code or illu_code")
        rot = self._array(c2w_rmats, "c2w_rmats", (b, 3, 3))
        centre = self._array(np.reshape(c2w_tvecs, (b, 3, 1)), "c2w_tvecs", (b, 3, 1))
        args["inv_intrinsics"] = self._array(inv_inmats, "inv_inmats", (b, 3, 3))
        out = self._render(self.params, args["z_id"], args["beta"], None,
                           np.concatenate([rot, centre], -1), None, args.get("appearance"),
                           args["inv_intrinsics"])
        return {"image": out["image"], "background": out["background_image"],
                "featmap": out["features"], "opacity": out["acc"]}


def load_head_model(source, dtype=np.float32):
    """A `HeadModel` from a HeadNeRF checkpoint (`model_Reso32.pth` and its family, or its
    parity `.npz`), an orbax directory written by `fnevr_jax.convert`, or a NeRF head training
    workdir. `dtype` float64 (inside `jax.enable_x64(True)`) is for parity checks."""
    from fnevr_jax.nerf_head import render as nerf_head_render
    path = pathlib.Path(source)
    if path.is_dir():
        try:
            config, _, params = nerf_head_render.load(path)
        except nerf_head_render.RenderError as e:
            raise AnimatorError(str(e)) from None
    elif not path.exists():
        raise AnimatorError(f"{path}: no such checkpoint file or directory")
    else:
        state, config = read_headnerf(path)
        params = from_headnerf_state_dict(state, config)["params"]
    return HeadModel(params, config, dtype)


def read_image(path, size):
    """An RGB image file as float32 [size, size, 3] in [0,1] (skimage anti-aliased resize)."""
    import imageio.v3 as iio
    import skimage.transform
    try:
        image = iio.imread(path)
    except (OSError, ValueError) as e:
        raise AnimatorError(f"{path}: cannot read image ({e})") from None
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    image = skimage.transform.resize(image[..., :3], (size, size))  # float64 in [0,1]
    return image.astype(np.float32)


def _save_picture(path, columns):
    import imageio.v3 as iio
    path = pathlib.Path(path)
    picture = np.concatenate([np.asarray(c) for c in columns], axis=1)
    picture = (np.clip(picture, 0, 1) * 255).round().astype(np.uint8)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    iio.imwrite(tmp, picture)
    tmp.replace(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="orbax dir, official .pth.tar or .npz")
    parser.add_argument("--model", default="fnevr", choices=MODELS)
    parser.add_argument("--source", required=True)
    parser.add_argument("--driving", required=True)
    parser.add_argument("--out", required=True, help="PNG: source | driving | prediction | ...")
    args = parser.parse_args(argv)
    try:
        animator = load_animator(args.checkpoint, args.model)
        size = animator.config.image_size
        source = read_image(args.source, size)[None]
        driving = read_image(args.driving, size)[None]
        kp_source, kp_driving = animator.keypoints(source), animator.keypoints(driving)
        out = animator.generate(source, kp_source, kp_driving)
    except (AnimatorError, ConversionError, checkpoint_io.CheckpointError,
            torch_io.TorchFileError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    columns = [source[0], driving[0], out["prediction"][0]]
    if "render" in out:
        columns.append(out["render"][0])
    columns.append(out["deformed"][0])
    _save_picture(args.out, columns)
    print(f"wrote {args.out}: source | driving | prediction"
          + (" | render" if "render" in out else "") + " | deformed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
