"""The trainer: exact data parallelism, exact resume, multi-host, clear errors, NaN handling."""
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from fnevr_jax import sharding
from fnevr_jax.data import loaders
from fnevr_jax.training import trainer
from fnevr_jax.training.fnevr_task import FNeVRTask
from tests import one_process_train, tiny, xla_env

ROOT = pathlib.Path(__file__).parent.parent


def _start(workdir, *args, env=None, program=("train.py",)):
    return subprocess.Popen([sys.executable, *program, f"--workdir={workdir}", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or os.environ)


def _finish(*procs, timeout=600):
    """Waits for train.py runs started by `_start`: their CompletedProcess results.

    Runs that do not depend on each other are started together: each spends most of its time
    in single-threaded XLA compilation or in imports, so two of them share 2 cores well.
    """
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err)
            for p, (out, err) in zip(procs, outs)]


def _train(workdir, *args, env=None, timeout=600):
    return _finish(_start(workdir, *args, env=env), timeout=timeout)[0]


def _restore_task_state(workdir, step):
    """The checkpointed task state, on one local device if saved on another topology."""
    restored = ocp.Checkpointer(ocp.StandardCheckpointHandler()).restore(
        pathlib.Path(workdir) / "checkpoints" / str(step) / "state",
        args=ocp.args.StandardRestore(
            fallback_sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])))
    return restored["task"]


def _restore_params(workdir, step):
    return _restore_task_state(workdir, step)["params"]


def _assert_trees_close(a, b, atol):
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol,
                                   err_msg=jax.tree_util.keystr(path))


def test_one_step_on_8_devices_equals_1_device(tiny_data):
    """The sharded step computes the same function as the single-device one.

    In float32 only the summation order of the cross-device reductions differs, but Adam's
    first update lr·g/(|g| + ε) turns gradients that are mathematically zero (conv biases
    in front of a normalisation) and so pure rounding noise (~1e-9) into ±lr; the step is
    therefore compared with float64 compute, where that noise is ~1e-16. The Jacobian head
    starts off zero: at initialisation source and driving Jacobians tie exactly, and an L1
    subgradient at an exact tie is arbitrary.
    """
    with jax.enable_x64(True):
        task = FNeVRTask(tiny.config(tiny_data, dtype="float64"))
        state = jax.jit(task.init_state)(jax.random.key(0))
        head = state["params"]["kp_detector"]["jacobian"]
        head["kernel"] = 1e-3 * jax.random.normal(jax.random.key(2), head["kernel"].shape)
        batch = {k: v.astype(np.float64) if v.dtype == np.float32 else v
                 for k, v in loaders.frames_to_float(next(iter(task.train_data(0)))).items()}
        rng = jax.random.key(1)
        results = []
        for n in (1, 8):
            mesh = sharding.make_mesh(jax.devices()[:n])
            rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
            step = jax.jit(task.train_step, in_shardings=(rep, data, rep, rep),
                           out_shardings=(rep, rep))
            new_state, metrics = step(jax.device_put(state, rep), jax.device_put(batch, data),
                                      rng, jax.device_put(task.frozen, rep))
            assert len(jax.tree.leaves(new_state)[0].sharding.device_set) == n
            results.append((jax.device_get(new_state), jax.device_get(metrics)))
    (s1, m1), (s8, m8) = results
    assert set(m1) >= {"loss/perceptual", "loss/render_perceptual", "loss/generator_gan",
                       "loss/feature_matching", "loss/equivariance_value",
                       "loss/equivariance_jacobian", "loss/sigma", "loss/pose_edit",
                       "loss/discriminator_gan"}
    for k in m1:
        np.testing.assert_allclose(m8[k], m1[k], rtol=1e-5, err_msg=k)
    _assert_trees_close(s8["params"], s1["params"], atol=1e-5)
    _assert_trees_close(s8["batch_stats"], s1["batch_stats"], atol=1e-5)
    # Something was learned: every parameter group moved.
    for group in ("generator", "kp_detector", "discriminator", "pose_editor", "mesh_weights"):
        moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), s1["params"][group],
                             jax.device_get(state["params"][group]))
        assert max(jax.tree.leaves(moved)) > 0, group


def test_resume_is_exact(tiny_data, tmp_path):
    flags = tiny.flags(tiny_data, **{"log.checkpoint_every_steps": 3})
    straight, split = tmp_path / "straight", tmp_path / "split"
    r_straight, r = _finish(_start(straight, *flags, "--config.train.num_steps=6"),
                            _start(split, *flags, "--config.train.num_steps=3"))
    assert r_straight.returncode == 0, r_straight.stderr[-2000:]
    assert r.returncode == 0, r.stderr[-2000:]
    assert "finished at step 3" in r.stdout
    r = _train(split, *flags, "--config.train.num_steps=6")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "finished at step 6" in r.stdout
    _assert_trees_close(_restore_params(split, 6), _restore_params(straight, 6), atol=1e-6)
    # Same batches: both data iterators stand at the same position after 6 steps.
    states = [json.loads(next((w / "checkpoints" / "6" / "data").glob("*")).read_text())
              for w in (straight, split)]
    assert states[0] == states[1]


def test_one_process_order_is_the_two_process_global_batch(tiny_data):
    kw = dict(batch_size=4, num_repeats=2, seed=3)
    halves = [next(iter(loaders.train_pairs(tiny_data, process_index=p, process_count=2, **kw)))
              for p in range(2)]
    whole = next(iter(loaders.train_pairs(tiny_data, process_index=0, process_count=1, **kw)))
    order = one_process_train.process_order(4, 2)
    assert list(order) == [0, 2, 1, 3]
    for k in ("sample", "source", "driving"):
        np.testing.assert_array_equal(whole[k][order], np.concatenate([h[k] for h in halves]))


def test_two_processes_train_like_one_process(tiny_data, tmp_path):
    """Two processes (2 devices each) train what one process on 4 devices does.

    The one-process run gets each global batch in the two-process order
    (`tests.one_process_train`) and the same device split: only the order of cross-device
    sums differs. Float64 compute, as in `test_one_step_on_8_devices_equals_1_device`: in
    float32, Adam's first update lr·g/(|g| + ε) turns that rounding into ±lr where g is zero
    or tiny. The pose editor's Jacobian L1 term is off: at initialisation J_S and J_D are
    both (Σ heatmap)·I, so the sign of its subgradient is a rounding coin flip.
    Measured gap 5e-9 (lr·noise/ε on conv biases before a normalisation); a different
    batch, warp or seed moves parameters by up to lr = 1e-3 (2e-4: pose editor), so 1e-6.
    """
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    flags = tiny.flags(tiny_data, **{"train.num_steps": 2, "train.batch_size": 4,
                                     "dtype": "float64", "pose_loss.lambda2": 0.0})
    two = [_start(tmp_path / "two", *flags, f"--coordinator-address=localhost:{port}",
                  "--num-processes=2", f"--process-id={i}",
                  env=xla_env.env(2, JAX_ENABLE_X64="1")) for i in range(2)]
    one = _start(tmp_path / "one", *flags, env=xla_env.env(4, JAX_ENABLE_X64="1"),
                 program=("-m", "tests.one_process_train", "2"))
    results = _finish(*two, one, timeout=1200)
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    lines = [next(l for l in r.stdout.splitlines() if "parameter checksum" in l)
             for r in results]
    assert lines[0].startswith("process 0: finished at step 2")
    assert lines[1].startswith("process 1: finished at step 2")
    assert lines[2].startswith("one process in 2-process order: finished at step 2")
    assert lines[0].split("checksum")[1] == lines[1].split("checksum")[1]
    two_state = _restore_task_state(tmp_path / "two", 2)
    one_state = _restore_task_state(tmp_path / "one", 2)
    _assert_trees_close(two_state["params"], one_state["params"], atol=1e-6)
    _assert_trees_close(two_state["batch_stats"], one_state["batch_stats"], atol=1e-6)


def _one_line_error(result):
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert result.returncode != 0 and len(errors) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return errors[0]


def test_missing_data_config_typo_and_incompatible_checkpoint(tiny_data, tmp_path):
    """One-line errors before the first step: no dataset, a config typo, a paper term whose
    data field the shards lack (L_σ with weight 1 without `landmarks`: the message names the
    term, the field, the preprocessing flag and the override), a checkpoint of another config.
    With the override the run trains, and its loss terms in effect are logged, kept in
    config.json and in TensorBoard's text summary."""
    no_landmarks = tmp_path / "no_landmarks"
    shutil.copytree(tiny_data, no_landmarks)
    info = json.loads((no_landmarks / "dataset_info.json").read_text())
    info["fields"] = [f for f in info["fields"] if f != "landmarks"]
    (no_landmarks / "dataset_info.json").write_text(json.dumps(info))
    run, no_sigma = tmp_path / "c", {"loss_weights.sigma": 0.0}
    missing, typo, stopped, trained = _finish(
        _start(tmp_path / "a", *tiny.flags(tmp_path / "nowhere")),
        _start(tmp_path / "b", *tiny.flags(tiny_data), "--config.train.batchsize=4"),
        _start(tmp_path / "d", *tiny.flags(no_landmarks)),
        _start(run, *tiny.flags(no_landmarks, **{"train.num_steps": 1, **no_sigma})))
    error = _one_line_error(missing)
    assert "no dataset at" in error and "python -m data_pipelines.synthetic" in error
    error = _one_line_error(typo)
    assert 'Did you mean "batch_size"' in error
    error = _one_line_error(stopped)
    assert "L_σ (FNeVR eq. 4) (loss_weights.sigma=1) needs the `landmarks` field" in error, error
    assert "data_pipelines.preprocess --landmarks" in error
    assert error.endswith("--config.loss_weights.sigma=0"), error
    assert not (tmp_path / "d" / "checkpoints").exists()

    assert trained.returncode == 0, trained.stderr[-3000:]
    terms = json.loads((run / "config.json").read_text())["loss_terms"]
    assert set(terms) == {"perceptual (L_P)", "render_perceptual (L_R, FNeVR eq. 10)",
                          "generator_gan (L_G)", "feature_matching", "discriminator_gan",
                          "equivariance_value (L_E)", "equivariance_jacobian (L_E)",
                          "pose_edit (L_editor, FNeVR eq. 12)", "pixel_l1 (not in the paper)"}
    assert terms["pose_edit (L_editor, FNeVR eq. 12)"] == 1.0
    assert terms["perceptual (L_P)"] == [10.0, 10.0, 0.0, 0.0, 0.0]
    assert "loss terms in effect: perceptual (L_P) x [10.0, 10.0, 0.0, 0.0, 0.0]" in trained.stderr
    events = b"".join(p.read_bytes() for p in run.glob("events.out.tfevents*"))
    assert b"pose_edit (L_editor, FNeVR eq. 12) | 1.0" in events

    error = _one_line_error(_train(run, *tiny.flags(no_landmarks, **{
        "train.num_steps": 2, "generator.block_expansion": 16, **no_sigma})))
    assert "generator.block_expansion: 8 -> 16" in error and "use a new --workdir" in error


class _LinearTask:
    """A model-agnostic check of the loop: least squares whose loss turns NaN at step 4."""

    frozen = {}

    def __init__(self, config):
        self.config = config
        self.num_steps = config.train.num_steps
        self.tx = optax.sgd(0.1)

    def train_data(self, seed):
        def make(i):
            x = np.random.default_rng(i).standard_normal((3,)).astype(np.float32)
            return {"x": x, "y": np.float32(x.sum())}
        return grain.MapDataset.range(10**6).map(make).to_iter_dataset().batch(8)

    def init_state(self, rng):
        params = {"w": jnp.zeros(3)}
        return {"params": params, "opt": self.tx.init(params), "t": jnp.zeros((), jnp.int32)}

    def train_step(self, state, batch, rng, frozen):
        def loss(params):
            fit = jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)
            return fit + jnp.where(state["t"] == 3, jnp.nan, 0.0), fit
        (total, fit), grads = jax.value_and_grad(loss, has_aux=True)(state["params"])
        updates, opt = self.tx.update(grads, state["opt"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt": opt, "t": state["t"] + 1}, {"loss/total": total,
                                                                      "loss/fit": fit}

    def learning_rates(self, step):
        return {"lr": 0.1}

    def summary_images(self, state, batch):
        return {}

    def evaluate(self, state):
        return {"fit": jnp.zeros(())}

    def export(self, state, step):
        return {"params": state["params"]}, {"model": "linear", "config": self.config}

    def loss_terms(self):
        return {"fit": 1.0}


def test_non_finite_loss_stops_naming_step_and_term_and_keeps_last_good_checkpoint(
        tiny_data, tmp_path):
    config = tiny.config(tiny_data, **{"train.num_steps": 6, "log.every_steps": 2,
                                       "log.checkpoint_every_steps": 2})
    with pytest.raises(trainer.TrainingError,
                       match="non-finite loss/total at step 4; stopped, the last good checkpoint"):
        trainer.train_and_evaluate(config, tmp_path, task=_LinearTask(config))
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                  if p.name.isdigit()) == [2]


def test_evaluation_and_summaries_run_on_the_devices(tiny_data):
    """Evaluation and sample grids are jitted programs of the on-device state: under
    `transfer_guard("disallow")` (only explicit fetches) they run, on 8 devices, and give the
    reference values of the inference core run clip by clip from host copies. (The loop runs
    its steps, summaries and evaluations under the same guard: every train.py run of the
    suite evaluates and writes images at its last step.)"""
    config = tiny.config(tiny_data)
    task = FNeVRTask(config)
    mesh = sharding.make_mesh()
    rep = NamedSharding(mesh, P())
    state = jax.jit(task.init_state, out_shardings=rep)(jax.random.key(0))
    data = iter(loaders.global_batches(task.train_data(0), mesh))
    batch = next(data)
    with jax.transfer_guard("disallow"):
        means = sharding.fetch(task.evaluate(state))
        grid = task.summary_images(state, batch)["samples"]
        again = sharding.fetch(task.evaluate(state))
    data.close()
    assert means == again and task._eval[0]._cache_size() == 1

    from fnevr_jax import inference
    core = inference.Core(config, mesh=sharding.make_mesh(jax.devices()[:1]))
    variables = core.put(inference.inference_variables(
        jax.device_get(task._inference_variables(state))))
    clips = loaders.eval_clips(tiny_data, max_frames=config.data.eval_frames,
                               size=config.image_size)
    l1, copy = [], []
    for i in range(min(len(clips), config.data.eval_clips)):
        video = clips[i]["video"]
        prediction = np.asarray(core.animate(variables, video[:1], video,
                                             core.keypoints(variables, video[:1]),
                                             relative=False))
        l1.append(np.abs(prediction - video).mean())
        copy.append(np.abs(video[:1] - video).mean())
    assert len(l1) == 2 and np.mean(copy) > 1e-3
    np.testing.assert_allclose(means["l1"], np.mean(l1), rtol=1e-5)
    np.testing.assert_allclose(means["l1_copy_source"], np.mean(copy), rtol=1e-5)
    # source | driving | prediction | render | occlusion, for 4 samples of 32x32
    assert grid.shape == (1, 4 * 32, 5 * 32, 3) and grid.dtype == np.uint8
    host = loaders.frames_to_float(sharding.fetch(batch))
    np.testing.assert_allclose(grid[0, 32:64, 64:96] / 255, np.clip(np.asarray(core.generate(
        variables, host["source"][1:2], core.keypoints(variables, host["source"][1:2]),
        core.keypoints(variables, host["driving"][1:2]))["prediction"][0]), 0, 1), atol=1 / 255)
