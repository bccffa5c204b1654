"""Training speed: one full FNeVR step (generator + keypoint detector + pose editor, then the
discriminator) on a random batch, after warm-up.

    python benchmarks/train_step.py                        # vox256, batch 4 (CPU)
    python benchmarks/train_step.py --batch-size 20        # the paper's batch, on a GPU

Needs a dataset only for its field list: pass --data (default: a 4-clip synthetic set made in a
temporary folder at the configured resolution). Prints compile time, step time, images/s and
the peak device memory (the host process's peak RSS on CPU).

    python benchmarks/train_step.py --official FNEVR_CHECKOUT FOMM_CHECKOUT --objective fomm

`--objective fomm` is first-order-model's objective on the FNeVR generator (perceptual
pyramid, LSGAN + feature matching, equivariance: L_R, L_σ and L_editor off), and
`--official` times the same step in PyTorch in the same run, after it, in a child process:
first-order-model's `GeneratorFullModel` and `DiscriminatorFullModel` (`modules/model.py`,
`modules/discriminator.py`) with FNeVR's `KPDetector` and `OcclusionAwareGenerator_SPADE`,
FNeVR's `config/vox-256.yaml`, Adam on each network, and a VGG19 of torchvision's layout with
random weights in place of `torchvision.models.vgg19` (torchvision does not install beside the
CPU build of torch; speed does not depend on the weights). Needs torch and PyYAML.
"""
import importlib.util
import math
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time
import types
import warnings

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import fnevr as fnevr_configs
from fnevr_jax import cli, sharding
from data_pipelines import synthetic
from fnevr_jax.training.fnevr_task import FNeVRTask


# FNeVRTask.train_step with first-order-model's objective: the FNeVR-only terms off.
FOMM_OBJECTIVE = {"render_perceptual": (0.0,) * 5, "sigma": 0.0, "pose_edit": 0.0}


def step_time(variant, batch_size, iters, dtype="float32", devices=None, data=None,
              loss_weights=None):
    """(compile s, s/step, losses of the last step) of FNeVRTask.train_step at global
    `batch_size`, on a mesh over `devices` (default: the first device) as the trainer runs it:
    batch sharded, state replicated and donated. `loss_weights` overrides config fields."""
    config = fnevr_configs.get_config(variant)
    config.train.batch_size = batch_size
    config.dtype = dtype
    config.loss_weights.update(loss_weights or {})
    config.data.worker_count = 0
    if data is None:
        data = tempfile.mkdtemp(prefix="bench_data_")
        synthetic.generate(data, train_clips=4, test_clips=1, identities=2, test_identities=1,
                           frames=4, size=config.image_size, workers=1)
    config.data.dir = data
    task = FNeVRTask(config)
    mesh = sharding.make_mesh(devices or jax.devices()[:1])
    rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    state = jax.jit(task.init_state, out_shardings=rep)(jax.random.key(0))
    batch = jax.device_put(next(iter(task.train_data(0))), split)
    frozen, rng = jax.device_put((task.frozen, jax.random.key(1)), rep)
    step = jax.jit(task.train_step, in_shardings=(rep, split, rep, rep),
                   out_shardings=(rep, rep), donate_argnums=(0,))
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, rng, frozen).compile()
    compile_s = time.perf_counter() - t0
    state, metrics = compiled(state, batch, rng, frozen)
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for _ in range(iters):
        state, metrics = compiled(state, batch, rng, frozen)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - t0) / iters
    return compile_s, seconds, {k: float(v) for k, v in metrics.items() if k.startswith("loss/")}


def _vgg19_features():
    """torchvision's `vgg19().features` layout (convs 3x3, ReLUs, max-pools), random weights."""
    from torch import nn
    layers, channels = [], 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                  512, 512, 512, 512, "M"):
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(*layers)


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_step_time(fnevr_checkout, fomm_checkout, batch_size, iters):
    """s/step of the official-style PyTorch step (module docstring) at `batch_size`, after
    one warm-up step: generator losses, backward, Adam on the generator and keypoint
    detector; discriminator loss, backward, Adam on the discriminator."""
    import torch
    import yaml
    fnevr_checkout, fomm_checkout = pathlib.Path(fnevr_checkout), pathlib.Path(fomm_checkout)
    vgg19 = lambda pretrained=False: types.SimpleNamespace(features=_vgg19_features())  # noqa: E731
    sys.modules["torchvision"] = types.SimpleNamespace(models=types.SimpleNamespace(vgg19=vgg19))
    sys.path.insert(0, str(fnevr_checkout))     # `modules.util` is FNeVR's (a superset of FOMM's)
    from modules.generator import OcclusionAwareGenerator_SPADE
    from modules.keypoint_detector import KPDetector
    full = _module(fomm_checkout / "modules" / "model.py", "fomm_model")
    disc = _module(fomm_checkout / "modules" / "discriminator.py", "fomm_discriminator")
    sys.path.remove(str(fnevr_checkout))
    yaml_config = yaml.safe_load((fnevr_checkout / "config" / "vox-256.yaml").read_text())
    params, train = yaml_config["model_params"], yaml_config["train_params"]
    common = params["common_params"]
    kp_detector = KPDetector(**params["kp_detector_params"], **common)
    generator = OcclusionAwareGenerator_SPADE(**params["generator_params"], **common)
    discriminator = disc.MultiScaleDiscriminator(**params["discriminator_params"], **common)
    from timing import torch_device, torch_mean_seconds
    device = torch_device()
    for module in (kp_detector, generator, discriminator):
        module.to(device)
    generator_full = full.GeneratorFullModel(kp_detector, generator, discriminator, train)
    discriminator_full = full.DiscriminatorFullModel(kp_detector, generator, discriminator, train)
    adam = lambda m, lr: torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.999))  # noqa: E731
    opt_g, opt_k, opt_d = (adam(generator, train["lr_generator"]),
                           adam(kp_detector, train["lr_kp_detector"]),
                           adam(discriminator, train["lr_discriminator"]))
    generator.train(), kp_detector.train(), discriminator.train()
    torch.manual_seed(0)
    x = {"source": torch.rand(batch_size, 3, 256, 256, device=device),
         "driving": torch.rand(batch_size, 3, 256, 256, device=device)}

    def step():                                 # first-order-model's train.py, one iteration
        losses_generator, generated = generator_full(x)
        loss = sum(v.mean() for v in losses_generator.values())
        loss.backward()
        opt_g.step(), opt_g.zero_grad(), opt_k.step(), opt_k.zero_grad()
        opt_d.zero_grad()
        losses_discriminator = discriminator_full(x, generated)
        sum(v.mean() for v in losses_discriminator.values()).backward()
        opt_d.step(), opt_d.zero_grad()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # grid_sample's align_corners note
        return torch_mean_seconds(step, iters, device)


def official_step_time_in_child(fnevr_checkout, fomm_checkout, batch_size, iters):
    """`official_step_time` in a child process (JAX on CPU there). On a GPU, JAX's allocator
    keeps the memory the JAX step took, and PyTorch beside it in one process ran out of it
    (batch 20 on an 80 GB H100)."""
    fnevr_checkout, fomm_checkout = (str(pathlib.Path(p).resolve())
                                     for p in (fnevr_checkout, fomm_checkout))
    call = f"official_step_time({fnevr_checkout!r}, {fomm_checkout!r}, {batch_size}, {iters})"
    result = subprocess.run(
        [sys.executable, "-c", f"import train_step; print(train_step.{call})"],
        cwd=pathlib.Path(__file__).parent, capture_output=True, text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if result.returncode:
        sys.exit(f"the PyTorch step failed:\n{result.stderr[-3000:]}")
    return float(result.stdout.split()[-1])


def peak_memory():
    """The first device's peak memory, or the host process's peak RSS on CPU (a string)."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return (f"{peak / 2**30:.1f} GiB (device)" if peak else
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB (host RSS)")


def main():
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="vox256")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--data", default=None)
    parser.add_argument("--objective", default="fnevr", choices=("fnevr", "fomm"),
                        help="fomm: first-order-model's objective (L_R, L_σ, L_editor off)")
    parser.add_argument("--official", nargs=2, metavar=("FNEVR_CHECKOUT", "FOMM_CHECKOUT"),
                        help="also time the official-style PyTorch step (needs --objective fomm)")
    args = parser.parse_args()
    if args.official and (args.objective != "fomm" or args.variant != "vox256"):
        parser.error("--official times first-order-model's objective on vox256: "
                     "add --objective fomm")
    compile_s, step_s, losses = step_time(
        args.variant, args.batch_size, args.iters, args.dtype, data=args.data,
        loss_weights=FOMM_OBJECTIVE if args.objective == "fomm" else None)
    memory = peak_memory()
    official_s = (official_step_time_in_child(*args.official, args.batch_size, args.iters)
                  if args.official else None)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"python {platform.python_version()}")
    print("| step | variant | objective | dtype | batch | compile s | s/step | images/s | "
          "peak memory | vs PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratio = f"{step_s / official_s:.2f}" if official_s else "-"
    print(f"| fnevr_jax | {args.variant} | {args.objective} | {args.dtype} | {args.batch_size} | "
          f"{compile_s:.1f} | {step_s:.2f} | {args.batch_size / step_s:.2f} | {memory} | "
          f"{ratio} |")
    if official_s:
        import torch
        where = (torch.cuda.get_device_name() if torch.cuda.is_available()
                 else f"{torch.get_num_threads()} threads")
        print(f"| official-style PyTorch {torch.__version__} ({where}) | "
              f"{args.variant} | fomm | float32 | {args.batch_size} | - | {official_s:.2f} | "
              f"{args.batch_size / official_s:.2f} | - | 1.00 |")
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    print("losses of the last step:", ", ".join(f"{k[5:]} {v:.4g}" for k, v in losses.items()),
          f"({'non-finite: ' + ', '.join(bad) if bad else 'all finite'})")


if __name__ == "__main__":
    main()
