"""NeRF head training through train.py and the shared trainer: the quick config learns held-out
frames (PSNR well above the mean image), renders a novel-view orbit, and resumes exactly."""
import os
import pathlib
import subprocess
import sys
import time

import imageio.v3 as iio
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import nerf_head as nerf_head_config
from data_pipelines import synthetic
from fnevr_jax.data import loaders
from fnevr_jax.nerf_head import render
from fnevr_jax.nerf_head.task import NerfHeadTask
from fnevr_jax.training import trainer
from tests import xla_env

ROOT = pathlib.Path(__file__).parent.parent
HOLDOUT = 4            # the last 4 of each clip's 32 frames are held out
EPOCHS = 3             # 224 training frames at batch 2: 336 steps
STEPS = EPOCHS * 8 * (32 - HOLDOUT) // 2
MARGIN_DB = 4.0        # measured: about +7 dB after 300 steps, +5 dB after 50


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """4 synthetic identities, 2 clips of 32 frames each, at the quick config's 64x64."""
    out = tmp_path_factory.mktemp("nerf_heads")
    synthetic.generate(out, train_clips=8, test_clips=1, identities=4, test_identities=1,
                       frames=32, size=64, points=16, workers=1)
    return out


def _config(data_dir, **overrides):
    config = nerf_head_config.get_config("quick")
    config.data.dir = str(data_dir)
    config.data.holdout_frames = HOLDOUT
    for key, value in overrides.items():
        node = config
        *path, leaf = key.split(".")
        for part in path:
            node = node[part]
        node[leaf] = value
    return config


def _params(workdir, step):
    restored = ocp.StandardCheckpointer().restore(
        pathlib.Path(workdir) / "checkpoints" / str(step) / "state")
    return restored["task"]["params"]


def test_quick_config_beats_mean_image_on_held_out_frames_and_orbits(heads, tmp_path):
    workdir = tmp_path / "run"
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "train.py", "--config=configs/nerf_head.py:quick",
         f"--workdir={workdir}", f"--config.data.dir={heads}",
         f"--config.data.holdout_frames={HOLDOUT}", f"--config.train.num_epochs={EPOCHS}",
         "--config.data.worker_count=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env=xla_env.env(1))
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"finished at step {STEPS}" in result.stdout

    task = NerfHeadTask(_config(heads))
    state = {"params": _params(workdir, STEPS)}
    means = jax.device_get(task.evaluate(state))
    psnr, baseline, l1 = (float(means[k]) for k in ("psnr", "psnr_mean_image", "l1"))
    # The on-device evaluation (padded batches over 8 devices) equals a frame-by-frame host
    # loop over the 8 x HOLDOUT held-out frames, all on white outside the head mask.
    frames = loaders.nerf_heldout(heads, holdout_frames=HOLDOUT, process_index=0,
                                  process_count=1)
    assert len(frames) == 8 * HOLDOUT
    on_white = lambda x, m: x * m + (1 - m)                                  # noqa: E731
    reference = []
    for i in range(len(frames)):
        x = {k: v[None] for k, v in frames[i].items()}
        image = np.clip(np.asarray(task.render(state["params"], x)["image"]), 0, 1)
        target = on_white(x["image"], x["mask"])
        errors = [np.mean((on_white(image, x["mask"]) - target) ** 2),
                  np.mean((on_white(task.mean_image(), x["mask"]) - target) ** 2),
                  np.mean(np.abs(on_white(image, x["mask"]) - target))]
        reference.append([-10 * np.log10(errors[0]), -10 * np.log10(errors[1]), errors[2]])
    np.testing.assert_allclose([psnr, baseline, l1], np.mean(reference, axis=0), rtol=1e-5)
    print(f"train.py {STEPS} steps: {seconds:.0f} s; held-out PSNR {psnr:.2f} dB, "
          f"mean image {baseline:.2f} dB, L1 {l1:.4f}")
    assert psnr >= baseline + MARGIN_DB
    assert 0 < l1 < 0.05

    # Summary grid: ground truth | render | feature preview | opacity, all at 64x64.
    frames = loaders.nerf_heldout(heads, holdout_frames=HOLDOUT, process_index=0,
                                  process_count=1)
    batch = {k: np.stack([frames[i][k] for i in (0, 5)]) for k in frames[0]}
    grid = task.summary_images(state, batch)["samples"]
    assert grid.shape == (1, 128, 256, 3) and grid.dtype == np.uint8
    out = jax.device_get(task.render(state["params"], batch))
    np.testing.assert_array_equal(grid[0, 64:, :64], np.round(batch["image"][1] * 255))
    np.testing.assert_allclose(grid[0, :64, 64:128], np.round(out["image"][0] * 255), atol=1)
    opacity = grid[0, :64, 192:].astype(np.float32) / 255
    np.testing.assert_allclose(opacity[::4, ::4, 0], out["acc"][0], atol=1 / 255)
    preview = grid[0, :64, 128:192]
    assert preview.min() == 0 and preview.max() == 255
    # The volume renders the head (not the learnable background feature map alone).
    head = batch["mask"][:, ::4, ::4, 0]
    assert (out["acc"] * head).sum() / head.sum() > 0.3
    assert np.abs(out["features"][0] - out["features"][1]).mean() > 1e-2

    # Orbit through the render CLI on the training workdir: a held-out frame's codes, its
    # camera circling the head (yaw ±10°, pitch ±4°: held-out views near the training poses;
    # 336 steps do not yet give a head that holds up at ±30°).
    path = tmp_path / "orbit.gif"
    assert render.main(["orbit", "--checkpoint", str(workdir), "--data", str(heads),
                        "--clip", "0", "--frame", str(32 - HOLDOUT), "--frames", "12",
                        "--yaw", "10", "--pitch", "4", "--out", str(path)]) == 0
    print(f"orbit: {path}")
    images = iio.imread(path).astype(np.float32) / 255
    assert images.shape == (12, 64, 64, 3)
    pairs = np.abs(images[:, None] - images[None]).mean(axis=(2, 3, 4))
    assert pairs[np.triu_indices(12, 1)].min() > 2e-3, pairs
    assert pairs[3, 9] > 0.02, pairs      # the two ends of the yaw swing, 20° apart


def test_resume_is_exact_and_missing_data_is_one_line(heads, tmp_path):
    """2 + 2 steps in two runs equal 4 steps in one (8 devices, batch 8, a narrow model)."""
    small = {"model.mlp_width": 32, "model.mlp_depth": 2, "model.mlp_skip_layer": 1,
             "model.num_samples": 8, "model.feature_channels": 16,
             "loss.perceptual_size": 32, "train.batch_size": 8, "data.worker_count": 0,
             "data.eval_frames": 8, "data.eval_batch_size": 8, "data.mean_image_frames": 8}
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert trainer.train_and_evaluate(_config(heads, **small, **{"train.num_steps": 4}),
                                      straight)[0] == 4
    assert trainer.train_and_evaluate(_config(heads, **small, **{"train.num_steps": 2}),
                                      split)[0] == 2
    assert trainer.train_and_evaluate(_config(heads, **small, **{"train.num_steps": 4}),
                                      split)[0] == 4
    a, b = _params(straight, 4), _params(split, 4)
    moved = jax.tree.map(lambda x, y: np.abs(x - y).max(), a, _params(split, 2))
    assert max(jax.tree.leaves(moved)) > 1e-4
    for (key, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6, err_msg=jax.tree_util.keystr(key))

    with pytest.raises(ValueError, match="no dataset at .*nowhere.*python -m "
                                         "data_pipelines.synthetic"):
        NerfHeadTask(_config(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="codes of 16/6 dims, the model takes 32/6"):
        NerfHeadTask(_config(heads, **{"model.id_dim": 32}))
