"""A tiny FNeVR training setup for tests: 32x32 synthetic heads and narrow networks.

Every field is set through the same `--config.x=y` overrides a user would pass to train.py.
"""

from configs import fnevr as fnevr_configs

OVERRIDES = {
    "image_size": 32,
    "kp_detector.block_expansion": 8, "kp_detector.max_features": 32,
    "kp_detector.num_blocks": 2, "kp_detector.num_kp": 5,
    "generator.block_expansion": 8, "generator.max_features": 32,
    "dense_motion.block_expansion": 8, "dense_motion.max_features": 32,
    "dense_motion.num_blocks": 2,
    "fvr.color_channels": 32, "fvr.sigma_channels": 32, "fvr.hidden": 16,
    "spade.mid_channels": 16, "spade.block_channels": (16, 4),
    "discriminator.block_expansion": 8, "discriminator.max_features": 32,
    "pose_editor.hidden": (16,), "mesh_weights.width": 8,
    "loss_weights.perceptual": (10.0, 10.0, 0.0, 0.0, 0.0),
    "loss_weights.render_perceptual": (5.0, 5.0, 0.0, 0.0, 0.0),
    "perceptual.scales": (1.0,), "sigma_loss.num_points": 16,
    "train.batch_size": 8, "data.num_repeats": 2, "data.worker_count": 0,
    "data.eval_clips": 2, "data.eval_frames": 4,
    "log.every_steps": 1, "log.image_every_steps": 1000, "log.eval_every_steps": 1000,
    "log.checkpoint_every_steps": 1000,
}


def config(data_dir, **extra):
    c = fnevr_configs.get_config("quick")
    for key, value in {**OVERRIDES, "data.dir": str(data_dir), **extra}.items():
        node = c
        *path, leaf = key.split(".")
        for part in path:
            node = node[part]
        node[leaf] = value
    return c


def flags(data_dir, **extra):
    """train.py arguments for the same config."""
    return ["--config=configs/fnevr.py:quick"] + [
        f"--config.{k}={v if not isinstance(v, tuple) else '(' + ','.join(map(str, v)) + ',)'}"
        for k, v in {**OVERRIDES, "data.dir": str(data_dir), **extra}.items()]


def make_data(out_dir):
    from data_pipelines import synthetic
    synthetic.generate(out_dir, train_clips=8, test_clips=2, identities=4, test_identities=2,
                       frames=8, size=32, points=64, workers=1)
    return out_dir




def write_checkpoint(out, seed=0):
    """An orbax checkpoint (`checkpoint_io.save_variables`, as `fnevr_jax.convert` writes) of
    the tiny FNeVR networks with random weights: any command loads it and runs it fast."""
    import jax

    from fnevr_jax import checkpoint_io
    from fnevr_jax.models import init_variables
    c = config("unused")
    variables = init_variables(c, jax.random.key(seed), with_discriminator=False)
    return checkpoint_io.save_variables(out, variables, {"model": "fnevr",
                                                         "config": c.to_dict()})
