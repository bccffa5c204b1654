"""Every loss term against a value computed independently (closed forms, hand-made cases)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from fnevr_jax import losses
from fnevr_jax.models.pose_editor import PoseEditor, relative_rotation
from fnevr_jax.ops import coordinate_grid, rotations


def test_image_pyramid_and_perceptual_closed_form():
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.uniform(size=(2, 16, 16, 3)), jnp.float32)
    b = jnp.asarray(rng.uniform(size=(2, 16, 16, 3)), jnp.float32)
    pa, pb = losses.image_pyramid(a, (1, 0.5)), losses.image_pyramid(b, (1, 0.5))
    assert pa[0.5].shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(pa[1], a)
    # Features: the image itself and its square; weights 2 and 3.
    feats = lambda p: {s: (x, x**2) for s, x in p.items()}
    expected = sum(2 * np.abs(np.asarray(pa[s]) - np.asarray(pb[s])).mean()
                   + 3 * np.abs(np.asarray(pa[s]) ** 2 - np.asarray(pb[s]) ** 2).mean()
                   for s in (1, 0.5))
    value = losses.perceptual_pyramid(feats(pa), feats(pb), (2.0, 3.0))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # The real side is detached: no gradient flows into it.
    g = jax.grad(lambda y: losses.perceptual_pyramid(feats({1: a}), feats({1: y}), (1.0, 0.0)))(b)
    np.testing.assert_array_equal(g, 0)


def test_lsgan_and_feature_matching_closed_form():
    real = [jnp.full((2, 4, 4, 1), 0.8)]
    fake = [jnp.full((2, 4, 4, 1), 0.3)]
    np.testing.assert_allclose(losses.lsgan_generator(fake, 2.0), 2 * 0.7**2, rtol=1e-6)
    np.testing.assert_allclose(losses.lsgan_discriminator(real, fake, 1.0), 0.2**2 + 0.3**2,
                               rtol=1e-6)
    fr = [[jnp.ones((1, 2, 2, 3)), jnp.zeros((1, 2, 2, 3))]]
    ff = [[jnp.full((1, 2, 2, 3), 0.5), jnp.full((1, 2, 2, 3), -2.0)]]
    np.testing.assert_allclose(losses.feature_matching(fr, ff, (10.0, 1.0)), 10 * 0.5 + 2.0)


def test_pixel_l1_closed_form():
    a = jnp.zeros((1, 2, 2, 3)).at[0, 0, 0].set(1.0)
    np.testing.assert_allclose(losses.pixel_l1(a, jnp.full_like(a, 0.25)),
                               (3 * 0.75 + 9 * 0.25) / 12, rtol=1e-6)


def _transform(theta, tps):
    return {"theta": jnp.asarray(theta, jnp.float32)[None], "tps": jnp.asarray(tps, jnp.float32)[None]}


def test_warp_coordinates_affine_and_tps_closed_form():
    theta = [[1.1, 0.2, 0.05], [-0.1, 0.9, -0.03]]
    tps = np.zeros(25)
    tps[7] = 0.01  # control point 7 of the 5x5 grid
    t = _transform(theta, tps)
    z = np.array([[0.3, -0.2], [-0.7, 0.4]], np.float32)
    out = losses.warp_coordinates(t, jnp.asarray(z)[None])[0]
    control = np.asarray(coordinate_grid((5, 5))).reshape(-1, 2)[7]
    for p, o in zip(z, out):
        r = np.abs(p - control).sum()  # L1 radius
        expected = np.array(theta)[:, :2] @ p + np.array(theta)[:, 2] + 0.01 * r**2 * np.log(r + 1e-6)
        np.testing.assert_allclose(o, expected, rtol=1e-5, atol=1e-6)


def test_warp_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    t = _transform(np.eye(2, 3) + 0.05 * rng.standard_normal((2, 3)), 0.05 * rng.standard_normal(25))
    z = jnp.asarray(rng.uniform(-0.8, 0.8, size=(1, 4, 2)), jnp.float32)
    jac = losses.warp_jacobian(t, z)[0]
    eps = 1e-3
    for i in range(4):
        for j in range(2):
            d = jnp.zeros_like(z).at[0, i, j].set(eps)
            fd = (losses.warp_coordinates(t, z + d) - losses.warp_coordinates(t, z - d))[0, i] / (2 * eps)
            np.testing.assert_allclose(jac[i, :, j], fd, atol=2e-3)


def test_equivariance_zero_when_consistent_and_known_when_not():
    a = np.array([[1.2, 0.1], [-0.2, 0.8]], np.float32)
    t = _transform(np.concatenate([a, [[0.1], [-0.05]]], 1), np.zeros(25))
    kp_t = {"value": jnp.asarray([[[0.2, 0.1], [-0.3, 0.4]]]),
            "jacobian": jnp.asarray(np.tile(np.eye(2, dtype=np.float32) * 0.9, (1, 2, 1, 1)))}
    value = losses.warp_coordinates(t, kp_t["value"])
    jac = jnp.asarray(a) @ kp_t["jacobian"]  # J_D = A J_T makes J_D⁻¹ A J_T = I
    kp_d = {"value": value, "jacobian": jac}
    out = losses.equivariance(kp_d, kp_t, t, 10.0, 10.0)
    np.testing.assert_allclose(out["equivariance_value"], 0, atol=1e-6)
    np.testing.assert_allclose(out["equivariance_jacobian"], 0, atol=1e-5)
    kp_d = {"value": value + 0.1, "jacobian": 2 * jac}  # |I - I/2| has mean 0.25
    out = losses.equivariance(kp_d, kp_t, t, 10.0, 10.0)
    np.testing.assert_allclose(out["equivariance_value"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["equivariance_jacobian"], 2.5, rtol=1e-5)


def test_transform_frame_samples_the_warped_grid_with_reflection():
    img = np.random.default_rng(2).uniform(size=(8, 8)).astype(np.float32)
    shift = 0.3
    t = _transform([[1, 0, shift], [0, 1, 0]], np.zeros(25))
    out = losses.transform_frame(t, jnp.asarray(img)[None, :, :, None])[0, :, :, 0]
    # Pixel i sits at 2i/7 - 1; align_corners=False reads it at ((g+1)·8 - 1)/2 in pixels.
    g = 2 * np.arange(8) / 7 - 1
    cols = ((g + shift + 1) * 8 - 1) / 2
    rows = ((g + 1) * 8 - 1) / 2
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    # Reflection about the outer pixel edges, then clamping (PyTorch), written out by hand.
    xx = np.where(xx > 7.5, 15 - xx, xx)
    ref = scipy.ndimage.map_coordinates(img, [np.clip(yy, 0, 7), np.clip(xx, 0, 7)], order=1)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_mesh_heatmap_equals_brute_force():
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1, 1, size=(2, 5, 3)).astype(np.float32)
    w = rng.uniform(size=(2, 5)).astype(np.float32)
    out = losses.mesh_heatmap(jnp.asarray(pts), jnp.asarray(w), (4, 6, 7), 0.01)
    z, y, x = np.meshgrid(np.linspace(-1, 1, 4), np.linspace(-1, 1, 6), np.linspace(-1, 1, 7),
                          indexing="ij")
    grid = np.stack([x, y, z], -1)
    ref = np.einsum("bn,bdhwn->bdhw", w, np.exp(
        -((grid[None, :, :, :, None] - pts[:, None, None, None]) ** 2).sum(-1) / 0.02))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-7)


def test_sigma_matching_closed_form():
    # One point on a voxel centre; F_σ constant c: the normalised inner product is c.
    d, h, w = 3, 5, 5
    sigma_map = jnp.full((2, d, h, w, 4), 0.05)
    points = jnp.zeros((2, 1, 3))
    valid = jnp.array([True, False])
    value = losses.sigma_matching(sigma_map, points, jnp.ones((2, 1)), valid, 10.0, 0.9, 0.01)
    np.testing.assert_allclose(value, np.exp(-10 * 0.05) - 0.9, rtol=1e-6)
    # F_σ is 1 at the point's voxel and 0 elsewhere: ⟨F_σ, F_m⟩ = F_m(v) / Σ F_m.
    sigma_map = jnp.zeros((1, d, h, w, 4)).at[0, 1, 2, 2].set(1.0)
    g = np.exp(-(np.linspace(-1, 1, 5)[:, None] ** 2) / 0.02)  # 1D profiles are separable
    gz = np.exp(-(np.linspace(-1, 1, 3) ** 2) / 0.02)
    total = gz.sum() * g.sum() ** 2
    value = losses.sigma_matching(sigma_map, jnp.zeros((1, 1, 3)), jnp.ones((1, 1)),
                                  jnp.array([True]), 10.0, 0.9, 0.01)
    np.testing.assert_allclose(value, np.exp(-10 / total) - 0.9, rtol=1e-5)
    # With no valid sample the term is 0, not NaN.
    none = losses.sigma_matching(sigma_map, jnp.zeros((1, 1, 3)), jnp.ones((1, 1)),
                                 jnp.array([False]), 10.0, 0.9, 0.01)
    assert float(none) == 0.0


def test_pose_editor_rotation_and_loss():
    angles = np.array([[0.3, -0.2, 0.1], [-0.5, 0.4, 0.7]], np.float32)
    np.testing.assert_allclose(rotations.pose_to_matrix(jnp.asarray(angles)),
                               rotations.pose_to_matrix(angles), atol=1e-6)
    np.testing.assert_allclose(relative_rotation(jnp.asarray(angles), jnp.asarray(angles)),
                               np.tile(np.eye(3), (2, 1, 1)), atol=1e-6)
    kp = {"value": jnp.zeros((2, 3, 2)), "jacobian": jnp.tile(jnp.eye(2), (2, 3, 1, 1))}
    editor = PoseEditor((8,))
    params = editor.init(jax.random.key(0), jnp.tile(jnp.eye(3), (2, 1, 1)), kp)
    out = editor.apply(params, jnp.tile(jnp.eye(3), (2, 1, 1)), kp)  # zero-initialised offsets
    np.testing.assert_array_equal(out["value"], kp["value"])
    target = {"value": kp["value"] + 0.2, "jacobian": kp["jacobian"] - 0.4}
    np.testing.assert_allclose(losses.pose_editor_loss(out, target, 1.0, 0.5), 0.2 + 0.5 * 0.4,
                               rtol=1e-6)


@pytest.mark.parametrize("shape", [(1, 8, 8, 16)])
def test_mesh_weight_predictor_range(shape):
    pts = jnp.asarray(np.random.default_rng(4).uniform(-1, 1, size=(1, 6, 3)), jnp.float32)
    model = losses.MeshWeightPredictor(8)
    params = model.init(jax.random.key(0), jnp.ones(shape), pts)
    w = model.apply(params, jnp.ones(shape), pts)
    assert w.shape == (1, 6) and bool(jnp.all((w > 0) & (w < 1)))


ZERO_WEIGHT_TERMS = {     # the term's named scope or function in the step, and its weights
    "loss_pixel_l1": {"loss_weights.pixel_l1": 0.0},
    "loss_render_perceptual": {"loss_weights.render_perceptual": (0.0,) * 5},
    "loss_gan": {"loss_weights.generator_gan": 0.0},
    '"feature_matching"(': {"loss_weights.feature_matching": (0.0,) * 4},
    "loss_equivariance": {"loss_weights.equivariance_value": 0.0,
                          "loss_weights.equivariance_jacobian": 0.0},
    "loss_sigma": {"loss_weights.sigma": 0.0},
    "loss_pose_edit": {"loss_weights.pose_edit": 0.0},
}


def test_a_loss_term_of_weight_zero_is_not_in_the_training_step(tiny_data):
    """A term of weight zero costs nothing: with every optional term on, the lowered training
    step holds each term's operations (their named scope, or the loss function, in the
    program's locations); with one term's weight at zero, none of that term's operations
    are in the program (a product with 0.0 would still compute the term), and the others'
    are."""
    from fnevr_jax.training.fnevr_task import FNeVRTask
    from tests import tiny

    def program(**overrides):
        task = FNeVRTask(tiny.config(tiny_data, **overrides))
        state = jax.eval_shape(task.init_state, jax.random.key(0))
        batch = jax.eval_shape(lambda: next(iter(task.train_data(0))))
        lowered = jax.jit(task.train_step).lower(state, batch, jax.random.key(1), task.frozen)
        return lowered.as_text(debug_info=True)

    full = program()
    assert all(marker in full for marker in ZERO_WEIGHT_TERMS)
    for marker, overrides in ZERO_WEIGHT_TERMS.items():
        text = program(**overrides)
        assert marker not in text, marker
        assert "loss_pixel_l1" in text or marker == "loss_pixel_l1"
