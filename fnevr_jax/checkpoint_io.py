"""The on-disk format for model variables: one orbax checkpoint directory with two items.

- `variables`: the Flax variables pytree (`{"params": ..., "batch_stats": ...}`), saved as host
  numpy arrays with orbax's PyTree handler;
- `metadata`: a JSON dict, e.g. `{"model": "fnevr", "config": {...}, "source": "..."}`.

Exported or converted models are such directories. A train.py workdir checkpoints its
training state with an orbax CheckpointManager and saves the task's inference export as these
two items beside it in each step directory (`export_args`), which `load_export` reads.
"""
import json
import logging
import os
import pathlib
import shutil
import uuid

import jax
import numpy as np
import orbax.checkpoint as ocp

_ITEMS = ("variables", "metadata")


class CheckpointError(ValueError):
    """A directory that is missing, not a variables checkpoint, corrupt, or not overwritable."""


class _SkipOtherItems(logging.Filter):
    """Drops orbax's warning about the training-state items of a checkpoint step directory,
    which `load_variables` deliberately leaves unread."""

    def filter(self, record):
        return "could not be restored" not in record.getMessage()


def _checkpointer():
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler(
        variables=ocp.PyTreeCheckpointHandler(), metadata=ocp.JsonCheckpointHandler()))


def save_variables(directory, variables, metadata, *, overwrite=False):
    """Writes `variables` and the JSON-serialisable `metadata` dict to `directory`.

    The checkpoint is written to a temporary sibling and renamed into place, so `directory`
    is never left half-written. An existing non-empty `directory` is replaced only with
    `overwrite=True`. Returns the directory as a `pathlib.Path`.
    """
    directory = pathlib.Path(directory).absolute()
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: exists and is not a directory")
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise CheckpointError(f"{directory}: not empty; pass overwrite=True to replace it")
    metadata = json.loads(json.dumps(metadata))
    variables = jax.tree.map(np.asarray, jax.device_get(variables))
    directory.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = directory.with_name(f".{directory.name}.tmp-{token}")
    old = directory.with_name(f".{directory.name}.old-{token}")
    try:
        _checkpointer().save(tmp, args=ocp.args.Composite(
            variables=ocp.args.PyTreeSave(variables), metadata=ocp.args.JsonSave(metadata)))
        if directory.exists():
            os.rename(directory, old)
        try:
            os.rename(tmp, directory)
        except OSError:
            if old.exists():
                os.rename(old, directory)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return directory


def load_variables(directory):
    """Returns `(variables, metadata)` from a `save_variables` directory, arrays as numpy."""
    directory = pathlib.Path(directory).absolute()
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    missing = [item for item in _ITEMS if not (directory / item).is_dir()]
    if missing:
        raise CheckpointError(
            f"{directory}: not a variables checkpoint (no {' or '.join(missing)} item)")
    checkpointer = _checkpointer()
    quiet = _SkipOtherItems()
    logging.getLogger("absl").addFilter(quiet)
    try:
        tree = checkpointer.metadata(directory).item_metadata["variables"].tree
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        restored = checkpointer.restore(directory, args=ocp.args.Composite(
            variables=ocp.args.PyTreeRestore(restore_args=restore_args),
            metadata=ocp.args.JsonRestore()))
    # orbax and tensorstore report damaged files with many exception types.
    except Exception as e:  # noqa: BLE001
        detail = " ".join(str(e).split())[:200]
        raise CheckpointError(
            f"{directory}: corrupt checkpoint ({type(e).__name__}: {detail})") from None
    finally:
        logging.getLogger("absl").removeFilter(quiet)
    return restored["variables"], restored["metadata"]


def is_training_workdir(path):
    """True for a train.py --workdir (a `checkpoints` directory and `config.json`)."""
    path = pathlib.Path(path)
    return path.is_dir() and (path / "checkpoints").is_dir() and (path / "config.json").is_file()


def checkpoints_dir(workdir):
    """Where a training workdir keeps its numbered checkpoints."""
    return pathlib.Path(workdir) / "checkpoints"


def export_args(variables, metadata):
    """The orbax items the trainer saves beside each checkpoint's state: the task's inference
    export, in this module's format (so `load_variables` reads a checkpoint step directory)."""
    return {"variables": ocp.args.PyTreeSave(variables), "metadata": ocp.args.JsonSave(metadata)}


def load_export(workdir):
    """(variables, metadata) of the newest checkpoint of a training workdir that has an
    inference export; the training state (optimizer moments) is not read."""
    root = checkpoints_dir(workdir)
    steps = sorted((int(p.name) for p in root.iterdir()
                    if p.name.isdigit() and all((p / item).is_dir() for item in _ITEMS)),
                   reverse=True) if root.is_dir() else []
    if not steps:
        raise CheckpointError(f"{workdir}: a training workdir without a finished checkpoint")
    return load_variables(root / str(steps[0]))
