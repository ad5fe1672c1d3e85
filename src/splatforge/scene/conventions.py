"""Coordinate conventions, stated once for the whole project. Every conversion lives here.

Inside splatforge
-----------------
* A camera pose is a **world-to-camera** 4x4 matrix `w2c` (float64), mapping homogeneous world
  points to camera coordinates: `x_cam = w2c @ [x_world, 1]`.
* Camera axes are **OpenCV**: x right, y down, z forward (the camera looks along +z).
* Intrinsics are pixels with the origin at the top-left corner of the top-left pixel
  (COLMAP's convention: the centre of pixel (0, 0) is (0.5, 0.5)).
* Rotations as quaternions are (w, x, y, z), unit norm.
* Angles are radians in code, degrees in reports.

At the edges
------------
* COLMAP / pycolmap `cam_from_world`: world-to-camera, OpenCV axes. Same as ours.
* gsplat `viewmats`: world-to-camera, OpenCV axes. Same as ours.
* VGGT `extrinsic` (3x4): world-to-camera, OpenCV axes. Same as ours (pad to 4x4).
* nerfstudio / instant-ngp `transforms.json` `transform_matrix`: **camera-to-world, OpenGL axes**
  (x right, y up, z backward). Convert with `w2c_from_opengl_c2w` / `opengl_c2w_from_w2c`.
"""

from __future__ import annotations

import numpy as np

# Right-multiplying a camera-to-world matrix by this flips the camera's y and z axes: it turns an
# OpenCV-axes camera into an OpenGL-axes one and back (it is its own inverse).
OPENCV_OPENGL_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def as_pose(matrix: np.ndarray) -> np.ndarray:
    """A 3x4 or 4x4 rigid transform as a 4x4 float64 matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (4, 4):
        return m.copy()
    if m.shape == (3, 4):
        out = np.eye(4)
        out[:3] = m
        return out
    raise ValueError(f"expected a 3x4 or 4x4 pose, got shape {m.shape}")


def orthonormalize(pose: np.ndarray) -> np.ndarray:
    """The pose with its rotation block replaced by the nearest rotation matrix (SVD).

    Poses read from text files are often orthonormal only to ~1e-7; a quaternion (COLMAP) cannot
    hold such a matrix, so readers project once at the edge and every later conversion is exact.
    """
    pose = as_pose(pose)
    u, _, vt = np.linalg.svd(pose[:3, :3])
    rot = u @ vt
    if np.linalg.det(rot) < 0:
        u[:, -1] *= -1
        rot = u @ vt
    pose[:3, :3] = rot
    return pose


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (exact for a rotation block; no general matrix inverse)."""
    pose = as_pose(pose)
    rot, trans = pose[:3, :3], pose[:3, 3]
    out = np.eye(4)
    out[:3, :3] = rot.T
    out[:3, 3] = -rot.T @ trans
    return out


def c2w_from_w2c(w2c: np.ndarray) -> np.ndarray:
    """Camera-to-world (OpenCV axes) from world-to-camera (OpenCV axes)."""
    return invert_pose(w2c)


def w2c_from_c2w(c2w: np.ndarray) -> np.ndarray:
    """World-to-camera from camera-to-world (both OpenCV axes)."""
    return invert_pose(c2w)


def opengl_c2w_from_w2c(w2c: np.ndarray) -> np.ndarray:
    """nerfstudio's `transform_matrix` (camera-to-world, OpenGL axes) from our world-to-camera."""
    return invert_pose(w2c) @ OPENCV_OPENGL_FLIP


def w2c_from_opengl_c2w(c2w_gl: np.ndarray) -> np.ndarray:
    """Our world-to-camera (OpenCV axes) from nerfstudio's camera-to-world with OpenGL axes."""
    return invert_pose(orthonormalize(as_pose(c2w_gl) @ OPENCV_OPENGL_FLIP))


def camera_center(w2c: np.ndarray) -> np.ndarray:
    """The camera's position in world coordinates, shape (3,)."""
    w2c = as_pose(w2c)
    return -w2c[:3, :3].T @ w2c[:3, 3]


def viewing_direction(w2c: np.ndarray) -> np.ndarray:
    """Unit vector, in world coordinates, along which the camera looks (+z of OpenCV axes)."""
    return as_pose(w2c)[2, :3].copy()


def rotation_angle_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> float:
    """Angle in degrees of the rotation that takes rot_b to rot_a.

    atan2(sin, cos) rather than arccos(cos): near zero, arccos turns the trace's float64 round-off
    (~1e-16) into ~1e-6 degrees of false error; the skew part keeps full precision there."""
    rel = np.asarray(rot_a, dtype=np.float64)[:3, :3] @ np.asarray(rot_b, dtype=np.float64)[:3, :3].T
    sin = 0.5 * np.linalg.norm([rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]])
    cos = (np.trace(rel) - 1.0) / 2.0
    return float(np.degrees(np.arctan2(sin, cos)))


def quat_from_rotmat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 from a 3x3 rotation matrix."""
    m = np.asarray(rot, dtype=np.float64)
    # Shepperd's method: pick the largest diagonal term for numerical stability.
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = np.array([0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s])
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = np.array([(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s])
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = np.array([(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s])
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = np.array([(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def rotmat_from_quat(quat: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix from a quaternion (w, x, y, z); the quaternion need not be normalised."""
    w, x, y, z = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def look_at_w2c(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera (OpenCV axes) of a camera at `eye` looking at `target`, with world `up` up."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: pick any perpendicular
        right = np.cross(forward, [1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    w2c = np.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = -rot @ eye
    return w2c
