"""Rendering core against closed forms: slab transmittance, weights, rays, sampling, encoding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnevr_jax import rendering


def _camera(focal=100.0, centre=50.0):
    intrinsics = jnp.array([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]])
    cam_to_world = rendering.look_at_origin(jnp.array([0.0, 0.0, 10.0]))
    return intrinsics, cam_to_world


def test_constant_density_slab_matches_analytic_transmittance():
    sigma0, thickness, num = 0.7, 3.0, 64
    t_near, t_far = jnp.array([2.0]), jnp.array([2.0 + thickness])
    t, deltas = rendering.stratified_samples(None, t_near, t_far, num, randomized=False)
    sigma = jnp.full_like(t, sigma0)
    alpha, trans, weights = rendering.compute_weights(sigma, deltas)
    # Exclusive transmittance at bin i is exp(-sigma0 * (distance travelled before bin i)).
    travelled = np.arange(num) * thickness / num
    np.testing.assert_allclose(trans[0], np.exp(-sigma0 * travelled), rtol=1e-5)
    np.testing.assert_allclose(alpha[0], 1 - np.exp(-sigma0 * thickness / num), rtol=1e-5)
    np.testing.assert_allclose(weights.sum(), 1 - np.exp(-sigma0 * thickness), rtol=1e-5)
    # A constant feature composites to itself times the opacity, plus the background rest.
    values = jnp.broadcast_to(jnp.array([2.0, -1.0]), t.shape + (2,))
    out, acc = rendering.composite(weights, values, background=jnp.array([5.0, 5.0]))
    opacity = 1 - np.exp(-sigma0 * thickness)
    np.testing.assert_allclose(acc[0], opacity, rtol=1e-5)
    np.testing.assert_allclose(out[0], np.array([2.0, -1.0]) * opacity + 5.0 * (1 - opacity),
                               atol=1e-5)


def test_slab_inside_empty_space():
    # Density 2 on [4, 5) only, sampled over [0, 8): opacity 1 - exp(-2).
    t, deltas = rendering.stratified_samples(None, jnp.zeros(()), jnp.full((), 8.0), 80,
                                             randomized=False)
    sigma = jnp.where((t >= 4.0) & (t < 5.0), 2.0, 0.0)
    _, trans, weights = rendering.compute_weights(sigma, deltas)
    np.testing.assert_allclose(weights.sum(), 1 - np.exp(-2.0), rtol=1e-5)
    np.testing.assert_allclose(trans[-1], np.exp(-2.0), rtol=1e-5)
    np.testing.assert_allclose(weights[t < 4.0], 0.0)


def test_weights_nonnegative_and_sum_at_most_one():
    key_s, key_d = jax.random.split(jax.random.PRNGKey(0))
    sigma = jax.nn.relu(jax.random.normal(key_s, (256, 32)) * 50.0)
    deltas = jax.random.uniform(key_d, (256, 32), maxval=0.5)
    alpha, trans, weights = rendering.compute_weights(sigma, deltas)
    assert bool(jnp.all(weights >= 0))
    assert bool(jnp.all(weights.sum(-1) <= 1 + 1e-6))
    assert bool(jnp.all((alpha >= 0) & (alpha <= 1) & (trans <= 1)))
    # An opaque first sample takes all the weight.
    _, _, w = rendering.compute_weights(jnp.array([1e4, 1.0, 1.0]), jnp.ones(3))
    np.testing.assert_allclose(w, [1.0, 0.0, 0.0], atol=1e-6)


def test_cumprod_transmittance_is_headnerfs():
    """HeadNeRF's T_i = prod_{j<i} (1 - alpha_j + 1e-10): the exp form plus 1e-10 per factor."""
    sigma = jnp.array([[0.3, 1e4, 0.5, 2.0]], jnp.float32)
    deltas = jnp.array([[0.5, 0.25, 1.0, 0.1]], jnp.float32)
    alpha, trans, weights = rendering.compute_weights(sigma, deltas, "cumprod")
    a = 1 - np.exp(-np.float64(sigma) * np.float64(deltas))[0]
    expected = np.cumprod(np.concatenate([[1.0], 1 - a[:-1] + 1e-10]))
    np.testing.assert_allclose(trans[0], expected, rtol=1e-6)
    np.testing.assert_allclose(weights[0], a * expected, rtol=1e-6)
    # After the opaque sample the transmittance is 1e-10 (the exp form's is exp(-2500) = 0).
    assert 0.5e-10 < float(trans[0, 2]) < 2e-10
    with pytest.raises(ValueError, match="transmittance form"):
        rendering.compute_weights(sigma, deltas, "log")


def test_rays_from_known_camera_hit_known_points():
    intrinsics, cam_to_world = _camera()
    rays = rendering.cast_rays(jnp.linalg.inv(intrinsics), cam_to_world, 100, 100,
                               pixel_offset=0.0)
    np.testing.assert_allclose(rays.origins[50, 50], [0.0, 0.0, 10.0])
    # Pixel (u, v) = (50, 50) looks at the origin; (75, 50) and (50, 25) meet the plane z = 0
    # at x = 2.5 and y = 2.5 (image up is world +y).
    for (v, u), point in {(50, 50): [0, 0, 0], (50, 75): [2.5, 0, 0],
                          (25, 50): [0, 2.5, 0], (0, 0): [-5, 5, 0]}.items():
        d = rays.directions[v, u]
        t = -rays.origins[v, u, 2] / d[2]
        np.testing.assert_allclose(rays.origins[v, u] + t * d, point, atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(rays.directions, axis=-1), 1.0, rtol=1e-6)


def test_rays_project_back_to_their_pixels():
    focal, size = 60.0, 16
    intrinsics = jnp.array([[focal, 0.0, 7.3], [0.0, focal * 1.1, 8.9], [0.0, 0.0, 1.0]])
    base = rendering.look_at_origin(jnp.array([0.0, 0.0, 6.0]))
    cam_to_world = rendering.apply_pose_delta(base, jnp.array([0.3, -0.5, 0.2]),
                                              jnp.array([0.1, -0.2, 0.3]))
    rays = rendering.cast_rays(jnp.linalg.inv(intrinsics), cam_to_world, size, size)
    rot, centre = cam_to_world[:3, :3], cam_to_world[:3, 3]
    points = rays.origins + 4.2 * rays.directions
    cam = jnp.einsum("ji,hwj->hwi", rot, points - centre)  # world -> camera with R^T
    pix = jnp.einsum("ij,hwj->hwi", intrinsics, cam)
    pix = pix[..., :2] / pix[..., 2:]
    grid = np.stack(np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5), -1)
    np.testing.assert_allclose(pix, grid, atol=1e-3)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-6)


def test_inverse_3x3_is_numpys_inverse():
    m = np.random.default_rng(0).standard_normal((4, 2, 3, 3))
    m[0, 0] = [[60.0, 0.0, 7.3], [0.0, 66.0, 8.9], [0.0, 0.0, 1.0]]    # intrinsics
    with jax.enable_x64(True):
        np.testing.assert_allclose(rendering.inverse_3x3(jnp.asarray(m)), np.linalg.inv(m),
                                   rtol=1e-9, atol=1e-12)


def test_look_at_and_pose_delta_orbit_about_origin():
    base = rendering.look_at_origin(jnp.array([0.0, 0.0, 6.0]))
    np.testing.assert_allclose(base[:, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-6)
    yawed = rendering.apply_pose_delta(base, jnp.array([0.0, np.pi / 2, 0.0]), jnp.zeros(3))
    np.testing.assert_allclose(yawed[:, 3], [6.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(yawed[:, 2], [-1.0, 0.0, 0.0], atol=1e-6)  # still faces origin


def test_stratified_samples_within_bins_and_fixed_at_eval():
    t_near, t_far = jnp.array([1.0, 2.0]), jnp.array([3.0, 7.0])
    num = 8
    edges = np.linspace(np.array([1.0, 2.0]), np.array([3.0, 7.0]), num + 1, axis=-1)
    t_eval, deltas = rendering.stratified_samples(None, t_near, t_far, num, randomized=False)
    np.testing.assert_allclose(t_eval, 0.5 * (edges[:, 1:] + edges[:, :-1]), rtol=1e-6)
    np.testing.assert_allclose(deltas, np.diff(edges, axis=-1), rtol=1e-6)
    samples = [rendering.stratified_samples(jax.random.PRNGKey(s), t_near, t_far, num,
                                            randomized=True)[0] for s in range(20)]
    samples = np.stack(samples)
    assert np.all(samples >= edges[:, :-1] - 1e-6) and np.all(samples <= edges[:, 1:] + 1e-6)
    assert np.std(samples, axis=0).min() > 0.01
    again, _ = rendering.stratified_samples(jax.random.PRNGKey(5), t_near, t_far, num, False)
    np.testing.assert_array_equal(again, t_eval)
    near_edges, _ = rendering.stratified_samples(None, t_near, t_far, num, False, position=0.0)
    np.testing.assert_allclose(near_edges, edges[:, :-1], rtol=1e-6)  # HeadNeRF's test mode


def test_z_plane_bounds_meet_the_planes():
    intrinsics, cam_to_world = _camera()
    rays = rendering.cast_rays(jnp.linalg.inv(intrinsics), cam_to_world, 100, 100)
    t_near, t_far = rendering.z_plane_bounds(rays, 2.5, -3.5)
    np.testing.assert_allclose((rays.origins + t_near[..., None] * rays.directions)[..., 2], 2.5,
                               atol=1e-5)
    np.testing.assert_allclose((rays.origins + t_far[..., None] * rays.directions)[..., 2], -3.5,
                               atol=1e-5)


@pytest.mark.parametrize("form", ["paper", "headnerf"])
def test_positional_encoding_forms(form):
    x = jnp.array([[0.25, -0.5, 1.0]])
    enc = rendering.positional_encoding(x, 3, form)
    assert enc.shape[-1] == rendering.posenc_size(3, 3, form)
    scale = np.pi if form == "paper" else 1.0
    body = enc[0, 3:] if form == "headnerf" else enc[0]
    for k in range(3):
        f = 2.0 ** k * scale
        np.testing.assert_allclose(body[6 * k:6 * k + 3], np.sin(f * x[0]), atol=1e-6)
        np.testing.assert_allclose(body[6 * k + 3:6 * k + 6], np.cos(f * x[0]), atol=1e-6)
    if form == "headnerf":
        np.testing.assert_allclose(enc[0, :3], x[0])
