"""Reading the images users give and writing what they look at: images and videos (H.264 mp4
or gif), never half-written.

`read_image` and `square_resize` are the one image reader and inference resizer: the official
demo's `skimage.transform.resize` (anti-aliased when shrinking), after a centre-square crop.
Files are written under a temporary name next to the target and renamed into place when
complete; a failure deletes the temporary file.
"""
import pathlib
import subprocess
import uuid

import cv2
import numpy as np

from fnevr_jax.data import shards


class MediaError(Exception):
    """An output that cannot be written: reported as one line."""


def ffmpeg():
    """The ffmpeg executable bundled with imageio-ffmpeg."""
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def read_image(path):
    """An image file as uint8 RGB [H, W, 3] (grey images repeated, alpha dropped)."""
    import imageio.v3 as iio
    try:
        image = np.asarray(iio.imread(path))
    except (OSError, ValueError) as e:
        raise MediaError(f"{path}: cannot read the image ({str(e).splitlines()[0]})") from None
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise MediaError(f"{path}: not an 8-bit RGB or grey image")
    return image[..., :3]


def square_resize(image, size):
    """The centre square of `image` [H, W, C] resized to float32 [size, size, C] in [0, 1] with
    the official demo's resize (`skimage.transform.resize`, anti-aliased when shrinking)."""
    import skimage.transform
    h, w = image.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    patch = image[y:y + side, x:x + side]
    if patch.dtype == np.uint8:
        patch = patch.astype(np.float32) / 255.0
    if side == size:
        return np.asarray(patch, np.float32)
    return skimage.transform.resize(patch, (size, size)).astype(np.float32)


def to_uint8(image):
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def fit_height(image, height):
    h, w = image.shape[:2]
    if h == height:
        return image
    return cv2.resize(image, (max(1, round(w * height / h)), height),
                      interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)


def even(image):
    h, w = image.shape[:2]
    return image[:h - h % 2, :w - w % 2]


class VideoWriter:
    """Writes uint8 RGB frames to a temporary mp4 (libx264, yuv420p) or gif; `finish` adds
    the driving audio (mp4) and renames the file into place, `abort` deletes it."""

    def __init__(self, out, fps, audio_from=None):
        self.out = pathlib.Path(out)
        self.fps = fps
        self.audio_from = audio_from
        self.tmp = self.out.with_name(f".{self.out.name}.{uuid.uuid4().hex[:8]}{self.out.suffix}")
        self._gen = None
        self._frames = []
        self.count = 0

    def write(self, frame):
        frame = np.ascontiguousarray(even(frame))
        if self.out.suffix == ".gif":
            self._frames.append(frame)
        else:
            if self._gen is None:
                import imageio_ffmpeg
                h, w = frame.shape[:2]
                self._gen = imageio_ffmpeg.write_frames(
                    str(self.tmp), (w, h), fps=self.fps, codec="libx264", pix_fmt_in="rgb24",
                    pix_fmt_out="yuv420p", quality=None, macro_block_size=1,
                    output_params=["-crf", "18", "-movflags", "+faststart"])
                self._gen.send(None)
            self._gen.send(frame)
        self.count += 1

    def finish(self):
        if self.out.suffix == ".gif":
            import imageio.v3 as iio
            iio.imwrite(self.tmp, np.stack(self._frames), duration=1000.0 / self.fps, loop=0)
        else:
            self._gen.close()
            if self.audio_from is not None:
                muxed = self.tmp.with_name(self.tmp.name + ".a.mp4")
                result = subprocess.run(
                    [ffmpeg(), "-y", "-v", "error", "-i", str(self.tmp), "-i",
                     str(self.audio_from), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                     "-c:a", "aac", "-t", f"{self.count / self.fps:.6f}", str(muxed)],
                    capture_output=True, text=True)   # the audio cut to the video, every frame kept
                if result.returncode:
                    muxed.unlink(missing_ok=True)
                    raise MediaError(f"copying the audio failed: {result.stderr.strip()[:200]}")
                muxed.replace(self.tmp)
        self.tmp.replace(self.out)

    def abort(self):
        if self._gen is not None:
            try:
                self._gen.close()
            except Exception:  # noqa: BLE001 (ffmpeg may already be gone)
                pass
        for p in (self.tmp, self.tmp.with_name(self.tmp.name + ".a.mp4")):
            p.unlink(missing_ok=True)


def write_video(out, frames, fps):
    """Writes uint8 RGB frames as a whole video (`VideoWriter`, no audio)."""
    writer = VideoWriter(out, fps)
    try:
        for frame in frames:
            writer.write(frame)
        writer.finish()
    except BaseException:
        writer.abort()
        raise


def write_image(out, image):
    """Writes a uint8 RGB image in the format of `out`'s suffix (png, jpg, ...)."""
    out = pathlib.Path(out)
    try:
        ok, data = cv2.imencode(out.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise MediaError(f"{out}: cannot write the image (unknown suffix {out.suffix!r}?)")
    try:
        shards.atomic_write(out, data.tobytes())
    except OSError as e:
        raise MediaError(f"{out}: cannot write the image ({e.strerror or e})") from None
