"""The on-disk format for model variables: one orbax checkpoint directory with two items.

- `variables`: the Flax variables pytree (`{"params": ..., "batch_stats": ...}`), saved as host
  numpy arrays with orbax's PyTree handler;
- `metadata`: a JSON dict, e.g. `{"model": "fnevr", "config": {...}, "source": "..."}`.

This is for exported or converted models (single process); training state is checkpointed
with an orbax CheckpointManager in a train.py workdir, which `restore_training_state` reads.
"""
import json
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
    return restored["variables"], restored["metadata"]


def is_training_workdir(path):
    """True for a train.py --workdir (a `checkpoints` directory and `config.json`)."""
    path = pathlib.Path(path)
    return path.is_dir() and (path / "checkpoints").is_dir() and (path / "config.json").is_file()


def restore_training_state(workdir):
    """(config dict, task state as numpy, step) of the latest finished step of a workdir."""
    workdir = pathlib.Path(workdir)
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()
                   if p.name.isdigit() and (p / "state").is_dir())
    if not steps:
        raise CheckpointError(f"{workdir}: a training workdir without a finished checkpoint")
    directory = workdir / "checkpoints" / str(steps[-1])
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler(
        state=ocp.PyTreeCheckpointHandler()))
    try:
        config = json.loads((workdir / "config.json").read_text())
        tree = checkpointer.metadata(directory).item_metadata["state"].tree
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        state = checkpointer.restore(directory, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(restore_args=restore_args)))["state"]
    except Exception as e:  # noqa: BLE001 (orbax reports damage with many exception types)
        detail = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{directory}: cannot restore ({type(e).__name__}: {detail})") \
            from None
    return config, state["task"], steps[-1]
