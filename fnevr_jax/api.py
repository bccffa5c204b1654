"""The public inference API: load a model from any supported source, detect keypoints, generate.

    animator = load_animator("runs/quick")           # any model source (fnevr_jax.loader)
    kp_s = animator.keypoints(source)                # float32 [B,H,W,3] in [0,1]
    kp_d = animator.keypoints(driving)
    out = animator.generate(source, kp_s, kp_d)      # {"prediction", "render", ...} NHWC

Both calls run on the inference core (`fnevr_jax.inference`): fixed padded batches, one
compilation per function. The NeRF head model (HeadNeRF's
published checkpoints, their conversions, or a NeRF head training workdir) renders from codes
and cameras:

    head = load_head_model("model_Reso32.pth")       # or an orbax dir, or a training workdir
    out = head.render(iden_code=..., expr_code=..., text_code=..., illu_code=...,
                      c2w_rmats=..., c2w_tvecs=..., inv_inmats=...)
    out["image"]                                     # [B,S,S,3] float32, HeadNeRF's merge_img

The command line runs the networks on an image pair and writes a picture of the result:

    python -m fnevr_jax.api --checkpoint ckpt/fnevr --source a.png --driving b.png --out pair.png
"""
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from fnevr_jax import checkpoint_io, cli, inference, loader, media, torch_io
from fnevr_jax.convert import ConversionError
from fnevr_jax.models import MODELS
from fnevr_jax.nerf_head import network

POSE_HELP = ("only training checkpoints (a train.py --workdir) have one; official, parity and "
             "converted checkpoints do not")
UNTRAINED_POSE_EDITOR = (
    "its pose editor was never trained (L_editor, FNeVR eq. 12, needs the `pose` field: train "
    "on shards made with `data_pipelines.preprocess --landmarks` or the synthetic heads, with "
    "loss_weights.pose_edit > 0)")


class AnimatorError(ValueError):
    """A model source that cannot be loaded, or inputs of the wrong form."""


class Animator:
    """A model with its variables on the inference core (`fnevr_jax.inference.Core`): fixed
    padded batches of `batch_size` frames on a data mesh, one compilation per function.
    `pose_params`: the trained pose editor of a training export (None for official and
    converted checkpoints, and where `metadata["pose_editor_steps"]` is 0)."""

    def __init__(self, variables, config, description="variables", batch_size=8, mesh=None,
                 metadata=None):
        self.config = config
        self.model = config.model
        self.description = description
        self.pose_params = variables["params"].get("pose_editor")
        self._no_pose = None if self.pose_params else f"has no pose editor; {POSE_HELP}"
        if self.pose_params and (metadata or {}).get("pose_editor_steps", 1) == 0:
            self.pose_params, self._no_pose = None, UNTRAINED_POSE_EDITOR
        self.core = inference.Core(config, batch_size, mesh)
        self.variables = self.core.put(inference.inference_variables(variables))

    def _images(self, images, name):
        if not hasattr(images, "shape"):
            images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != self.config.num_channels:
            raise AnimatorError(f"{name} must be [B,H,W,{self.config.num_channels}], "
                                f"got shape {images.shape}")
        return images if images.dtype == np.float32 else images.astype(np.float32)

    def keypoints(self, images):
        """{"value": [B,K,2], "jacobian": [B,K,2,2]} for float32 images [B,H,W,3] in [0,1]."""
        return self.core.keypoints(self.variables, self._images(images, "images"))

    def generate(self, source, kp_source, kp_driving):
        """The source animated to the driving keypoints: NHWC `prediction`, `occlusion_map`,
        `mask`, `deformed`, and for FNeVR `render` (the intermediate image I_m)."""
        return self.core.generate(self.variables, self._images(source, "source"), kp_source,
                                  kp_driving)

    def animate_frames(self, source, frames, kp_source, kp_initial=None, scale=1.0,
                       rotation=None, relative=True):
        """Predictions [n, H, W, 3] (numpy, [0, 1]) of a batch of driving `frames`, for
        streaming: `kp_source`, `kp_initial` and `scale` are computed once per video (see
        `animate`); `rotation` (1 or n, 3, 3) edits the pose."""
        if rotation is not None:
            self.require_pose_editor()
        return np.asarray(self.core.animate(
            self.variables, self._images(source, "source"), self._images(frames, "frames"),
            kp_source, kp_initial, scale, rotation, relative))

    def require_pose_editor(self):
        """Raises AnimatorError, naming the reason, unless the model has a trained pose editor."""
        if self._no_pose:
            raise AnimatorError(f"{self.description}: cannot edit the pose: {self._no_pose}")

    def animate(self, source, driving, relative=True, adapt_scale=True, pose=None):
        """`source` [1, H, W, 3] animated by `driving` [N, H, W, 3] (float32 in [0, 1]) ->
        [N, H, W, 3]: first-order-model's `make_animation` (relative motion from the first
        driving frame, scaled by the keypoint hull areas when `adapt_scale`), or absolute
        keypoints; `pose` (yaw, pitch, roll) in degrees turns the head (FNeVR eq. 11)."""
        kp_source = self.keypoints(source)
        kp_initial = self.keypoints(self._images(driving, "driving")[:1])
        scale = (inference.adapt_scale(kp_source["value"], kp_initial["value"])
                 if relative and adapt_scale else 1.0)
        rotation = inference.pose_rotation(pose) if pose is not None else None
        return self.animate_frames(source, driving, kp_source, kp_initial, scale, rotation,
                                   relative)


def load_animator(source, model=None, config=None, batch_size=8):
    """An `Animator` from any model source (`fnevr_jax.loader`): a training workdir, an orbax
    directory, an official `.pth.tar`, a parity `.npz` or variables. `model` ("fnevr"/"fomm")
    or `config.model`, where given, must agree with what the source holds."""
    try:
        variables, config, description, metadata = loader.load(source, model, config)
    except loader.LoadError as e:
        raise AnimatorError(str(e)) from None
    if config.get("task") == "nerf_head":
        raise AnimatorError(f"{source}: holds a NeRF head model; render it with "
                            "`python -m fnevr_jax.nerf_head.render`")
    return Animator(variables, config, description, batch_size, metadata=metadata)


class HeadModel:
    """A NeRF head model with fixed parameters; `render` is jitted once per input shape."""

    def __init__(self, params, config, dtype=np.float32):
        self.config = config
        self.model = network.from_config(config.model)
        self.dtype = np.dtype(dtype)
        if jnp.zeros((), self.dtype).dtype != self.dtype:
            raise AnimatorError(f"JAX computes {self.dtype} as {jnp.zeros((), self.dtype).dtype}:"
                                " render float64 inside `with jax.enable_x64(True):`")
        self.params = jax.device_put(jax.tree.map(lambda v: np.asarray(v, self.dtype), params))
        self._render = network.make_render_fn(self.model, render_background=True)

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
    """A `HeadModel` from any NeRF head source (`fnevr_jax.loader`): a HeadNeRF checkpoint
    (`model_Reso32.pth` and its family, or its parity `.npz`), an orbax directory written by
    `fnevr_jax.convert`, or a NeRF head training workdir. `dtype` float64 (inside
    `jax.enable_x64(True)`) is for parity checks."""
    try:
        variables, config, *_ = loader.load(source, "nerf_head")
    except loader.LoadError as e:
        raise AnimatorError(str(e)) from None
    return HeadModel(variables["params"], config, dtype)


def _save_picture(path, columns):
    import imageio.v3 as iio
    path = pathlib.Path(path)
    picture = np.concatenate([np.asarray(c) for c in columns], axis=1)
    picture = (np.clip(picture, 0, 1) * 255).round().astype(np.uint8)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    iio.imwrite(tmp, picture)
    tmp.replace(path)


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True,
                        help="training workdir, orbax dir, official .pth.tar or parity .npz")
    parser.add_argument("--model", choices=MODELS,
                        help="the network of a .pth.tar/.npz (default fnevr); checked for dirs")
    parser.add_argument("--source", required=True)
    parser.add_argument("--driving", required=True)
    parser.add_argument("--out", required=True, help="PNG: source | driving | prediction | ...")
    args = parser.parse_args(argv)
    try:
        animator = load_animator(args.checkpoint, args.model)
        size = animator.config.image_size
        source = media.square_resize(media.read_image(args.source), size)[None]
        driving = media.square_resize(media.read_image(args.driving), size)[None]
        kp_source, kp_driving = animator.keypoints(source), animator.keypoints(driving)
        out = animator.generate(source, kp_source, kp_driving)
    except (AnimatorError, ConversionError, checkpoint_io.CheckpointError,
            torch_io.TorchFileError, media.MediaError) as e:
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
