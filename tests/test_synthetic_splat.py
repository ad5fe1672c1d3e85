"""splatforge.synthetic_splat: an orbit rendered from a splat is written as a capture that reads back posed."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from splatforge.scene import Camera, Frame, Scene, look_at_w2c, read_scene
from splatforge.scene.conventions import camera_center
from splatforge.synthetic_splat import axes_focus, make_orbit_capture, orbit_poses


def _source(tmp_path, n=8, target=(0.5, -0.2, 0.3)):
    """A portrait camera circling `target` at radius 3, 1 above it (z up)."""
    cam = Camera("PINHOLE", 120, 160, 130.0, 130.0, 60.0, 80.0)
    t = np.array(target)
    frames = [Frame(f"{k:04d}.jpg", tmp_path / f"{k:04d}.jpg", cam,
                    look_at_w2c(t + np.array([3 * np.cos(a), 3 * np.sin(a), 1.0]), t))
              for k, a in enumerate(np.linspace(0, 2 * np.pi, n, endpoint=False) + 0.3)]
    return Scene(frames), t


def _splat(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"means": torch.randn(n, 3, generator=g) * 0.4, "scales": torch.full((n, 3), -3.0),
            "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1), "opacities": torch.full((n,), 2.0),
            "sh0": torch.rand(n, 1, 3, generator=g) * 2 - 1, "shN": torch.zeros(n, 0, 3)}


def test_orbit_geometry_follows_the_source_cameras(tmp_path):
    source, target = _source(tmp_path)
    assert np.allclose(axes_focus(source), target, atol=1e-6)
    poses = orbit_poses(source, 12)
    centers = np.array([camera_center(p) for p in poses])
    assert np.allclose(np.linalg.norm(centers[:, :2] - target[:2], axis=1), 3.0, atol=1e-6)
    assert np.allclose(centers[:, 2], target[2] + 1.0, atol=1e-6)
    for p, c in zip(poses, centers):  # every view looks at the target
        d = (target - c) / np.linalg.norm(target - c)
        assert np.allclose(p[2, :3], d, atol=1e-6)


def test_orbit_capture_reads_back_with_its_poses(tmp_path):
    source, target = _source(tmp_path)
    params = _splat()
    params["means"] += torch.as_tensor(target, dtype=torch.float32)
    out = tmp_path / "orbit"
    written = make_orbit_capture(params, 0, source, out, n_views=5, width=64, height=48, backend="reference",
                                 device="cpu")
    back = read_scene(out / "transforms.json")
    assert [f.name for f in back.frames] == [f"images/{k:04d}.jpg" for k in range(1, 6)]
    for a, b in zip(written.frames, back.frames):
        assert np.allclose(a.w2c, b.w2c, atol=1e-6)
        assert b.camera.model == "PINHOLE" and (b.camera.width, b.camera.height) == (64, 48)
        assert np.isclose(b.camera.fx, 130.0 * 48 / 120)  # the source's short-side field of view
        img = cv2.imread(str(b.image))
        assert img.shape == (48, 64, 3) and img.std() > 1, "the splat should be visible"
    assert back.points is not None and len(back.points) == 400
    assert np.allclose(back.points.mean(axis=0), target, atol=0.15)


def test_orbit_keeps_to_the_arc_the_source_cameras_cover(tmp_path):
    source, target = _source(tmp_path, n=12)
    half = type(source)([f for f in source.frames if camera_center(f.w2c)[1] > target[1]])  # one side only
    centers = np.array([camera_center(p) for p in orbit_poses(half, 20)])
    assert (centers[:, 1] > target[1] - 0.5).all(), "no view from the side the source never saw"
    spread = np.degrees(np.ptp(np.arctan2(centers[:, 1] - target[1], centers[:, 0] - target[0])))
    assert spread > 120
