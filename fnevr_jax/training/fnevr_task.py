"""The FNeVR / FOMM training task: the paper's objective (FNeVR eq. 13) on top of the generic trainer.

One step (as first-order-model's loop): the generator, keypoint detector, pose editor and
mesh-weight CNN take a step on L_P + L_G + L_E + L_R + L_σ + L_editor (+ feature matching),
then the discriminator takes a step on the same, detached, prediction. BatchNorm layers use
the statistics of the whole global batch; every discriminator call in training mode advances
its spectral-norm power iteration, as PyTorch's does.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from fnevr_jax import inference, losses, sharding
from fnevr_jax.data import loaders, shards
from fnevr_jax.models import build_models, example_inputs, init_variables
from fnevr_jax.models.blocks import feature_width
from fnevr_jax.models.pose_editor import PoseEditor, relative_rotation
from fnevr_jax.ops import resize_nearest
from fnevr_jax.pretrained import vgg as vgg_lib
from fnevr_jax.training import summaries

# The paper's loss terms that read a per-frame field of the shards: {weight name: (field, term)}.
DATA_TERMS = {"sigma": ("landmarks", "L_σ (FNeVR eq. 4)"),
              "pose_edit": ("pose", "L_editor (FNeVR eq. 12)")}


def _missing_data(config):
    return (f"no dataset at {config.data.dir or '(config.data.dir is empty)'}: make one with "
            "`python -m data_pipelines.synthetic --output DIR` (built-in synthetic heads) or "
            "`python -m data_pipelines.preprocess --input VIDEOS --output DIR --crop`, then pass "
            "--config.data.dir=DIR")


class FNeVRTask:
    """Everything model-specific the trainer needs: data, state, step, summaries, evaluation."""

    def __init__(self, config):
        self.config = config
        try:
            self.split = shards.open_split(config.data.dir, "train", size=config.image_size)
        except (shards.DatasetError, FileNotFoundError, OSError) as e:
            raise ValueError(f"{_missing_data(config)} ({str(e).splitlines()[0]})") from None
        w = config.loss_weights
        self.use_sigma = config.model == "fnevr" and w.sigma > 0   # FOMM has no σ to match
        self.use_pose = w.pose_edit > 0
        self.use_gan = w.generator_gan > 0
        missing = [name for name, (field, _) in DATA_TERMS.items()
                   if (self.use_sigma if name == "sigma" else self.use_pose)
                   and field not in self.split.fields]
        if missing:
            needs = "; ".join(f"{DATA_TERMS[n][1]} (loss_weights.{n}={getattr(w, n):g}) needs "
                              f"the `{DATA_TERMS[n][0]}` field" for n in missing)
            raise ValueError(
                f"{needs}, which the shards in {config.data.dir} lack: add it with "
                "`python -m data_pipelines.preprocess --landmarks`, or train without it with "
                + " ".join(f"--config.loss_weights.{n}=0" for n in missing))
        self.fields = tuple(f for f, on in (("landmarks", self.use_sigma), ("pose", self.use_pose))
                            if on)
        self.models = build_models(config)
        self.pose_editor = PoseEditor(tuple(config.pose_editor.hidden))
        self.mesh_weights = losses.MeshWeightPredictor(config.mesh_weights.width,
                                                       jnp.dtype(config.dtype))
        # The VGG is built only up to the deepest layer that has a non-zero weight.
        used = [i for i, (a, b) in enumerate(zip(w.perceptual, w.render_perceptual)) if a or b]
        kind = vgg_lib.VGG_KINDS[config.perceptual.network]
        self.vgg = vgg_lib.ConvFeatures(kind["layers"], kind["taps"][:max(used) + 1],
                                        kind["preprocess"], jnp.dtype(config.dtype))
        # Frozen pretrained weights: an argument of the step, not constants baked into it.
        self.frozen = {"vgg": jax.tree.map(jnp.asarray,
                                           vgg_lib.load_vgg_params(config.perceptual.network))}
        self.layer_scale = tuple(config.perceptual.layer_scale[config.perceptual.network])
        t = config.train
        ids = len(self.split.identities)
        self.steps_per_epoch = max(1, ids * config.data.num_repeats // t.batch_size)
        self.num_steps = t.num_steps if t.num_steps > 0 else t.num_epochs * self.steps_per_epoch
        self.optimizers = {name: self._adam(getattr(t, f"lr_{name}"))
                           for name in ("generator", "kp_detector", "discriminator", "pose_editor")}
        self._inference_functions = self._summary = self._eval = None

    # ------------------------------------------------------------------------------- data
    def train_data(self, seed):
        c = self.config
        return loaders.train_pairs(
            c.data.dir, batch_size=c.train.batch_size, seed=seed, worker_count=c.data.worker_count,
            num_repeats=c.data.num_repeats, augment=c.data.augment, fields=self.fields,
            size=c.image_size, uint8=True)   # to the devices as uint8; the step converts

    # ------------------------------------------------------------------------------- state
    def _adam(self, lr):
        t = self.config.train
        boundaries = {int(e * self.steps_per_epoch): 0.1 for e in t.epoch_milestones}
        schedule = optax.piecewise_constant_schedule(lr, boundaries)
        return optax.adam(schedule, b1=t.adam_b1, b2=t.adam_b2, eps=t.adam_eps)

    def learning_rates(self, step):
        t = self.config.train
        factor = 0.1 ** sum(step >= e * self.steps_per_epoch for e in t.epoch_milestones)
        return {f"lr/{n}": getattr(t, f"lr_{n}") * factor for n in self.optimizers}

    def loss_terms(self):
        """{term: weight} of the objective this run optimises (FNeVR eq. 13)."""
        w, fnevr = self.config.loss_weights, self.config.model == "fnevr"
        terms = {"perceptual (L_P)": tuple(w.perceptual),
                 "render_perceptual (L_R, FNeVR eq. 10)": tuple(w.render_perceptual) if fnevr
                 else 0,
                 "generator_gan (L_G)": w.generator_gan if self.use_gan else 0,
                 "feature_matching": tuple(w.feature_matching) if self.use_gan else 0,
                 "discriminator_gan": w.discriminator_gan if self.use_gan else 0,
                 "equivariance_value (L_E)": w.equivariance_value,
                 "equivariance_jacobian (L_E)": w.equivariance_jacobian,
                 "sigma (L_σ, FNeVR eq. 4)": w.sigma if self.use_sigma else 0,
                 "pose_edit (L_editor, FNeVR eq. 12)": w.pose_edit if self.use_pose else 0,
                 "pixel_l1 (not in the paper)": w.pixel_l1}
        return {k: v for k, v in terms.items() if v and (not isinstance(v, tuple) or any(v))}

    def init_state(self, rng):
        k_models, k_pose, k_mesh = jax.random.split(rng, 3)
        variables = init_variables(self.config, k_models, with_discriminator=self.use_gan)
        params, batch_stats = dict(variables["params"]), dict(variables["batch_stats"])
        image, kp = example_inputs(self.config)
        params["pose_editor"] = self.pose_editor.init(k_pose, jnp.eye(3)[None], kp)["params"]
        if self.use_sigma:
            size = self.config.image_size // 2**self.config.generator.num_down_blocks
            feature = jnp.zeros((1, size, size, self._feature_width()))
            points = jnp.zeros((1, self.config.sigma_loss.num_points, 3))
            params["mesh_weights"] = self.mesh_weights.init(k_mesh, feature, points)["params"]
        opt_state = {name: opt.init(self._group(params, name))
                     for name, opt in self.optimizers.items() if self._group(params, name)}
        return {"params": params, "batch_stats": batch_stats, "opt_state": opt_state}

    def _feature_width(self):
        g = self.config.generator
        return feature_width(g.block_expansion, g.max_features, g.num_down_blocks)

    @staticmethod
    def _group(params, name):
        """The parameters each optimizer updates (the mesh-weight CNN trains with the generator)."""
        if name == "generator":
            return {k: params[k] for k in ("generator", "mesh_weights") if k in params}
        return {name: params[name]} if name in params else {}

    # ------------------------------------------------------------------------------- losses
    def _vgg_features(self, vgg_params, pyramid):
        """{scale: per-layer VGG features / layer_scale} of an image pyramid."""
        return {s: tuple(f / k for f, k in zip(self.vgg.apply(vgg_params, x),
                                              self.layer_scale))
                for s, x in pyramid.items()}

    def _forward(self, params, batch_stats, batch, rng, frozen):
        """Generator-side forward pass in training mode: (losses dict, new batch_stats, aux)."""
        c, w = self.config, self.config.loss_weights
        kp_det, gen = self.models["kp_detector"], self.models["generator"]
        stats = dict(batch_stats)

        def detect(images):
            out, upd = kp_det.apply({"params": params["kp_detector"],
                                     "batch_stats": stats["kp_detector"]},
                                    images, train=True, mutable=["batch_stats"])
            stats["kp_detector"] = upd["batch_stats"]
            return out

        source, driving = batch["source"], batch["driving"]
        kp_source, kp_driving = detect(source), detect(driving)
        out, upd = gen.apply({"params": params["generator"], "batch_stats": stats["generator"]},
                             source, kp_source, kp_driving, train=True, mutable=["batch_stats"])
        stats["generator"] = upd["batch_stats"]

        scales = tuple(c.perceptual.scales)
        vgg = functools.partial(self._vgg_features, frozen["vgg"])
        real = jax.lax.stop_gradient(vgg(losses.image_pyramid(driving, scales)))
        fake = vgg(losses.image_pyramid(out["prediction"], scales))
        terms = {"perceptual": losses.perceptual_pyramid(fake, real, w.perceptual)}
        if w.pixel_l1:
            with jax.named_scope("loss_pixel_l1"):
                terms["pixel_l1"] = w.pixel_l1 * losses.pixel_l1(out["prediction"], driving)
        if "render" in out and any(w.render_perceptual):
            with jax.named_scope("loss_render_perceptual"):
                render = vgg(losses.image_pyramid(out["render"], scales))
                terms["render_perceptual"] = losses.perceptual_pyramid(render, real,
                                                                       w.render_perceptual)
        if self.use_gan:
            with jax.named_scope("loss_gan"):
                disc = self.models["discriminator"]
                d_scales = disc.scales

                def discriminate(images):
                    out, upd = disc.apply({"params": params["discriminator"],
                                           "batch_stats": stats["discriminator"]},
                                          losses.image_pyramid(images, d_scales),
                                          jax.lax.stop_gradient(kp_driving), train=True,
                                          mutable=["batch_stats"])
                    stats["discriminator"] = upd["batch_stats"]
                    return out

                d_fake, d_real = discriminate(out["prediction"]), discriminate(driving)
                terms["generator_gan"] = losses.lsgan_generator(
                    [d_fake[s]["prediction_map"] for s in d_scales], w.generator_gan)
                if any(w.feature_matching):
                    terms["feature_matching"] = losses.feature_matching(
                        [d_real[s]["feature_maps"] for s in d_scales],
                        [d_fake[s]["feature_maps"] for s in d_scales], w.feature_matching)
        if w.equivariance_value or w.equivariance_jacobian:
            with jax.named_scope("loss_equivariance"):
                t = c.transform
                transform = losses.random_transform(rng, source.shape[0], t.sigma_affine,
                                                    t.sigma_tps, t.points_tps)
                kp_transformed = detect(losses.transform_frame(transform, driving))
                terms.update(losses.equivariance(kp_driving, kp_transformed, transform,
                                                 w.equivariance_value, w.equivariance_jacobian))
        if self.use_sigma:
            with jax.named_scope("loss_sigma"):
                points = batch["driving_landmarks"]
                n = points.shape[1]
                points = points[:, np.linspace(0, n - 1, c.sigma_loss.num_points).astype(int)]
                valid = jnp.all(jnp.isfinite(points), axis=(1, 2))
                points = jnp.where(jnp.isfinite(points), points, 0.0)
                weights = self.mesh_weights.apply({"params": params["mesh_weights"]},
                                                  out["warped_feature"], points)
                s = c.sigma_loss
                terms["sigma"] = w.sigma * losses.sigma_matching(
                    out["sigma_map"], points, weights, valid, s.alpha1, s.alpha2, s.variance)
        if self.use_pose:
            with jax.named_scope("loss_pose_edit"):
                rotation = relative_rotation(batch["source_pose"], batch["driving_pose"])
                kp_edit = self.pose_editor.apply({"params": params["pose_editor"]}, rotation,
                                                 jax.lax.stop_gradient(kp_source))
                terms["pose_edit"] = w.pose_edit * losses.pose_editor_loss(
                    kp_edit, jax.lax.stop_gradient(kp_driving), c.pose_loss.lambda1,
                    c.pose_loss.lambda2)
        aux = {"prediction": out["prediction"], "kp_driving": kp_driving}
        return terms, stats, aux

    def train_step(self, state, batch, rng, frozen):
        """(state, metrics): one generator step, then one discriminator step."""
        params, opt_state = state["params"], dict(state["opt_state"])
        batch = loaders.frames_to_float(batch)

        def total(trainable):
            terms, stats, aux = self._forward({**params, **trainable}, state["batch_stats"],
                                              batch, rng, frozen)
            return sum(terms.values()), (terms, stats, aux)

        trainable = {k: v for k, v in params.items() if k != "discriminator"}
        grads, (terms, stats, aux) = jax.grad(total, has_aux=True)(trainable)
        params = dict(params)
        metrics = {f"loss/{k}": v for k, v in terms.items()}
        metrics["loss/total"] = sum(terms.values())
        for name in ("generator", "kp_detector", "pose_editor"):
            group, group_grads = self._group(params, name), self._group(grads, name)
            updates, opt_state[name] = self.optimizers[name].update(group_grads, opt_state[name])
            params.update(optax.apply_updates(group, updates))
            metrics[f"grad_norm/{name}"] = optax.tree.norm(group_grads)
        if self.use_gan:
            disc = self.models["discriminator"]
            scales = disc.scales
            kp = jax.lax.stop_gradient(aux["kp_driving"])
            fake_pyramid = losses.image_pyramid(jax.lax.stop_gradient(aux["prediction"]), scales)
            real_pyramid = losses.image_pyramid(batch["driving"], scales)

            def d_loss(d_params):
                d_vars = {"params": d_params, "batch_stats": stats["discriminator"]}
                real, upd = disc.apply(d_vars, real_pyramid, kp, train=True,
                                       mutable=["batch_stats"])
                fake, upd = disc.apply({"params": d_params, **upd}, fake_pyramid, kp, train=True,
                                       mutable=["batch_stats"])
                loss = losses.lsgan_discriminator([real[s]["prediction_map"] for s in scales],
                                                  [fake[s]["prediction_map"] for s in scales],
                                                  self.config.loss_weights.discriminator_gan)
                return loss, upd["batch_stats"]

            (loss, d_stats), d_grads = jax.value_and_grad(d_loss, has_aux=True)(
                params["discriminator"])
            updates, opt_state["discriminator"] = self.optimizers["discriminator"].update(
                {"discriminator": d_grads}, opt_state["discriminator"])
            params.update(optax.apply_updates({"discriminator": params["discriminator"]}, updates))
            stats = {**stats, "discriminator": d_stats}
            metrics["loss/discriminator_gan"] = loss
            metrics["grad_norm/discriminator"] = optax.tree.norm(d_grads)
        return {"params": params, "batch_stats": stats, "opt_state": opt_state}, metrics

    # ------------------------------------------------------------------------------- outputs
    def export(self, state, step):
        """Inference variables (keypoint detector, generator, pose editor) and metadata, with
        the number of steps the pose editor trained (0 without L_editor: `api` then refuses
        pose edits)."""
        return self._inference_variables(state), {
            "model": self.config.model, "config": self.config,
            "pose_editor_steps": int(step) if self.use_pose else 0}

    @staticmethod
    def _inference_variables(state):
        params = {m: state["params"][m] for m in ("kp_detector", "generator", "pose_editor")}
        batch_stats = {m: state["batch_stats"][m] for m in ("kp_detector", "generator")}
        return {"params": params, "batch_stats": batch_stats}

    def summary_images(self, state, batch):
        """Image grid of the on-device state and a global batch: source, driving (both with
        keypoints), prediction, render, occlusion. One jitted program on the state's mesh; the
        host receives only the first 4 samples' images."""
        if self._summary is None:
            self._summary = jax.jit(self._summary_outputs, out_shardings=NamedSharding(
                sharding.mesh_of(state), P()))
        outputs = sharding.fetch(self._summary(self._inference_variables(state), batch))
        return {"samples": summaries.sample_grid(*outputs)}

    def _summary_outputs(self, variables, batch):
        f, variables = self._functions(), inference.inference_variables(variables)
        n = min(4, batch["source"].shape[0])
        batch = loaders.frames_to_float({k: batch[k][:n] for k in ("source", "driving")})
        source, driving = batch["source"], batch["driving"]
        kp_s, kp_d = f["keypoints"](variables, source), f["keypoints"](variables, driving)
        out = f["generate"](variables, source, kp_s, kp_d)
        if "occlusion_map" in out:
            out["occlusion_map"] = resize_nearest(out["occlusion_map"], source.shape[1:3])
        return source, driving, kp_s, kp_d, {k: out[k] for k in summaries.GRID_OUTPUTS if k in out}

    def evaluate(self, state):
        """Reconstruction of the first `data.eval_clips` held-out clips (frame 0 drives every
        frame, absolute keypoints) on the state's mesh: {"l1", "l1_copy_source"} (copying the
        source, the baseline to beat) as on-device means over clips of their per-frame means.

        Every process reads the same clips; their frames are split over the devices. One
        jitted program of fixed shape (clips padded to `data.eval_frames`, padding weighted 0).
        """
        if self._eval is None:
            mesh = sharding.mesh_of(state)
            videos, weights = self._eval_data(mesh.size)
            frames = NamedSharding(mesh, P(None, "data"))
            self._eval = (jax.jit(self._eval_means, out_shardings=NamedSharding(mesh, P())),
                          sharding.put_global(videos, frames), sharding.put_global(weights, frames))
        program, videos, weights = self._eval
        return program(self._inference_variables(state), videos, weights)

    def _eval_data(self, devices):
        """(videos [N, T, H, W, 3] uint8, weights [N, T]): T = the longest clip rounded up to
        a multiple of `devices`, shorter clips padded with their last frame at weight 0."""
        c = self.config
        clips = loaders.eval_clips(c.data.dir, split=c.data.eval_split,
                                   max_frames=c.data.eval_frames, size=c.image_size,
                                   process_index=0, process_count=1, uint8=True)
        clips = [clips[i]["video"] for i in range(min(len(clips), c.data.eval_clips))]
        if not clips:
            raise ValueError(f"no held-out clips in the `{c.data.eval_split}` split of "
                             f"{c.data.dir}: set --config.data.eval_split")
        length = -(-max(len(v) for v in clips) // devices) * devices
        videos = np.stack([sharding.pad_batch(v, length) for v in clips])
        weights = np.array([[1.0] * len(v) + [0.0] * (length - len(v)) for v in clips],
                           np.float32)
        return videos, weights

    def _eval_means(self, variables, videos, weights):
        f, variables = self._functions(), inference.inference_variables(variables)

        def clip(args):
            video, w = args
            video = loaders.frames_to_float({"video": video})["video"]
            source = video[:1]
            kp = f["keypoints"](variables, source)
            prediction = f["animate"](variables, source, kp, kp, 1.0, False, video, None)
            errors = jnp.stack([jnp.mean(jnp.abs(prediction - video), axis=(1, 2, 3)),
                                jnp.mean(jnp.abs(source - video), axis=(1, 2, 3))])
            return jnp.sum(errors * w, axis=1) / jnp.sum(w)

        l1, copy = jnp.mean(jax.lax.map(clip, (videos, weights)), axis=0)
        return {"l1": l1, "l1_copy_source": copy}

    def _functions(self):
        """The inference core's pure functions (`fnevr_jax.inference`): summaries and
        evaluation run the same keypoint, generate and animate code as `animate.py`."""
        if self._inference_functions is None:
            self._inference_functions = inference.Core(self.config).functions
        return self._inference_functions
