"""How fast the `quick` generator learns to reconstruct a frame when no motion is asked: the
floor under the first run's held-out L1.

    XLA_FLAGS=--xla_cpu_max_isa=AVX2 python benchmarks/autoencoder.py --steps 600 2400

The generator of `configs/fnevr.py:quick` (encoder, dense motion, FVR, SPADE decoder) is
trained alone as an autoencoder: source and driving are the same training frame and the source
and driving keypoints are equal, so every sparse motion of the dense-motion network is the
identity and the feature warp leaves F_S in place. The loss is the pixel L1 alone; Adam with
`quick`'s generator rate and betas, divided by 10 for the last quarter, batch 8, as `train.py`.
Every other part of the first run's step (keypoint detector, VGG, discriminator, L_σ, L_editor)
is left out, so a step costs a fraction of train.py's, and what this reaches after N steps
bounds what the first run's generator can reconstruct after N steps of the same batch.

Prints one Markdown row per run: the held-out L1 (frames 0, 16, 32 and 48 of the first 8 test
clips, each reconstructed from itself) every 100 steps, and the run's seconds.
"""
import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import fnevr
from first_run import ROOT, cpu_flags
from fnevr_jax.data import loaders
from fnevr_jax.models import build_models, example_inputs, init_variables, module_variables


def clip_frames(data, split, frames, size, clips=None):
    """uint8 [clips·len(frames), H, W, 3]: the given frames of the split's first `clips` clips
    (all by default)."""
    videos = loaders.eval_clips(data, split=split, max_frames=max(frames) + 1, size=size,
                                uint8=True)
    return np.concatenate([videos[i]["video"][list(frames)]
                           for i in range(min(clips or len(videos), len(videos)))])


def run(config, train_frames, test_frames, steps, every=100):
    """Trains the generator as an autoencoder; returns {step: held-out L1} and the seconds."""
    generator = build_models(config)["generator"]
    variables = module_variables(init_variables(config, jax.random.PRNGKey(config.train.seed),
                                                with_discriminator=False), "generator")
    t = config.train
    optimizer = optax.adam(optax.piecewise_constant_schedule(
        t.lr_generator, {int(0.75 * steps): 0.1}), t.adam_b1, t.adam_b2, t.adam_eps)
    state = {"params": variables["params"], "batch_stats": variables["batch_stats"],
             "opt_state": optimizer.init(variables["params"])}
    train_frames, test_frames = jnp.asarray(train_frames), jnp.asarray(test_frames)

    def reconstruct(params, batch_stats, frames, train):
        _, kp = example_inputs(config, len(frames))   # source keypoints = driving keypoints
        return generator.apply({"params": params, "batch_stats": batch_stats}, frames, kp, kp,
                               train, mutable=["batch_stats"] if train else False)

    @jax.jit
    def step(state, rng):
        pick = jax.random.randint(rng, (t.batch_size,), 0, len(train_frames))
        frames = train_frames[pick].astype(jnp.float32) / 255

        def loss(params):
            out, updates = reconstruct(params, state["batch_stats"], frames, True)
            return jnp.abs(out["prediction"] - frames).mean(), updates["batch_stats"]

        (_, batch_stats), grads = jax.value_and_grad(loss, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates),
                "batch_stats": batch_stats, "opt_state": opt_state}

    @jax.jit
    def held_out_l1(state):
        frames = test_frames.astype(jnp.float32) / 255
        out = reconstruct(state["params"], state["batch_stats"], frames, False)
        return jnp.abs(out["prediction"] - frames).mean()

    rng = jax.random.PRNGKey(config.train.seed + 1)
    l1 = {}
    start = time.perf_counter()
    for i in range(1, steps + 1):
        state = step(state, jax.random.fold_in(rng, i))
        if i % every == 0:
            l1[i] = float(held_out_l1(state))
    return l1, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[600, 2400])
    p.add_argument("--data", type=pathlib.Path, default=None,
                   help="synthetic heads (default: written to a temporary folder)")
    a = p.parse_args()
    data = a.data
    if data is None:
        data = pathlib.Path(tempfile.mkdtemp(prefix="autoencoder_")) / "synthetic"
        subprocess.run([sys.executable, "-m", "data_pipelines.synthetic", "--output", str(data)],
                       cwd=ROOT, check=True, capture_output=True)
    config = fnevr.get_config("quick")
    size = config.image_size
    train_frames = clip_frames(data, "train", range(0, 64, 8), size)
    test_frames = clip_frames(data, "test", (0, 16, 32, 48), size, clips=8)
    cpu, isa = cpu_flags()
    print(f"{cpu}, XLA may use {isa}; `quick` generator as an autoencoder, pixel L1, batch "
          f"{config.train.batch_size}, {len(train_frames)} training frames\n")
    print("| steps | held-out L1 every 100 steps | seconds |")
    print("|---|---|---|")
    for steps in a.steps:
        l1, seconds = run(config, train_frames, test_frames, steps)
        print(f"| {steps} | {' / '.join(f'{v:.4f}' for v in l1.values())} | {seconds:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
