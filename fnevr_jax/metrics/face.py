"""AKD-dlib, AED-dlib and CSIM-dlib: dlib's 68-point landmarks and face embeddings.

The models are the files of `face-recognition-models` 0.3.0 (run with `dlib-bin`), found with
importlib.util.find_spec: the package itself imports `pkg_resources` and is never imported.
Images are uint8 RGB resized to 256x256, so landmark errors are in pixels of a 256x256 frame,
as pose-evaluation measures them (`--image_shape 256,256`). The face rectangle given to the
landmark predictor is a known box when the caller has one (the dataset's `face_box` of the
ground-truth frame, the same box for the generated frame: no detector jitter in AKD), else
the largest face of dlib's HOG detector. Images without a face give NaN rows; the aggregates
skip them and count them.

- AKD-dlib: mean absolute per-coordinate landmark difference (pose-evaluation `cmp_kp.py`);
- AED-dlib: squared L2 distance of the L2-normalised 128-d embeddings (`cmp.py`, whose
  OpenFace embeddings are L2-normalised too);
- CSIM-dlib: cosine similarity of the embeddings.
"""
import functools
import importlib.util
import pathlib

import cv2
import numpy as np

from fnevr_jax.pretrained.files import MissingWeightsError

SIZE = 256
NUM_LANDMARKS = 68
EMBEDDING_DIM = 128
_PACKAGE = "face_recognition_models"
_FILES = {"landmarks": "shape_predictor_68_face_landmarks.dat",
          "embedding": "dlib_face_recognition_resnet_model_v1.dat"}


def model_path(kind):
    """Path of a dlib model file of face-recognition-models (`landmarks` or `embedding`)."""
    spec = importlib.util.find_spec(_PACKAGE)
    install = "pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1"
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"the dlib face metrics need {_PACKAGE}: {install}")
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "models" / _FILES[kind]
    if not path.is_file():
        raise MissingWeightsError(f"{path} is missing; reinstall: {install} --force-reinstall")
    return path


class DlibFaces:
    """Landmarks (N, 68, 2) and unit embeddings (N, 128) of images; NaN where no face."""

    def __init__(self, upsample=1):
        try:
            import dlib
        except ImportError:
            raise MissingWeightsError("the dlib face metrics need dlib: "
                                      "pip install dlib-bin==20.0.1.post1") from None
        self.upsample = upsample
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_path("landmarks")))
        self._encoder = dlib.face_recognition_model_v1(str(model_path("embedding")))

    def _prepare(self, image):
        image = np.asarray(image)
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        if image.shape[:2] != (SIZE, SIZE):
            interp = cv2.INTER_AREA if image.shape[0] > SIZE else cv2.INTER_LINEAR
            image = cv2.resize(image, (SIZE, SIZE), interpolation=interp)
        return np.ascontiguousarray(image[..., :3])

    def _shape(self, image, box=None):
        if box is not None and np.all(np.isfinite(box)):
            x0, y0, x1, y1 = np.round((np.asarray(box) + 1) * (SIZE - 1) / 2).astype(int)
            rect = self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        else:
            rects = self._detector(image, self.upsample)
            if not rects:
                return None
            rect = max(rects, key=lambda r: r.area())
        return self._predictor(image, rect)

    def landmarks(self, images, boxes=None):
        """(N, 68, 2) float32 landmark pixels of a 256x256 frame; NaN rows where no face."""
        return self(images, boxes, embeddings=False)[0]

    def __call__(self, images, boxes=None, embeddings=True):
        """(landmarks (N, 68, 2), embeddings (N, 128) or None) of images (uint8 or [0, 1]).

        ``boxes`` (N, 4): face boxes ``x0, y0, x1, y1`` in normalised coordinates (-1 and 1
        are the centres of the edge pixels, as the shards store them); None detects faces.
        """
        n = len(images)
        points = np.full((n, NUM_LANDMARKS, 2), np.nan, np.float32)
        codes = np.full((n, EMBEDDING_DIM), np.nan, np.float32) if embeddings else None
        for i, image in enumerate(images):
            image = self._prepare(image)
            shape = self._shape(image, None if boxes is None else boxes[i])
            if shape is None:
                continue
            points[i] = [(p.x, p.y) for p in shape.parts()]
            if embeddings:
                code = np.asarray(self._encoder.compute_face_descriptor(image, shape))
                codes[i] = code / np.linalg.norm(code)
        return points, codes


@functools.cache
def dlib_faces():
    """A shared `DlibFaces` (the models load once)."""
    return DlibFaces()


def akd(landmarks_a, landmarks_b):
    """Per-image mean absolute landmark coordinate difference (N,); NaN where a face is missing."""
    return np.mean(np.abs(np.asarray(landmarks_a) - np.asarray(landmarks_b)), axis=(1, 2))


def aed(embeddings_a, embeddings_b):
    """Per-image squared L2 distance of unit embeddings (N,); NaN where a face is missing."""
    return np.sum((np.asarray(embeddings_a) - np.asarray(embeddings_b)) ** 2, axis=1)


def csim(embeddings_a, embeddings_b):
    """Per-image cosine similarity of unit embeddings (N,); NaN where a face is missing."""
    return np.sum(np.asarray(embeddings_a) * np.asarray(embeddings_b), axis=1)


def aggregate(values):
    """(mean over the finite values or None, number skipped) of per-image values."""
    values = np.asarray(values, np.float64)
    good = np.isfinite(values)
    return (float(values[good].mean()) if good.any() else None), int((~good).sum())
