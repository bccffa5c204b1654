"""Animating a photo with a driving video, or turning its head: the one pipeline behind
`animate.py`, the notebooks (`colabs/`) and the web app (`python -m fnevr_jax.demo`).

    from fnevr_jax import animation, api
    animator = api.load_animator("runs/quick")
    result = animation.animate(animator, "photo.jpg", "result.mp4", driving="video.mp4",
                               options=animation.Options(crop=True, side_by_side=True))
    result.frames, result.fps, result.frames_per_second

Long videos run in bounded memory: the driving video is streamed from the decoder through the
networks (batches of the animator's batch size) to the encoder, on three threads; `--crop`
and `--best-frame auto` first make their own streamed pass (face boxes, landmarks), keeping
only a few numbers per frame. Bad input raises `AnimationError` (one line); the output is
written under a temporary name and renamed into place when complete.
"""
import dataclasses
import pathlib
import queue
import subprocess
import sys
import threading
import time

import cv2
import numpy as np

from fnevr_jax import media

VIDEO_SUFFIXES = (".mp4", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SWEEP_YAW = (-30, -15, 0, 15, 30)
SWEEP_PITCH = (-20, 0, 20)
MIN_CONFIDENCE = 0.75   # mediapipe scores faces above 0.9, false detections near 0.6
MIN_COVERAGE = 0.25     # the driving face track must span this fraction of the frames
LANDMARK_CHUNK = 64     # frames per face-mesh call in the --best-frame auto pass


class AnimationError(Exception):
    """Bad input: reported as one line."""


@dataclasses.dataclass
class Options:
    """What `animate.py`'s flags choose. `mode`: "relative" (first-order-model's relative
    motion, scaled by the keypoint hull areas unless `adapt_scale` is False) or "absolute";
    `crop`: find and crop the faces; `paste_back` (needs `crop`): the animated crop inside the
    source photo; `best_frame`: "auto" or a driving frame number for the relative motion's
    initial frame; `pose`: (yaw, pitch, roll) degrees for the pose editor; `pose_sweep`: a
    yaw x pitch grid image; `side_by_side`: source | driving | result; `max_frames`: animate
    only the first N driving frames; `onnx`: run the frames through an `animate` ONNX export
    in onnxruntime."""
    mode: str = "relative"
    adapt_scale: bool = True
    crop: bool = False
    paste_back: bool = False
    best_frame: object = None
    pose: object = None
    pose_sweep: bool = False
    side_by_side: bool = False
    max_frames: int = None
    onnx: object = None

    def check(self):
        if self.mode not in ("relative", "absolute"):
            raise AnimationError(f"mode must be 'relative' or 'absolute', not {self.mode!r}")
        if self.paste_back and not self.crop:
            raise AnimationError("paste-back needs crop")
        if self.best_frame is not None and not (self.best_frame == "auto"
                                                or str(self.best_frame).isdigit()):
            raise AnimationError(f"best frame must be 'auto' or a frame number, "
                                 f"not {self.best_frame!r}")
        if self.best_frame is not None and self.mode != "relative":
            raise AnimationError("best frame only applies to relative motion")
        if self.max_frames is not None and self.max_frames < 1:
            raise AnimationError(f"max frames must be at least 1, not {self.max_frames}")


@dataclasses.dataclass
class Result:
    """What `animate` wrote: `path`, and for a video its `frames`, `fps` (the driving
    video's), `has_audio` and the animation speed `frames_per_second`; for an image its
    `shape`."""
    path: pathlib.Path
    frames: int = 0
    fps: float = 0.0
    has_audio: bool = False
    frames_per_second: float = 0.0
    shape: tuple = ()

    def summary(self):
        if self.frames:
            return (f"wrote {self.path}: {self.frames} frames at {self.fps:g} fps, "
                    f"{self.frames_per_second:.2f} frames/s")
        return f"wrote {self.path}: {self.shape[1]}x{self.shape[0]}"


# --------------------------------------------------------------------------- inputs
def square_u8(image, size):
    """uint8 centre square of `image` at (size, size): `media.square_resize` (the official
    demo's resize) rounded to 8 bits, the form the video pipeline carries."""
    return media.to_uint8(media.square_resize(image, size))


class Video:
    """A driving video opened with OpenCV: fps, an estimated frame count and whether it has
    audio; iterating decodes uint8 RGB frames one at a time (at most `max_frames`)."""

    def __init__(self, path, max_frames=None):
        self.path = pathlib.Path(path)
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            raise AnimationError(f"{path}: cannot decode the video")
        self.fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.frame_shape = frame.shape
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        self.max_frames = max_frames
        self.count = min(count, max_frames) if max_frames and count > 0 else count or None
        self.has_audio = _has_audio(path)

    def __iter__(self):
        cap = cv2.VideoCapture(str(self.path))
        n = 0
        try:
            while self.max_frames is None or n < self.max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                n += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()


def _has_audio(path):
    result = subprocess.run([media.ffmpeg(), "-hide_banner", "-i", str(path)],
                            capture_output=True, text=True)
    return any("Audio:" in line for line in result.stderr.splitlines()
               if line.strip().startswith("Stream #"))


def read_source(path):
    """The source photo as uint8 RGB; a missing or unreadable file is an AnimationError."""
    if not pathlib.Path(path).is_file():
        raise AnimationError(f"{path}: no such source file")
    try:
        return media.read_image(path)
    except media.MediaError as e:
        raise AnimationError(str(e)) from None


def open_video(path, max_frames=None):
    """A `Video`; a missing or undecodable file is an AnimationError."""
    if not pathlib.Path(path).is_file():
        raise AnimationError(f"{path}: no such driving file")
    return Video(path, max_frames)


# --------------------------------------------------------------------------- faces
def source_crop_box(image):
    """The crop box of the largest face in a photo (data_pipelines' crop)."""
    from data_pipelines import face_crop
    with face_crop.FaceDetector(MIN_CONFIDENCE) as detector:
        crops = face_crop.find_crops([image], smooth=0, detections=[detector(image)])
    if not crops:
        raise AnimationError("no face found in the source image (crop)")
    return max(crops, key=lambda c: np.ptp(c.face_boxes[0, [0, 2]])).crop_boxes[0]


def driving_crop_boxes(frames):
    """Per-frame crop boxes (T, 4) of the longest face track of `frames` (any iterable,
    e.g. a streamed `Video`: only the detections are kept), which must cover at least
    MIN_COVERAGE of the frames; before and after it its nearest box is kept."""
    from data_pipelines import face_crop
    with face_crop.FaceDetector(MIN_CONFIDENCE) as detector:
        detections = [detector(frame) for frame in frames]
    crops = face_crop.find_crops(None, detections=detections)
    best = max(crops, key=lambda c: len(c.crop_boxes)) if crops else None
    if best is None or len(best.crop_boxes) < MIN_COVERAGE * len(detections):
        raise AnimationError("no face found in the driving video (crop)")
    idx = np.clip(np.arange(len(detections)) - best.start, 0, len(best.crop_boxes) - 1)
    return best.crop_boxes[idx]


def face_landmarks(images, static):
    """mediapipe face-mesh (x, y) landmarks (T, 468, 2) and a found mask (T,) of `images`
    (any iterable of uint8 RGB images, consumed in chunks)."""
    from data_pipelines.landmarks import FaceMesh
    points, found, chunk = [], [], []
    with FaceMesh(static=static) as mesh:
        for image in images:
            chunk.append(image)
            if len(chunk) == LANDMARK_CHUNK:
                p, f = mesh(np.stack(chunk))
                points.append(p[..., :2]), found.append(f)
                chunk = []
        if chunk:
            p, f = mesh(np.stack(chunk))
            points.append(p[..., :2]), found.append(f)
    return np.concatenate(points), np.concatenate(found)


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


def _crop(frame, box, size):
    from data_pipelines import face_crop
    return face_crop.crop_frames([frame], np.asarray(box)[None], size)[0]


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


def compose(options, source_image, src_u8, source_box, original, small, prediction):
    """One output frame: the prediction (pasted back), or source | driving | result."""
    result = (paste_back(source_image, prediction, source_box) if options.paste_back
              else prediction)
    if not options.side_by_side:
        return result
    if options.paste_back:
        h = result.shape[0]
        return np.concatenate([media.fit_height(source_image, h),
                               media.fit_height(original, h), result], 1)
    return np.concatenate([src_u8, small, result], 1)


def _tqdm_progress(total):
    from tqdm import tqdm
    bar = tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr)

    def update(done, _total):
        bar.update(done - bar.n)
        if done == _total:
            bar.close()
    return update


def animate_video(animator, source_image, source_box, video, out, options, progress=None):
    """`video` (a `Video`, streamed) animating `source_image` (uint8 RGB, cropped to
    `source_box` when given) -> `out` (.mp4 with the driving audio, or .gif). `progress`
    (done, total) is called as frames are written (total: the estimated frame count, or None);
    the default is a tqdm bar on stderr. Returns the `Result`."""
    from fnevr_jax import inference

    size = animator.config.image_size
    src_u8 = (square_u8(source_image, size) if source_box is None else
              _crop(source_image, source_box, size))
    source = src_u8[None].astype(np.float32) / 255
    relative = options.mode == "relative"
    rotation = inference.pose_rotation(options.pose) if options.pose is not None else None

    boxes = driving_crop_boxes(video) if options.crop else None

    def small_frames(frames):
        for i, frame in enumerate(frames):
            yield frame, (_crop(frame, boxes[i], size) if boxes is not None
                          else square_u8(frame, size))

    start = 0
    if options.best_frame == "auto":
        src_points, src_found = face_landmarks(src_u8[None], static=True)
        if not src_found[0]:
            raise AnimationError("no face landmarks found in the source (best frame auto)")
        points, found = face_landmarks((s for _, s in small_frames(video)), static=False)
        start = inference.best_frame(src_points[0], points, found)
    elif options.best_frame is not None:
        start = int(options.best_frame)
    kp_source = animator.keypoints(source)
    kp_initial, scale = None, 1.0
    if relative:
        initial = next((s for i, (_, s) in enumerate(small_frames(video)) if i == start), None)
        if initial is None:
            raise AnimationError(f"best frame {start} is outside the driving video's frames")
        kp_initial = animator.keypoints(initial[None].astype(np.float32) / 255)
        if options.adapt_scale:
            scale = inference.adapt_scale(kp_source["value"], kp_initial["value"])

    batch_size = animator.core.batch_size
    decoded = queue.Queue(maxsize=4)
    encoded = queue.Queue(maxsize=4)

    def decode():
        try:
            batch = []
            for item in small_frames(video):
                batch.append(item)
                if len(batch) == batch_size:
                    decoded.put(batch)
                    batch = []
            if batch:
                decoded.put(batch)
        finally:
            decoded.put(_END)

    out = pathlib.Path(out)
    audio = video.path if video.has_audio and out.suffix == ".mp4" else None
    writer = media.VideoWriter(out, video.fps, audio)
    total = len(boxes) if boxes is not None else video.count
    progress = progress or _tqdm_progress(total)
    started = time.perf_counter()

    def encode():
        failed = None
        while (item := encoded.get()) is not _END:
            for original, small, prediction in item if failed is None else ():
                try:
                    writer.write(compose(options, source_image, src_u8, source_box, original,
                                         small, media.to_uint8(prediction)))
                except BaseException as e:  # noqa: BLE001 (keep draining, then report)
                    failed = e
                    break
                progress(writer.count, total)
        if failed is not None:
            raise failed

    animate_frames = animator.animate_frames
    if options.onnx is not None:   # the source and initial keypoints still come from XLA
        animate_frames = onnx_animation(options.onnx).animate_frames
    join_decode = _threaded(decode)
    join_encode = _threaded(encode)
    try:
        while (batch := decoded.get()) is not _END:
            small = np.stack([s for _, s in batch]).astype(np.float32) / 255
            predictions = animate_frames(source, small, kp_source, kp_initial, scale,
                                         rotation, relative)
            encoded.put([(o, s, p) for (o, s), p in zip(batch, predictions)])
    except BaseException:
        writer.abort()
        while decoded.get() is not _END:   # let the decoder finish
            pass
        raise
    finally:
        encoded.put(_END)
    try:
        join_decode()
        join_encode()
        if writer.count == 0:
            raise AnimationError(f"{video.path}: no frames decoded")
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return Result(out, writer.count, video.fps, audio is not None,
                  writer.count / (time.perf_counter() - started))


def onnx_animation(path):
    from fnevr_jax import export
    try:
        return export.OnnxAnimation(path)
    except export.ExportError as e:
        raise AnimationError(str(e)) from None


def sweep_angles():
    """The pose sweep's (yaw, pitch, roll) in degrees: SWEEP_YAW across, SWEEP_PITCH down."""
    return [(y, p, 0.0) for p in SWEEP_PITCH for y in SWEEP_YAW]


def sweep_grid(images):
    """Images at `sweep_angles()` [n, H, W, 3] as one grid image."""
    n = len(SWEEP_YAW)
    return np.concatenate([np.concatenate(list(images[r * n:(r + 1) * n]), 1)
                           for r in range(len(SWEEP_PITCH))], 0)


def pose_picture(animator, source_image, source_box, options):
    """The source turned by `options.pose` (uint8 RGB), or the `pose_sweep` grid."""
    from fnevr_jax import inference

    size = animator.config.image_size
    src_u8 = (square_u8(source_image, size) if source_box is None else
              _crop(source_image, source_box, size))
    source = src_u8[None].astype(np.float32) / 255
    angles = sweep_angles() if options.pose_sweep else [options.pose]
    kp_source = animator.keypoints(source)
    out = media.to_uint8(animator.animate_frames(
        source, np.repeat(source, len(angles), 0), kp_source, kp_source, 1.0,
        inference.pose_rotation(angles)))
    if options.pose_sweep:
        return sweep_grid(out)
    picture = paste_back(source_image, out[0], source_box) if options.paste_back else out[0]
    if options.side_by_side:
        picture = np.concatenate([media.fit_height(source_image if options.paste_back
                                                   else src_u8, picture.shape[0]), picture], 1)
    return picture


# --------------------------------------------------------------------------- entry points
def load(checkpoint, model=None, batch_size=8):
    """`api.load_animator` with every loading failure as an AnimationError (one line)."""
    from fnevr_jax import api, checkpoint_io, convert, torch_io
    if not pathlib.Path(checkpoint).exists():
        raise AnimationError(f"{checkpoint}: no such checkpoint")
    try:
        return api.load_animator(checkpoint, model, batch_size=batch_size)
    except (api.AnimatorError, convert.ConversionError, checkpoint_io.CheckpointError,
            torch_io.TorchFileError) as e:
        raise AnimationError(str(e).splitlines()[0]) from None


def animate(animator, source, out, driving=None, options=None, progress=None):
    """Animates the photo `source` with the video `driving` into `out` (.mp4/.gif), or, without
    `driving` (or with `options.pose_sweep`), writes the pose-edited image `out` (.png/.jpg).
    The one call of `animate.py`, the notebooks and the web app; returns the `Result`."""
    options = options or Options()
    options.check()
    out = pathlib.Path(out)
    image_mode = options.pose_sweep or driving is None
    if options.pose_sweep and (driving is not None or options.pose is not None):
        raise AnimationError("a pose sweep takes no driving video and no pose")
    if image_mode and options.pose is None and not options.pose_sweep:
        raise AnimationError("a driving video is required (or a pose / pose sweep)")
    suffixes = IMAGE_SUFFIXES if image_mode else VIDEO_SUFFIXES
    if out.suffix.lower() not in suffixes:
        raise AnimationError(f"{out}: the output must end in {' or '.join(suffixes)}")
    if not out.parent.is_dir():
        raise AnimationError(f"{out.parent}: no such output directory")
    source_image = read_source(source)
    video = open_video(driving, options.max_frames) if not image_mode else None
    if options.pose is not None or options.pose_sweep:
        from fnevr_jax import api
        try:
            animator.require_pose_editor()
        except api.AnimatorError as e:
            raise AnimationError(str(e)) from None
    source_box = source_crop_box(source_image) if options.crop else None
    if video is None:
        picture = pose_picture(animator, source_image, source_box, options)
        media.write_image(out, picture)
        return Result(out, shape=picture.shape)
    return animate_video(animator, source_image, source_box, video, out, options, progress)
