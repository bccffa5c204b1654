"""The README's first run, timed, over several seeds: synthetic heads, then
`train.py --config=configs/fnevr.py:quick`, as a new user runs them (one CPU device).

    python benchmarks/first_run.py                          # seeds 0 1 2
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 python benchmarks/first_run.py --seeds 0 1 2

Prints one Markdown row per seed: the held-out L1 at every evaluation, the copy-the-source
L1, their ratio at the end, and the wall time of the data generation and of the training run
(compilation, evaluations and checkpoints included). Extra arguments after `--` go to train.py.

A second table says where each trained model's held-out error lies (`error_split`): on the
static background, where copying the source is exact, or on the head, and how much of the
background error is coarse (seen after a Gaussian blur of 2 px) or fine.
"""
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import ndimage

from fnevr_jax import api, cli
from fnevr_jax.data import loaders

ROOT = pathlib.Path(__file__).parent.parent
EVAL_LINE = re.compile(r"\[(\d+)\] eval/l1=([\d.]+), eval/l1_copy_source=([\d.]+)")


def cpu_flags():
    """'AVX-512' or 'AVX2' (what XLA may use here, after any --xla_cpu_max_isa), and the CPU."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU", "?"
    name = re.search(r"model name\s*:\s*(.*)", info)
    isa = "AVX-512" if " avx512f" in info else "AVX2" if " avx2" in info else "SSE"
    if "xla_cpu_max_isa=AVX2" in os.environ.get("XLA_FLAGS", "") and isa == "AVX-512":
        isa = "AVX2 (restricted)"
    return (name.group(1).strip() if name else "unknown CPU"), isa


def run(*args, env):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            env=env)
    if result.returncode:
        sys.exit(f"{' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")
    return result, time.perf_counter() - start


def error_split(workdir, data, clips=8, frames=64):
    """The held-out reconstruction of `train.py`'s evaluation (frame 0 drives every frame of the
    first `clips` test clips, absolute keypoints, the inference core's animate as there) split
    by pixel: background (outside the head mask in both the source and the driving frame) and
    head. Means over clips of per-clip means."""
    animator = api.load_animator(workdir)
    test = loaders.eval_clips(data, max_frames=frames, fields=("mask",),
                              size=animator.config.image_size)
    rows = []
    for i in range(min(clips, len(test))):
        video, mask = test[i]["video"], test[i]["mask"][..., 0] > 0.5
        source = video[:1]
        kp_source = animator.keypoints(source)
        error = animator.animate_frames(source, video, kp_source, kp_source,
                                        relative=False) - video
        background = ~(mask | mask[:1])
        coarse = ndimage.gaussian_filter(error, (0, 2, 2, 0))
        on = lambda e, where: float(np.abs(e).mean(-1)[where].mean())  # noqa: E731
        rows.append(dict(
            l1=float(np.abs(error).mean()), copy=float(np.abs(source - video).mean()),
            share=float(background.mean()), background=on(error, background),
            background_part=float((np.abs(error).mean(-1) * background).mean()),
            coarse=on(coarse, background), fine=on(error - coarse, background),
            copy_background=on(source - video, background), head=on(error, ~background),
            copy_head=on(source - video, ~background)))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def main():
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default=None, help="default: a temporary folder")
    parser.add_argument("train_args", nargs="*", help="extra train.py flags (after --)")
    args = parser.parse_args()
    root = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="first_run_"))
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    data = root / "synthetic"
    _, data_seconds = run("-m", "data_pipelines.synthetic", "--output", str(data), env=env)
    cpu, isa = cpu_flags()
    print(f"{cpu}, {os.cpu_count()} cores, XLA may use {isa}; synthetic heads in "
          f"{data_seconds:.0f} s\n")
    print("| seed | held-out L1 by step | copy the source | ratio | train.py |")
    print("|---|---|---|---|---|")
    splits = {}
    for seed in args.seeds:
        result, seconds = run("train.py", "--config=configs/fnevr.py:quick",
                              f"--workdir={root / f'seed{seed}'}", f"--config.data.dir={data}",
                              f"--config.train.seed={seed}", *args.train_args, env=env)
        evals = {int(s): (float(l1), float(c)) for s, l1, c in EVAL_LINE.findall(result.stderr)}
        last = max(evals)
        l1, copy = evals[last]
        by_step = ", ".join(f"{s}: {v[0]:.4f}" for s, v in sorted(evals.items()))
        print(f"| {seed} | {by_step} | {copy:.4f} | {l1 / copy:.3f} | {seconds:.0f} s |",
              flush=True)
        splits[seed] = error_split(root / f"seed{seed}", data)
    print("\nWhere the held-out error lies (L1 per pixel; copying the source is exact on the "
          "background):\n")
    print("| seed | background pixels | background: model | coarse | fine | copy | head: model "
          "| copy | ratio with a perfect background |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, e in splits.items():
        perfect = (e["l1"] - e["background_part"]) / e["copy"]
        print(f"| {seed} | {e['share']:.0%} | {e['background']:.4f} | {e['coarse']:.4f} | "
              f"{e['fine']:.4f} | {e['copy_background']:.4f} | {e['head']:.4f} | "
              f"{e['copy_head']:.4f} | {perfect:.3f} |")


if __name__ == "__main__":
    main()
