"""NeRF head model speed: full-render frames/s and seconds per 300 fitting iterations.

  python benchmarks/nerf_head.py                      # paper512 widths; 512 and 256 output
  python benchmarks/nerf_head.py --fit-iters=300      # time all 300 iterations

Renders are the whole jitted function (rays, 64 samples per ray through the MLP, compositing,
neural renderer) at evaluation settings, batch 1, timed after compilation. 256x256 uses the
same widths and 32x32 feature map with 3 renderer units. Fitting runs `--fit-iters`
iterations of the compiled loop (masked L1 + 10 x VGG16 perceptual at 224, codes and camera)
and scales the time to 300 iterations; the quick variant is timed at the full 300.
"""
import time

import jax
import jax.numpy as jnp

from configs import nerf_head as nerf_head_config
from fnevr_jax import cli
from fnevr_jax.nerf_head import network
from fnevr_jax.nerf_head import fit, losses


def _time(fn, repeats):
    jax.block_until_ready(fn())
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return (time.perf_counter() - start) / repeats


def render_fps(config, output_size, repeats):
    model = network.from_config(config.model, output_size=output_size)
    params = network.init_params(model, jax.random.PRNGKey(0))
    z_id, beta = jnp.zeros((1, model.id_dim)), jnp.zeros((1, model.expr_dim))
    intrinsics, cam = network.default_camera(1, output_size, config.camera.focal_scale,
                                               config.camera.distance)
    render = network.make_render_fn(model)
    seconds = _time(lambda: render(params, z_id, beta, intrinsics, cam)["image"], repeats)
    return 1.0 / seconds


def fit_seconds_per_300(config, iters, feature):
    config = config.copy_and_resolve_references()
    config.fit.num_iters = iters
    model = network.from_config(config.model)
    params = network.init_params(model, jax.random.PRNGKey(0))
    problem = fit.synthetic_problem(model, params, jax.random.PRNGKey(1), config.camera)
    feature_apply, feature_params = feature
    fit_fn = fit.make_fit_fn(model, config.loss, config.fit, feature_apply)
    args = (params, problem["target"], problem["mask"], problem["z_id"], problem["beta"],
            problem["intrinsics"], problem["cam_to_world"], feature_params)
    compiled = fit_fn.lower(*args).compile()
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return (time.perf_counter() - start) * 300.0 / iters


def main():
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed renders per size")
    parser.add_argument("--fit-iters", type=int, default=5,
                        help="paper512 fitting iterations actually run (scaled to 300)")
    args = parser.parse_args()

    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}")
    paper, quick = nerf_head_config.get_config("paper512"), nerf_head_config.get_config("quick")
    feature = losses.vgg16_features()
    rows = [
        ("render 512x512 (paper512)", f"{render_fps(paper, 512, args.repeats):.3f} fps"),
        ("render 256x256 (paper512 widths)", f"{render_fps(paper, 256, args.repeats):.3f} fps"),
        ("render 64x64 (quick)", f"{render_fps(quick, 64, args.repeats * 10):.1f} fps"),
        (f"fit 300 its, 512x512 (paper512; {args.fit_iters} run)",
         f"{fit_seconds_per_300(paper, args.fit_iters, feature):.0f} s"),
        ("fit 300 its, 64x64 (quick; 300 run)",
         f"{fit_seconds_per_300(quick, 300, feature):.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | result |\n|{'-' * (width + 2)}|--------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    main()
