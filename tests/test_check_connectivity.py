"""The capture check's view graph agrees with what the pose stage registers.

The check must not tell a user that a capture "splits into groups … take photos in between" when COLMAP
registers every photo (the demo capture: ORB saw 6 groups, COLMAP registered 24/24), and must still stop a
capture that cannot be posed (room_no_overlap). Registered counts: the pose stage (engine colmap, default
options) on each capture, docs/benchmarks-capture.md.
"""

from __future__ import annotations

import pytest

from splatforge.capture import CheckOptions, check_capture

# capture -> photos the pose stage registered (None: it fails, 0 of 8)
REGISTERED = {"fox": 50, "llff_fern": 20, "dtu_scan24": 49, "sacre_coeur": 10, "room_no_overlap": None}


def _says_split(advice: list[str]) -> bool:
    return any("splits into" in a or "share too few features" in a for a in advice)


def test_demo_capture_is_one_group_as_colmap_finds(demo_run):
    """The check stage of `splatforge demo` (its capture: 24 views at 320x240, seed 0; default check options)
    against what the demo's own pose stage registered."""
    from splatforge.rundir import read_json

    run, _, _ = demo_run
    check = read_json(run.manifest)["stages"]["check"]
    assert check["status"] == "done" and check["options"]["second_opinion"] is not None  # the defaults
    quality = read_json(run.quality_json)
    summary, advice = quality["summary"], quality["advice"]
    assert summary["largest_component"] == 24 and len(summary["components"]) == 1, advice
    assert quality["verdict"] != "will-fail" and not _says_split(advice), advice
    assert "sift" in summary["matched_with"]  # ORB alone splits it: the second opinion decided
    assert read_json(run.poses_json)["registered"] == 24  # as COLMAP finds


def test_without_a_second_opinion_orb_splits_the_demo(demo_run):
    """Why the second opinion exists (if ORB ever stops splitting this capture, it may be dropped)."""
    run, _, _ = demo_run
    report = check_capture(run.input / "synthetic" / "images", CheckOptions(second_opinion=None))
    assert len(report.summary["components"]) > 1 and _says_split(report.advice)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_check_agrees_with_the_pose_stage(checked_capture, name):
    # the same check as test_capture_check.py's of these captures (one per session)
    report, _, _ = checked_capture(name, sheet=name == "room_no_overlap")
    registered = REGISTERED[name]
    if registered is None:
        assert report.verdict == "will-fail" and "connectivity" in report.summary["fatal"]
        return
    # never fewer connected photos than SfM registers, and no advice to re-shoot what SfM can place
    assert report.summary["largest_component"] >= registered, report.advice
    assert report.verdict != "will-fail"
    if registered == report.summary["count"]:
        assert len(report.summary["components"]) == 1, report.advice


@pytest.mark.slow
def test_colosseum_frames_are_one_group(data_dir, tmp_path):
    from splatforge.capture import FrameOptions, extract_frames

    video = data_dir / "videos" / "colosseum.mp4"
    if not video.exists():
        pytest.skip(f"{video} missing")
    extract_frames(video, tmp_path / "run", FrameOptions())  # as `splatforge run` does: 67 frames
    report = check_capture(tmp_path / "run" / "frames")
    assert report.summary["largest_component"] == report.summary["count"] >= 60, report.advice
    assert report.verdict != "will-fail" and not any("splits into" in a for a in report.advice)
