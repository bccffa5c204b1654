"""Official FNeVR / first-order-model / HeadNeRF checkpoints → the project's Flax variables
(and orbax).

Naming rule: an official key `generator.down_blocks.0.conv.weight` is the Flax path
`generator / down_blocks_0 / conv / kernel`: list indices join their list's name with `_`,
`Render_model` is called `fvr`, and the leaf names and layouts change as
  conv weight OIHW / OIDHW → kernel HWIO / DHWIO, linear weight (out, in) → kernel (in, out),
  BN weight → scale, running_mean / running_var → batch_stats mean / var,
  spectral-norm weight_orig / weight_u / weight_v → kernel / batch_stats u / v.
`num_batches_tracked` is dropped; the fixed anti-aliasing buffers `down.weight` are checked
against the Gaussians the networks compute.

HeadNeRF (`torch.save({"para": ..., "net": state_dict})`, e.g. `model_Reso32.pth`) becomes the
`headnerf` configuration of the NeRF head model (`configs/nerf_head.py`), sized by `para`; its
1x1-conv weights (out, in, 1, 1) become Dense kernels (in, out) in the MLP and 1x1 conv
kernels in the renderer (`HEADNERF_MODULES`), and its blur buffers are checked to be [1, 2, 1].

CLI:
  python -m fnevr_jax.convert --checkpoint vox-cpk.pth.tar --model fomm --out ckpt/fomm
  python -m fnevr_jax.convert --checkpoint model_Reso32.pth --model headnerf --out ckpt/hn32
"""
import json
import pathlib
import re
import sys

import jax
import numpy as np

from configs import fnevr as fnevr_configs
from configs import nerf_head as nerf_head_configs
from fnevr_jax import checkpoint_io, cli, torch_io
from fnevr_jax.models import init_variables
from fnevr_jax.nerf_head import network
from fnevr_jax.ops import anti_alias_kernel
from fnevr_jax.parity import fixture_state_dict

MODULES = ("kp_detector", "generator", "discriminator")
RENAMES = {"Render_model": "fvr"}
# Official attribute names that end in _<digit> without being list entries.
_LITERAL = re.compile(r"^(SPADE|conv|layer3)_\d+$")
_BUFFERS = {"kp_detector": ("kp_detector", "down.weight"),
            "dense_motion_network": ("dense_motion", "down.weight")}


class ConversionError(ValueError):
    """A state dict does not match the network it is converted to."""


def _flax_module_path(official_parts):
    out = []
    for part in official_parts:
        if part.isdigit() and out:
            out[-1] = f"{out[-1]}_{part}"
        else:
            out.append(RENAMES.get(part, part))
    return tuple(out)


def _official_module_path(flax_parts):
    inverse = {v: k for k, v in RENAMES.items()}
    out = []
    for part in flax_parts:
        m = re.match(r"^(.*)_(\d+)$", part)
        if m and not _LITERAL.match(part):
            out.extend([m.group(1), m.group(2)])
        else:
            out.append(inverse.get(part, part))
    return ".".join(out)


def _leaf_spec(collection, leaf, ndim, spectral):
    """(official leaf name, axis permutation official → Flax or None) for one Flax variable."""
    if collection == "params" and leaf == "kernel":
        perm = {2: (1, 0), 4: (2, 3, 1, 0), 5: (2, 3, 4, 1, 0)}[ndim]
        return ("weight_orig" if spectral else "weight"), perm
    names = {("params", "scale"): "weight", ("params", "bias"): "bias",
             ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var",
             ("batch_stats", "u"): "weight_u", ("batch_stats", "v"): "weight_v"}
    return names[(collection, leaf)], None


def expected_keys(template):
    """{official key: (Flax path, official shape, permutation)} for a variables template.

    BatchNorm `num_batches_tracked` entries map to a None path (read and dropped).
    """
    flat = [(tuple(k.key for k in path), leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]]
    spectral = {path[1:-1] for path, _ in flat if path[0] == "batch_stats" and path[-1] == "u"}
    out = {}
    for path, leaf in flat:
        collection, module_path, name = path[0], path[1:-1], path[-1]
        official_leaf, perm = _leaf_spec(collection, name, len(leaf.shape), module_path in spectral)
        shape = tuple(leaf.shape)
        if perm is not None:
            shape = tuple(shape[perm.index(i)] for i in range(len(shape)))
        prefix = _official_module_path(module_path)
        out[f"{prefix}.{official_leaf}"] = (path, shape, perm)
        if collection == "batch_stats" and name == "mean":
            out[f"{prefix}.num_batches_tracked"] = (None, (), None)
    return out


def _buffer_keys(config, modules):
    out = {}
    for owner, (section, name) in _BUFFERS.items():
        scale = config[section].scale_factor
        top = "kp_detector" if owner == "kp_detector" else "generator.dense_motion_network"
        if top.split(".")[0] in modules and scale != 1:
            kernel = anti_alias_kernel(scale)
            out[f"{top}.{name}"] = np.tile(kernel[None, None], (config.num_channels, 1, 1, 1))
    return out


def default_config(model):
    if model == "headnerf":
        return nerf_head_configs.get_config("headnerf")
    return fnevr_configs.get_config("fomm" if model == "fomm" else "vox256")


def _check_and_place(state_dict, expected, buffers, model):
    """Variables from {key: array} given {key: (Flax path, shape, transform)} and fixed buffers.

    Raises ConversionError listing every missing key, unexpected key and shape mismatch.
    """
    missing = sorted((set(expected) | set(buffers)) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected) - set(buffers))
    mismatched = []
    out = {}
    for key, (path, shape, transform) in expected.items():
        if key not in state_dict:
            continue
        value = state_dict[key]
        if tuple(value.shape) != shape:
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)}, model {shape}")
        elif path is not None:
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = transform(value).astype(np.float32)
    for key, fixed in buffers.items():
        if key in state_dict and (state_dict[key].shape != fixed.shape
                                  or not np.allclose(state_dict[key], fixed, atol=1e-6)):
            mismatched.append(f"{key}: fixed buffer differs from the network's")
    if missing or unexpected or mismatched:
        lines = ([f"missing: {k}" for k in missing] + [f"unexpected: {k}" for k in unexpected]
                 + [f"shape mismatch: {m}" for m in mismatched])
        raise ConversionError(
            f"state dict does not match the {model} network ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(mismatched)} mismatched):\n  " + "\n  ".join(lines))
    return out


def from_torch_state_dict(state_dict, model, config=None):
    """Converts {official key: array} (keys prefixed `kp_detector.`/`generator.`/`discriminator.`).

    Returns the Flax variables {"params": {module: ...}, "batch_stats": {module: ...}}. The
    discriminator is converted when its keys are present. Raises ConversionError listing every
    missing key, unexpected key and shape mismatch.
    """
    if model not in ("fnevr", "fomm"):
        raise ConversionError(f"model must be 'fnevr' or 'fomm', got {model!r}")
    config = config or default_config(model)
    if config.model != model:
        raise ConversionError(f"config is for model {config.model!r}, not {model!r}")
    state_dict = {k: np.asarray(v) for k, v in state_dict.items()}
    with_disc = any(k.startswith("discriminator.") for k in state_dict)
    modules = MODULES if with_disc else MODULES[:2]
    template = jax.eval_shape(lambda: init_variables(config, jax.random.key(0), with_disc))
    expected = {key: (path, shape, (lambda v: v) if perm is None
                      else (lambda v, perm=perm: v.transpose(perm)))
                for key, (path, shape, perm) in expected_keys(template).items()}
    return _check_and_place(state_dict, expected, _buffer_keys(config, modules), model)


# HeadNeRF module (`HeadNeRFNet`) -> Flax module path of the NeRF head model; `{i}` an index.
HEADNERF_MODULES = {
    "fg_CD_predictor.FeaExt_module_{i}": ("mlp", "trunk_{i}"),
    "fg_CD_predictor.density_module": ("mlp", "density"),
    "fg_CD_predictor.RGB_layer_0": ("mlp", "bottleneck"),
    "fg_CD_predictor.RGB_layer_1": ("mlp", "feature"),
    "fg_CD_predictor.RGB_layer_2": ("feature_out",),
    "neural_render.feat_2_rgb_list.{i}": ("renderer", "rgb_{i}"),
    "neural_render.feat_layers.{i}": ("renderer", "unit_{i}"),
    "neural_render.feat_upsample_list.{i}.layer_1": ("renderer", "upsample_{i}", "layer_1"),
    "neural_render.feat_upsample_list.{i}.layer_2": ("renderer", "upsample_{i}", "layer_2"),
}
_BLUR_TAPS = np.array([1.0, 2.0, 1.0], np.float32)


def _headnerf_key(flax_path):
    """HeadNeRF's module name of a Flax module path (tuple of names)."""
    joined = "/".join(flax_path)
    for official, path in HEADNERF_MODULES.items():
        pattern = re.escape("/".join(path)).replace(re.escape("{i}"), r"(\d+)")
        m = re.fullmatch(pattern, joined)
        if m:
            return official.replace("{i}", m.group(1)) if m.groups() else official
    raise ConversionError(f"no HeadNeRF name for the module {joined}")


def headnerf_config(para):
    """The `headnerf` NeRF-head config for HeadNeRF's `para` {featmap_size, featmap_nc,
    pred_img_size}."""
    config = default_config("headnerf")
    keys = tuple(config.headnerf.keys())
    if not isinstance(para, dict) or set(para) < set(keys) \
            or not all(isinstance(para[k], int) and para[k] > 0 for k in keys):
        raise ConversionError(f"HeadNeRF 'para' must hold positive integers {keys}, got "
                              f"{para!r:.200}")
    config.headnerf.update({k: para[k] for k in keys})
    return config


def from_headnerf_state_dict(state_dict, config):
    """Flax variables {"params": ...} of the NeRF head model (`headnerf` config) from HeadNeRF's
    `check_dict["net"]`. Raises ConversionError listing every missing, unexpected or mis-shaped
    key."""
    model = network.from_config(config.model)
    template = jax.eval_shape(lambda: network.init_params(model, jax.random.key(0)))
    expected = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
        path = tuple(k.key for k in path)
        shape = tuple(leaf.shape)
        if path == ("background",):  # [1, H, W, C] <- HeadNeRF's [1, C, H, W]
            expected["neural_render.bg_featmap"] = (
                ("params",) + path, (shape[0], shape[3], shape[1], shape[2]),
                lambda v: v.transpose(0, 2, 3, 1))
            continue
        prefix = _headnerf_key(path[:-1])
        if path[-1] == "bias":
            expected[f"{prefix}.bias"] = (("params",) + path, shape, lambda v: v)
        elif len(shape) == 2:  # Dense (in, out) <- 1x1 conv (out, in, 1, 1)
            expected[f"{prefix}.weight"] = (("params",) + path, (shape[1], shape[0], 1, 1),
                                            lambda v: v[:, :, 0, 0].T)
        else:  # 1x1 conv HWIO <- OIHW
            expected[f"{prefix}.weight"] = (("params",) + path, (shape[3], shape[2], 1, 1),
                                            lambda v: v.transpose(2, 3, 1, 0))
    buffers = {"neural_render.rgb_upsample.1.f": _BLUR_TAPS}
    buffers.update({f"neural_render.feat_upsample_list.{i}.blur_layer.f": _BLUR_TAPS
                    for i in range(model.num_units)})
    state_dict = {k: np.asarray(v) for k, v in state_dict.items()}
    return _check_and_place(state_dict, expected, buffers, "headnerf")


def read_headnerf(path):
    """(state dict, `headnerf` config) of a HeadNeRF `{"para", "net"}` checkpoint or fixture."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    if path.suffix == ".npz":
        state, fixture_model = fixture_state_dict(path)
        if fixture_model != "headnerf":
            raise ConversionError(f"{path}: a {fixture_model!r} fixture, not 'headnerf'")
        para = json.loads(str(np.load(path)["manifest"]))["para"]
        return state, headnerf_config(para)
    tree = torch_io.load_torch_file(path)
    if not isinstance(tree, dict) or "net" not in tree or "para" not in tree:
        found = sorted(tree)[:4] if isinstance(tree, dict) else type(tree).__name__
        raise ConversionError(f"{path}: not a HeadNeRF checkpoint (no 'para' and 'net' "
                              f"entries; found {found})")
    return torch_io.flatten_arrays(tree["net"]), headnerf_config(tree["para"])


def official_state_dict(checkpoint):
    """{prefixed official key: array} from an official `.pth.tar` (read with numpy only)."""
    tree = torch_io.load_torch_file(checkpoint)
    if not isinstance(tree, dict) or "generator" not in tree or "kp_detector" not in tree:
        raise ConversionError(f"{checkpoint}: not a FNeVR/FOMM checkpoint "
                              "(no 'generator' and 'kp_detector' entries)")
    return {f"{module}.{k}": v for module in MODULES if module in tree
            for k, v in torch_io.flatten_arrays(tree[module]).items()}


def read_state_dict(path, model):
    """{prefixed official key: array} from an official checkpoint or a parity-fixture `.npz`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    if path.suffix == ".npz":
        state, fixture_model = fixture_state_dict(path)
        if fixture_model != model:
            raise ConversionError(f"{path}: a {fixture_model!r} fixture, not {model!r}")
        return state
    return official_state_dict(path)


def main(argv=None):
    parser = cli.ArgumentParser(
        description="Convert an official FNeVR / first-order-model / HeadNeRF checkpoint to orbax.")
    parser.add_argument("--checkpoint", required=True,
                        help="official .pth.tar / HeadNeRF .pth (or a parity-fixture .npz)")
    parser.add_argument("--model", required=True, choices=("fnevr", "fomm", "headnerf"))
    parser.add_argument("--out", required=True, help="output checkpoint directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    try:
        if args.model == "headnerf":
            state, config = read_headnerf(args.checkpoint)
            variables = from_headnerf_state_dict(state, config)
        else:
            config = default_config(args.model)
            variables = from_torch_state_dict(read_state_dict(args.checkpoint, args.model),
                                              args.model, config)
        out = checkpoint_io.save_variables(args.out, variables, {
            "model": args.model, "config": config.to_dict(),
            "source": str(pathlib.Path(args.checkpoint).name)}, overwrite=args.overwrite)
    except (ConversionError, torch_io.TorchFileError, checkpoint_io.CheckpointError,
            OSError) as e:
        lines = str(e).splitlines()
        more = f" ({'; '.join(s.strip() for s in lines[1:4])}{'; ...' if len(lines) > 4 else ''})" \
            if len(lines) > 1 else ""
        print(f"error: {lines[0]}{more}", file=sys.stderr)
        return 1
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    if args.model == "headnerf":
        print(f"wrote {out}: headnerf {dict(config.headnerf)}, {n:,} parameters")
        return 0
    print(f"wrote {out}: {args.model}, {n:,} parameters "
          f"({', '.join(sorted(variables['params']))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
