"""The NeRF head render CLI: orbits, interpolation grids and driving, against direct renders."""
import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import nerf_head as nerf_configs
from data_pipelines import synthetic
from fnevr_jax import checkpoint_io
from fnevr_jax.nerf_head import network
from fnevr_jax.nerf_head import render


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("nerf_render")
    synthetic.generate(root / "data", train_clips=2, test_clips=1, identities=2,
                       test_identities=1, frames=4, size=64, points=16, workers=1)
    config = nerf_configs.get_config("quick")
    model = network.from_config(config.model)
    params = network.init_params(model, jax.random.key(0))
    # An untrained model renders almost only its background; a positive density bias fills
    # the sampling slab, so the render depends on the camera and the codes.
    params["mlp"]["density"]["bias"] = jnp.full((1,), 2.0)
    checkpoint_io.save_variables(root / "model", {"params": params},
                                 {"model": "nerf_head", "config": config.to_dict()})
    return root, config, model, params


def _direct(model, params, head, **changes):
    head = {**head, **changes}
    return render.render_frames(model, params, head["z_id"], head["beta"], head["intrinsics"],
                                head["cam_to_world"])


def test_orbit_cameras_circle_the_head():
    cam = rendering_camera()
    cams = np.asarray(render.orbit_cameras(cam, 12, 30.0, 10.0))
    # Rotations about the head centre keep the distance and the camera looking at the centre.
    np.testing.assert_allclose(np.linalg.norm(cams[:, :, 3], axis=-1), 6.0, rtol=1e-5)
    forward = cams[:, :, 2]
    np.testing.assert_allclose(np.einsum("ni,ni->n", forward, -cams[:, :, 3] / 6.0), 1.0,
                               rtol=1e-5)
    yaw = np.degrees(np.arctan2(cams[:, 0, 3], cams[:, 2, 3]))
    assert abs(yaw.max() - 30.0) < 1.0 and abs(yaw.min() + 30.0) < 1.0


def rendering_camera():
    _, cam = network.default_camera(1, 64, 2.0, 6.0)
    return cam


def test_orbit_interpolate_and_drive(setup, tmp_path):
    root, config, model, params = setup
    args = lambda *a: render.parse_args(list(a) + ["--checkpoint", str(root / "model"),
                                                   "--data", str(root / "data")])
    out = tmp_path / "orbit.gif"
    assert render.main(["orbit", "--out", str(out), "--frames", "8", "--pitch", "0",
                        "--checkpoint", str(root / "model"), "--data", str(root / "data")]) == 0
    frames = iio.imread(out)
    assert frames.shape == (8, 64, 64, 3)
    head = render.head_codes(args("orbit", "--out", "x.gif"), config, model)
    direct = _direct(model, params, head)[0].astype(int)
    print("orbit: |gif frame 0 - direct render|", np.abs(frames[0] - direct).mean(),
          "|frame k - frame 0|", np.abs(frames[1:].astype(int) - frames[:1]).mean())
    assert np.abs(frames[0] - direct).mean() < 2.0      # yaw 0 first (gif palette rounding)
    assert np.abs(frames[1:].astype(int) - frames[:1]).mean() > 5.0    # the views differ

    grid_path = tmp_path / "grid.png"
    assert render.main(["interpolate", "--out", str(grid_path), "--steps", "3",
                        "--checkpoint", str(root / "model"), "--data", str(root / "data"),
                        "--clip", "0", "--other-clip", "1"]) == 0
    grid = iio.imread(grid_path)
    assert grid.shape == (192, 192, 3)
    other = render.head_codes(args("interpolate", "--out", "x.png"), config, model, clip=1)
    corners = {(0, 0): _direct(model, params, head),
               (0, 2): _direct(model, params, head, beta=other["beta"]),
               (2, 0): _direct(model, params, head, z_id=other["z_id"]),
               (2, 2): _direct(model, params, head, z_id=other["z_id"], beta=other["beta"])}
    for (r, c), expected in corners.items():
        # PNG is lossless; the grid renders in another batch layout (float rounding only).
        tile = grid[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64].astype(int)
        assert np.abs(tile - expected[0]).max() <= 1, (r, c)

    video = tmp_path / "driven.mp4"
    assert render.main(["drive", "--out", str(video), "--driving-clip", "1", "--side-by-side",
                        "--checkpoint", str(root / "model"), "--data", str(root / "data")]) == 0
    assert iio.imread(video).shape == (4, 64, 128, 3)


def test_relative_motion_closed_form(setup):
    root, config, model, _ = setup
    clip = render.shard_clip(root / "data", 0, 64)
    head = {k: clip[k][:1] for k in ("z_id", "beta", "intrinsics", "cam_to_world")}
    # Driving a head with its own clip from its own first frame reproduces the clip.
    same = render.relative_motion(head, clip)
    np.testing.assert_allclose(same["beta"], clip["beta"], atol=1e-6)
    np.testing.assert_allclose(same["cam_to_world"], clip["cam_to_world"], atol=1e-5)
    # Another head keeps its own expression offset and camera, moved as the clip moves.
    other = {**head, "beta": head["beta"] + 1.0,
             "cam_to_world": render.orbit_cameras(head["cam_to_world"], 4, 20.0, 0.0)[1:2]}
    moved = render.relative_motion(other, clip)
    np.testing.assert_allclose(moved["beta"] - clip["beta"], 1.0, atol=1e-6)
    np.testing.assert_allclose(moved["cam_to_world"][0], other["cam_to_world"][0], atol=1e-5)
    # ... so output camera t relative to output camera 0 is driving camera t relative to 0.
    h = lambda cam: np.concatenate([np.asarray(cam), np.broadcast_to([[[0, 0, 0, 1.0]]],
                                                                     (len(cam), 1, 4))], 1)
    rel = lambda cam: h(cam) @ np.linalg.inv(h(cam)[:1])
    np.testing.assert_allclose(rel(moved["cam_to_world"]), rel(clip["cam_to_world"]), atol=1e-4)
    assert np.abs(rel(clip["cam_to_world"])[1:] - np.eye(4)).max() > 1e-3   # the clip moves


def test_bad_input(setup, tmp_path, capsys):
    root, config, model, _ = setup
    base = ["--checkpoint", str(root / "model")]
    assert render.main(["orbit", "--out", str(tmp_path / "o.gif"), "--checkpoint",
                        str(tmp_path / "nope")]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    codes = tmp_path / "codes.npz"
    np.savez(codes, z_id=np.zeros(3), beta=np.zeros(model.expr_dim))
    assert render.main(["orbit", "--out", str(tmp_path / "o.gif"), "--codes", str(codes)]
                       + base) == 1
    assert f"3/{model.expr_dim} dims, the model takes {model.id_dim}" in capsys.readouterr().err
    fnevr = tmp_path / "fnevr"
    checkpoint_io.save_variables(fnevr, {"params": {"w": jnp.zeros(2)}},
                                 {"model": "fnevr", "config": {"model": "fnevr"}})
    assert render.main(["orbit", "--out", str(tmp_path / "o.gif"), "--checkpoint",
                        str(fnevr)]) == 1
    assert "not a NeRF head model" in capsys.readouterr().err
    assert render.main(["drive", "--out", str(tmp_path / "d.mp4"), "--data",
                        str(root / "data"), "--driving-clip", "9"] + base) == 1
    assert "has 2 clips, no clip 9" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.gif")) + list(tmp_path.glob("*.mp4")) \
        + list(tmp_path.glob(".*"))


def test_headnerf_model_orbit_and_interpolate(tmp_path):
    """A HeadNeRF-configuration export (appearance codes from --codes) orbits and interpolates;
    the grid's corners are direct renders of the two heads' codes."""
    config = nerf_configs.get_config("headnerf")
    config.headnerf.update(featmap_size=4, featmap_nc=8, pred_img_size=16)
    config.model.update(mlp_width=16, mlp_depth=2, mlp_skip_layer=1, num_samples=8,
                        xyz_freqs=3, renderer_min_channels=4, appearance_dim=5)
    model = network.from_config(config.model)
    params = network.init_params(model, jax.random.key(0))
    params["mlp"]["density"]["bias"] = jnp.full((1,), 2.0)
    checkpoint_io.save_variables(tmp_path / "model", {"params": params},
                                 {"model": "nerf_head", "config": config.to_dict()})
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.savez(tmp_path / f"{name}.npz", z_id=rng.standard_normal(100),
                 beta=rng.standard_normal(79), appearance=rng.standard_normal(5))
    base = ["--checkpoint", str(tmp_path / "model"), "--codes", str(tmp_path / "a.npz")]
    assert render.main(["orbit", "--out", str(tmp_path / "o.gif"), "--frames", "2"] + base) == 0
    assert iio.imread(tmp_path / "o.gif").shape == (2, 16, 16, 3)
    assert render.main(["interpolate", "--out", str(tmp_path / "g.png"), "--steps", "2",
                        "--other-codes", str(tmp_path / "b.npz")] + base) == 0
    grid = iio.imread(tmp_path / "g.png").astype(int)
    heads = [render.load_codes(tmp_path / f"{n}.npz", config, model) for n in ("a", "b")]
    for r, c in np.ndindex(2, 2):
        expected = render.render_frames(
            model, params, heads[r]["z_id"], heads[c]["beta"], heads[0]["intrinsics"],
            heads[0]["cam_to_world"], appearance=heads[r]["appearance"])[0]
        assert np.abs(grid[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] - expected).max() <= 1
    assert np.abs(grid[:16, :16] - grid[16:, :16]).mean() > 1.0   # the rows differ
