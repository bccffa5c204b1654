"""Peak host memory of loading a vox256 training workdir: through its inference export
(`fnevr_jax.loader`, what `animate.py`, `eval.py` and the API do) against restoring the whole
training state (parameters, batch statistics and Adam moments, as loading did before the
export existed). Each load runs in a fresh process; the table gives the peak resident memory
and its growth over the process's imports.

    python benchmarks/load_memory.py [--workdir /tmp/vox256_workdir]
"""
import json
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fnevr_jax import cli  # noqa: E402

MEASURE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import jax, numpy as np, orbax.checkpoint as ocp
    from fnevr_jax import checkpoint_io, loader
    def peak_kib():  # VmHWM: this process's peak RSS (ru_maxrss would inherit the parent's)
        return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
    base = peak_kib()
    workdir = {workdir!r}
    if {mode!r} == "export":
        variables, config, *_ = loader.load(workdir)
    else:
        directory = checkpoint_io.checkpoints_dir(workdir) / "1"
        ckpt = ocp.Checkpointer(ocp.CompositeCheckpointHandler(state=ocp.PyTreeCheckpointHandler()))
        tree = ckpt.metadata(directory).item_metadata["state"].tree
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        ckpt.restore(directory, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(restore_args=args)))
    peak = peak_kib()
    print(base, peak)
""")


def make_workdir(workdir):
    """A vox256 workdir in train.py's layout: step 1 with the state and the task's export."""
    import jax
    import optax
    import orbax.checkpoint as ocp

    from configs import fnevr
    from fnevr_jax import checkpoint_io
    from fnevr_jax.models import example_inputs, init_variables
    from fnevr_jax.models.pose_editor import PoseEditor

    config = fnevr.get_config("vox256")
    variables = init_variables(config, jax.random.key(0), with_discriminator=True)
    params, stats = dict(variables["params"]), dict(variables["batch_stats"])
    _, kp = example_inputs(config)
    params["pose_editor"] = PoseEditor(tuple(config.pose_editor.hidden)).init(
        jax.random.key(1), jax.numpy.eye(3)[None], kp)["params"]
    adam = optax.adam(2e-4)
    opt_state = {k: adam.init({k: v}) for k, v in params.items()}
    state = {"task": {"params": params, "batch_stats": stats, "opt_state": opt_state},
             "step": jax.numpy.ones((), jax.numpy.int32)}
    export = {"params": {k: params[k] for k in ("kp_detector", "generator", "pose_editor")},
              "batch_stats": {k: stats[k] for k in ("kp_detector", "generator")}}
    config_json = json.loads(config.to_json_best_effort())
    with ocp.CheckpointManager(checkpoint_io.checkpoints_dir(workdir)) as manager:
        manager.save(1, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), **checkpoint_io.export_args(
                export, {"model": "fnevr", "config": config_json, "step": 1})))
        manager.wait_until_finished()
    (pathlib.Path(workdir) / "config.json").write_text(json.dumps(config_json))


def sizes(workdir):
    """Bytes of the training state's and the export's arrays, from the checkpoint metadata."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    from fnevr_jax import checkpoint_io
    directory = checkpoint_io.checkpoints_dir(workdir) / "1"
    out = []
    for item in ("state", "variables"):
        ckpt = ocp.Checkpointer(ocp.CompositeCheckpointHandler(
            **{item: ocp.PyTreeCheckpointHandler()}))
        tree = ckpt.metadata(directory).item_metadata[item].tree
        out.append(sum(int(np.prod(m.shape)) * np.dtype(m.dtype).itemsize
                       for m in jax.tree.leaves(tree)))
    return out


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--workdir", default="/tmp/vox256_workdir")
    args = cli.parse(p, argv)
    if not (pathlib.Path(args.workdir) / "config.json").exists():
        make_workdir(args.workdir)
    state_bytes, export_bytes = sizes(args.workdir)
    rows = []
    for mode, what, size in (("state", "whole training state (before)", state_bytes),
                             ("export", "inference export (loader.load)", export_bytes)):
        out = subprocess.run([sys.executable, "-c", MEASURE.format(
            root=str(ROOT), workdir=args.workdir, mode=mode)], capture_output=True, text=True,
            check=True).stdout.split()
        base, peak = int(out[-2]) / 1024, int(out[-1]) / 1024
        rows.append(f"| {what} | {size / 2**20:.0f} | {peak:.0f} | {peak - base:.0f} |")
    print("| load | float32 arrays read (MiB) | peak RSS (MiB) | growth over imports (MiB) |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
