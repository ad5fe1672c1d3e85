"""The pose stage: camera poses and intrinsics for the run's frames (see `estimate_poses`)."""

from __future__ import annotations

from typing import Any

from splatforge.poses.options import PoseOptions
from splatforge.rundir import RunDir
from splatforge.stage import Events, Stage

SUMMARY_KEYS = ("engine", "registered", "total", "mean_reprojection_error", "points", "mapper", "seconds")


def _run_poses(run: RunDir, options: PoseOptions, events: Events) -> dict[str, Any]:
    from splatforge.poses import estimate_poses

    def on_step(step: str, fraction: float) -> None:
        events.check("poses")
        events.progress("poses", fraction, step)

    data = estimate_poses(run, options, progress=on_step).to_dict()
    return {k: data.get(k) for k in SUMMARY_KEYS}


POSES = Stage(
    name="poses", options=PoseOptions, run=_run_poses,
    done=lambda run: run.transforms_json.exists() and run.sparse.exists(),
    reads=("frames/", "frames.json"),
    writes=("colmap/", "distorted/", "sparse/0/", "images", "images_undistorted/", "transforms.json", "poses.json"),
    weight=0.2, help="camera poses and intrinsics (COLMAP model, transforms.json, undistorted images)")
