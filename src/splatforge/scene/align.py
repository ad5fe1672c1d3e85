"""Similarity alignment of camera trajectories and pose-error statistics (for checking poses)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splatforge.scene.conventions import rotation_angle_deg
from splatforge.scene.types import Scene


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale s, rotation R, translation t minimising ||dst - (s R src + t)||^2 (Umeyama 1991).

    src, dst: (N, 3) corresponding points, N >= 3 and not collinear.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    rot = u @ sign @ vt
    var_s = (xs**2).sum() / len(src)
    scale = float(np.trace(np.diag(d) @ sign) / var_s)
    trans = mu_d - scale * rot @ mu_s
    return scale, rot, trans


@dataclass
class PoseErrors:
    matched: int
    median_rotation_deg: float
    max_rotation_deg: float
    median_center_error: float  # as a fraction of the reference scene's extent
    max_center_error: float
    rotation_deg: dict[str, float]
    center_error: dict[str, float]

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("matched", "median_rotation_deg", "max_rotation_deg",
                                              "median_center_error", "max_center_error")}


def compare_poses(estimate: Scene, reference: Scene) -> PoseErrors:
    """Align `estimate` to `reference` by a similarity on camera centres (frames matched by file
    name), then measure per-frame rotation error (degrees) and centre error (fraction of extent)."""
    ref = {f.image.name: f for f in reference.frames}
    pairs = [(f, ref[f.image.name]) for f in estimate.frames if f.image.name in ref]
    if len(pairs) < 3:
        raise ValueError(f"only {len(pairs)} frames in common; need at least 3 to align")
    src = np.array([e.center for e, _ in pairs])
    dst = np.array([r.center for _, r in pairs])
    scale, rot, trans = umeyama(src, dst)
    extent = float(np.linalg.norm(dst - dst.mean(0), axis=1).max())
    rot_err, ctr_err = {}, {}
    for (e, r), c in zip(pairs, src):
        # Camera orientation in world: c2w rotation = w2c[:3,:3].T. Aligned estimate: rot @ R_e^T.
        aligned_c2w = rot @ e.w2c[:3, :3].T
        rot_err[e.image.name] = rotation_angle_deg(aligned_c2w, r.w2c[:3, :3].T)
        ctr_err[e.image.name] = float(np.linalg.norm(scale * rot @ c + trans - r.center) / max(extent, 1e-12))
    rv, cv = np.array(list(rot_err.values())), np.array(list(ctr_err.values()))
    return PoseErrors(len(pairs), float(np.median(rv)), float(rv.max()), float(np.median(cv)), float(cv.max()),
                      rot_err, ctr_err)
