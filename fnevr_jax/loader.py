"""The one way to load a model: any model source -> (variables, config, description, metadata).

Sources, for both model families (FNeVR/FOMM and the NeRF head):
- a training workdir (`train.py --workdir`): the inference export the trainer writes beside
  its latest checkpoint (`Task.export`), never the optimizer state;
- an orbax variables directory (`checkpoint_io.save_variables`, e.g. from `fnevr_jax.convert`);
- an official first-order-model/FNeVR `.pth.tar`, a HeadNeRF `.pth` (`model="nerf_head"`), or
  a parity fixture `.npz` (converted; `convert.ConversionError` lists what does not match);
- a variables dict `{"params": ..., "batch_stats": ...}`.

    variables, config, description, metadata = loader.load("runs/quick")
"""
import pathlib

import ml_collections

from fnevr_jax import checkpoint_io
from fnevr_jax.convert import (default_config, from_headnerf_state_dict, from_torch_state_dict,
                               read_headnerf, read_state_dict)
from fnevr_jax.models import MODELS

FAMILIES = MODELS + ("nerf_head",)


class LoadError(ValueError):
    """A model source that is missing, damaged, or holds another model than asked for."""


def _family(metadata, config):
    if config is not None and config.get("task") == "nerf_head":
        return "nerf_head"
    return metadata.get("model") or (config.get("model") if config is not None else None)


def load(source, model=None, config=None):
    """(variables, config, description, metadata) of `source` (see the module docstring).
    `metadata`: what the source stores beside its variables (for a training export its
    `step` and task facts such as `pose_editor_steps`; `{}` for files and dicts).

    `model` ("fnevr", "fomm" or "nerf_head"), where given, must be what the source holds.
    Directories carry their own config; for files and dicts `config` (default: the official
    config of `model`, FNeVR if unset) gives the architecture.
    """
    if model is not None and model not in FAMILIES:
        raise LoadError(f"model must be one of {FAMILIES}, got {model!r}")
    if config is not None and model is None:
        model = _family({}, config)
    if isinstance(source, dict):
        variables, description, metadata = source, "variables", {}
        if model == "nerf_head" and config is None:
            raise LoadError("NeRF head variables need their config")
        config = config or default_config(model or "fnevr")
        held = _family({}, config)
    else:
        path = pathlib.Path(source)
        if path.is_dir():
            try:
                if checkpoint_io.is_training_workdir(path):
                    variables, metadata = checkpoint_io.load_export(path)
                    description = f"{path} (training step {metadata.get('step', '?')})"
                else:
                    variables, metadata = checkpoint_io.load_variables(path)
                    description = f"{path} ({metadata.get('model')})"
            except checkpoint_io.CheckpointError as e:
                raise LoadError(str(e).splitlines()[0]) from None
            if "config" in metadata:  # the architecture the variables were saved with
                config = ml_collections.ConfigDict(metadata["config"])
            held = _family(metadata, config)
            if config is None and held in MODELS:
                config = default_config(held)
        elif not path.exists():
            raise LoadError(f"{path}: no such checkpoint file or directory")
        else:
            held, metadata = model or "fnevr", {}
            if held == "nerf_head":   # a HeadNeRF checkpoint (or its parity fixture)
                state, config = read_headnerf(path)
                variables = from_headnerf_state_dict(state, config)
            else:
                variables = from_torch_state_dict(read_state_dict(path, held), held, config)
                config = config or default_config(held)
            description = f"{path} ({held})"
    if model == "nerf_head" and held != model:
        raise LoadError(f"{source}: not a NeRF head model (it holds {held!r}; train one with "
                        "`python train.py --config=configs/nerf_head.py`)")
    if model is not None and held != model:
        raise LoadError(f"{source}: holds a {held!r} model, not {model!r}")
    if config is None:
        raise LoadError(f"{source}: no config is stored with these variables")
    if held in MODELS:
        if config.model != held:
            raise LoadError(f"config is for model {config.model!r}, not {held!r}")
        if "params" not in variables or "generator" not in variables["params"]:
            raise LoadError("variables must be {'params': {'kp_detector', 'generator', ...}, ...}")
    metadata = {k: v for k, v in metadata.items() if k != "config"}
    return variables, config, description, metadata
