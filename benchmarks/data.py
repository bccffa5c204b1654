"""Loader throughput: augmented training pairs per second from PNG and JPEG shards.

    python benchmarks/data.py [--size 256 --clips 24 --frames 32 --workers 0 1 2]

Writes synthetic datasets (one PNG, one JPEG) to a temporary folder, then times
``fnevr_jax.data.loaders.train_pairs`` (FOMM sampling, flips and colour jitter) for each
worker count after a warm-up batch. Also times the synthetic generator's speed target.
"""
from __future__ import annotations

import os
import pathlib
import tempfile
import time

from fnevr_jax import cli
from data_pipelines import synthetic
from fnevr_jax.data import loaders


def pairs_per_second(data_dir, workers: int, batch_size: int, batches: int) -> float:
    ds = loaders.train_pairs(data_dir, batch_size=batch_size, seed=0, worker_count=workers,
                             process_index=0, process_count=1)
    it = iter(ds)
    next(it)                                  # worker start-up and first reads
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--skip-generator", action="store_true")
    a = p.parse_args()
    print(f"cpu cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        if not a.skip_generator:
            start = time.perf_counter()
            synthetic.generate(tmp / "quick", train_clips=200, test_clips=0, frames=64, size=64,
                               workers=2)
            print(f"synthetic generator, 200 clips x 64 frames at 64x64, 2 workers: "
                  f"{time.perf_counter() - start:.1f} s")
        rows = []
        for enc in ("png", "jpeg"):
            start = time.perf_counter()
            synthetic.generate(tmp / enc, train_clips=a.clips, test_clips=0, identities=8,
                               frames=a.frames, size=a.size, encoding=enc, workers=2)
            print(f"wrote {a.clips} clips of {a.frames} frames at {a.size}x{a.size} ({enc}) "
                  f"in {time.perf_counter() - start:.1f} s")
            for w in a.workers:
                rate = pairs_per_second(tmp / enc, w, a.batch_size, a.batches)
                rows.append((enc, w, rate))
                print(f"{enc:5s} workers={w}: {rate:7.1f} pairs/s", flush=True)
    print("\n| encoding | workers | pairs/s |\n|---|---|---|")
    for enc, w, rate in rows:
        print(f"| {enc.upper()} | {w} | {rate:.0f} |")


if __name__ == "__main__":
    main()
