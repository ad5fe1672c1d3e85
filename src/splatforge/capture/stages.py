"""The capture stages: `frames` (the input into `frames/`) and `check` (quality, and the gate)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splatforge.capture.check import CheckOptions
from splatforge.capture.frames import FrameOptions
from splatforge.errors import InputError
from splatforge.rundir import RunDir
from splatforge.stage import Events, Stage


def _run_frames(run: RunDir, options: FrameOptions, events: Events) -> dict[str, Any]:
    from splatforge.capture.ingest import ingest

    source = run.read_manifest().get("input")
    if not source:
        raise InputError(f"{run.root} records no input", "give the photos, video or zip to start a run")
    return ingest(Path(source), run, frame_count=options.count, frame_fps=options.fps).to_dict()


CONNECTIVITY = ("auto", "quick", "sfm")


@dataclass
class CheckStageOptions(CheckOptions):
    force: bool = False  # continue past a `will-fail` verdict (the gate before poses)
    # Which images share features: "sfm" from the pose stage's own SIFT features and verified matches, made
    # here and kept in colmap/database.db for the pose stage (capture/sfm_graph.py); "quick" from the check's
    # own ORB/SIFT matching; "auto": sfm where pycolmap does SIFT on a GPU and the capture has no poses of its
    # own, else quick.
    connectivity: str = "auto"

    def __post_init__(self) -> None:
        if self.connectivity not in CONNECTIVITY:
            raise ValueError(f"connectivity must be one of {', '.join(CONNECTIVITY)}, not {self.connectivity!r}")


def _run_check(run: RunDir, options: CheckStageOptions, events: Events) -> dict[str, Any]:
    from splatforge.capture import sfm_graph
    from splatforge.capture.check import check_capture, gate, write_quality

    own_poses = _has_own_poses(run)
    sfm = options.connectivity == "sfm" or (options.connectivity == "auto" and not own_poses
                                            and sfm_graph.sfm_available())
    graph = (lambda names: sfm_graph.sfm_view_graph(run, names)) if sfm else None
    report = check_capture(run.frames, options, report_dir=run.quality_dir, view_graph=graph)
    write_quality(report, run.quality_json)
    gate(report, force=options.force or own_poses, details=run.quality_json.name)
    return {"score": report.score, "verdict": report.verdict}


def _has_own_poses(run: RunDir) -> bool:
    """A capture that comes with its poses does not need SfM to connect it: the gate does not apply."""
    from splatforge.poses.existing import find_existing_poses, recorded_input
    from splatforge.poses.inputs import frame_names

    source = recorded_input(run)
    found = find_existing_poses(source, frame_names(run)[0]) if source is not None else None
    return found is not None and found.usable


FRAMES = Stage(
    name="frames", options=FrameOptions, run=_run_frames,
    done=lambda run: run.frames.is_dir() and any(run.frames.iterdir()),
    reads=("run.json:input",), writes=("frames/", "frames.json", "ingest.json"),
    help="the input (photos, a video, a zip) as the frames the pipeline works on")

CHECK = Stage(
    name="check", options=CheckStageOptions, run=_run_check, done=lambda run: run.quality_json.exists(),
    reads=("frames/",), writes=("quality.json", "quality/"),
    help="capture quality: score, verdict, advice; stops a capture that cannot work")
