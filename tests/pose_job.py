"""The pose stage on one capture for test_poses_real.py, in a process of its own (run in the background while
other tests run: conftest.py, BackgroundCommand).

    python tests/pose_job.py CAPTURE OUT

CAPTURE names a capture of ../shared/data (conftest.shared_data_dir; copied to OUT/capture first: the shared
data is never written) or is `forward-facing` (rendered into OUT/capture by forward_facing_capture). The stage runs exactly as the tests
ran it in-process: estimate_poses_for(OUT/capture/images, OUT/run, PoseOptions(engine="colmap")); its result
is OUT/run/poses.json (PoseResult.to_dict()).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np


def forward_facing_capture(out: Path, spacing: float = 0.05, grid: int = 5, size=(320, 240)) -> None:
    """An LLFF-like capture: cameras on a small grid, all looking the same way (little parallax)."""
    import cv2

    from splatforge.scene.conventions import look_at_w2c
    from splatforge.scene.transforms import write_transforms
    from splatforge.scene.types import Frame, Scene
    from splatforge.synthetic import SyntheticOptions, build_world, make_camera, render_view

    opts = SyntheticOptions(width=size[0], height=size[1], fov_deg=60, seed=1)
    world, camera = build_world(opts), make_camera(opts)
    centre, target = np.array([4.0, 0.0, 1.2]), np.array([0.0, 0.0, 0.5])
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    (out / "images").mkdir(parents=True)
    frames = []
    for k in range(grid * grid):
        i, j = k % grid, k // grid
        eye = centre + spacing * ((i - (grid - 1) / 2) * right + (j - (grid - 1) / 2) * up)
        w2c = look_at_w2c(eye, eye + forward)
        path = out / "images" / f"{k + 1:03d}.png"
        cv2.imwrite(str(path), render_view(world, camera, w2c)[:, :, ::-1])
        frames.append(Frame(name=f"images/{path.name}", image=path, camera=camera, w2c=w2c))
    write_transforms(Scene(frames=frames), out / "transforms.json")


def main(capture: str, out: Path) -> None:
    from conftest import shared_data_dir
    from splatforge.poses import PoseOptions, estimate_poses_for

    if capture == "forward-facing":
        forward_facing_capture(out / "capture")
    else:
        shutil.copytree(shared_data_dir() / capture, out / "capture")
    # engine colmap: fox's own transforms.json would otherwise be used (engine auto)
    estimate_poses_for(out / "capture" / "images", out / "run", PoseOptions(engine="colmap"))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
