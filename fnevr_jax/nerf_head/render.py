"""Novel views, code interpolation and driving with a trained NeRF head model (paper §4.3).

    python -m fnevr_jax.nerf_head.render orbit --checkpoint runs/nerf --data data/synthetic \
        --clip 0 --out orbit.gif
    python -m fnevr_jax.nerf_head.render interpolate --checkpoint runs/nerf \
        --data data/synthetic --clip 0 --other-clip 7 --out grid.png
    python -m fnevr_jax.nerf_head.render drive --checkpoint runs/nerf --codes fit/codes.npz \
        --data driving-shards --clip 0 --out driven.mp4

CHECKPOINT: a `train.py --config=configs/nerf_head.py` workdir (its latest export), a model
export (`checkpoint_io.save_variables`, metadata with the config) or a HeadNeRF `.pth`. The head to render
comes from `--codes` (an .npz of `z_id`, `beta`, `intrinsics` and `cam_to_world`, and
`appearance` for HeadNeRF models, as `fnevr_jax.nerf_head.fit` writes; missing codes are
zeros, a missing camera the default) or from frame `--frame` of clip `--clip` of the shards in
`--data` (its codes and camera). A converted HeadNeRF checkpoint (`fnevr_jax.convert --model
headnerf`) is a model export.

- `orbit`: the camera circles the head (yaw swing `--yaw`, pitch swing `--pitch`, degrees).
- `interpolate`: paper Fig. 6, a grid whose rows interpolate the identity code (with
  HeadNeRF's appearance code) and whose columns interpolate the expression code from head A
  to head B (`--other-clip`/`--other-codes`).
- `drive`: the expression and pose of the driving clip applied to the head: relative by
  default (beta = beta_head + beta_t - beta_0; the camera moves as the driving camera moves
  from its first frame), `--absolute` takes the driving codes and cameras as they are.

Frames render in fixed-size jitted batches (one compilation). Output: .gif or .mp4 (H.264)
for videos, .png for the grid, written under a temporary name and renamed. Errors print one
line and exit 1.
"""
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from fnevr_jax import cli, convert, loader, media, rendering, torch_io
from fnevr_jax.nerf_head import network
from fnevr_jax.nerf_head.task import model_intrinsics
from fnevr_jax.sharding import pad_batch


class RenderError(Exception):
    """Bad input: reported as one line."""


# --------------------------------------------------------------------------- loading
def load(checkpoint):
    """(config, model, params) of a training workdir, a model export or a HeadNeRF `.pth`
    (`fnevr_jax.loader`)."""
    try:
        variables, config, *_ = loader.load(checkpoint, "nerf_head")
    except (loader.LoadError, convert.ConversionError, torch_io.TorchFileError) as e:
        raise RenderError(str(e).splitlines()[0]) from None
    model = network.from_config(config.model)
    return config, model, jax.tree.map(jnp.asarray, variables["params"])


def shard_clip(data, clip, size, split="train"):
    """Codes and cameras (model conventions) of every frame of clip `clip` of a dataset."""
    from fnevr_jax.data import loaders, shards
    try:
        ds = loaders.eval_clips(data, split=split, fields=loaders.NERF_FIELDS, size=size,
                                process_index=0, process_count=1)
        if not 0 <= clip < len(ds):
            raise RenderError(f"{data}: split {split!r} has {len(ds)} clips, no clip {clip}")
        c = ds[clip]
    except (shards.DatasetError, FileNotFoundError) as e:
        raise RenderError(str(e).splitlines()[0]) from None
    return {"z_id": jnp.asarray(c["identity_code"]), "beta": jnp.asarray(c["expression_code"]),
            "intrinsics": model_intrinsics(jnp.asarray(c["intrinsics"])),
            "cam_to_world": jnp.asarray(c["extrinsics"][:, :3]), "video": c["video"]}


def load_codes(path, config, model):
    """A head from a codes .npz (z_id, beta, [appearance,] intrinsics, cam_to_world; `path`
    None: none): missing codes are zeros, a missing camera is `config.camera`'s default;
    appearance (HeadNeRF's texture + illumination) only for models that have it."""
    try:
        saved = dict(np.load(path)) if path else {}
    except (OSError, ValueError) as e:
        raise RenderError(f"{path}: cannot read the codes ({e})") from None
    K, cam = network.default_camera(1, model.output_size, config.camera.focal_scale,
                                      config.camera.distance)
    defaults = {"z_id": jnp.zeros((1, model.id_dim)), "beta": jnp.zeros((1, model.expr_dim)),
                "intrinsics": K, "cam_to_world": cam}
    if model.appearance_dim:
        defaults["appearance"] = jnp.zeros((1, model.appearance_dim))
    return {k: jnp.asarray(saved[k], jnp.float32)[None] if k in saved else v
            for k, v in defaults.items()}


def head_codes(args, config, model, codes=None, clip=None, frame=None):
    """One head: {z_id, beta, intrinsics, cam_to_world[, appearance]}, each with a leading
    axis of 1 (appearance for models that have it; zeros where the source has none)."""
    codes, clip = codes or args.codes, args.clip if clip is None else clip
    frame = args.frame if frame is None else frame
    if codes:
        out = load_codes(codes, config, model)
    elif args.data:
        frames = shard_clip(args.data, clip, model.output_size, args.split)
        if not 0 <= frame < len(frames["video"]):
            raise RenderError(f"clip {clip} has {len(frames['video'])} frames, no frame {frame}")
        out = {k: frames[k][frame:frame + 1] for k in
               ("z_id", "beta", "intrinsics", "cam_to_world")}
    else:
        raise RenderError("give the head with --codes NPZ or --data DIR [--clip N --frame K]")
    dims = (out["z_id"].shape[-1], out["beta"].shape[-1])
    if dims != (model.id_dim, model.expr_dim):
        raise RenderError(f"the codes have {dims[0]}/{dims[1]} dims, the model takes "
                          f"{model.id_dim}/{model.expr_dim}")
    if model.appearance_dim:
        out.setdefault("appearance", jnp.zeros((1, model.appearance_dim)))
    return out


# --------------------------------------------------------------------------- rendering
def render_frames(model, params, z_id, beta, intrinsics, cam_to_world, batch_size=8,
                  desc="rendering", appearance=None):
    """(N, S, S, 3) uint8 renders of N heads/cameras, in fixed-size jitted batches.

    Each argument has N entries or 1 (shared by every frame); appearance only for models
    with appearance codes (HeadNeRF).
    """
    render = network.make_render_fn(model)
    arrays = (z_id, beta, intrinsics, cam_to_world)
    arrays += () if appearance is None else (appearance,)
    n = max(len(a) for a in arrays)
    arrays = [jnp.broadcast_to(a, (n,) + a.shape[1:]) for a in arrays]
    size = min(batch_size, n)
    out = []
    for start in tqdm(range(0, n, size), desc=desc, unit="batch", file=sys.stderr,
                      dynamic_ncols=True):
        chunk = [a[start:start + size] for a in arrays]
        count = len(chunk[0])
        chunk = [pad_batch(a, size) for a in chunk]                 # one compiled shape
        out.append(render(params, *chunk[:4], appearance=chunk[4] if len(chunk) > 4 else None)
                   ["image"][:count])                               # stays on device
    return media.to_uint8(np.asarray(jnp.concatenate(out)))


def orbit_cameras(cam_to_world, num_frames, yaw_degrees, pitch_degrees):
    """Cameras [N, 3, 4] circling the head: yaw swings ±yaw, pitch ±pitch a quarter turn later."""
    phase = 2 * np.pi * np.arange(num_frames) / num_frames
    euler = np.stack([np.radians(pitch_degrees) * np.cos(phase),
                      np.radians(yaw_degrees) * np.sin(phase), np.zeros(num_frames)], -1)
    cam = jnp.broadcast_to(cam_to_world, (num_frames, 3, 4))
    return rendering.apply_pose_delta(cam, jnp.asarray(euler, jnp.float32),
                                      jnp.zeros((num_frames, 3)))


def interpolation_grid(head_a, head_b, steps):
    """Codes of a steps x steps grid: identity a→b down the rows (with the appearance code,
    where there is one), expression a→b across."""
    w = jnp.linspace(0.0, 1.0, steps)
    mix = lambda key: (1 - w)[:, None] * head_a[key] + w[:, None] * head_b[key]
    grid = {"z_id": jnp.repeat(mix("z_id"), steps, 0), "beta": jnp.tile(mix("beta"), (steps, 1)),
            "intrinsics": head_a["intrinsics"], "cam_to_world": head_a["cam_to_world"]}
    if "appearance" in head_a:
        grid["appearance"] = jnp.repeat(mix("appearance"), steps, 0)
    return grid


def relative_motion(head, driving):
    """The driving clip's motion applied to a head: expression offsets from the first driving
    frame, and the driving camera's motion since its first frame (world = head frame)."""
    beta = head["beta"] + driving["beta"] - driving["beta"][:1]
    c2w = lambda cam: jnp.concatenate([cam, jnp.broadcast_to(jnp.array([0.0, 0, 0, 1]),
                                                            cam.shape[:-2] + (1, 4))], -2)
    delta = c2w(driving["cam_to_world"]) @ jnp.linalg.inv(c2w(driving["cam_to_world"][:1]))
    cam = (delta @ c2w(head["cam_to_world"]))[:, :3]
    return {"z_id": head["z_id"], "beta": beta, "intrinsics": head["intrinsics"],
            "cam_to_world": cam}


# --------------------------------------------------------------------------- commands
def orbit(args, config, model, params):
    head = head_codes(args, config, model)
    cams = orbit_cameras(head["cam_to_world"], args.frames, args.yaw, args.pitch)
    frames = render_frames(model, params, head["z_id"], head["beta"], head["intrinsics"], cams,
                           args.batch_size, appearance=head.get("appearance"))
    media.write_video(args.out, frames, args.fps)
    return f"wrote {args.out}: {len(frames)} views"


def interpolate(args, config, model, params):
    head_a = head_codes(args, config, model)
    head_b = head_codes(args, config, model, codes=args.other_codes, clip=args.other_clip,
                        frame=args.other_frame)
    grid = interpolation_grid(head_a, head_b, args.steps)
    frames = render_frames(model, params, grid["z_id"], grid["beta"], grid["intrinsics"],
                           grid["cam_to_world"], args.batch_size,
                           appearance=grid.get("appearance"))
    s = model.output_size
    picture = frames.reshape(args.steps, args.steps, s, s, 3).transpose(0, 2, 1, 3, 4)
    media.write_image(args.out, picture.reshape(args.steps * s, args.steps * s, 3))
    return f"wrote {args.out}: {args.steps}x{args.steps} grid (rows: identity, columns: expression)"


def drive(args, config, model, params):
    if not args.data:
        raise RenderError("drive needs the driving clip: --data DIR --driving-clip N")
    head = head_codes(args, config, model)
    driving = shard_clip(args.data, args.driving_clip, model.output_size, args.split)
    codes = driving if args.absolute else relative_motion(head, driving)
    frames = render_frames(model, params, head["z_id"], codes["beta"], codes["intrinsics"],
                           codes["cam_to_world"], args.batch_size,
                           appearance=head.get("appearance"))
    if args.side_by_side:
        frames = np.concatenate([media.to_uint8(driving["video"]), frames], axis=2)
    media.write_video(args.out, frames, args.fps)
    return f"wrote {args.out}: {len(frames)} frames ({'absolute' if args.absolute else 'relative'})"


COMMANDS = {"orbit": orbit, "interpolate": interpolate, "drive": drive}


def parse_args(argv=None):
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=sorted(COMMANDS))
    p.add_argument("--checkpoint", required=True, help="train.py workdir or model export")
    p.add_argument("--out", required=True, type=pathlib.Path, help=".gif/.mp4, or .png")
    p.add_argument("--codes", help=".npz with z_id, beta [, intrinsics, cam_to_world]")
    p.add_argument("--data", help="shards directory with NeRF fields")
    p.add_argument("--split", default="train")
    p.add_argument("--clip", type=int, default=0)
    p.add_argument("--frame", type=int, default=0)
    p.add_argument("--other-codes", help="interpolate: head B as codes")
    p.add_argument("--other-clip", type=int, default=1, help="interpolate: head B's clip")
    p.add_argument("--other-frame", type=int, default=0)
    p.add_argument("--driving-clip", type=int, default=0, help="drive: the clip in --data")
    p.add_argument("--absolute", action="store_true", help="drive: driving codes as they are")
    p.add_argument("--side-by-side", action="store_true", help="drive: driving | result")
    p.add_argument("--frames", type=int, default=36, help="orbit: number of views")
    p.add_argument("--yaw", type=float, default=30.0, help="orbit: yaw swing, degrees")
    p.add_argument("--pitch", type=float, default=10.0, help="orbit: pitch swing, degrees")
    p.add_argument("--steps", type=int, default=5, help="interpolate: grid size")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    video = args.command in ("orbit", "drive")
    if video and args.out.suffix not in (".gif", ".mp4"):
        p.error(f"{args.command} writes a .gif or .mp4, not {args.out.suffix or args.out.name}")
    if not video and args.out.suffix not in (".png", ".jpg"):
        p.error(f"interpolate writes a .png or .jpg, not {args.out.suffix or args.out.name}")
    return args


def run(args):
    if not pathlib.Path(args.checkpoint).exists():
        raise RenderError(f"{args.checkpoint}: no such checkpoint")
    if not args.out.parent.is_dir():
        raise RenderError(f"{args.out.parent}: no such output directory")
    config, model, params = load(args.checkpoint)
    return COMMANDS[args.command](args, config, model, params)


def main(argv=None):
    args = parse_args(argv)
    try:
        print(run(args))
    except (RenderError, media.MediaError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
