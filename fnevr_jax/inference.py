"""The FNeVR/FOMM inference core: keypoints, generation and animation, jitted once.

Every function is a jitted function of (variables, inputs): the variables are arguments, never
constants of the program. Inputs are cut into fixed batches of `batch_size` frames (the last
one padded by repeating its last frame) and sharded over the `data` axis of a mesh, so a whole
run, whatever its video and clip lengths, compiles each function once per option set.
`api.Animator` (and through it `animate.py`, `eval.py` and the notebooks) and the training
task's evaluation and summaries all run through it.

Animation follows first-order-model's `demo.py` (`make_animation`, `normalize_kp`): relative
motion from the first driving frame, the adapt-movement scale from the keypoint hull areas,
or absolute keypoints, and its best-frame search (`best_frame`); the pose editor (FNeVR eq. 11)
can turn the head on top.
"""
import jax
import jax.numpy as jnp
import numpy as np
import scipy.spatial
from jax.sharding import NamedSharding, PartitionSpec as P

from fnevr_jax import sharding
from fnevr_jax.models import build_models
from fnevr_jax.models.pose_editor import PoseEditor
from fnevr_jax.ops import inv2x2
from fnevr_jax.ops.rotations import pose_to_matrix

OUTPUTS = ("prediction", "occlusion_map", "mask", "deformed", "render")


def hull_area(points):
    """Area of the convex hull of 2D points (N, 2); 0 for degenerate sets."""
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
    """Rotations (n, 3, 3) float32 for pose edits (n, 3): yaw, pitch, roll in degrees."""
    angles = np.deg2rad(np.asarray(angles, np.float64).reshape(-1, 3))
    return pose_to_matrix(angles).astype(np.float32)


def inference_variables(variables):
    """{"kp_detector", "generator": {"params", "batch_stats"}, "pose_editor": params or {}}
    from Flax variables {"params": {module: ...}, "batch_stats": {module: ...}}."""
    stats = variables.get("batch_stats", {})
    out = {m: {"params": variables["params"][m], "batch_stats": stats.get(m, {})}
           for m in ("kp_detector", "generator")}
    out["pose_editor"] = variables["params"].get("pose_editor") or {}
    return out


class Core:
    """The jitted FNeVR/FOMM functions of one config on a mesh, in batches of `batch_size`
    (rounded up to a multiple of the mesh size). Relative and absolute motion share one
    program; a pose edit (`rotation`) compiles its own."""

    def __init__(self, config, batch_size=8, mesh=None):
        self.config = config
        self.mesh = mesh or sharding.make_mesh()
        self.batch_size = -(-max(int(batch_size), 1) // self.mesh.size) * self.mesh.size
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        self.replicated = NamedSharding(self.mesh, P())
        modules = build_models(config)
        kp_detector, generator = modules["kp_detector"], modules["generator"]
        editor = PoseEditor(tuple(config.pose_editor.hidden)) \
            if "pose_editor" in config else PoseEditor()

        def keypoints(variables, images):
            return kp_detector.apply(variables["kp_detector"], images)

        def generate(variables, source, kp_source, kp_driving):
            out = generator.apply(variables["generator"], source, kp_source, kp_driving)
            return {k: out[k] for k in OUTPUTS if k in out}

        def animate(variables, source, kp_source, kp_initial, scale, relative, frames,
                    rotation):
            kp_driving = keypoints(variables, frames)
            moved = normalize_kp(kp_source, kp_driving, kp_initial, scale)
            # relative or absolute: an argument, so one program serves both
            kp = jax.tree.map(lambda a, b: jnp.where(relative, a, b), moved, kp_driving)
            if rotation is not None:
                kp = editor.apply({"params": variables["pose_editor"]}, rotation, kp)
            tile = lambda x: jnp.broadcast_to(x, (frames.shape[0],) + x.shape[1:])  # noqa: E731
            out = generator.apply(variables["generator"], tile(source),
                                  jax.tree.map(tile, kp_source), kp)
            return jnp.clip(out["prediction"], 0.0, 1.0)

        # The unjitted functions of (variables, inputs), for exports (`fnevr_jax.export`).
        self.functions = {"keypoints": keypoints, "generate": generate, "animate": animate}
        out = self.batch_sharding
        self._keypoints = jax.jit(keypoints, out_shardings=out)
        self._generate = jax.jit(generate, out_shardings=out)
        self._animate = jax.jit(animate, out_shardings=out)

    def put(self, tree):
        """`tree` replicated on the mesh (variables, the source and its keypoints)."""
        return jax.device_put(tree, self.replicated)

    def compiled(self):
        """{function: number of compiled programs} (one each in a run, per option set)."""
        return {name: getattr(self, f"_{name}")._cache_size()
                for name in ("keypoints", "generate", "animate")}

    def map_batches(self, fn, batched, n):
        """`fn(*chunks)` over fixed padded, sharded chunks of the [n, ...] arrays `batched`;
        the outputs concatenated on the device and cut to n."""
        size, outs = self.batch_size, []
        for start in range(0, n, size):
            chunks = [jax.device_put(sharding.pad_batch(a[start:start + size], size),
                                     self.batch_sharding) for a in batched]
            outs.append(fn(*chunks))
        return jax.tree.map(lambda *x: jnp.concatenate(x)[:n], *outs)

    def keypoints(self, variables, images):
        """{"value": [B,K,2], "jacobian": [B,K,2,2]} of float32 images [B,H,W,3] in [0, 1]."""
        return self.map_batches(lambda x: self._keypoints(variables, x), [images], len(images))

    def generate(self, variables, source, kp_source, kp_driving):
        """The generator's NHWC outputs for [B, ...] sources and keypoint pairs."""
        leaves, tree = jax.tree.flatten((kp_source, kp_driving))
        return self.map_batches(
            lambda s, *kp: self._generate(variables, s, *jax.tree.unflatten(tree, kp)),
            [source, *leaves], len(source))

    def animate(self, variables, source, frames, kp_source, kp_initial=None, scale=1.0,
                rotation=None, relative=True):
        """Predictions [n, H, W, 3] (on the device) of `source` [1, H, W, 3] driven by
        `frames` [n, H, W, 3]: relative to `kp_initial` (default the source's own keypoints)
        with movement `scale`, or absolute; `rotation` (1 or n, 3, 3): pose edits."""
        n = len(frames)
        kp_initial = kp_source if kp_initial is None else kp_initial
        fixed = self.put((source, kp_source, kp_initial, jnp.float32(scale),
                          jnp.bool_(relative)))
        batched = [frames]
        if rotation is not None:
            batched.append(jnp.broadcast_to(jnp.asarray(rotation, jnp.float32), (n, 3, 3)))
        return self.map_batches(
            lambda x, *r: self._animate(variables, *fixed, x, r[0] if r else None), batched, n)
