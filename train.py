"""Trains FNeVR, FOMM or the NeRF head model: flags, then `train_and_evaluate`.

    python train.py --config=configs/fnevr.py:quick --workdir=runs/quick
    python train.py --config=configs/fnevr.py --workdir=runs/fnevr --config.data.dir=SHARDS
    python train.py --config=configs/nerf_head.py:quick --workdir=runs/nerf

Rerunning with the same --workdir resumes the run. On a cluster every process runs the same
command: TPU pods and SLURM (`srun python train.py ...`) are detected by
`jax.distributed.initialize()`; elsewhere pass --coordinator-address, --num-processes and
--process-id (CPU hosts use gloo collectives).
"""
import logging
import sys

import jax

from fnevr_jax import cli
from fnevr_jax.training import trainer


def parse_args(argv=None):
    p = cli.parser(__doc__, config="configs/fnevr.py")
    p.add_argument("--workdir", required=True,
                   help="checkpoints, config.json and TensorBoard summaries")
    p.add_argument("--coordinator-address", help="host:port of process 0 (multi-process)")
    p.add_argument("--num-processes", type=int, help="number of processes (multi-process)")
    p.add_argument("--process-id", type=int, help="this process's index (multi-process)")
    return cli.parse(p, argv)


def initialize_distributed(args):
    if args.coordinator_address:
        if jax.config.jax_platforms in (None, "", "cpu"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator_address, args.num_processes,
                                   args.process_id)
        return
    try:  # TPU pods, SLURM and Open MPI describe the cluster themselves
        jax.distributed.initialize()
    except (ValueError, RuntimeError):
        pass  # a single process


class _QuietLibraries(logging.Filter):
    """Keeps the libraries' routine INFO lines (orbax writes dozens per checkpoint) out of the log."""

    def filter(self, record):
        return record.levelno >= logging.WARNING or not any(
            part in record.pathname for part in ("/orbax/", "/jax/_src/", "/grain/"))


def main(argv=None):
    args = parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname).1s%(asctime)s %(message)s"))
    handler.addFilter(_QuietLibraries())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    initialize_distributed(args)
    logging.info("process %d of %d, %d devices", jax.process_index(), jax.process_count(),
                 jax.device_count())

    def train():
        step, checksum = trainer.train_and_evaluate(args.config, args.workdir)
        print(f"process {jax.process_index()}: finished at step {step}, "
              f"parameter checksum {checksum:.12e}")

    return cli.run(train, (ValueError, trainer.TrainingError))


if __name__ == "__main__":
    sys.exit(main())
