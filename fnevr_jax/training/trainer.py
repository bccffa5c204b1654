"""The model-agnostic training loop: mesh, sharded jitted steps, orbax checkpoints, summaries.

A task (`tasks.Task`, named by `config.task`) supplies the data, the initial state, the pure
step `(state, batch, rng, frozen) -> (state, metrics)` (`frozen`: the task's fixed pretrained
weights, passed as an argument rather than baked into the program), summary images, an
evaluation and its inference export, saved beside each checkpoint; this module runs
it on a `Mesh` over every device of every process: the batch is sharded over the `data` axis,
the state is replicated, and the step is one `jax.jit` with explicit shardings that donates
the old state. Everything the run needs to continue (state, step, data-iterator position)
is checkpointed with an orbax `CheckpointManager`, so rerunning with the same workdir resumes
exactly where it stopped, also after a preemption.
"""
import json
import logging
import pathlib

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from clu import metric_writers, periodic_actions
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import tqdm

from fnevr_jax import checkpoint_io, sharding
from fnevr_jax.data import loaders
from fnevr_jax.training import tasks

FAST_COMPILE = {"xla_backend_optimization_level": 0}  # for programs that run once


class TrainingError(RuntimeError):
    """The run cannot go on: a non-finite loss, or a checkpoint that does not fit the config."""


def _wrap_step(task, metric_names):
    """The jitted step: the task's step with the run's key folded with the step counter, plus
    the counter and a record of the first non-finite metric (step and term), all on the
    device, so nothing goes through the host per step."""
    def step(state, batch, rng, frozen):
        task_state, metrics = task.train_step(state["task"], batch,
                                              jax.random.fold_in(rng, state["step"]), frozen)
        values = jnp.stack([jnp.asarray(metrics[k], jnp.float32) for k in metric_names])
        bad = ~jnp.isfinite(values)
        first = (state["bad_step"] < 0) & jnp.any(bad)
        return {"task": task_state, "step": state["step"] + 1,
                "bad_step": jnp.where(first, state["step"], state["bad_step"]),
                "bad_term": jnp.where(first, jnp.argmax(bad), state["bad_term"])}, metrics
    return step


def _config_json(config):
    return json.loads(config.to_json_best_effort())


def _structure_changes(old, new, prefix=""):
    """Dotted names of config fields that differ (data paths, logging and lengths excluded)."""
    skip = {"data", "log", "train.num_steps", "train.num_epochs", "train.seed"}
    out = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if name in skip:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _structure_changes(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def train_and_evaluate(config, workdir, task=None):
    """Trains `config`'s task in `workdir`, resuming a run found there.

    `task` defaults to the one `config` names. Returns (final step, parameter checksum): the
    sum of all parameters on this process, equal on every process of a multi-host run.
    """
    workdir = pathlib.Path(workdir).absolute()   # orbax needs absolute paths
    workdir.mkdir(parents=True, exist_ok=True)
    is_main = jax.process_index() == 0
    task = task or tasks.get_task(config)

    # ----------------------------------------------------------------------- mesh, data, state
    mesh = sharding.make_mesh()
    if config.train.batch_size % mesh.size:
        raise TrainingError(f"batch size {config.train.batch_size} is not divisible by the "
                            f"{mesh.size} devices; set --config.train.batch_size")
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    rng = jax.random.key(config.train.seed)
    init_rng, step_rng = jax.random.split(rng)

    def init(rng):
        return {"task": task.init_state(rng), "step": jnp.zeros((), jnp.int32),
                "bad_step": -jnp.ones((), jnp.int32), "bad_term": -jnp.ones((), jnp.int32)}

    # Initialisation runs once: compiled without LLVM's optimisations, which on CPU take 5x
    # longer than the code they save (hundreds of threefry draws: 37 s -> 7 s for `quick`).
    state = jax.jit(init, out_shardings=replicated,
                    compiler_options=FAST_COMPILE)(init_rng)
    data_iter = iter(loaders.global_batches(task.train_data(config.train.seed), mesh))

    # ----------------------------------------------------------------------- checkpoints
    # config.json: the config, and the loss terms in effect with their weights
    loss_terms = {k: list(v) if isinstance(v, tuple) else v for k, v in task.loss_terms().items()}
    run_json = {**_config_json(config), "loss_terms": loss_terms}
    if is_main:
        logging.info("loss terms in effect: %s",
                     ", ".join(f"{k} x {v}" for k, v in loss_terms.items()))
    config_path = workdir / "config.json"
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.log.keep_checkpoints, create=True,
        save_interval_steps=1, enable_async_checkpointing=True)
    manager = ocp.CheckpointManager(checkpoint_io.checkpoints_dir(workdir), options=options)
    start = 0
    if manager.latest_step() is not None:
        start = manager.latest_step()
        old = json.loads(config_path.read_text()) if config_path.exists() else {}
        changes = _structure_changes(old, run_json)
        if changes:
            raise TrainingError(f"the checkpoint in {workdir} was made with another config "
                                f"({'; '.join(changes[:3])}); use a new --workdir")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        try:
            restored = manager.restore(start, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                data=grain.checkpoint.CheckpointRestore(data_iter)))
        except (ValueError, KeyError, TypeError) as e:
            raise TrainingError(f"the checkpoint in {workdir} does not fit the config "
                                f"({str(e).splitlines()[0][:200]}); use a new --workdir") from None
        state = restored["state"]
        logging.info("resumed from %s at step %d", workdir, start)
    elif is_main:
        config_path.write_text(json.dumps(run_json, indent=2, ensure_ascii=False))

    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main,
                                                  asynchronous=True)
    if start == 0:
        writer.write_hparams({k: v for k, v in _flat(_config_json(config)).items()
                              if isinstance(v, (int, float, str, bool))})
        writer.write_texts(0, {"loss_terms": "| term | weight |\n|---|---|\n" + "\n".join(
            f"| {k} | {v} |" for k, v in loss_terms.items())})

    # ----------------------------------------------------------------------- update step
    batch = next(data_iter)
    frozen = jax.device_put(task.frozen, replicated)
    # On the mesh as the step wants it (a jit: device_put cannot target other hosts' devices).
    step_rng = jax.jit(lambda key: key, out_shardings=replicated)(step_rng)
    step_shapes = jax.eval_shape(task.train_step, state["task"], batch, step_rng, frozen)
    metric_names = sorted(step_shapes[1])
    train_step = jax.jit(_wrap_step(task, metric_names),
                         in_shardings=(replicated, batch_sharding, replicated, replicated),
                         out_shardings=(replicated, replicated), donate_argnums=(0,))

    def check_health(state):
        bad_step, bad_term = (int(x) for x in sharding.fetch((state["bad_step"],
                                                               state["bad_term"])))
        if bad_step >= 0:
            raise TrainingError(f"non-finite {metric_names[bad_term]} at step {bad_step + 1}; "
                                f"stopped, the last good checkpoint in {workdir} is kept")

    def save(step, state):
        check_health(state)
        variables, metadata = task.export(state["task"], step)
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter),
            **checkpoint_io.export_args(variables, {**metadata, "step": step,
                                                    "config": _config_json(metadata["config"])})),
            force=True)

    # ----------------------------------------------------------------------- loop
    num_steps = task.num_steps
    log = config.log
    report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer,
                                             every_steps=log.every_steps)
    bar = tqdm(total=num_steps, initial=start, disable=not is_main, unit="step",
               dynamic_ncols=True)
    step = start
    try:
        with metric_writers.ensure_flushes(writer):
            while step < num_steps:
                if step > start:
                    batch = next(data_iter)
                # The step, summaries and evaluation take their inputs on the devices; the host
                # receives scalars at logging steps and images at image steps (explicit fetches).
                with jax.transfer_guard("disallow"):
                    state, metrics = train_step(state, batch, step_rng, frozen)
                step += 1
                bar.update(1)
                report(step)
                if step % log.every_steps == 0 or step == num_steps:
                    check_health(state)
                    scalars = {k: float(v) for k, v in sharding.fetch(metrics).items()}
                    scalars.update(task.learning_rates(step))     # host-side schedules
                    writer.write_scalars(step, scalars)
                    bar.set_postfix(loss=f"{scalars['loss/total']:.3f}")
                with jax.transfer_guard("disallow"):
                    if step % log.image_every_steps == 0 or step == num_steps:
                        writer.write_images(step, task.summary_images(state["task"], batch))
                    if step % log.eval_every_steps == 0 or step == num_steps:
                        writer.write_scalars(step, evaluate(task, state))
                preempted = manager.reached_preemption(step)
                if step % log.checkpoint_every_steps == 0 or step == num_steps or preempted:
                    save(step, state)
                if preempted:
                    logging.warning("preempted at step %d; checkpoint saved", step)
                    break
    finally:  # pending asynchronous saves complete even when the run stops with an error
        data_iter.close()                      # stops the prefetch thread
        bar.close()
        manager.wait_until_finished()
        manager.close()
    params = sharding.fetch(state["task"]["params"])
    return step, float(sum(np.sum(x, dtype=np.float64) for x in jax.tree.leaves(params)))


def evaluate(task, state):
    """The task's held-out evaluation, {"eval/NAME": value}: means computed on the devices
    (every process evaluates the same items together), fetched as scalars."""
    return {f"eval/{k}": float(v) for k, v in sharding.fetch(task.evaluate(state["task"])).items()}


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


