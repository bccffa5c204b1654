"""Drivable conditional-NeRF head model (`shared/papers/nerf_head_model.md`).

Variants (`get_config(arg)`):
  paper512  the paper's model (default): 32x32x512 feature map, 64 samples per ray, 512x512
            output through 4 renderer units, identity 512-d (AdaFace), expression 46-d
            (FaceWarehouse), MLP 8x384 with a skip into layer 5; Adam, batch 4, 20 epochs.
  quick     the built-in synthetic heads (`data_pipelines.synthetic`: identity 16-d,
            expression 6-d) at 64x64 output (16x16x64 features, 24 samples, MLP 4x64);
            batch 2, about 0.35 s a training step on 2 CPU cores.
  headnerf  HeadNeRF's network (CrisHY1995/headnerf, `NetWorks/HeadNeRFNet.py`), the model its
            published checkpoints hold: identity 100 + expression 79 into the density trunk,
            texture 100 + illumination 27 into the feature branch (no view direction), PE
            [x, sin/cos(2^k x)] k < 10, rays through pixel corners, 64 samples at the near
            edge of each bin between z = 2.5 and -3.5, cumulative-product transmittance,
            PixelShuffle renderer of 1x1 convs. `config.headnerf` holds HeadNeRF's `para`:
            Reso32 (32, 256, 256, the default), Reso32HR (32, 256, 512), Reso64 (64, 256, 512).

Commands:
  python -m data_pipelines.synthetic --output data/synthetic
  python train.py --config=configs/nerf_head.py:quick --workdir=runs/nerf
  python train.py --config=configs/nerf_head.py --workdir=runs/nerf512 --config.data.dir=SHARDS
  python -m fnevr_jax.nerf_head.fit --config=configs/nerf_head.py:quick --synthetic \
      --workdir=/tmp/nerf_head_fit
  python -m fnevr_jax.nerf_head.fit --config=configs/nerf_head.py --checkpoint=CKPT \
      --image=face.png --mask=mask.png --init-codes=codes.npz --workdir=/tmp/fit
  python benchmarks/nerf_head.py
  python -m fnevr_jax.convert --model headnerf --checkpoint model_Reso32.pth --out ckpt/hn32
Overrides as usual, e.g. `--config.model.id_dim=100 --config.loss.background_weight=1`.
Training reads shards with the fields of `fnevr_jax.data.loaders.NERF_FIELDS`.
"""
import ml_collections

VARIANTS = ("paper512", "quick", "headnerf")
# HeadNeRF's published models: `para` = (featmap_size, featmap_nc, pred_img_size).
HEADNERF_RESOLUTIONS = {"Reso32": (32, 256, 256), "Reso32HR": (32, 256, 512),
                        "Reso64": (64, 256, 512)}


def _headnerf(resolution="Reso32"):
    """HeadNeRF's `para` (HeadNeRFOptions.BaseOptions): the sizes a checkpoint is built for."""
    para = ml_collections.ConfigDict()
    para.featmap_size, para.featmap_nc, para.pred_img_size = HEADNERF_RESOLUTIONS[resolution]
    return para


def _model(variant, para=None):
    model = ml_collections.ConfigDict()
    model.feature_size = 32           # volume-rendered feature map is feature_size^2
    model.feature_channels = 512      # I_F channels (paper section 2.2.2)
    model.output_size = 512           # log2(output / feature) renderer units (section 2.2.3)
    model.num_samples = 64
    model.id_dim = 512                # z_id width; other trackers' codes: set it here
    model.expr_dim = 46               # beta width
    model.mlp_width = 384
    model.mlp_depth = 8
    model.mlp_skip_layer = 5          # the trunk input is concatenated into this layer
    model.xyz_freqs = 10
    model.dir_freqs = 4
    model.posenc_form = "paper"       # "paper": NHM eq. 2 (with pi); "headnerf": no pi, raw input
    model.z_near = 2.5                # sampling slab between world planes z_near and z_far
    model.z_far = -3.5
    model.pixel_offset = 0.5          # rays through pixel centres (0.0: HeadNeRF's corners)
    model.renderer_min_channels = 32
    model.background_init = 1.0       # learnable background feature map, initial value
    model.remat = True                # rematerialise the MLP in the backward pass
    model.density_activation = "relu"  # HeadNeRF's; "softplus": mip-NeRF's, never dead
    if variant == "quick":
        model.feature_size = 16
        model.feature_channels = 64
        model.output_size = 64
        model.num_samples = 24
        model.mlp_width = 64
        model.mlp_depth = 4
        model.mlp_skip_layer = 2
        model.xyz_freqs = 6
        model.dir_freqs = 2
        model.renderer_min_channels = 16
        model.id_dim = 16                 # the synthetic heads' codes (data_pipelines.synthetic)
        model.expr_dim = 6
        model.remat = False
        # With ReLU, 1 of 8 random inits had zero opacity on every ray of the synthetic heads
        # (so no gradient ever reached the MLP): the 64-px model then learns one static face
        # in the background feature map. softplus trains from every init.
        model.density_activation = "softplus"
    model.appearance_dim = 0          # codes of the feature branch (HeadNeRF: 100 + 27)
    model.view_dirs = True            # gamma(d) into the feature branch (NHM eq. 6)
    model.sample_position = 0.5       # deterministic samples: bin midpoints (0.0: near edges)
    model.transmittance = "exp"       # exp(-cumsum); "cumprod": HeadNeRF's prod(1 - a + 1e-10)
    model.renderer_style = "giraffe"  # paper/GIRAFFE 3x3 convs; "headnerf": PixelShuffle 1x1
    if variant == "headnerf":
        model.feature_size = para.get_ref("featmap_size")
        model.feature_channels = para.get_ref("featmap_nc")
        model.output_size = para.get_ref("pred_img_size")
        model.id_dim = 100
        model.expr_dim = 79
        model.appearance_dim = 127
        model.view_dirs = False
        model.posenc_form = "headnerf"
        model.pixel_offset = 0.0
        model.sample_position = 0.0
        model.transmittance = "cumprod"
        model.renderer_style = "headnerf"
        model.remat = False
    return model


def _camera(variant):
    """Default camera on +z looking at the origin (used when no camera is given)."""
    camera = ml_collections.ConfigDict()
    camera.focal_scale = 812.0 / 400.0    # HeadNeRF's fitting camera, f = 812 S / 400 px
    camera.distance = 6.2
    if variant == "quick":
        camera.focal_scale = 2.0          # the synthetic heads' camera
    return camera


def _loss(variant):
    loss = ml_collections.ConfigDict()
    loss.photometric_weight = 1.0         # head-masked L1 (NHM eq. 9)
    loss.photometric_distance = "l1"      # "l2": HeadNeRF's head MSE
    loss.perceptual_weight = 10.0         # lambda (NHM eq. 11, section 4.1)
    # "l2sq": NHM eq. 10 as the per-layer mean squared difference, summed over the 4 layers (the
    # paper's normalisation is not given); "l1": HeadNeRF's fitting loss (per-layer mean |.|).
    loss.perceptual_distance = "l2sq"
    loss.perceptual_size = 224            # VGG16 input size (bilinear resize)
    # Deviation from the paper (HeadNeRF): MSE of the render outside the head mask and of the
    # rendered background feature map against white. 0 disables both.
    loss.background_weight = 0.0
    if variant == "quick":
        loss.perceptual_size = 64         # VGG16 on the 64x64 images themselves (CPU cost)
    if variant == "headnerf":             # HeadNeRF's fitting losses (HeadNeRFLossUtils)
        loss.photometric_distance = "l2"
        loss.perceptual_weight = 1.0
        loss.perceptual_distance = "l1"
        loss.background_weight = 1.0
    return loss


def _fit():
    """Inversion of the renderer (HeadNeRF's FittingSingleImage settings)."""
    fit = ml_collections.ConfigDict()
    fit.num_iters = 300
    fit.lr_id = 0.015
    fit.lr_expr = 0.015
    fit.lr_appearance = 0.01              # HeadNeRF's texture + illumination codes
    fit.lr_camera = 0.001
    fit.lr_decay = 0.1                    # lr * lr_decay ** (it / num_iters)
    fit.reg_id = 0.001                    # mean squared offsets
    fit.reg_expr = 1.0
    fit.reg_appearance = 0.001
    fit.reg_camera = 0.001
    return fit


def _data(variant):
    """Training frames (`fnevr_jax.data.loaders.nerf_samples`) and the held-out evaluation."""
    data = ml_collections.ConfigDict()
    data.dir = ""                         # shards with NERF_FIELDS (fnevr_jax.data.loaders)
    data.worker_count = 2                 # grain worker processes decoding frames
    # The last `holdout_frames` of every training clip are left out of training; evaluation
    # renders (up to `eval_frames` of) them from their own codes and cameras.
    data.holdout_frames = 8
    data.eval_frames = 1024
    data.eval_batch_size = 16
    # PSNR baseline: the per-pixel mean of this many training frames (a seeded random draw,
    # each on white outside its head mask).
    data.mean_image_frames = 1024
    if variant == "quick":
        data.dir = "data/synthetic"
        data.eval_frames = 256
        data.mean_image_frames = 512
    return data


def _train(variant):
    """Adam on the network weights (paper section 4.1: batch 4, 20 epochs; lr not given)."""
    train = ml_collections.ConfigDict()
    train.batch_size = 4
    train.num_epochs = 20
    train.num_steps = -1                  # > 0 ends the run there; lr still spans num_epochs
    # The paper gives no learning rate. Spec 2.4 (inferred): 5e-4 decayed log-linearly to 5e-5
    # over the run, after a linear warmup from lr / 100 (mipnerf's delay multiplier).
    train.lr = 5e-4
    train.lr_final = 5e-5
    train.warmup_steps = 1000
    train.adam_b1 = 0.9
    train.adam_b2 = 0.999
    train.seed = 0
    if variant == "quick":
        # Measured on 2 CPU cores (4 synthetic identities, 100-200 steps): batch 2 learns as
        # much per step as 4 or 8 at half or a quarter of the time (VGG16 is most of a step);
        # held-out PSNR after 200 steps 23.1 dB at lr 1e-3, 23.5 at 2e-3, 24.0 at 5e-3, 23.6
        # at 1e-2 (mean image 16.4); 3e-3 with a 50-step warmup sits between the best two.
        train.batch_size = 2
        train.num_epochs = 1
        train.lr = 3e-3
        train.lr_final = 3e-4
        train.warmup_steps = 50
    return train


def _log(variant):
    log = ml_collections.ConfigDict()
    log.every_steps = 50
    log.image_every_steps = 1000
    log.eval_every_steps = 5000
    log.checkpoint_every_steps = 2000
    log.keep_checkpoints = 3
    if variant == "quick":
        log.update(every_steps=10, image_every_steps=200, eval_every_steps=500,
                   checkpoint_every_steps=500)
    return log


def get_config(arg=None):
    """Returns the config of variant `arg` ("paper512" when empty)."""
    variant = arg or "paper512"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    config = ml_collections.ConfigDict()
    config.task = "nerf_head"             # fnevr_jax.training.tasks.TASKS
    config.model_name = "nerf_head"
    config.variant = variant
    config.seed = 0                       # fitting's --synthetic problem
    # Compute dtype of training and evaluation (the MLP, the renderer, the VGG16 loss network):
    # "float32" or "bfloat16" (mixed precision: parameters, optimizer state, densities,
    # compositing and the losses stay float32). Rendering and fitting a checkpoint use float32.
    config.dtype = "float32"
    if variant == "headnerf":
        config.headnerf = _headnerf()
    config.model = _model(variant, config.get("headnerf"))
    config.camera = _camera(variant)
    config.loss = _loss(variant)
    config.fit = _fit()
    config.data = _data(variant)
    config.train = _train(variant)
    config.log = _log(variant)
    return config
