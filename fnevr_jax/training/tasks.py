"""The interface between the trainer and a model family, and the registry of tasks by name.

The trainer (`fnevr_jax.training.trainer`) knows nothing model-specific: it resolves
`config.task` here and calls only the methods of `Task`. A new model family is a class with
these methods, registered in `TASKS`.
"""
from typing import Any, Protocol

import grain

State = Any      # a pytree of arrays
Batch = dict     # {name: array [B, ...]}


class Task(Protocol):
    """What a model family gives the trainer."""

    config: Any
    num_steps: int          # total optimisation steps of the run
    frozen: dict            # frozen pretrained weights: an argument of the step, never baked in

    def train_data(self, seed: int) -> grain.IterDataset:
        """Endless per-process batches of training examples (numpy)."""

    def init_state(self, rng) -> State:
        """Parameters, statistics and optimizer state; jitted by the trainer."""

    def train_step(self, state: State, batch: Batch, rng, frozen: dict) -> tuple[State, dict]:
        """(new state, {metric name: scalar}); a pure function, jitted with the mesh."""

    def loss_terms(self) -> dict:
        """{term: weight} of the loss terms in effect (logged, and kept in config.json)."""

    def learning_rates(self, step: int) -> dict:
        """{"lr/NAME": value} in effect at `step`, for logging."""

    def summary_images(self, state: State, batch: Batch) -> dict:
        """{name: uint8 or float image [N, H, W, 3]} for TensorBoard, from the on-device state
        and global batch by a jitted program; only the images reach the host."""

    def evaluate(self, state: State) -> dict:
        """{NAME: on-device scalar}: held-out means computed by a jitted program of the
        on-device state on its mesh, the same on every process."""

    def export(self, state: State, step: int) -> tuple[dict, dict]:
        """(inference variables, metadata) after `step` steps: what `fnevr_jax.loader` needs
        to run the model, without optimizer state. The metadata holds `model`, the `config`
        and JSON values."""


def _fnevr(config):
    from fnevr_jax.training.fnevr_task import FNeVRTask
    return FNeVRTask(config)


def _nerf_head(config):
    from fnevr_jax.nerf_head.task import NerfHeadTask
    return NerfHeadTask(config)


TASKS = {"fnevr": _fnevr, "nerf_head": _nerf_head}


def get_task(config) -> Task:
    """The task `config.task` names (default "fnevr": FNeVR and FOMM)."""
    name = config.get("task", "fnevr")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} in config.task; choose one of {sorted(TASKS)}")
    return TASKS[name](config)
