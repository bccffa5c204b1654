"""The README's first run: synthetic heads, then `train.py --config=configs/fnevr.py:quick`.

It runs the commands a new user types, whole, and checks that the model learned to animate:
on held-out identities the reconstruction L1 (frame 0 drives every frame of the clip) ends
well below copying the source frame, and well below where it stood after 100 steps.
"""
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent
EVAL_LINE = re.compile(r"\[(\d+)\] eval/l1=([\d.]+), eval/l1_copy_source=([\d.]+)")


def _run(*args, timeout):
    # As a user runs it: one CPU device, not the 8 simulated ones of the other tests.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_quick_run_beats_copying_the_source_on_held_out_clips(tmp_path):
    data, workdir = tmp_path / "synthetic", tmp_path / "quick"
    _run("-m", "data_pipelines.synthetic", "--output", str(data), timeout=300)
    run = _run("train.py", "--config=configs/fnevr.py:quick", f"--workdir={workdir}",
               f"--config.data.dir={data}", timeout=1200)
    evals = {int(s): (float(l1), float(copy)) for s, l1, copy in EVAL_LINE.findall(run.stderr)}
    assert sorted(evals) == [100, 200, 300, 400], run.stderr[-3000:]
    copy = evals[400][1]
    assert 0.07 < copy < 0.1  # the synthetic heads move: copying the source is a poor guess
    first, last = evals[100][0], evals[400][0]
    print(f"held-out L1 by step: { {s: round(v[0], 4) for s, v in evals.items()} }, "
          f"copy-the-source {copy:.4f}")
    assert last < 0.8 * copy, evals
    assert last < 0.8 * first, evals
    assert (workdir / "checkpoints" / "400").is_dir()
