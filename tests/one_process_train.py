"""train.py in one process, each global batch in the order an N-process run assembles it.

    python -m tests.one_process_train N --workdir=... [train.py flags]

Process p of N loads every N-th pair of the sample stream (`loaders.pair_dataset`) and the
global batch is the processes' batches one after another, so an N-process global batch
holds the one-process batch's pairs permuted; this run applies that permutation. The order
matters: the step draws one random equivariance warp per batch position.
"""
import sys

import numpy as np

import train
from fnevr_jax.training import tasks, trainer


def process_order(batch_size, num_processes):
    """Positions, in the one-process batch, of the N-process global batch's rows."""
    return np.arange(batch_size).reshape(-1, num_processes).T.ravel()


class _Reordered:
    """The task, with its (one-process) batches permuted by `order`."""

    def __init__(self, task, order):
        self._task, self._order = task, order

    def __getattr__(self, name):
        return getattr(self._task, name)

    def train_data(self, seed):
        return self._task.train_data(seed).map(
            lambda batch: {k: v[self._order] for k, v in batch.items()})


def main(argv):
    args = train.parse_args(argv[1:])
    order = process_order(args.config.train.batch_size, int(argv[0]))
    task = _Reordered(tasks.get_task(args.config), order)
    step, checksum = trainer.train_and_evaluate(args.config, args.workdir, task=task)
    print(f"one process in {argv[0]}-process order: finished at step {step}, "
          f"parameter checksum {checksum:.12e}")


if __name__ == "__main__":
    main(sys.argv[1:])
