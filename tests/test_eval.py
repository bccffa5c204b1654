"""eval.py on a small synthetic test split: complete reports for both protocols, bad input."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

import eval as eval_cli
from configs import fnevr as fnevr_configs
from data_pipelines import synthetic
from fnevr_jax import checkpoint_io
from fnevr_jax.models import init_variables
from tests import xla_env

ROOT = pathlib.Path(__file__).parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    synthetic.main(["--output", str(root / "data"), "--train-clips", "2", "--test-clips", "4",
                    "--test-identities", "2", "--identities", "2", "--frames", "4",
                    "--size", "64", "--workers", "1"])
    config = fnevr_configs.get_config("quick")
    variables = init_variables(config, jax.random.key(0), with_discriminator=False)
    checkpoint_io.save_variables(root / "ckpt", variables,
                                 {"model": "fnevr", "config": config.to_dict()})
    return root


def test_reconstruction_report(setup):
    out = setup / "recon"
    env = xla_env.env(1)
    result = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), "--config=configs/fnevr.py:quick",
         f"--checkpoint={setup / 'ckpt'}", f"--data={setup / 'data'}",
         "--protocol=reconstruction", f"--out={out}", "--tensorboard"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    names = ["L1", "LPIPS", "LPIPS-vgg", "PSNR", "SSIM", "AKD-dlib", "AED-dlib", "FID"]
    assert sorted(report["metrics"]) == sorted(names)
    # Every metric present, none skipped: dlib's landmarks and embeddings run on the split's
    # face boxes (its HOG detector finds no face in the synthetic heads).
    for name in names:
        assert isinstance(report["metrics"][name], float), name
        assert report["skipped_frames"].get(name, 0) == 0, name
    assert report["metrics"]["AKD-dlib"] > 0 and 0 < report["metrics"]["AED-dlib"] < 4
    assert len(report["per_clip"]) == 4 and report["frames"] == 16
    md = (out / "report.md").read_text()
    assert "| Method | L1 ↓ | LPIPS ↓ | PSNR ↑ | SSIM ↑ | AKD-dlib ↓ | AED-dlib ↓ | FID ↓ |" in md
    for png in ["samples.png"] + [f"hist_{n}.png" for n in ("L1", "PSNR", "SSIM", "LPIPS")]:
        assert (out / png).stat().st_size > 1000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_cross_identity_report(setup):
    out = setup / "cross"
    aggregate = eval_cli.run(fnevr_configs.get_config("quick"), setup / "ckpt", setup / "data",
                             "cross_identity", out, max_frames=2, num_sources=2, num_driving=2,
                             seed=1)
    report = json.loads((out / "report.json").read_text())
    assert sorted(aggregate) == ["CSIM-dlib", "FID"]
    assert isinstance(aggregate["FID"], float) and -1 <= aggregate["CSIM-dlib"] <= 1
    pairs = report["per_pair"]
    assert pairs and all(p["source_clip"] != p["driving_clip"] for p in pairs)
    assert "| Method | FID ↓ | CSIM-dlib ↑ |" in (out / "report.md").read_text()
    assert (out / "samples.png").exists()


def test_bad_input(setup, tmp_path):
    env = xla_env.env(1)
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), "--config=configs/fnevr.py:quick",
         f"--checkpoint={setup / 'ckpt'}", f"--data={tmp_path / 'nothing'}", f"--out={out}"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error:")
    assert not out.exists() and list(tmp_path.iterdir()) == []
