"""The README's first command, whole: synthetic heads, `train.py --config=configs/fnevr.py:quick`,
then `animate.py` on a held-out clip with the model it just trained. The first two run in the
background from the start of the suite (tests/first_run.py, started by conftest); this test
goes last and waits for them.

It checks that the model learned to animate: on held-out identities the reconstruction L1
(frame 0 drives every frame of the clip) ends well below the L1 of copying the source frame,
and well below where it stood at the first evaluation; and that the animation of the
held-out example clip is a side-by-side video with the driving clip's frames and frame rate
whose result panel is closer to the driving clip than its source frame is. Then
colabs/train_quick.ipynb runs on a copy of that run (its second test).
"""
import json
import pathlib
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests import first_run as first_run_lib

ROOT = pathlib.Path(__file__).parent.parent
EVAL_LINE = re.compile(r"\[(\d+)\] eval/l1=([\d.]+), eval/l1_copy_source=([\d.]+)")
# Held-out L1 at the end <= BOUND x copying the source. Measured (BENCHMARKS.md, the quick
# first run, the keypoint detector at half the other rates): seeds 0 / 1 / 2 gave 0.737 /
# 0.696 / 0.726 with XLA restricted to AVX2, seed 0 0.706 with AVX-512, and seed 0 0.741 on an
# Intel Xeon restricted to AVX2. 0.80 is 8% above the worst. With the detector at the others'
# rate seed 1 had ended at 0.824, its keypoints wandering.
BOUND = 0.80


def _run(*args, timeout):
    # As a user runs it: one CPU device, not the 8 simulated ones of the other tests.
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, env=first_run_lib.user_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[..., ::-1].astype(np.float32) / 255)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return np.stack(frames), fps


def test_first_run_learns_to_animate_held_out_heads(first_run, tmp_path):
    proc, folder = first_run
    data, workdir = folder / "synthetic", folder / "quick"
    returncode = proc.wait(timeout=3600)
    log = (folder / "train.log").read_text() if (folder / "train.log").exists() else ""
    assert returncode == 0, ((folder / "pipeline.log").read_text() + log)[-3000:]
    evals = {int(s): (float(l1), float(copy)) for s, l1, copy in EVAL_LINE.findall(log)}
    assert sorted(evals) == [200, 400, 600], log[-3000:]
    copy = evals[600][1]
    assert 0.07 < copy < 0.1  # the synthetic heads move: copying the source is a poor guess
    first, last = evals[200][0], evals[600][0]
    print(f"held-out L1 by step: { {s: round(v[0], 4) for s, v in evals.items()} }, "
          f"copy-the-source {copy:.4f}, ratio {last / copy:.3f}")
    assert last < BOUND * copy, evals
    assert last < 0.8 * first, evals
    assert (workdir / "checkpoints" / "600").is_dir()

    examples, out = data / "examples", tmp_path / "quick.mp4"
    _run("animate.py", "--checkpoint", str(workdir), "--source", str(examples / "source.png"),
         "--driving", str(examples / "driving.mp4"), "--side-by-side", "--out", str(out),
         timeout=300)
    driving, driving_fps = _read_video(examples / "driving.mp4")
    video, fps = _read_video(out)
    size = driving.shape[1]
    assert video.shape[:3] == (64, size, 3 * size) and fps == driving_fps
    source_panel, driving_panel, result = np.split(video, 3, axis=2)  # source | driving | result
    # The panels are the inputs (up to H.264), and the result follows the driving clip.
    assert np.abs(driving_panel - driving).mean() < 0.03
    assert np.abs(source_panel - driving[:1]).mean() < 0.03
    animated, copied = (np.abs(x - driving).mean() for x in (result, driving[:1]))
    print(f"animate.py on the held-out example: L1 {animated:.4f}, copying the source {copied:.4f}")
    assert animated < copied


NOTEBOOK_EVAL = re.compile(r"step (\d+): held-out L1 ([\d.]+), copying the source ([\d.]+)")


def test_train_quick_notebook_on_the_first_run(first_run, tmp_path, monkeypatch):
    """colabs/train_quick.ipynb with SMOKE=True on a copy of the run the first test checked
    (VARIANT quick, its data and workdir): the training cell finds the run finished, the resume
    cell trains 10 more steps, eval.py's report holds every metric as a number, and the
    held-out clip is animated with its frames and frame rate.

    The notebook's own smoke model (32x32, 30 steps) does not beat copying the source frame
    (held-out L1 about 0.14 against 0.015); the run it resumes here does, and the notebook's
    printed L1 must be below the copy-the-source L1 it prints beside it."""
    from tests.test_notebooks import execute, frames_and_fps, text_output
    proc, folder = first_run
    assert proc.wait(timeout=3600) == 0
    data, workdir = folder / "synthetic", tmp_path / "runs" / "quick"
    shutil.copytree(folder / "quick", workdir)
    nb = execute("train_quick.ipynb", tmp_path, monkeypatch, VARIANT="quick", DATA=str(data),
                 WORKDIR=str(workdir))
    text = text_output(nb)
    assert "trained to step 600" in text and "resumed, trained to step 610" in text
    evals = [(int(s), float(l1), float(copy)) for s, l1, copy in NOTEBOOK_EVAL.findall(text)]
    assert [s for s, _, _ in evals] == [200, 400, 600, 610], text[-2000:]
    print("held-out L1, copying the source, by step:", evals)
    assert evals[-1][1] < evals[-1][2]
    report = json.loads((tmp_path / "eval" / "recon" / "report.json").read_text())
    names = ["L1", "LPIPS", "LPIPS-vgg", "PSNR", "SSIM", "AKD-dlib", "AED-dlib", "FID"]
    assert sorted(report["metrics"]) == sorted(names)
    assert all(isinstance(report["metrics"][n], float) for n in names), report["metrics"]
    frames, fps = frames_and_fps(data / "examples" / "driving.mp4")
    assert frames_and_fps(tmp_path / "heldout.mp4") == (frames, pytest.approx(fps, abs=1e-3))
    html = json.dumps([o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs])
    assert "<video controls" in html and html.count("<img src") >= 2     # samples, histograms
