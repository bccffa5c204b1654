"""The public inference API: load a model from any supported source, detect keypoints, generate.

    animator = load_animator("runs/quick")           # any model source (fnevr_jax.loader)
    kp_s = animator.keypoints(source)                # float32 [B,H,W,3] in [0,1]
    kp_d = animator.keypoints(driving)
    out = animator.generate(source, kp_s, kp_d)      # {"prediction", "render", ...} NHWC

Both calls are jitted and compile once per input shape. The command line runs the networks on
an image pair and writes a picture of the result:

    python -m fnevr_jax.api --checkpoint ckpt/fnevr --source a.png --driving b.png --out pair.png
"""
import pathlib
import sys

import numpy as np

from fnevr_jax import checkpoint_io, cli, inference, loader, media, torch_io
from fnevr_jax.convert import ConversionError
from fnevr_jax.models import MODELS

POSE_HELP = ("only training checkpoints (a train.py --workdir) have one; official, parity and "
             "converted checkpoints do not")


class AnimatorError(ValueError):
    """A model source that cannot be loaded, or inputs of the wrong form."""


class Animator:
    """A model with its variables on the inference core (`fnevr_jax.inference.Core`): fixed
    padded batches of `batch_size` frames on a data mesh, one compilation per function.
    `pose_params`: the pose editor of a training export (None for official and converted
    checkpoints)."""

    def __init__(self, variables, config, description="variables", batch_size=8, mesh=None):
        self.config = config
        self.model = config.model
        self.description = description
        self.pose_params = variables["params"].get("pose_editor")
        self.core = inference.Core(config, batch_size, mesh)
        self.variables = self.core.put(inference.inference_variables(variables))

    def _images(self, images, name):
        if not hasattr(images, "shape"):
            images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != self.config.num_channels:
            raise AnimatorError(f"{name} must be [B,H,W,{self.config.num_channels}], "
                                f"got shape {images.shape}")
        return images.astype(np.float32)

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
        if rotation is not None and self.pose_params is None:
            raise AnimatorError(f"pose editing needs a pose editor; {POSE_HELP}")
        return np.asarray(self.core.animate(
            self.variables, self._images(source, "source"), self._images(frames, "frames"),
            kp_source, kp_initial, scale, rotation, relative))

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
        variables, config, description = loader.load(source, model, config)
    except loader.LoadError as e:
        raise AnimatorError(str(e)) from None
    if config.get("task") == "nerf_head":
        raise AnimatorError(f"{source}: holds a NeRF head model; render it with "
                            "`python -m fnevr_jax.nerf_head.render`")
    return Animator(variables, config, description, batch_size)


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
