"""The README's first run as a background job of the test suite.

    python -m tests.first_run DIR    # synthetic heads into DIR/synthetic, then train.py quick

The run is a process of its own (about 16 minutes alone on 2 cores) while the rest of the
suite mostly compiles programs on one core, so conftest starts it as soon as collection
finishes, orders `tests/test_train_quick.py` last, and that test reads what it wrote:
`DIR/train.log` (train.py's stderr) and the workdir `DIR/quick`.
"""
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent


def user_env():
    """The environment a user runs train.py in: one CPU device, XLA's default optimisation,
    not the suite's 8 simulated devices and -O0 (only a `--xla_cpu_max_isa` restriction of
    the suite's is kept)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_cpu_max_isa" in f]
    if kept:
        env["XLA_FLAGS"] = " ".join(kept)
    return env


def start(folder):
    """Starts the run into `folder` in the background; returns the process."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "pipeline.log", "w") as log:   # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "tests.first_run", str(folder)],
                                cwd=ROOT, env=user_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def main(folder):
    folder = pathlib.Path(folder)
    data = folder / "synthetic"
    subprocess.run([sys.executable, "-m", "data_pipelines.synthetic", "--output", str(data)],
                   cwd=ROOT, check=True)
    with open(folder / "train.log", "w") as log:
        result = subprocess.run(
            [sys.executable, "train.py", "--config=configs/fnevr.py:quick",
             f"--workdir={folder / 'quick'}", f"--config.data.dir={data}"],
            cwd=ROOT, stderr=log, stdout=subprocess.DEVNULL)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main(sys.argv[1])
