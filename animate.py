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
import queue
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
from tqdm import tqdm

from fnevr_jax import cli, media

VIDEO_SUFFIXES = (".mp4", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SWEEP_YAW = (-30, -15, 0, 15, 30)
SWEEP_PITCH = (-20, 0, 20)
MIN_CONFIDENCE = 0.75   # mediapipe scores faces above 0.9, false detections near 0.6
MIN_COVERAGE = 0.25     # the driving face track must span this fraction of the frames


class AnimateError(Exception):
    """Bad input: reported as one line."""


# --------------------------------------------------------------------------- inputs
def square_u8(image, size):
    """uint8 centre square of `image` at (size, size): `media.square_resize` (the official
    demo's resize) rounded to 8 bits, the form the video pipeline carries."""
    return media.to_uint8(media.square_resize(image, size))


class Video:
    """A driving video opened with OpenCV: fps, an estimated frame count and whether it has
    audio; iterating decodes uint8 RGB frames (at most `max_frames`)."""

    def __init__(self, path, max_frames=None):
        self.path = pathlib.Path(path)
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            raise AnimateError(f"{path}: cannot decode the video")
        self.fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        self.max_frames = max_frames
        self.count = min(count, max_frames) if max_frames and count > 0 else count or None
        self.has_audio = _has_audio(path)

    def __iter__(self):
        cap = cv2.VideoCapture(str(self.path))
        n = 0
        while self.max_frames is None or n < self.max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        cap.release()


def _has_audio(path):
    result = subprocess.run([media.ffmpeg(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True)
    return any("Audio:" in line for line in result.stderr.splitlines()
               if line.strip().startswith("Stream #"))


# --------------------------------------------------------------------------- faces
def source_crop_box(image):
    """The crop box of the largest face in a photo (data_pipelines' crop)."""
    from data_pipelines import face_crop
    with face_crop.FaceDetector(MIN_CONFIDENCE) as detector:
        crops = face_crop.find_crops([image], smooth=0, detections=[detector(image)])
    if not crops:
        raise AnimateError("no face found in the source image (--crop)")
    return max(crops, key=lambda c: np.ptp(c.face_boxes[0, [0, 2]])).crop_boxes[0]


def driving_crop_boxes(frames):
    """Per-frame crop boxes (T, 4) of the longest face track, which must cover at least
    MIN_COVERAGE of the frames; before and after it its nearest box is kept."""
    from data_pipelines import face_crop
    with face_crop.FaceDetector(MIN_CONFIDENCE) as detector:
        crops = face_crop.find_crops(frames, detections=face_crop.detect_faces(frames, detector))
    best = max(crops, key=lambda c: len(c.crop_boxes)) if crops else None
    if best is None or len(best.crop_boxes) < MIN_COVERAGE * len(frames):
        raise AnimateError("no face found in the driving video (--crop)")
    idx = np.clip(np.arange(len(frames)) - best.start, 0, len(best.crop_boxes) - 1)
    return best.crop_boxes[idx]


def face_landmarks(images, static):
    """mediapipe face-mesh (x, y) landmarks (T, 468, 2) and a found mask (T,)."""
    from data_pipelines.landmarks import FaceMesh
    with FaceMesh(static=static) as mesh:
        points, found = mesh(np.asarray(images))
    return points[..., :2], found


def paste_back(image, patch, box, feather=0.08):
    """`patch` resized into the square `box` of `image`, blended with feathered edges."""
    h, w = image.shape[:2]
    x0, y0 = int(round(box[0])), int(round(box[1]))
    side = max(2, int(round(box[2] - box[0])))
    patch = cv2.resize(patch, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    ramp = np.clip(np.minimum(np.arange(side), np.arange(side)[::-1]) / (feather * side), 0, 1)
    alpha = np.minimum(ramp[:, None], ramp[None, :])[..., None]
    out = image.astype(np.float32)
    ys, xs = slice(max(y0, 0), min(y0 + side, h)), slice(max(x0, 0), min(x0 + side, w))
    ps = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    out[ys, xs] = alpha[ps] * patch[ps] + (1 - alpha[ps]) * out[ys, xs]
    return out.round().astype(np.uint8)


# --------------------------------------------------------------------------- outputs
# --------------------------------------------------------------------------- pipeline
def _threaded(target, *args):
    """Runs `target(*args)` in a daemon thread; `join()` re-raises its exception."""
    errors = []

    def run():
        try:
            target(*args)
        except BaseException as e:  # noqa: BLE001 (handed to the main thread)
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join():
        thread.join()
        if errors:
            raise errors[0]
    return join


_END = object()


def run_video(args, model, source_image, source_box, video, frames_in_memory):
    """Decode -> batches through the networks -> encode, on three threads."""
    from fnevr_jax import inference

    size = model.config.image_size
    src_u8 = (square_u8(source_image, size) if source_box is None else
              _crop(source_image, source_box, size))
    source = src_u8[None].astype(np.float32) / 255
    relative = args.mode == "relative"
    rotation = inference.pose_rotation(args.pose) if args.pose is not None else None

    boxes = None
    frames = frames_in_memory
    if args.crop:
        boxes = driving_crop_boxes(frames)
    start = 0
    if args.best_frame is not None:
        small = [_crop(f, b, size) if boxes is not None else square_u8(f, size)
                 for f, b in zip(frames, boxes if boxes is not None else [None] * len(frames))]
        if args.best_frame == "auto":
            src_points, src_found = face_landmarks(src_u8[None], static=True)
            if not src_found[0]:
                raise AnimateError("no face landmarks found in the source (--best-frame auto)")
            points, found = face_landmarks(small, static=False)
            start = inference.best_frame(src_points[0], points, found)
        else:
            start = int(args.best_frame)
            if not 0 <= start < len(frames):
                raise AnimateError(f"--best-frame {start} is outside the {len(frames)} frames")

    batch_size = max(args.batch_size, 1)
    decoded = queue.Queue(maxsize=4)
    encoded = queue.Queue(maxsize=4)

    def decode():
        try:
            batch = []
            for i, frame in enumerate(frames if frames is not None else video):
                small = (_crop(frame, boxes[i], size) if boxes is not None
                         else square_u8(frame, size))
                batch.append((frame, small))
                if len(batch) == batch_size:
                    decoded.put(batch)
                    batch = []
            if batch:
                decoded.put(batch)
        finally:
            decoded.put(_END)

    audio = args.driving if video.has_audio and args.out.suffix == ".mp4" else None
    writer = media.VideoWriter(args.out, video.fps, audio)
    total = len(frames) if frames is not None else video.count
    bar = tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr)
    started = time.perf_counter()

    def encode():
        failed = None
        while (item := encoded.get()) is not _END:
            for original, small, prediction in item if failed is None else ():
                try:
                    writer.write(compose(args, source_image, src_u8, source_box, original,
                                         small, media.to_uint8(prediction)))
                except BaseException as e:  # noqa: BLE001 (keep draining, then report)
                    failed = e
                    break
                bar.update(1)
        if failed is not None:
            raise failed

    animate_frames = model.animate_frames
    if args.engine == "onnxruntime":   # the source and initial keypoints still come from XLA
        animate_frames = onnx_animation(args).animate_frames
    join_decode = _threaded(decode)
    join_encode = _threaded(encode)
    kp_source = model.keypoints(source)

    def initial(image):
        """Keypoints of the initial driving frame and the movement scale."""
        kp = model.keypoints(image[None].astype(np.float32) / 255)
        if args.no_adapt_scale:
            return kp, 1.0
        return kp, inference.adapt_scale(kp_source["value"], kp["value"])

    kp_initial, scale = None, 1.0
    if args.mode == "relative" and frames is not None:
        kp_initial, scale = initial(_crop(frames[start], boxes[start], size)
                                    if boxes is not None else square_u8(frames[start], size))
    try:
        while (batch := decoded.get()) is not _END:
            if args.mode == "relative" and kp_initial is None:
                kp_initial, scale = initial(batch[0][1])
            small = np.stack([s for _, s in batch]).astype(np.float32) / 255
            predictions = animate_frames(source, small, kp_source, kp_initial, scale,
                                         rotation, relative)
            encoded.put([(o, s, p) for (o, s), p in zip(batch, predictions)])
    except BaseException:
        writer.abort()
        raise
    finally:
        encoded.put(_END)
    try:
        join_decode()
        join_encode()
        bar.close()
        if writer.count == 0:
            raise AnimateError(f"{args.driving}: no frames decoded")
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return writer.count, writer.count / (time.perf_counter() - started)


def onnx_animation(args):
    from fnevr_jax import export
    try:
        return export.OnnxAnimation(args.onnx)
    except export.ExportError as e:
        raise AnimateError(str(e)) from None


def _crop(frame, box, size):
    from data_pipelines import face_crop
    return face_crop.crop_frames([frame], np.asarray(box)[None], size)[0]


def compose(args, source_image, src_u8, source_box, original, small, prediction):
    """One output frame: the prediction (pasted back), or source | driving | result."""
    result = paste_back(source_image, prediction, source_box) if args.paste_back else prediction
    if not args.side_by_side:
        return result
    if args.paste_back:
        h = result.shape[0]
        return np.concatenate([media.fit_height(source_image, h), media.fit_height(original, h), result], 1)
    return np.concatenate([src_u8, small, result], 1)


def run_pose(args, model, source_image, source_box):
    """The source turned by --pose (an image), or the --pose-sweep grid."""
    from fnevr_jax import inference

    size = model.config.image_size
    src_u8 = (square_u8(source_image, size) if source_box is None else
              _crop(source_image, source_box, size))
    source = src_u8[None].astype(np.float32) / 255
    angles = ([(y, p, 0.0) for p in SWEEP_PITCH for y in SWEEP_YAW] if args.pose_sweep
              else [args.pose])
    kp_source = model.keypoints(source)
    out = media.to_uint8(model.animate_frames(source, np.repeat(source, len(angles), 0),
                                              kp_source, kp_source, 1.0,
                                              inference.pose_rotation(angles)))
    if args.pose_sweep:
        rows = [np.concatenate(list(out[r * len(SWEEP_YAW):(r + 1) * len(SWEEP_YAW)]), 1)
                for r in range(len(SWEEP_PITCH))]
        picture = np.concatenate(rows, 0)
    else:
        picture = paste_back(source_image, out[0], source_box) if args.paste_back else out[0]
        if args.side_by_side:
            picture = np.concatenate([media.fit_height(source_image if args.paste_back else src_u8,
                                                 picture.shape[0]), picture], 1)
    media.write_image(args.out, picture)
    return picture.shape


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
    """Animates as `args` say; returns a one-line summary."""
    from fnevr_jax import api, checkpoint_io, convert, torch_io

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
    source_image = media.read_image(args.source)
    video = Video(args.driving, args.max_frames) if args.driving else None
    try:
        model = api.load_animator(args.checkpoint, args.model, batch_size=args.batch_size)
    except (api.AnimatorError, convert.ConversionError, checkpoint_io.CheckpointError,
            torch_io.TorchFileError) as e:
        raise AnimateError(str(e).splitlines()[0]) from None
    if args.pose is not None or args.pose_sweep:
        try:
            model.require_pose_editor()
        except api.AnimatorError as e:
            raise AnimateError(str(e)) from None
    source_box = source_crop_box(source_image) if args.crop else None
    if video is None:
        shape = run_pose(args, model, source_image, source_box)
        return f"wrote {args.out}: {shape[1]}x{shape[0]}"
    frames = None
    if args.crop or args.best_frame is not None:
        frames = list(tqdm(video, total=video.count, unit="frame", desc="decoding",
                           dynamic_ncols=True, file=sys.stderr))
    count, rate = run_video(args, model, source_image, source_box, video, frames)
    return (f"wrote {args.out}: {count} frames at {video.fps:g} fps"
            + f", {rate:.2f} frames/s")


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
