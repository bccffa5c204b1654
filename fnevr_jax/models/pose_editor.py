"""Lightweight Pose Editor (LPE), FNeVR §3.4 (FNeVR eq. 11): keypoints under a head rotation.

f_editor(r, p_S, J_S) → (p, J): an MLP maps a rotation matrix and the source keypoints and
Jacobians to the keypoints and Jacobians of the rotated head; the animation then warps the
source with them as if they were driving keypoints.

Choices where the paper is silent: the rotation is the *relative* head rotation R_D R_S^T
(driving relative to source, as a 3x3 matrix from yaw, pitch, roll), so a user edits pose
without knowing the source's absolute pose; the MLP predicts offsets added to p_S and J_S
(the official checkpoint calls the module `kp_delta_predictor`); its outputs are compared
with the driving keypoints directly (FNeVR eq. 12).
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from fnevr_jax.ops.rotations import pose_to_matrix


def relative_rotation(source_pose, driving_pose):
    """R_D R_S^T from the Euler angles of both frames."""
    return pose_to_matrix(driving_pose) @ jnp.swapaxes(pose_to_matrix(source_pose), -1, -2)


class PoseEditor(nn.Module):
    """(δ_value [B,K,2], δ_jacobian [B,K,2,2]) = f_editor(r [B,3,3], p_S, J_S) (FNeVR eq. 11)."""
    hidden: Sequence[int] = (256, 256, 256)

    @nn.compact
    def __call__(self, rotation, kp_source):
        value, jac = kp_source["value"], kp_source["jacobian"]
        b, k = value.shape[:2]
        x = jnp.concatenate([rotation.reshape(b, 9), value.reshape(b, -1), jac.reshape(b, -1)], -1)
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"dense_{i}")(x))
        delta = nn.Dense(k * 6, kernel_init=nn.initializers.zeros, name="out")(x)
        return {"value": value + delta[:, :2 * k].reshape(b, k, 2),
                "jacobian": jac + delta[:, 2 * k:].reshape(b, k, 2, 2)}
