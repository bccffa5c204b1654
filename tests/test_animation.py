"""fnevr_jax.animation, the pipeline of animate.py, the notebooks and the web app: a long
driving video is streamed (bounded memory)."""
import json
import pathlib
import subprocess
import sys

import cv2
import numpy as np

from tests import xla_env

ROOT = pathlib.Path(__file__).parent.parent
LONG, SHORT = 1500, 50
STREAMED_BOUND = 150 * 2**20   # 1,500 decoded 256x256 frames alone are 281 MiB


def write_moving_video(path, frames, size=256, fps=25):
    """`frames` frames of the test source photo moving around (mp4v)."""
    base = cv2.resize(cv2.imread(str(ROOT / "tests" / "data" / "source.png")), (size, size))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    for i in range(frames):
        shift = np.float32([[1, 0, 5 * np.sin(i / 10)], [0, 1, 3 * np.cos(i / 7)]])
        writer.write(cv2.warpAffine(base, shift, (size, size)))
    writer.release()


def test_a_long_video_is_animated_in_bounded_memory(tmp_path):
    """1,500 frames of 256x256 after 50 of the same video, in one process (the tiny FNeVR
    model): the peak RSS grows by less than 1.5 GB (the acceptance bound) and, streamed, by
    less than holding the decoded frames would take."""
    video = tmp_path / "long.mp4"
    write_moving_video(video, LONG)
    result = subprocess.run(
        [sys.executable, "-m", "tests.stream_memory", str(video), str(tmp_path / "out.mp4"),
         str(SHORT), str(LONG)], capture_output=True, text=True, cwd=ROOT,
        env=xla_env.env(1), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["short"]["frames"] == SHORT and report["long"]["frames"] == LONG
    growth = report["long"]["peak_rss"] - report["short"]["peak_rss"]
    print(f"peak RSS after {SHORT} frames {report['short']['peak_rss'] / 2**20:.0f} MiB, after "
          f"{LONG} frames {report['long']['peak_rss'] / 2**20:.0f} MiB (growth "
          f"{growth / 2**20:.1f} MiB); {report['long']['frames_per_second']} frames/s")
    assert growth < 1.5e9
    assert growth < STREAMED_BOUND
