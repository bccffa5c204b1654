"""Fitting: inverting the NeRF head renderer for an image (paper section 4.3.1, spec 2.5).

The network is frozen; the variables are offsets of the identity and expression codes (and,
for HeadNeRF's configuration, of its appearance code: texture + illumination) and a
camera delta (Euler angles and translation, orbiting about the head), optimised with Adam at
HeadNeRF's per-group learning rates decayed by `lr_decay` over the run, against the
reconstruction loss plus mean-square regularisers on the offsets. The whole loop is one
compiled `jax.lax.scan`.

  python -m fnevr_jax.nerf_head.fit --config=configs/nerf_head.py:quick --synthetic \
      --workdir=/tmp/nerf_head_fit
  python -m fnevr_jax.nerf_head.fit --config=configs/nerf_head.py --checkpoint=CKPT \
      --image=face.png [--mask=mask.png] [--init-codes=codes.npz] --workdir=/tmp/fit

`--synthetic` renders a target from known codes with a randomly initialised model (seed
`config.seed`) and starts from perturbed codes and camera, reporting the code error too.
`--checkpoint` is a `train.py` workdir or a model export
(`fnevr_jax.checkpoint_io.save_variables`, variables {"params": ...} of `config.model`, e.g. a
converted HeadNeRF checkpoint). `--init-codes` is an .npz with z_id [id_dim] and beta
[expr_dim], and optionally appearance [appearance_dim], intrinsics [3, 3] (at the output size)
and cam_to_world [3, 4]; missing entries start at zero codes and the
default camera of `config.camera`. Writes codes.npz, render.png (target | render) and
metrics.json (L1, PSNR, SSIM on the head region over white, and the times) to --workdir.
"""
import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from fnevr_jax import cli, media, rendering
from fnevr_jax.metrics import image as image_metrics_lib
from fnevr_jax.nerf_head import losses, network, render

OFFSET_GROUPS = {"id": "id", "expr": "expr", "appearance": "appearance",
                 "euler": "camera", "translation": "camera"}


def init_offsets(batch, id_dim, expr_dim, appearance_dim=0):
    """Zero offsets: id [B, id_dim], expr [B, expr_dim], euler [B, 3], translation [B, 3], and
    appearance [B, appearance_dim] when the model has appearance codes."""
    offsets = {"id": jnp.zeros((batch, id_dim)), "expr": jnp.zeros((batch, expr_dim)),
               "euler": jnp.zeros((batch, 3)), "translation": jnp.zeros((batch, 3))}
    if appearance_dim:
        offsets["appearance"] = jnp.zeros((batch, appearance_dim))
    return offsets


def apply_offsets(offsets, z_id, beta, cam_to_world, appearance=None):
    """Codes plus offsets, and the camera moved by the delta (R' = dR R, T' = dR T + dt).

    Returns (z_id, beta, cam_to_world, appearance); appearance stays None without codes."""
    cam = rendering.apply_pose_delta(cam_to_world, offsets["euler"], offsets["translation"])
    if appearance is not None:
        appearance = appearance + offsets["appearance"]
    return z_id + offsets["id"], beta + offsets["expr"], cam, appearance


def make_optimizer(fit_config):
    """Adam per group (id, expr, appearance, camera), lr * lr_decay ** (step / num_iters)."""
    def adam(lr):
        return optax.adam(optax.exponential_decay(lr, fit_config.num_iters, fit_config.lr_decay))
    return optax.multi_transform(
        {"id": adam(fit_config.lr_id), "expr": adam(fit_config.lr_expr),
         "appearance": adam(fit_config.lr_appearance), "camera": adam(fit_config.lr_camera)},
        lambda offsets: {k: OFFSET_GROUPS[k] for k in offsets})


def regulariser(offsets, fit_config):
    """reg_id |d z_id|^2 + reg_expr |d beta|^2 + reg_camera (|d euler|^2 + |d t|^2)
    [+ reg_appearance |d appearance|^2], as means."""
    reg = (fit_config.reg_id * jnp.mean(offsets["id"] ** 2)
           + fit_config.reg_expr * jnp.mean(offsets["expr"] ** 2)
           + fit_config.reg_camera * (jnp.mean(offsets["euler"] ** 2)
                                      + jnp.mean(offsets["translation"] ** 2)))
    if "appearance" in offsets:
        reg = reg + fit_config.reg_appearance * jnp.mean(offsets["appearance"] ** 2)
    return reg


def make_fit_fn(model, loss_config, fit_config, feature_apply=None):
    """Jitted fit(params, target, mask, z_id, beta, intrinsics, cam_to_world, feature_params,
    appearance) -> (offsets, losses).

    target [B, S, S, 3] in [0, 1], mask [B, S, S] (head >= 0.5), initial codes and camera as the
    model takes them (appearance [B, appearance_dim] for HeadNeRF's configuration). The
    perceptual features are feature_apply(feature_params, images) (see
    `losses.vgg16_features`). `losses` [num_iters] is the data term before each update.
    """
    optimizer = make_optimizer(fit_config)
    render_background = loss_config.background_weight > 0

    def objective(offsets, params, target, mask, z_id, beta, intrinsics, cam_to_world,
                  feature_fn, appearance):
        z, b, cam, a = apply_offsets(offsets, z_id, beta, cam_to_world, appearance)
        outputs = model.apply({"params": params}, z, b, intrinsics, cam,
                              render_background=render_background, appearance=a)
        data, _ = losses.reconstruction_loss(outputs, target, mask, loss_config, feature_fn)
        return data + regulariser(offsets, fit_config), data

    grad_fn = jax.grad(objective, has_aux=True)

    def fit(params, target, mask, z_id, beta, intrinsics, cam_to_world, feature_params=None,
            appearance=None):
        offsets = init_offsets(z_id.shape[0], z_id.shape[-1], beta.shape[-1],
                               model.appearance_dim)
        feature_fn = None
        if feature_apply is not None:
            feature_fn = functools.partial(feature_apply, feature_params)

        def step(carry, _):
            offsets, opt_state = carry
            grads, data = grad_fn(offsets, params, target, mask, z_id, beta, intrinsics,
                                  cam_to_world, feature_fn, appearance)
            updates, opt_state = optimizer.update(grads, opt_state, offsets)
            return (optax.apply_updates(offsets, updates), opt_state), data

        (offsets, _), history = jax.lax.scan(step, (offsets, optimizer.init(offsets)), None,
                                             length=fit_config.num_iters)
        return offsets, history

    return jax.jit(fit)


def headnerf_camera(model, c2w_rmats, c2w_tvecs, inv_inmats):
    """(intrinsics [B, 3, 3] at the output size, cam_to_world [B, 3, 4]) from HeadNeRF's camera
    arguments (`inv_inmats` at the feature-map resolution)."""
    intrinsics = rendering.scale_intrinsics(rendering.inverse_3x3(jnp.asarray(inv_inmats)),
                                            model.output_size / model.feature_size)
    return intrinsics, jnp.concatenate([jnp.asarray(c2w_rmats),
                                        jnp.reshape(jnp.asarray(c2w_tvecs), (-1, 3, 1))], -1)


def synthetic_problem(model, params, key, camera_config, code_noise=0.5, pose_noise=0.05):
    """A fitting problem with a known answer, rendered by `model` itself.

    True codes are standard normal; the true camera is the default one moved by a random delta
    of `pose_noise` (radians and units). The start is the true codes plus `code_noise` normal
    noise and the default camera. Returns a dict with target, mask, true and start codes (with
    appearance codes when the model has them, else None) and cameras, all with batch 1.
    """
    keys = jax.random.split(key, 8)
    z_true = jax.random.normal(keys[0], (1, model.id_dim))
    b_true = jax.random.normal(keys[1], (1, model.expr_dim))
    a_true = a_start = None
    if model.appearance_dim:
        a_true = jax.random.normal(keys[6], (1, model.appearance_dim))
        a_start = a_true + code_noise * jax.random.normal(keys[7], a_true.shape)
    intrinsics, cam_start = network.default_camera(1, model.output_size,
                                                     camera_config.focal_scale,
                                                     camera_config.distance)
    cam_true = rendering.apply_pose_delta(
        cam_start, pose_noise * jax.random.normal(keys[2], (1, 3)),
        pose_noise * jax.random.normal(keys[3], (1, 3)))
    render = network.make_render_fn(model)
    target = render(params, z_true, b_true, intrinsics, cam_true, appearance=a_true)["image"]
    return {
        "target": target,
        "mask": jnp.ones(target.shape[:3]),
        "intrinsics": intrinsics,
        "z_id_true": z_true,
        "beta_true": b_true,
        "cam_to_world_true": cam_true,
        "z_id": z_true + code_noise * jax.random.normal(keys[4], z_true.shape),
        "beta": b_true + code_noise * jax.random.normal(keys[5], b_true.shape),
        "cam_to_world": cam_start,
        "appearance_true": a_true,
        "appearance": a_start,
    }


def code_error(z_id, beta, z_true, beta_true, appearance=None, appearance_true=None):
    """RMS distance of the concatenated codes (with appearance, if given) to the true ones."""
    parts = [z_id - z_true, beta - beta_true]
    if appearance is not None:
        parts.append(appearance - appearance_true)
    diff = jnp.concatenate(parts, axis=-1)
    return float(jnp.sqrt(jnp.mean(diff ** 2)))


def image_metrics(pred, target, mask):
    """L1, PSNR and SSIM (Gaussian 11, sigma 1.5) of the head region over white, batch 0."""
    pred = losses.composite_on_white(pred, mask)[:1]
    target = losses.composite_on_white(target, mask)[:1]
    return {name: float(fn(pred, target)[0]) for name, fn in
            (("l1", image_metrics_lib.l1), ("psnr", image_metrics_lib.psnr),
             ("ssim", image_metrics_lib.ssim))}


def _load_image(path, size, gray=False):
    """[1, size, size(, 3)] float32 in [0, 1]: `media.read_image` and `media.square_resize`."""
    image = media.read_image(path)
    if image.shape[0] != image.shape[1]:
        raise render.RenderError(f"{path} is {image.shape[1]}x{image.shape[0]}: crop it to a "
                                 "square first (resizing a non-square image distorts the face)")
    image = media.square_resize(image, size)
    return jnp.asarray(image.mean(-1) if gray else image)[None]


def _load_params(path):
    return render.load(path)[2]


def _real_problem(config, model, flags):
    size = model.output_size
    target = _load_image(flags.image, size)
    mask = _load_image(flags.mask, size, gray=True) if flags.mask else jnp.ones((1, size, size))
    codes = render.load_codes(flags.init_codes, config, model)
    return {"target": target, "mask": mask, **codes}


def run(config, workdir, flags):
    """Fits one image as the command line describes; returns the metrics dict."""
    model = network.from_config(config.model)
    if flags.synthetic:
        params = network.init_params(model, jax.random.PRNGKey(config.seed))
        problem = synthetic_problem(model, params, jax.random.PRNGKey(config.seed + 1),
                                    config.camera)
    else:
        params = _load_params(flags.checkpoint)
        problem = _real_problem(config, model, flags)
    feature_apply, feature_params = None, None
    if config.loss.perceptual_weight > 0:
        feature_apply, feature_params = losses.vgg16_features()
    fit_fn = make_fit_fn(model, config.loss, config.fit, feature_apply)
    args = (params, problem["target"], problem["mask"], problem["z_id"], problem["beta"],
            problem["intrinsics"], problem["cam_to_world"], feature_params,
            problem.get("appearance"))
    start = time.perf_counter()
    compiled = fit_fn.lower(*args).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    offsets, history = jax.block_until_ready(compiled(*args))
    fit_seconds = time.perf_counter() - start

    z_id, beta, cam, appearance = apply_offsets(
        offsets, problem["z_id"], problem["beta"], problem["cam_to_world"],
        problem.get("appearance"))
    render = network.make_render_fn(model)
    pred = render(params, z_id, beta, problem["intrinsics"], cam, appearance=appearance)["image"]
    start_pred = render(params, problem["z_id"], problem["beta"], problem["intrinsics"],
                        problem["cam_to_world"], appearance=problem.get("appearance"))["image"]
    metrics = {
        "variant": config.variant, "iterations": config.fit.num_iters,
        "fit_seconds": fit_seconds, "compile_seconds": compile_seconds,
        "loss_first": float(history[0]), "loss_last": float(history[-1]),
        "start": image_metrics(start_pred, problem["target"], problem["mask"]),
        "fitted": image_metrics(pred, problem["target"], problem["mask"]),
    }
    if flags.synthetic:
        metrics["code_rms_error_start"] = code_error(
            problem["z_id"], problem["beta"], problem["z_id_true"], problem["beta_true"],
            problem["appearance"], problem["appearance_true"])
        metrics["code_rms_error_fitted"] = code_error(
            z_id, beta, problem["z_id_true"], problem["beta_true"], appearance,
            problem["appearance_true"])

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    extra = {} if appearance is None else {"appearance": np.asarray(appearance[0])}
    np.savez(workdir / "codes.npz", z_id=np.asarray(z_id[0]), beta=np.asarray(beta[0]),
             intrinsics=np.asarray(problem["intrinsics"][0]), cam_to_world=np.asarray(cam[0]),
             **extra, **{f"offset_{k}": np.asarray(v[0]) for k, v in offsets.items()})
    pair = np.concatenate([np.asarray(problem["target"][0]), np.asarray(pred[0])], axis=1)
    media.write_image(workdir / "render.png", media.to_uint8(pair))
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def parse_args(argv=None):
    p = cli.parser(__doc__, config="configs/nerf_head.py")
    p.add_argument("--workdir", required=True, help="output directory")
    p.add_argument("--synthetic", action="store_true",
                   help="fit a target rendered by a random model")
    p.add_argument("--checkpoint", help="train.py workdir or model export")
    p.add_argument("--image", help="square RGB image to fit")
    p.add_argument("--mask", help="head mask image (white = head); default all head")
    p.add_argument("--init-codes", help=".npz with z_id, beta [, intrinsics, cam_to_world]")
    return cli.parse(p, argv)


def main(argv=None):
    args = parse_args(argv)
    return cli.run(lambda: print(json.dumps(run(args.config, args.workdir, args), indent=2)),
                   (render.RenderError, media.MediaError))


if __name__ == "__main__":
    sys.exit(main())
