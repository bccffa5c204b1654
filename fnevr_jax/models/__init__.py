"""Networks of FNeVR and FOMM, built from a config (`configs/fnevr.py`)."""
import jax
import jax.numpy as jnp

from fnevr_jax.models.discriminator import MultiScaleDiscriminator
from fnevr_jax.models.generator import FNeVRGenerator, FOMMGenerator
from fnevr_jax.models.keypoint_detector import KPDetector

MODELS = ("fnevr", "fomm")


def build_models(config):
    """Returns {"kp_detector", "generator", "discriminator"} modules for `config`."""
    if config.model not in MODELS:
        raise ValueError(f"config.model must be one of {MODELS}, got {config.model!r}")
    dtype = jnp.dtype(config.dtype)
    kp = config.kp_detector
    num_kp = kp.num_kp
    kp_detector = KPDetector(**kp.to_dict(), dtype=dtype)
    common = dict(num_kp=num_kp, dense_motion=tuple(sorted(config.dense_motion.to_dict().items())),
                  dtype=dtype, block_expansion=config.generator.block_expansion,
                  max_features=config.generator.max_features,
                  num_down_blocks=config.generator.num_down_blocks,
                  # configs saved before the field existed used the gather
                  grid_sample_impl=config.get("grid_sample_impl", "gather"))
    if config.model == "fnevr":
        generator = FNeVRGenerator(**common, **config.fvr.to_dict(),
                                   spade_channels=config.spade.mid_channels,
                                   spade_hidden=config.spade.hidden,
                                   spade_block_channels=tuple(config.spade.block_channels))
    else:
        generator = FOMMGenerator(**common,
                                  num_bottleneck_blocks=config.generator.num_bottleneck_blocks)
    disc = config.discriminator.to_dict()
    scales = tuple(disc.pop("scales"))
    disc["dtype"] = dtype
    discriminator = MultiScaleDiscriminator(scales, tuple(sorted(disc.items())))
    return {"kp_detector": kp_detector, "generator": generator, "discriminator": discriminator}


def example_inputs(config, batch=1):
    """Zero inputs of the configured size: (image, keypoints) for `init`/`eval_shape`."""
    size = config.image_size
    image = jnp.zeros((batch, size, size, config.num_channels), jnp.float32)
    k = config.kp_detector.num_kp
    kp = {"value": jnp.zeros((batch, k, 2)), "jacobian": jnp.tile(jnp.eye(2), (batch, k, 1, 1))}
    if not config.kp_detector.estimate_jacobian:
        del kp["jacobian"]
    return image, kp


def init_variables(config, rng, with_discriminator=True):
    """Initial variables {"params": {module: ...}, "batch_stats": {module: ...}} for `config`."""
    models = build_models(config)
    image, kp = example_inputs(config)
    rngs = dict(zip(("kp_detector", "generator", "discriminator"), jax.random.split(rng, 3)))
    per_module = {
        "kp_detector": models["kp_detector"].init(rngs["kp_detector"], image),
        "generator": models["generator"].init(rngs["generator"], image, kp, kp),
    }
    if with_discriminator:
        scales = models["discriminator"].scales
        pyramid = {s: jnp.zeros((1, int(image.shape[1] * s), int(image.shape[2] * s), 3))
                   for s in scales}
        per_module["discriminator"] = models["discriminator"].init(
            rngs["discriminator"], pyramid, kp)
    return merge_modules(per_module)


def merge_modules(per_module):
    """{module: {collection: tree}} → {collection: {module: tree}} (the project's layout)."""
    out = {}
    for module, variables in per_module.items():
        for collection, tree in variables.items():
            out.setdefault(collection, {})[module] = tree
    return out


def module_variables(variables, module):
    """The variables of one module from the project's layout, ready for `Module.apply`."""
    return {c: trees[module] for c, trees in variables.items() if module in trees}
