"""FNeVR / FOMM configurations.

Variants (`--config=configs/fnevr.py:VARIANT`):
  vox256  FNeVR as the official `config/vox-256.yaml` (default).
  fomm    The first-order-model generator (the paper's "FOMM baseline").
  hd512   FNeVR at 512x512; keypoint and dense-motion networks still work at 64x64.

Every network size is a field; any field can be overridden, e.g. `--config.num_kp=15`.
"""
import ml_collections

VARIANTS = ("vox256", "fomm", "hd512")


def get_config(arg=None):
    variant = arg or "vox256"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} of configs/fnevr.py; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.model = "fomm" if variant == "fomm" else "fnevr"
    c.image_size = 512 if variant == "hd512" else 256
    c.num_channels = 3
    c.dtype = "float32"  # compute dtype of the networks: float32 or bfloat16

    c.kp_detector = ml_collections.ConfigDict(dict(
        num_kp=10, block_expansion=32, max_features=1024, num_blocks=5, temperature=0.1,
        scale_factor=0.25, estimate_jacobian=True, single_jacobian_map=False, pad=0))
    c.generator = ml_collections.ConfigDict(dict(
        block_expansion=64, max_features=512, num_down_blocks=2, num_bottleneck_blocks=6))
    c.dense_motion = ml_collections.ConfigDict(dict(
        block_expansion=64, max_features=1024, num_blocks=5, scale_factor=0.25, kp_variance=0.01,
        estimate_occlusion_map=True))
    # FVR module (official `render_params`): channels of P_color and P_σ before the depth split,
    # number of depth samples D, and the width of the ray MLP f_θ.
    c.fvr = ml_collections.ConfigDict(dict(
        color_channels=128, sigma_channels=128, depth=8, hidden=128))
    c.spade = ml_collections.ConfigDict(dict(mid_channels=128))
    c.discriminator = ml_collections.ConfigDict(dict(
        scales=(1,), block_expansion=32, max_features=512, num_blocks=4, spectral_norm=True,
        use_kp=False, kp_variance=0.01))
    if variant == "hd512":
        c.kp_detector.scale_factor = 0.125
        c.dense_motion.scale_factor = 0.125
    return c
