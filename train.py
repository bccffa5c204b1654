"""Trains FNeVR, FOMM or the NeRF head model: flags, then `train_and_evaluate`.

    python train.py --config=configs/fnevr.py:quick --workdir=runs/quick
    python train.py --config=configs/fnevr.py --workdir=runs/fnevr --config.data.dir=SHARDS
    python train.py --config=configs/nerf_head.py:quick --workdir=runs/nerf

Rerunning with the same --workdir resumes the run. On a cluster every process runs the same
command: TPU pods and SLURM (`srun python train.py ...`) are detected by
`jax.distributed.initialize()`; elsewhere pass --coordinator_address, --num_processes and
--process_id (CPU hosts use gloo collectives).
"""
import logging
import sys

import jax
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from fnevr_jax.training import trainer

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/fnevr.py", "Config file[:variant].",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, config.json and TensorBoard summaries.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
flags.mark_flags_as_required(["workdir"])


def initialize_distributed():
    if FLAGS.coordinator_address:
        if jax.config.jax_platforms in (None, "", "cpu"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                                   FLAGS.process_id)
        return
    try:  # TPU pods, SLURM and Open MPI describe the cluster themselves
        jax.distributed.initialize()
    except (ValueError, RuntimeError):
        pass  # a single process


def parse_flags(argv):
    """absl flag parsing with config-typo and bad-variant errors as one line, exit status 2."""
    try:
        return FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, ValueError) as e:
        text = str(e.args[0] if e.args else e).replace("\\n", "\n").replace("\\'", "'")
        lines = [line.strip().strip("'") for line in text.splitlines() if line.strip()]
        message = " ".join(lines[-2:]) if lines[-1].startswith("Did you mean") else lines[-1]
        print(f"error: bad flag or config field: {message}", file=sys.stderr)
        sys.exit(2)


class _QuietLibraries(logging.Filter):
    """Keeps the libraries' routine INFO lines (orbax writes dozens per checkpoint) out of the log."""

    def filter(self, record):
        return record.levelno >= logging.WARNING or not any(
            part in record.pathname for part in ("/orbax/", "/jax/_src/", "/grain/"))


def main(argv):
    del argv
    absl_logging.get_absl_handler().addFilter(_QuietLibraries())
    initialize_distributed()
    logging.info("process %d of %d, %d devices", jax.process_index(), jax.process_count(),
                 jax.device_count())
    try:
        step, checksum = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (ValueError, trainer.TrainingError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"process {jax.process_index()}: finished at step {step}, "
          f"parameter checksum {checksum:.12e}")
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
