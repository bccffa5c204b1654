"""Rotations from Euler angles: the project's one convention, R = Rz @ Ry @ Rx.

- `euler_to_matrix(angles)`: angles [..., 3] about (x, y, z), the NeRF head's camera deltas;
- `pose_to_matrix(pose)` / `matrix_to_pose(rot)`: the head pose [..., 3] = (yaw about y, pitch
  about x, roll about z) of the shards' `pose` field and of the pose editor (FNeVR eq. 11).

numpy inputs compute in float64 numpy (the data pipelines); jax arrays stay on the device.
"""
import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST


def euler_to_matrix(angles):
    """Rotation Rz @ Ry @ Rx [..., 3, 3] from angles [..., 3] about (x, y, z), in radians."""
    xp = jnp if isinstance(angles, jax.Array) else np
    if xp is np:
        angles = np.asarray(angles, np.float64)
    cx, cy, cz = (xp.cos(angles[..., i]) for i in range(3))
    sx, sy, sz = (xp.sin(angles[..., i]) for i in range(3))
    one, zero = xp.ones_like(cx), xp.zeros_like(cx)
    shape = angles.shape[:-1] + (3, 3)
    rx = xp.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(shape)
    ry = xp.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(shape)
    rz = xp.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(shape)
    if xp is np:
        return rz @ ry @ rx
    return jnp.matmul(rz, jnp.matmul(ry, rx, precision=HIGHEST), precision=HIGHEST)


def pose_to_matrix(pose):
    """Head rotation Rz(roll) @ Ry(yaw) @ Rx(pitch) [..., 3, 3] from (yaw, pitch, roll) [..., 3]."""
    return euler_to_matrix(pose[..., [1, 0, 2]] if isinstance(pose, jax.Array)
                           else np.asarray(pose, np.float64)[..., [1, 0, 2]])


def matrix_to_pose(rot):
    """Inverse of `pose_to_matrix` (numpy): (..., 3, 3) to (..., 3) yaw, pitch, roll."""
    rot = np.asarray(rot, np.float64)
    yaw = np.arcsin(np.clip(-rot[..., 2, 0], -1.0, 1.0))
    pitch = np.arctan2(rot[..., 2, 1], rot[..., 2, 2])
    roll = np.arctan2(rot[..., 1, 0], rot[..., 0, 0])
    return np.stack([yaw, pitch, roll], -1)
