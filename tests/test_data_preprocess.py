"""Preprocessing: every input layout, resume after an interruption, bad input, CLI errors."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_pipelines import preprocess, synthetic, video_io
from fnevr_jax.data import shards


class Interrupted(Exception):
    """Stands in for a crash or a kill in the middle of a run."""


def _frames(seed, n=20, size=64):
    clip = synthetic.make_clip(seed, "train", seed, seed, frames=n, size=size, points=10)
    return clip["frames"]


def _write_mp4(path, frames, fps=25):
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()


def _write_folder(path, frames):
    path.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(path / f"{i:07d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


def _write_strip(path, frames):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(list(frames), 1), cv2.COLOR_RGB2BGR))


def _read_all(out, split):
    sp = shards.open_split(out, split)
    src = sp.source()
    return sp, {cid: shards.clip_frames(shards.decode_clip(src[i]))
                for i, cid in enumerate(sp.clip_ids)}


@pytest.mark.parametrize("layout", ["mp4", "frames", "strip"])
def test_voxceleb_layouts(tmp_path, layout):
    inp, out = tmp_path / "in", tmp_path / "out"
    videos = {("train", "id10001#abc#000001#000021"): _frames(1),
              ("train", "id10001#xyz#000005#000025"): _frames(2),
              ("train", "id10002#abc#000001#000021"): _frames(3),
              ("test", "id10003#qqq#000001#000021"): _frames(4)}
    for (split, name), frames in videos.items():
        if layout == "mp4":
            _write_mp4(inp / split / f"{name}.mp4", frames)
        elif layout == "frames":
            _write_folder(inp / split / f"{name}.mp4", frames)
        else:
            _write_strip(inp / split / f"{name}.png", frames)
    workers = 2 if layout == "frames" else 0         # also through worker processes
    summary = preprocess.run(inp, out, size=32, min_frames=8, videos_per_shard=1,
                             workers=workers, progress=False)
    assert summary["clips"] == {"test": 1, "train": 3} and summary["skipped"] == 0
    train, got = _read_all(out, "train")
    assert train.identities == ["id10001", "id10002"]
    assert train.identity.tolist() == [0, 0, 1]
    info = shards.read_info(out)
    assert (info.height, info.width, info.fields) == (32, 32, [])
    for (split, name), frames in videos.items():
        _, got = _read_all(out, split)
        want = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in frames])
        err = np.abs(got[name].astype(int) - want).mean()
        assert got[name].shape == (20, 32, 32, 3)
        assert err < (4 if layout == "mp4" else 1e-9), err


def test_plain_folder_of_videos_and_long_clips(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _write_mp4(inp / "a" / "talk one.mp4", _frames(5, n=30))
    _write_mp4(inp / "b" / "c" / "talk#2.mov", _frames(6))
    (inp / "notes.txt").write_text("not a video")
    summary = preprocess.run(inp, out, size=32, min_frames=8, max_frames=12, split="holdout",
                             progress=False)
    sp = shards.open_split(out, "holdout")
    # 30 frames in pieces of 12 (the last 6 are too short); 20 frames -> 12 + 8.
    assert sp.clip_ids == ["talk one#000", "talk one#001", "talk#2#000", "talk#2#001"]
    assert sp.num_frames.tolist() == [12, 12, 12, 8]
    assert sp.identities == ["talk", "talk one"]
    assert summary["clips"] == {"holdout": 4}


def test_bad_videos_are_skipped_and_summarised(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _write_mp4(inp / "train" / "good#1.mp4", _frames(7))
    _write_mp4(inp / "train" / "short#1.mp4", _frames(8, n=5))
    (inp / "train" / "corrupt#1.mp4").write_bytes(os.urandom(3000))
    _write_folder(inp / "train" / "wide#1.mp4", np.zeros((10, 16, 32, 3), np.uint8))
    summary = preprocess.run(inp, out, size=32, min_frames=8, videos_per_shard=2,
                             progress=False)
    assert summary["videos"] == 4 and summary["processed"] == 1 and summary["skipped"] == 3
    assert summary["skipped_by_reason"] == {"unreadable": 1, "too short": 1, "not square": 1}
    reasons = {os.path.basename(s["video"]): s["reason"] for s in summary["skipped_videos"]}
    assert reasons == {"corrupt#1.mp4": "unreadable", "short#1.mp4": "too short",
                       "wide#1.mp4": "not square"}
    assert shards.open_split(out, "train").clip_ids == ["good#1"]
    assert json.loads((out / preprocess.SUMMARY).read_text()) == summary
    text = preprocess.format_summary(summary)
    assert "1 of 4 videos processed" in text and "short#1.mp4: too short: 5 frames" in text


def test_interrupted_run_resumes(tmp_path, monkeypatch):
    inp, out, clean = tmp_path / "in", tmp_path / "out", tmp_path / "clean"
    for i in range(3):
        _write_folder(inp / "train" / f"id{i}#v.mp4", _frames(10 + i, n=10))
    calls, crash = [], [True]
    real = preprocess._clips_of

    def flaky(entry, *a):
        calls.append(entry.name)
        if entry.name == "id1#v.mp4" and crash:
            crash.clear()
            raise Interrupted
        return real(entry, *a)

    monkeypatch.setattr(preprocess, "_clips_of", flaky)
    kw = dict(size=16, min_frames=4, videos_per_shard=1, progress=False)
    with pytest.raises(Interrupted):
        preprocess.run(inp, out, **kw)
    names = sorted(p.name for p in out.iterdir())
    assert names == [preprocess.PLAN, "train-00000-of-00003.array_record",
                     "train-00000-of-00003.array_record.json"]    # nothing half-written
    calls.clear()
    preprocess.run(inp, out, **kw)
    assert calls == ["id1#v.mp4", "id2#v.mp4"]                      # shard 0 was kept
    monkeypatch.setattr(preprocess, "_clips_of", real)
    preprocess.run(inp, clean, **kw)
    (a, fa), (b, fb) = _read_all(out, "train"), _read_all(clean, "train")
    assert a.clip_ids == b.clip_ids
    assert all(np.array_equal(fa[k], fb[k]) for k in fa)
    with pytest.raises(shards.DatasetError, match="other inputs or options"):
        preprocess.run(inp, out, **{**kw, "size": 32})


def test_interrupted_shard_write_leaves_no_file(tmp_path):
    path = tmp_path / shards.shard_name("train", 0, 1)

    def records():
        yield shards.encode_clip(_frames(1, n=2, size=16), clip_id="a", identity="a", fps=25)
        raise Interrupted

    with pytest.raises(Interrupted):
        shards.write_shard(path, records(), [("a", "a", 2)])
    assert list(tmp_path.iterdir()) == []


def test_cli_user_errors(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "data_pipelines.preprocess", *args],
                              capture_output=True, text=True)

    r = cli("--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o"))
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    r = cli("--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o"))
    assert r.returncode == 1 and "no videos found" in r.stderr
    _write_folder(tmp_path / "in" / "train" / "x#1.mp4", _frames(3, n=6, size=16))
    r = cli("--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"), "--size", "16",
            "--min-frames", "4", "--workers", "0", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "1 of 1 videos processed; clips train: 1; 0 skipped" in r.stdout
    r = cli("--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"), "--size", "32")
    assert r.returncode == 1 and "other inputs or options" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_find_videos_and_read_errors(tmp_path):
    _write_strip(tmp_path / "test" / "s#1.png", _frames(2, n=3, size=16))
    (tmp_path / "train").mkdir()
    found = video_io.find_videos(tmp_path)
    assert [(e.split, e.kind, e.identity) for e in found] == [("test", "strip", "s")]
    bad = tmp_path / "test" / "bad.png"
    cv2.imwrite(str(bad), np.zeros((16, 40, 3), np.uint8))
    with pytest.raises(video_io.VideoError, match="not a multiple"):
        video_io.read_video(video_io.VideoEntry(str(bad), "test", "strip"))
