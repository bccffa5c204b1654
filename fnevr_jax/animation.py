"""Animation shared by `animate.py` and `eval.py`: model loading (every checkpoint kind),
first-order-model's keypoint normalisation, best-frame search and the sharded frame step.

    model = load_model("runs/fnevr")                 # training workdir, orbax dir, .pth.tar, .npz
    step = FrameStep(model, relative=True)
    frames = step(source, driving_batch, kp_initial=..., scale=...)
"""
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.spatial
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fnevr_jax import api, checkpoint_io
from fnevr_jax.models import build_models
from fnevr_jax.models.pose_editor import PoseEditor, euler_to_matrix
from fnevr_jax.ops import inv2x2

POSE_HELP = ("only training checkpoints (a train.py --workdir) have one; official, parity and "
             "converted checkpoints do not")


class Model:
    """An `api.Animator` and, for training checkpoints, the pose editor's parameters."""

    def __init__(self, animator, pose_params=None, description=""):
        self.animator = animator
        self.config = animator.config
        self.pose_params = pose_params
        self.description = description


def load_model(checkpoint, model=None, config=None):
    """A `Model` from a training workdir, an orbax variables dir, an official `.pth.tar` or a
    parity `.npz`. `model` ("fnevr"/"fomm") or `config.model` must agree with what the
    checkpoint holds. Directories carry their own config; for files `config` (default: the
    official one of `model`, "fnevr" if unset) gives the architecture."""
    path = pathlib.Path(checkpoint)
    if model is None and config is not None:
        model = config.model
    if checkpoint_io.is_training_workdir(path):
        try:
            saved, task, step = checkpoint_io.restore_training_state(path)
        except checkpoint_io.CheckpointError as e:
            raise api.AnimatorError(str(e)) from None
        saved = ml_collections.ConfigDict(saved)
        if model is not None and saved.get("model") != model:
            raise api.AnimatorError(f"{path}: holds a {saved.get('model')!r} model, not {model!r}")
        params, batch_stats = task["params"], task.get("batch_stats", {})
        modules = ("kp_detector", "generator")
        variables = {"params": {m: params[m] for m in modules if m in params},
                     "batch_stats": {m: batch_stats[m] for m in modules if m in batch_stats}}
        variables, saved, _ = api.load_variables(variables, saved.model, saved)
        return Model(api.Animator(variables, saved), params.get("pose_editor"),
                     f"{path} (training step {step})")
    if path.is_dir():
        try:
            variables, metadata = checkpoint_io.load_variables(path)
        except checkpoint_io.CheckpointError as e:
            raise api.AnimatorError(str(e)) from None
        held = metadata.get("model")
        if model is not None and held != model:
            raise api.AnimatorError(f"{path}: holds a {held!r} model, not {model!r}")
        if "config" in metadata:  # the architecture the variables were saved with
            config = ml_collections.ConfigDict(metadata["config"])
        variables, config, _ = api.load_variables(variables, held, config)
        return Model(api.Animator(variables, config), variables["params"].get("pose_editor"),
                     f"{path} ({held})")
    variables, config, _ = api.load_variables(path, model or "fnevr", config)
    return Model(api.Animator(variables, config), None, f"{path} ({config.model})")


# --------------------------------------------------------------------------- keypoints
def hull_area(points):
    """Area of the 2D convex hull of points (N, 2); 0 for degenerate sets."""
    try:
        return float(scipy.spatial.ConvexHull(np.asarray(points, np.float64)).volume)
    except scipy.spatial.QhullError:
        return 0.0


def adapt_scale(kp_source_value, kp_initial_value):
    """first-order-model's adapt-movement scale: sqrt of the ratio of the keypoint hull areas
    of the source and the initial driving frame (the first batch element of each)."""
    area_s = hull_area(np.asarray(kp_source_value)[0])
    area_d = hull_area(np.asarray(kp_initial_value)[0])
    return float(np.sqrt(area_s) / np.sqrt(area_d)) if area_d > 0 else 1.0


def normalize_kp(kp_source, kp_driving, kp_driving_initial, scale=1.0, relative=True,
                 relative_jacobian=True):
    """first-order-model's `normalize_kp` (jittable): driving keypoints moved relative to the
    initial driving frame and placed on the source, `value = (d - d0) * scale + s`, with
    Jacobians `J_d inv(J_d0) J_s`. Absolute mode returns `kp_driving` unchanged (no scale)."""
    if not relative:
        return kp_driving
    out = dict(kp_driving)
    out["value"] = (kp_driving["value"] - kp_driving_initial["value"]) * scale \
        + kp_source["value"]
    if relative_jacobian and "jacobian" in kp_driving:
        change = kp_driving["jacobian"] @ inv2x2(kp_driving_initial["jacobian"])
        out["jacobian"] = change @ kp_source["jacobian"]
    return out


# --------------------------------------------------------------------------- best frame
def normalized_landmarks(points):
    """Landmarks (N, 2) centred and divided by the sqrt of their hull area (FOMM demo)."""
    points = np.asarray(points, np.float64)[:, :2]
    points = points - points.mean(0)
    area = hull_area(points)
    return points / np.sqrt(area) if area > 0 else points


def best_frame(source_landmarks, driving_landmarks, found):
    """Index of the driving frame whose normalised landmarks are closest to the source's
    (sum of squared differences), among frames where a face was `found`; 0 if none."""
    src = normalized_landmarks(source_landmarks)
    costs = [np.sum((normalized_landmarks(d) - src) ** 2) if ok else np.inf
             for d, ok in zip(driving_landmarks, found)]
    return int(np.argmin(costs)) if np.isfinite(costs).any() else 0


def pose_rotation(angles):
    """Rotations (n, 3, 3) for pose edits (n, 3): yaw, pitch, roll in degrees."""
    angles = np.deg2rad(np.asarray(angles, np.float32).reshape(-1, 3))
    return np.asarray(euler_to_matrix(jnp.asarray(angles)))


# --------------------------------------------------------------------------- frame step
def data_mesh(devices=None):
    """A 1D `data` mesh over all devices (automatic sharding semantics)."""
    devices = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devices, ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def pad_batch(x, size):
    """x (n, ...) padded to `size` rows by repeating the last one."""
    x = np.asarray(x)
    if len(x) == size:
        return x
    return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])


class FrameStep:
    """Jitted, data-sharded `(source, driving frames) -> predictions` for one model.

    `relative`: first-order-model's relative motion (with `scale` and relative Jacobians);
    otherwise absolute driving keypoints. A `rotation` (1, 3, 3) edits every frame's keypoints
    with the pose editor. Batches are padded to a multiple of the device count.
    """

    def __init__(self, model, relative=True, relative_jacobian=True, mesh=None):
        self.model = model
        self.mesh = mesh or data_mesh()
        self.relative = relative
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        self.replicated = NamedSharding(self.mesh, P())
        modules = build_models(model.config)
        kp_detector, generator = modules["kp_detector"], modules["generator"]
        editor = PoseEditor(tuple(model.config.pose_editor.hidden)) \
            if "pose_editor" in model.config else PoseEditor()
        animator = model.animator
        put = lambda tree: jax.device_put(tree, self.replicated)  # noqa: E731
        self._variables = put({"kp": animator.kp_variables, "gen": animator.generator_variables,
                               "pose": {"params": model.pose_params or {}}})

        def keypoints(variables, images):
            return kp_detector.apply(variables["kp"], images)

        def generate(variables, source, kp_source, kp_initial, scale, rotation, frames):
            b = frames.shape[0]
            kp_driving = kp_detector.apply(variables["kp"], frames)
            kp = normalize_kp(kp_source, kp_driving, kp_initial, scale, relative,
                              relative_jacobian)
            if rotation is not None:
                kp = editor.apply(variables["pose"], rotation, kp)
            tile = lambda x: jnp.broadcast_to(x, (b,) + x.shape[1:])  # noqa: E731
            out = generator.apply(variables["gen"], tile(source), jax.tree.map(tile, kp_source),
                                  kp)
            return jnp.clip(out["prediction"], 0.0, 1.0)

        self._keypoints = jax.jit(keypoints)
        self._generate = jax.jit(generate, out_shardings=self.batch_sharding)

    @property
    def multiple(self):
        return self.mesh.size

    def keypoints(self, images):
        """Keypoints of a few images (replicated: the source, the initial driving frame)."""
        return self._keypoints(self._variables, jax.device_put(
            np.asarray(images, np.float32), self.replicated))

    def __call__(self, source, frames, kp_source, kp_initial=None, scale=1.0, rotation=None):
        """Predictions (n, H, W, 3) as numpy for frames (n, H, W, 3) in [0, 1]; source (1, ...).

        `rotation`: pose edits (1 or n, 3, 3), see `pose_rotation`.
        """
        if rotation is not None and self.model.pose_params is None:
            raise api.AnimatorError(f"pose editing needs a pose editor; {POSE_HELP}")
        n = len(frames)
        size = -(-n // self.multiple) * self.multiple
        shard = lambda x: jax.device_put(pad_batch(x, size), self.batch_sharding)  # noqa: E731
        batch = shard(np.asarray(frames, np.float32))
        if rotation is not None:
            rotation = shard(np.broadcast_to(np.asarray(rotation, np.float32), (n, 3, 3)))
        kp_initial = kp_source if kp_initial is None else kp_initial
        out = self._generate(self._variables, jax.device_put(np.asarray(source, np.float32),
                                                                self.replicated),
                                kp_source, kp_initial, jnp.float32(scale), rotation, batch)
        return np.asarray(out)[:n]
