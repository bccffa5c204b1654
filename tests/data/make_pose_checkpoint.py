"""Writes tests/data/pose_quick/ (4 MB), tests/data/pose_source.png and docs/pose_sweep.png: the
`quick` FNeVR with a trained pose editor, the model tests/test_pose_editor.py proves against
the synthetic renderer (FNeVR §3.4, eq. 11-12), and its pose sweep beside the truth.

    python tests/data/make_pose_checkpoint.py [--steps 3000] [--workdir runs/pose_quick]

1. The synthetic heads with the head centred and 1.5x the rotation amplitudes
   (`python -m data_pipelines.synthetic --translation 0 --rotation 1.5`). In the default heads
   the head also moves up to ±10 px, and the unsupervised keypoints follow that translation
   (R² 0.27) far more than rotation (R² 0.07): a 15° yaw moved them about 1 px, so the pose
   editor, which learns to predict the driving keypoints from the rotation, had nothing to
   learn. Face-aligned crops of talking-head datasets (VoxCeleb) are centred the same way.
2. `train.py --config=configs/fnevr.py:quick` for STEPS steps (the learning rates divided by
   10 for the last quarter, as the 600-step `quick` schedule), every loss of FNeVR eq. 13
   with L_editor (eq. 12) among them.
3. The last checkpoint's inference export (keypoint detector, generator, pose editor and
   `pose_editor_steps`), saved with `checkpoint_io.save_variables`: no optimizer state.
4. pose_source.png: an unturned head of an identity never seen in training, and
   docs/pose_sweep.png: `animate.py --pose-sweep` of it (yaw -30..30 across, pitch -20..20
   down) beside the renderer's truth at the same angles, for the README.

About 25 minutes on 2 CPU cores (AVX-512). The run is seeded, but XLA's CPU arithmetic
differs between machines, so a rerun gives a similar model, not the same bytes.
"""
import argparse
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent.parent
HERE = pathlib.Path(__file__).parent
SOURCE_IDENTITY, SOURCE_SCENE = 44, 0   # identity 44: in neither split of the synthetic heads


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--workdir", type=pathlib.Path, default=ROOT / "runs" / "pose_quick")
    p.add_argument("--out", type=pathlib.Path, default=HERE / "pose_quick")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from configs import fnevr
    from data_pipelines import synthetic
    from fnevr_jax import animation, api, checkpoint_io, media
    from fnevr_jax.data import shards

    data = a.workdir / "synthetic"
    subprocess.run([sys.executable, "-m", "data_pipelines.synthetic", "--output", str(data),
                    "--translation", "0", "--rotation", "1.5"], cwd=ROOT, check=True)
    # The schedule is in epochs of the task (identities x repeats / batch: 100 steps here).
    quick = fnevr.get_config("quick")
    epoch = (len(shards.open_split(data, "train").identities) * quick.data.num_repeats
             // quick.train.batch_size)
    subprocess.run([sys.executable, "train.py", "--config=configs/fnevr.py:quick",
                    f"--workdir={a.workdir / 'train'}", f"--config.data.dir={data}",
                    f"--config.train.num_steps={a.steps}",
                    f"--config.train.epoch_milestones=({0.75 * a.steps / epoch:g},)",
                    "--config.log.eval_every_steps=1000",
                    "--config.log.checkpoint_every_steps=500"], cwd=ROOT, check=True)
    variables, metadata = checkpoint_io.load_export(a.workdir / "train")
    metadata["made_by"] = ("tests/data/make_pose_checkpoint.py: synthetic heads --translation 0 "
                           f"--rotation 1.5, configs/fnevr.py:quick for {a.steps} steps")
    checkpoint_io.save_variables(a.out, variables, metadata, overwrite=True)
    frames, _ = synthetic.render_poses(SOURCE_IDENTITY, np.zeros((1, 3)), scene=SOURCE_SCENE)
    media.write_image(HERE / "pose_source.png", frames[0])
    sweep = animation.pose_picture(api.load_animator(a.out), frames[0], None,
                                   animation.Options(pose_sweep=True))
    truth, _ = synthetic.render_poses(SOURCE_IDENTITY, np.deg2rad(animation.sweep_angles()),
                                      scene=SOURCE_SCENE)
    truth = animation.sweep_grid(truth)
    gap = np.full((truth.shape[0], 8, 3), 255, np.uint8)
    picture = np.concatenate([sweep, gap, truth], 1).repeat(2, 0).repeat(2, 1)
    media.write_image(ROOT / "docs" / "pose_sweep.png", picture)
    print(f"wrote {a.out} (pose editor trained {metadata['pose_editor_steps']} steps), "
          f"{HERE / 'pose_source.png'} and {ROOT / 'docs' / 'pose_sweep.png'}")


if __name__ == "__main__":
    main()
