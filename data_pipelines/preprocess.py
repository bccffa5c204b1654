"""Talking-head videos to clip shards.

    python -m data_pipelines.preprocess --input DIR --output DIR [--crop] [--landmarks]
        [--nerf-codes [--expression-dim 46] [--expression-basis NPZ] [--identity-per-frame]]

Inputs: the first-order-model VoxCeleb layouts (``train/`` and ``test/`` folders of ``.mp4``
files, of ``.mp4``-named folders of PNG frames, or of PNG strips; identity = the name before
the first ``#``) or any folder of ordinary videos (one split, ``--split``).

``--crop`` finds faces, follows them and writes one square, smoothed, enlarged crop per face
track of at least ``--min-frames`` frames (``data_pipelines.face_crop``). Without it, frames
must already be square and are resized to ``--size``. ``--landmarks`` adds mediapipe's dense
3D landmarks and the head pose of a rigid fit (``data_pipelines.landmarks``).
``--nerf-codes`` (implies ``--landmarks``) adds what the NeRF head model reads: head masks,
cameras, dlib identity codes and expression codes from a PCA of the pose-normalised
landmarks, fitted on the ``train`` split and saved as ``expression_pca.npz``
(``data_pipelines.head_codes``); ``--expression-basis`` reuses another dataset's basis.

Videos are processed in shards by worker processes. Finished shards are kept, so a rerun
after an interruption continues where it stopped; a shard is renamed into place only when
complete. Unreadable, truncated, too short and faceless videos are skipped and listed in the
summary (also in ``preprocess_summary.json``).
"""
from __future__ import annotations

import collections
import concurrent.futures as futures
import json
import multiprocessing
import os
import pathlib
import sys

import cv2
import numpy as np

from data_pipelines import face_crop, head_codes, landmarks, video_io
from fnevr_jax import cli
from fnevr_jax.data import shards
from fnevr_jax.pretrained.files import MissingWeightsError

PLAN = "preprocess_plan.json"
SUMMARY = "preprocess_summary.json"


def _resize(frames, size: int) -> np.ndarray:
    if frames.shape[1:3] == (size, size):
        return frames
    interp = cv2.INTER_AREA if frames.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])


def _clips_of(entry: video_io.VideoEntry, opts: dict, detector, mesh, coder=None) -> list:
    """The clips (``shards.encode_clip`` keyword dicts) of one video; raises VideoError."""
    frames, fps = video_io.read_video(entry, fps=opts["fps"])
    if len(frames) < opts["min_frames"]:
        raise video_io.VideoError("too short", f"{len(frames)} frames")
    size = opts["size"]
    pieces = []
    if opts["crop"]:
        dets = face_crop.detect_faces(frames, detector)
        crops = face_crop.find_crops(frames, detections=dets, min_frames=opts["min_frames"],
                                     max_frames=opts["max_frames"])
        if not crops:
            found = sum(len(d) > 0 for d in dets)
            raise video_io.VideoError("no face", f"faces in {found} of {len(frames)} frames, "
                                                 f"no track of {opts['min_frames']}")
        for k, c in enumerate(crops):
            pieces.append((f"{entry.stem}#{k:03d}" if len(crops) > 1 else entry.stem,
                           face_crop.crop_frames(frames[c.start:c.end], c.crop_boxes, size),
                           {"face_box": face_crop.box_in_crop(c.face_boxes, c.crop_boxes,
                                                              size)}))
    else:
        h, w = frames.shape[1:3]
        if h != w:
            raise video_io.VideoError("not square", f"{w}x{h} frames; use --crop")
        step = opts["max_frames"] or len(frames)
        for k, s in enumerate(range(0, len(frames), step)):
            part = frames[s:s + step]
            if len(part) >= opts["min_frames"]:
                name = entry.stem if step >= len(frames) else f"{entry.stem}#{k:03d}"
                pieces.append((name, _resize(part, size), {}))
    clips = []
    for clip_id, video, fields in pieces:
        if mesh is not None:
            lm, found = mesh(video)
            if not found.any():
                continue
            lm = landmarks.fill_missing(lm, found)
            fields["landmarks"] = lm
            fields["pose"] = landmarks.head_pose(lm, landmarks.mean_shape(lm[found]))
            if coder is not None:                     # its pose agrees with the extrinsics
                fields.update(coder(video, lm, found))
        clips.append(dict(frames=video, clip_id=clip_id, identity=entry.identity, fps=fps,
                          **fields))
    if not clips:
        raise video_io.VideoError("no landmarks", "face mesh found no face in any clip")
    return clips


def _run_shard(path: str, entries: list, opts: dict) -> dict:
    """Processes the videos of one shard and writes it; returns its meta."""
    detector = face_crop.FaceDetector() if opts["crop"] else None
    mesh = landmarks.FaceMesh() if opts["landmarks"] else None
    nerf = opts.get("nerf_codes")
    coder = head_codes.HeadCoder(nerf["identity_per_frame"], nerf["focal"]) if nerf else None
    records, clips, skipped, done, rates = [], [], [], [], []
    try:
        for entry in entries:
            try:
                for clip in _clips_of(entry, opts, detector, mesh, coder):
                    records.append(shards.encode_clip(encoding=opts["encoding"],
                                                      quality=opts["quality"], **clip))
                    clips.append((clip["clip_id"], clip["identity"], len(clip["frames"])))
                    rates.append(clip["fps"])
                done.append(entry.path)
            except video_io.VideoError as e:
                skipped.append([entry.path, e.reason, str(e)])
    finally:
        for tool in (detector, mesh, coder):
            if tool is not None:
                tool.__exit__(None, None, None)
    shards.write_shard(path, records, clips, videos=done, skipped=skipped, fps=rates)
    return shards.shard_meta(path)


def plan_shards(entries: list, videos_per_shard: int) -> dict:
    """``{split: [[entry, ...] per shard]}`` in a fixed order."""
    by_split = collections.defaultdict(list)
    for e in entries:
        by_split[e.split].append(e)
    return {split: [es[i:i + videos_per_shard] for i in range(0, len(es), videos_per_shard)]
            for split, es in sorted(by_split.items())}


def run(input_dir, output_dir, *, crop: bool = False, with_landmarks: bool = False,
        size: int = 256, min_frames: int = 64, max_frames: int | None = 1024,
        encoding: str = "png", quality: int = 95, fps: float = 25.0, split: str = "train",
        videos_per_shard: int = 4, workers: int = 0, progress: bool = True,
        nerf_codes: bool = False, expression_dim: int = head_codes.EXPRESSION_DIM,
        expression_basis=None, identity_per_frame: bool = False) -> dict:
    """Preprocesses ``input_dir`` into ``output_dir``; returns the summary dict.

    ``nerf_codes`` adds the NeRF head model's fields (``data_pipelines.head_codes``; implies
    ``with_landmarks``): the expression PCA (``expression_dim`` components) is fitted on the
    ``train`` split after every shard is written, or read from ``expression_basis`` (an
    ``expression_pca.npz``), then the codes are written into the shards. Raises
    ``shards.DatasetError`` for a missing input, no videos, an output directory that holds a
    different run, or too few training frames for the PCA; ``MissingWeightsError`` (before
    any work) when a model file of ``nerf_codes`` is not installed.
    """
    if nerf_codes:
        head_codes.check_models()
        with_landmarks = True
    input_dir, output_dir = pathlib.Path(input_dir), pathlib.Path(output_dir)
    if not input_dir.is_dir():
        raise shards.DatasetError(f"input directory {input_dir} does not exist")
    entries = video_io.find_videos(input_dir, split)
    if not entries:
        raise shards.DatasetError(f"no videos found in {input_dir} (looked for "
                                  f"{', '.join(video_io.VIDEO_EXTS)}, frame folders and strips)")
    opts = dict(crop=crop, landmarks=with_landmarks, size=size, min_frames=min_frames,
                max_frames=max_frames, encoding=encoding, quality=quality, fps=fps)
    if nerf_codes:        # the expression basis is not part of the shards' first pass
        opts["nerf_codes"] = {"identity_per_frame": bool(identity_per_frame),
                              "focal": head_codes.FOCAL}
    plan = plan_shards(entries, videos_per_shard)
    record = {"options": opts, "videos_per_shard": videos_per_shard,
              "videos": {s: [[e.path for e in group] for group in groups]
                         for s, groups in plan.items()}}
    output_dir.mkdir(parents=True, exist_ok=True)
    plan_path = output_dir / PLAN
    if plan_path.exists():
        if json.loads(plan_path.read_text()) != record:
            raise shards.DatasetError(f"{output_dir} holds a run with other inputs or options; "
                                      "use a new --output or the same arguments")
    else:
        shards.atomic_write(plan_path, json.dumps(record, indent=1))
    tasks = []
    for s, groups in plan.items():
        for i, group in enumerate(groups):
            path = output_dir / shards.shard_name(s, i, len(groups))
            if not shards.shard_finished(path):
                tasks.append((str(path), group, opts))
    total = sum(len(g) for groups in plan.values() for g in groups)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="video", desc="preprocess",
                   initial=total - sum(len(t[1]) for t in tasks))
    try:
        if workers > 0 and len(tasks) > 1:
            ctx = multiprocessing.get_context("spawn")
            with futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                jobs = {pool.submit(_run_shard, *t): t for t in tasks}
                for job in futures.as_completed(jobs):
                    job.result()
                    if bar is not None:
                        bar.update(len(jobs[job][1]))
        else:
            for t in tasks:
                _run_shard(*t)
                if bar is not None:
                    bar.update(len(t[1]))
    finally:
        if bar is not None:
            bar.close()
    fields = (["face_box"] if crop else []) + (["landmarks", "pose"] if with_landmarks else [])
    counts = {s: len(g) for s, g in plan.items()}
    basis = None
    if nerf_codes:
        basis = head_codes.expression_basis(output_dir, counts, dim=expression_dim,
                                            fit_split="train", basis_path=expression_basis)
        head_codes.add_expression_codes(output_dir, counts, basis)
        fields += list(head_codes.NERF_FIELDS)
    metas = [shards.shard_meta(output_dir / shards.shard_name(s, i, len(groups)))
             for s, groups in plan.items() for i in range(len(groups))]
    clip_fps = [f for m in metas for f in m["fps"]]
    info = shards.finalize(output_dir, counts, height=size,
                           width=size, encoding=encoding, fields=fields,
                           fps=float(np.median(clip_fps)) if clip_fps else fps,
                           source=f"preprocess {input_dir}")
    skipped = [s for m in metas for s in m["skipped"]]
    summary = {"videos": total, "processed": sum(len(m["videos"]) for m in metas),
               "clips": {s: v["clips"] for s, v in info.splits.items()},
               "skipped": len(skipped),
               "skipped_by_reason": dict(collections.Counter(s[1] for s in skipped)),
               "skipped_videos": [{"video": s[0], "reason": s[1], "detail": s[2]}
                                  for s in skipped]}
    if basis is not None:
        summary["expression_pca"] = head_codes.basis_summary(basis)
    shards.atomic_write(output_dir / SUMMARY, json.dumps(summary, indent=1))
    return summary


def format_summary(summary: dict) -> str:
    clips = ", ".join(f"{s}: {n}" for s, n in summary["clips"].items())
    lines = [f"{summary['processed']} of {summary['videos']} videos processed; clips {clips}; "
             f"{summary['skipped']} skipped"]
    for reason, n in sorted(summary["skipped_by_reason"].items()):
        lines.append(f"  {reason}: {n}")
    for s in summary["skipped_videos"]:
        lines.append(f"    {s['video']}: {s['detail']}")
    if "expression_pca" in summary:
        e = summary["expression_pca"]
        lines.append(f"expression PCA: {e['dim']} components from {e['frames']} frames, "
                     f"{e['explained_variance']:.2%} of the variance")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="folder of videos (or train/ and test/)")
    p.add_argument("--output", required=True, help="dataset directory to write")
    p.add_argument("--crop", action="store_true", help="detect, track and crop faces")
    p.add_argument("--landmarks", action="store_true", help="add 3D landmarks and head pose")
    p.add_argument("--nerf-codes", action="store_true",
                   help="add masks, cameras, identity and expression codes (NeRF head model)")
    p.add_argument("--expression-dim", type=int, default=head_codes.EXPRESSION_DIM,
                   help="expression code width (PCA components fitted on the train split)")
    p.add_argument("--expression-basis", default=None,
                   help=f"a training dataset's {head_codes.PCA_NAME} to encode with")
    p.add_argument("--identity-per-frame", action="store_true",
                   help="per-frame identity codes (default: the clip's mean on every frame)")
    p.add_argument("--size", type=int, default=256, help="output frame size")
    p.add_argument("--min-frames", type=int, default=64, help="shortest clip kept")
    p.add_argument("--max-frames", type=int, default=1024, help="longer clips are split")
    p.add_argument("--encoding", choices=shards.ENCODINGS, default="png")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of frame folders/strips")
    p.add_argument("--split", default="train", help="split name for a plain folder of videos")
    p.add_argument("--videos-per-shard", type=int, default=4)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (0: in this process)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if min(a.size, a.min_frames, a.max_frames, a.videos_per_shard,
           a.expression_dim) < 1 or a.workers < 0:
        p.error("sizes and counts must be positive")
    try:
        summary = run(a.input, a.output, crop=a.crop, with_landmarks=a.landmarks, size=a.size,
                      min_frames=a.min_frames, max_frames=a.max_frames, encoding=a.encoding,
                      quality=a.quality, fps=a.fps, split=a.split,
                      videos_per_shard=a.videos_per_shard, workers=a.workers,
                      progress=not a.no_progress, nerf_codes=a.nerf_codes,
                      expression_dim=a.expression_dim, expression_basis=a.expression_basis,
                      identity_per_frame=a.identity_per_frame)
    except (shards.DatasetError, MissingWeightsError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
