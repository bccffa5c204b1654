"""Animates a face photo with a driving video (FNeVR or FOMM), or edits its head pose.

    python animate.py --checkpoint CKPT --source photo.jpg --driving video.mp4 --out result.mp4
    python animate.py ... --crop --paste-back --best-frame auto --side-by-side
    python animate.py --checkpoint runs/fnevr --source photo.jpg --pose 20,0,0 --out turned.png
    python animate.py --checkpoint runs/fnevr --source photo.jpg --pose-sweep --out sweep.png

CKPT: a train.py workdir, an orbax directory (`python -m fnevr_jax.convert`), an official
`.pth.tar` or a parity `.npz`. Motion is relative by default (first-order-model's keypoint
normalisation with the adapt-movement scale and relative Jacobians), `--mode absolute` uses
the driving keypoints as they are. `--crop` finds the face in the source and the driving
video and crops them as the training data was cropped; `--paste-back` puts the animated crop
back into the source photo. `--best-frame` starts the relative motion from the driving frame
whose face pose is closest to the source's (mediapipe landmarks; the first-order-model demo's
forward and backward passes from that frame both use it as the initial frame).
`--pose YAW,PITCH,ROLL` (degrees) turns the head with the pose editor (training checkpoints
only): alone it writes an image, with `--driving` it turns every frame; `--pose-sweep`
writes a grid of yaw x pitch.

Output: `.mp4` (H.264, yuv420p, the driving audio copied) or `.gif` at the driving fps; an
image for the pose modes. Decoding, the jitted networks (batches sharded over all devices)
and encoding run concurrently. `--engine onnxruntime --onnx PATH` runs the frames through an
`animate` ONNX export (`python -m fnevr_jax.export`) in onnxruntime on the CPU instead of XLA.
Errors print one line and exit 1, leaving no output file.
"""
import argparse
import pathlib
import sys

from fnevr_jax import animation, cli, media
from fnevr_jax.animation import IMAGE_SUFFIXES, VIDEO_SUFFIXES

AnimateError = animation.AnimationError


# --------------------------------------------------------------------------- CLI
def _pose(text):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise argparse.ArgumentTypeError("expected YAW,PITCH,ROLL in degrees, e.g. 20,0,0")
    return values


def _best_frame(text):
    if text != "auto" and not text.isdigit():
        raise argparse.ArgumentTypeError("expected 'auto' or a frame number")
    return text


def parse_args(argv=None):
    p = cli.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--checkpoint", required=True,
                   help="train.py workdir, orbax dir, official .pth.tar or parity .npz")
    p.add_argument("--model", choices=("fnevr", "fomm"),
                   help="the network of a .pth.tar/.npz (default fnevr); checked for dirs")
    p.add_argument("--source", required=True, help="source photo")
    p.add_argument("--driving", help="driving video")
    p.add_argument("--out", required=True, type=pathlib.Path, help=".mp4 or .gif (.png: pose)")
    p.add_argument("--mode", choices=("relative", "absolute"), default="relative")
    p.add_argument("--no-adapt-scale", action="store_true",
                   help="relative motion without first-order-model's movement scale")
    p.add_argument("--crop", action="store_true", help="find and crop the faces")
    p.add_argument("--paste-back", action="store_true", help="the result inside the source photo")
    p.add_argument("--best-frame", type=_best_frame, help="'auto' or a driving frame number")
    p.add_argument("--pose", type=_pose, help="YAW,PITCH,ROLL in degrees (pose editor)")
    p.add_argument("--pose-sweep", action="store_true", help="a yaw x pitch grid image")
    p.add_argument("--side-by-side", action="store_true", help="source | driving | result")
    p.add_argument("--batch-size", type=int, default=8, help="frames per network call")
    p.add_argument("--max-frames", type=int, help="animate only the first N driving frames")
    p.add_argument("--engine", choices=("xla", "onnxruntime"), default="xla",
                   help="run the frames with XLA (default) or onnxruntime on the CPU (--onnx)")
    p.add_argument("--onnx", type=pathlib.Path,
                   help="--engine onnxruntime: an `animate` ONNX export of the checkpoint "
                        "(python -m fnevr_jax.export --function animate --format onnx)")
    args = p.parse_args(argv)
    image_mode = args.pose_sweep or (args.pose is not None and args.driving is None)
    suffix = args.out.suffix.lower()
    if args.paste_back and not args.crop:
        p.error("--paste-back needs --crop")
    if args.pose_sweep and (args.driving or args.pose is not None):
        p.error("--pose-sweep takes no --driving and no --pose")
    if args.best_frame is not None and args.mode != "relative":
        p.error("--best-frame only applies to --mode relative")
    if image_mode and suffix not in IMAGE_SUFFIXES:
        p.error(f"the pose modes write an image: --out must end in {'/'.join(IMAGE_SUFFIXES)}")
    if not image_mode and args.driving is None:
        p.error("--driving is required (or --pose / --pose-sweep for an image)")
    if not image_mode and suffix not in VIDEO_SUFFIXES:
        p.error(f"--out must end in {' or '.join(VIDEO_SUFFIXES)}")
    return args


def run(args):
    """Animates as `args` say (`fnevr_jax.animation.animate`); returns a one-line summary."""
    for name in ("source", "driving"):
        path = getattr(args, name)
        if path is not None and not pathlib.Path(path).is_file():
            raise AnimateError(f"{path}: no such {name} file")
    if not pathlib.Path(args.checkpoint).exists():
        raise AnimateError(f"{args.checkpoint}: no such checkpoint")
    if not args.out.parent.is_dir():
        raise AnimateError(f"{args.out.parent}: no such output directory")
    if args.engine == "onnxruntime" and (args.onnx is None or not args.driving
                                         or args.pose is not None or args.pose_sweep):
        raise AnimateError("--engine onnxruntime animates a --driving video with an --onnx "
                           "`animate` export (no pose edits)")
    if args.onnx is not None and not args.onnx.is_file():
        raise AnimateError(f"{args.onnx}: no such ONNX file")
    options = animation.Options(
        mode=args.mode, adapt_scale=not args.no_adapt_scale, crop=args.crop,
        paste_back=args.paste_back, best_frame=args.best_frame, pose=args.pose,
        pose_sweep=args.pose_sweep, side_by_side=args.side_by_side, max_frames=args.max_frames,
        onnx=args.onnx if args.engine == "onnxruntime" else None)
    animation.read_source(args.source)              # bad inputs fail before the model loads
    if args.driving:
        animation.open_video(args.driving, args.max_frames)
    model = animation.load(args.checkpoint, args.model, args.batch_size)
    return animation.animate(model, args.source, args.out, args.driving, options).summary()


def main(argv=None):
    args = parse_args(argv)
    try:
        print(run(args))
    except (AnimateError, media.MediaError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
