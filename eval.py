"""Evaluates a checkpoint on a test split: the metrics of the paper's Table 1 or Table 2.

    python eval.py --config=configs/fnevr.py --checkpoint=CKPT --data=SHARDS \
        --protocol=reconstruction --out=eval/recon
    python eval.py --config=configs/fnevr.py:quick --checkpoint=runs/quick --data=data/synthetic \
        --protocol=cross_identity --out=eval/cross --max-frames=32 --tensorboard

CKPT: a train.py workdir, an orbax directory, an official `.pth.tar` or a parity `.npz`.
Protocols:
  reconstruction  first-order-model's: frame 0 of each test clip is the source, absolute
                  keypoints, every frame driven. L1, LPIPS (AlexNet; VGG as LPIPS-vgg), PSNR,
                  SSIM, AKD-dlib, AED-dlib, FID.
  cross_identity  sources (frame 0 of a clip) and driving clips of different identities,
                  seeded (paper: 10 sources x 14 driving clips; fewer if the split is small),
                  relative motion with the adapt scale. FID, CSIM-dlib.
Writes OUT/report.json (aggregate and per clip or pair), OUT/report.md (the paper's table
layout), OUT/samples.png and OUT/hist_<metric>.png, and TensorBoard scalars under
OUT/tensorboard with --tensorboard. Networks and image metrics run in jitted batches sharded
over all local devices. Bad input prints one line and exits 1 without writing a report.
"""
import json
import pathlib
import shutil
import sys
import uuid

import numpy as np
from tqdm import tqdm

from fnevr_jax import cli

PROTOCOLS = ("reconstruction", "cross_identity")
METRICS = {  # flag name -> report name, better direction
    "l1": ("L1", "min"), "lpips": ("LPIPS", "min"), "lpips_vgg": ("LPIPS-vgg", "min"),
    "psnr": ("PSNR", "max"), "ssim": ("SSIM", "max"), "akd": ("AKD-dlib", "min"),
    "aed": ("AED-dlib", "min"), "fid": ("FID", "min"), "csim": ("CSIM-dlib", "max")}
DEFAULT_METRICS = {"reconstruction": "l1,lpips,lpips_vgg,psnr,ssim,akd,aed,fid",
                   "cross_identity": "fid,csim"}
TABLE = {"reconstruction": ("L1", "LPIPS", "PSNR", "SSIM", "AKD-dlib", "AED-dlib", "FID"),
         "cross_identity": ("FID", "CSIM-dlib")}
# The paper's FNeVR rows (Table 1; Table 2, VoxCeleb). Its AKD, AED and CSIM come from FAN,
# OpenFace and ArcFace-like networks: the -dlib columns are not comparable with them.
PAPER = {"reconstruction": {"L1": 0.0404, "LPIPS": 0.0804, "PSNR": 24.292, "SSIM": 0.7773,
                            "AKD-dlib": 1.254, "AED-dlib": 0.0231, "FID": 8.443},
         "cross_identity": {"FID": 98.23, "CSIM-dlib": 0.5505}}

def parse_args(argv=None):
    p = cli.parser(__doc__, config="configs/fnevr.py")
    p.add_argument("--checkpoint", required=True,
                   help="train.py workdir, orbax dir, .pth.tar or .npz")
    p.add_argument("--data", required=True, help="dataset directory (shards) with a test split")
    p.add_argument("--protocol", default="reconstruction", choices=PROTOCOLS)
    p.add_argument("--out", required=True, help="output directory for the report")
    p.add_argument("--split", default="test", help="split of --data to evaluate")
    p.add_argument("--max-clips", type=int, help="use only the first N clips of the split")
    p.add_argument("--max-frames", type=int, help="use only the first N frames of each clip")
    p.add_argument("--metrics", help="comma-separated subset of " + ",".join(METRICS)
                   + " (default: the protocol's table)")
    p.add_argument("--num-sources", type=int, default=10,
                   help="cross_identity: number of source clips")
    p.add_argument("--num-driving", type=int, default=14,
                   help="cross_identity: number of driving clips")
    p.add_argument("--seed", type=int, default=0,
                   help="cross_identity: seed of the source/driving choice")
    p.add_argument("--batch-size", type=int, default=8, help="frames per jitted network call")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write the scalars to OUT/tensorboard")
    return cli.parse(p, argv)


class EvalError(Exception):
    """Bad input: reported as one line."""


# --------------------------------------------------------------------------- metrics
class FrameMetrics:
    """Per-frame metrics of (prediction, target) batches, accumulated per clip; FID features."""

    def __init__(self, names, core):
        from fnevr_jax.metrics import face
        self.names = names
        self.core = core
        self.faces = face.dlib_faces() if {"akd", "aed", "csim"} & set(names) else None
        self.fake_features, self.real_features = [], []

    def _sharded(self, fn, *arrays):
        """`fn` over the inference core's fixed, sharded batches (one compilation)."""
        import jax
        return jax.tree.map(np.asarray, self.core.map_batches(fn, arrays, len(arrays[0])))

    def __call__(self, prediction, target, source=None, boxes=None, source_box=None):
        """{report name: (n,) values} for one batch; `source` (1, H, W, 3) for CSIM.

        `boxes` (n, 4) are the target frames' face boxes (also used for the prediction, which
        shows the face where the target does), `source_box` (1, 4) the source's; None detects.
        """
        from fnevr_jax import metrics
        from fnevr_jax.metrics import face
        out = {}
        wanted = set(self.names)
        if wanted & {"l1", "psnr", "ssim"}:
            values = self._sharded(metrics.image_metrics, prediction, target)
            out.update({k: v for k, v in values.items() if k.lower() in wanted})
        for net, name in (("alex", "lpips"), ("vgg", "lpips_vgg")):
            if name in wanted:
                out[METRICS[name][0]] = self._sharded(
                    lambda x, y, net=net: metrics.lpips(x, y, net), prediction, target)
        if "fid" in wanted:
            self.fake_features.append(self._sharded(metrics.inception_features, prediction))
            self.real_features.append(self._sharded(metrics.inception_features, target))
        if self.faces is not None:
            points_p, codes_p = self.faces(prediction, boxes)
            if wanted & {"akd", "aed"}:
                points_t, codes_t = self.faces(target, boxes)
                if "akd" in wanted:
                    out["AKD-dlib"] = face.akd(points_t, points_p)
                if "aed" in wanted:
                    out["AED-dlib"] = face.aed(codes_t, codes_p)
            if "csim" in wanted:
                _, code_s = self.faces(source, source_box)
                out["CSIM-dlib"] = face.csim(np.broadcast_to(code_s, codes_p.shape), codes_p)
        return out

    def fid(self):
        from fnevr_jax.metrics import fid_from_features
        fake, real = np.concatenate(self.fake_features), np.concatenate(self.real_features)
        if len(fake) < 2:
            return None
        return fid_from_features(fake, real)


# --------------------------------------------------------------------------- protocols
def _batches(n, size):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def cross_pairs(identities, num_sources, num_driving, seed):
    """Seeded (source clip, driving clip) pairs of different identities."""
    rng = np.random.default_rng(seed)
    n = len(identities)
    sources = sorted(rng.choice(n, min(num_sources, n), replace=False))
    driving = sorted(rng.choice(n, min(num_driving, n), replace=False))
    return [(s, d) for s in sources for d in driving if identities[s] != identities[d]]


def evaluate(model, clips, protocol, names, batch_size, num_sources=10, num_driving=14,
             seed=0, samples=4):
    """(aggregate {name: value}, skipped {name: count}, rows, per-frame values, sample rows)."""
    from fnevr_jax import inference
    from fnevr_jax.metrics import face

    relative = protocol == "cross_identity"
    metric = FrameMetrics(names, model.core)
    if relative:
        jobs = cross_pairs([c["identity"] for c in clips], num_sources, num_driving, seed)
        if not jobs:
            raise EvalError("cross_identity needs clips of at least 2 identities; the split "
                            f"has {len({int(c['identity']) for c in clips})}")
    else:
        jobs = [(i, i) for i in range(len(clips))]
    rows, per_frame, sample_rows = [], {}, []
    bar = tqdm(total=sum(len(clips[d]["video"]) for _, d in jobs), unit="frame",
               dynamic_ncols=True, file=sys.stderr)
    for s, d in jobs:
        source = clips[s]["video"][:1]
        video = clips[d]["video"]
        kp_source = model.keypoints(source)
        kp_initial, scale = None, 1.0
        if relative:
            kp_initial = model.keypoints(video[:1])
            scale = inference.adapt_scale(kp_source["value"], kp_initial["value"])
        values, predictions = {}, []
        for sl in _batches(len(video), batch_size):
            prediction = model.animate_frames(source, video[sl], kp_source, kp_initial, scale,
                                              relative=relative)
            boxes = clips[d]["face_box"][sl] if "face_box" in clips[d] else None
            source_box = clips[s]["face_box"][:1] if "face_box" in clips[s] else None
            for k, v in metric(prediction, video[sl], source, boxes, source_box).items():
                values.setdefault(k, []).append(v)
            if len(sample_rows) < samples:
                predictions.append(prediction)
            bar.update(sl.stop - sl.start)
        values = {k: np.concatenate(v) for k, v in values.items()}
        row = {"source_clip" if relative else "clip": clips[s]["clip_id"], "frames": len(video)}
        if relative:
            row["driving_clip"] = clips[d]["clip_id"]
        for k, v in values.items():
            row[k], _ = face.aggregate(v)
            per_frame.setdefault(k, []).append(v)
        rows.append(row)
        if len(sample_rows) < samples:
            sample_rows.append((source[0], video, np.concatenate(predictions)))
    bar.close()
    aggregate, skipped = {}, {}
    for k, v in per_frame.items():
        per_frame[k] = np.concatenate(v)
        aggregate[k], skipped[k] = face.aggregate(per_frame[k])
    if "fid" in names:
        aggregate["FID"] = metric.fid()
    return aggregate, skipped, rows, per_frame, sample_rows


# --------------------------------------------------------------------------- report
def _fmt(value):
    return "n/a" if value is None else f"{value:.4f}"


def markdown(protocol, aggregate, skipped, info):
    arrows = {METRICS[k][0]: "↓" if METRICS[k][1] == "min" else "↑" for k in METRICS}
    columns = [c for c in TABLE[protocol] if c in aggregate]
    extra = [c for c in aggregate if c not in columns]
    title = "Table 1: same-identity reconstruction" if protocol == "reconstruction" else \
        "Table 2: cross-identity reenactment"
    lines = [f"# {title}", "",
             f"Checkpoint `{info['checkpoint']}` ({info['model']}, {info['image_size']}px) on "
             f"`{info['data']}` split `{info['split']}`: {info['clips']} clips, "
             f"{info['pairs']} source/driving pairs, {info['frames']} frames.", "",
             "| Method | " + " | ".join(f"{c} {arrows[c]}" for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|",
             "| this checkpoint | " + " | ".join(_fmt(aggregate[c]) for c in columns) + " |",
             "| FNeVR (paper, VoxCeleb) | " + " | ".join(
                 f"{PAPER[protocol][c]:g}" + ("*" if c.endswith("-dlib") else "")
                 for c in columns) + " |", ""]
    if extra:
        lines += ["Also: " + ", ".join(f"{c} {_fmt(aggregate[c])}" for c in extra) + ".", ""]
    lines += ["\\* The paper measured AKD with FAN, AED with OpenFace and CSIM with an ArcFace-"
              "style network; the -dlib columns use dlib's landmarks and embeddings and are "
              "**not comparable** with those numbers.", ""]
    missing = {k: v for k, v in skipped.items() if v}
    if missing:
        lines += ["Frames without a detected face (skipped): "
                  + ", ".join(f"{k} {v}" for k, v in missing.items()) + ".", ""]
    lines += ["![samples](samples.png)", ""]
    lines += [f"![{k}](hist_{k}.png)" for k in info["histograms"]]
    return "\n".join(lines) + "\n"


def sample_grid(sample_rows, columns=6):
    """Rows of source | driving frames, and under each the generated frames."""
    blocks = []
    for source, video, prediction in sample_rows:
        idx = np.linspace(0, len(video) - 1, min(columns, len(video))).round().astype(int)
        blank = np.ones_like(source)
        blocks.append(np.concatenate([source, *video[idx]], 1))
        blocks.append(np.concatenate([blank, *prediction[idx]], 1))
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), constant_values=1.0)
              for b in blocks]
    return (np.clip(np.concatenate(blocks, 0), 0, 1) * 255).round().astype(np.uint8)


def histograms(per_frame, directory):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = []
    for name, values in per_frame.items():
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
        ax.hist(values, bins=30)
        ax.set_xlabel(f"{name} per frame")
        ax.set_ylabel("frames")
        fig.tight_layout()
        fig.savefig(directory / f"hist_{name}.png")
        plt.close(fig)
        names.append(name)
    return names


def write_report(out, protocol, aggregate, skipped, rows, per_frame, sample_rows, info,
                 tensorboard=False):
    """Writes every output into a temporary directory, then moves it into `out`."""
    import imageio.v3 as iio
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        iio.imwrite(tmp / "samples.png", sample_grid(sample_rows))
        info["histograms"] = histograms(per_frame, tmp)
        report = {"protocol": protocol, **info, "metrics": aggregate,
                  "skipped_frames": skipped, "per_clip" if protocol == "reconstruction"
                  else "per_pair": rows}
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=float))
        (tmp / "report.md").write_text(markdown(protocol, aggregate, skipped, info))
        if tensorboard:
            from clu import metric_writers
            writer = metric_writers.create_default_writer(str(tmp / "tensorboard"))
            writer.write_scalars(0, {f"{protocol}/{k}": v for k, v in aggregate.items()
                                     if v is not None})
            writer.close()
        out.mkdir(parents=True, exist_ok=True)
        for item in tmp.iterdir():
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            item.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- main
def run(config, checkpoint, data, protocol, out, *, split="test", max_clips=None,
        max_frames=None, metric_names=None, num_sources=10, num_driving=14, seed=0,
        batch_size=8, tensorboard=False):
    """Evaluates and writes the report; returns the aggregate metrics."""
    from fnevr_jax.data import loaders, shards
    from fnevr_jax import api, checkpoint_io, convert, torch_io
    from fnevr_jax.pretrained.files import MissingWeightsError

    out = pathlib.Path(out)
    names = [m.strip() for m in (metric_names or DEFAULT_METRICS[protocol]).split(",")]
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise EvalError(f"unknown metrics {unknown}; choose from {','.join(METRICS)}")
    if not out.parent.is_dir():
        raise EvalError(f"{out.parent}: no such output directory")
    if not pathlib.Path(checkpoint).exists():
        raise EvalError(f"{checkpoint}: no such checkpoint")
    try:
        model = api.load_animator(checkpoint, config=config, batch_size=batch_size)
        fields = [f for f in ("face_box",) if f in shards.open_split(data, split).fields]
        ds = loaders.eval_clips(data, split=split, max_frames=max_frames, fields=fields,
                                size=model.config.image_size, process_index=0, process_count=1)
        count = len(ds) if max_clips is None else min(max_clips, len(ds))
        if count == 0:
            raise EvalError(f"{data}: split {split!r} has no clips")
        clips = [ds[i] for i in range(count)]
        aggregate, skipped, rows, per_frame, sample_rows = evaluate(
            model, clips, protocol, names, batch_size, num_sources, num_driving, seed)
    except (api.AnimatorError, convert.ConversionError, checkpoint_io.CheckpointError,
            torch_io.TorchFileError, shards.DatasetError, MissingWeightsError,
            FileNotFoundError) as e:
        raise EvalError(str(e).splitlines()[0]) from None
    info = {"checkpoint": str(checkpoint), "model": model.config.model,
            "image_size": model.config.image_size, "data": str(data), "split": split,
            "clips": count, "pairs": len(rows), "frames": int(sum(r["frames"] for r in rows)),
            "metric_names": {k: METRICS[k][0] for k in names},
            "notes": "AKD-dlib/AED-dlib/CSIM-dlib use dlib's 68-point landmarks and 128-d "
                     "embeddings (face-recognition-models), not the paper's FAN/OpenFace/"
                     "ArcFace; AKD in pixels of a 256x256 frame. Face rectangles: " +
                     ("the split's face_box of the ground-truth frame (the same for the "
                      "generated frame)" if fields else "dlib's HOG detector") + "."}
    write_report(out, protocol, aggregate, skipped, rows, per_frame, sample_rows, info,
                 tensorboard)
    return aggregate


def main(argv=None):
    args = parse_args(argv)

    def evaluate_checkpoint():
        aggregate = run(args.config, args.checkpoint, args.data, args.protocol, args.out,
                        split=args.split, max_clips=args.max_clips, max_frames=args.max_frames,
                        metric_names=args.metrics, num_sources=args.num_sources,
                        num_driving=args.num_driving, seed=args.seed,
                        batch_size=args.batch_size, tensorboard=args.tensorboard)
        print(f"wrote {args.out}/report.md: " + ", ".join(f"{k} {_fmt(v)}"
                                                         for k, v in aggregate.items()))

    return cli.run(evaluate_checkpoint, EvalError)


if __name__ == "__main__":
    sys.exit(main())
