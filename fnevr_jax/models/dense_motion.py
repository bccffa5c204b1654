"""Dense motion network (FNeVR eq. 1-2, §3.1, from FOMM): masks M_k, flow T̂ and occlusion O."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnevr_jax.models.blocks import Hourglass, conv, precise
from fnevr_jax.ops import anti_alias_downsample, coordinate_grid, grid_sample, inv2x2, kp2gaussian


def sparse_motions(size, kp_source, kp_driving):
    """K+1 backward flows [B,K+1,h,w,2]: identity, then T_k(z) = p_S + J_S J_D^-1 (z - p_D) (FNeVR eq. 1)."""
    identity = coordinate_grid(size, kp_source["value"].dtype)
    z = identity[None, None] - kp_driving["value"][:, :, None, None, :]
    if "jacobian" in kp_driving:
        jac = jnp.matmul(kp_source["jacobian"], inv2x2(kp_driving["jacobian"]),
                         precision=jax.lax.Precision.HIGHEST)
        z = jnp.sum(jac[:, :, None, None] * z[..., None, :], axis=-1)
    motions = z + kp_source["value"][:, :, None, None, :]
    identity = jnp.broadcast_to(identity, (motions.shape[0], 1) + identity.shape)
    return jnp.concatenate([identity, motions], axis=1)


class DenseMotionNetwork(nn.Module):
    """Predicts the dense backward flow (FNeVR eq. 2) and occlusion map from the source and keypoints."""
    num_kp: int = 10
    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01
    estimate_occlusion_map: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, source, kp_source, kp_driving, train=False):
        source = anti_alias_downsample(source, self.scale_factor)
        b, h, w, c = source.shape
        k1 = self.num_kp + 1
        heat = (kp2gaussian(kp_driving["value"], (h, w), self.kp_variance)
                - kp2gaussian(kp_source["value"], (h, w), self.kp_variance))
        heat = jnp.concatenate([jnp.zeros_like(heat[..., :1]), heat], axis=-1)  # [B,h,w,K+1]

        motion = sparse_motions((h, w), kp_source, kp_driving)  # [B,K+1,h,w,2]
        repeated = jnp.broadcast_to(source[:, None], (b, k1, h, w, c)).reshape(b * k1, h, w, c)
        deformed = grid_sample(repeated, motion.reshape(b * k1, h, w, 2).astype(source.dtype))
        deformed = deformed.reshape(b, k1, h, w, c).transpose(0, 2, 3, 1, 4)  # [B,h,w,K+1,C]

        # Per group k the channels are [heat_k, R_k, G_k, B_k] (official channel order).
        x = jnp.concatenate([heat[..., None].astype(deformed.dtype), deformed], axis=-1)
        x = x.reshape(b, h, w, k1 * (c + 1)).astype(self.dtype)
        features = Hourglass(self.block_expansion, self.num_blocks, self.max_features, self.dtype,
                             name="hourglass")(x, train)
        mask_logits = conv(k1, 7, 3, self.dtype, "mask")(features)
        mask = jax.nn.softmax(mask_logits.astype(precise(self.dtype)), axis=-1)  # [B,h,w,K+1]
        deformation = jnp.sum(mask.transpose(0, 3, 1, 2)[..., None] * motion, axis=1)
        out = {"mask": mask, "deformation": deformation,
               "sparse_deformed": deformed.transpose(0, 3, 1, 2, 4)}
        if self.estimate_occlusion_map:
            occlusion = conv(1, 7, 3, self.dtype, "occlusion")(features)
            out["occlusion_map"] = jax.nn.sigmoid(occlusion.astype(precise(self.dtype)))
        return out
