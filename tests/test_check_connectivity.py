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


def _ingested(source, run_dir):
    from splatforge.capture.ingest import ingest
    from splatforge.rundir import RunDir

    run = RunDir(run_dir)
    ingest(source, run)
    return run


def test_sfm_connectivity_is_the_pose_stage_s_own_and_the_pose_stage_reuses_it(tmp_path, monkeypatch):
    """connectivity="sfm" (the default where pycolmap does SIFT on a GPU): the check's view graph is the pose
    stage's verified matches, and the pose stage then neither extracts nor matches again."""
    from splatforge.capture.sfm_graph import DESCRIPTION
    from splatforge.capture.stages import CHECK, CheckStageOptions
    from splatforge.poses import PoseOptions, estimate_poses
    from splatforge.rundir import read_json
    from splatforge.stage import run_stage
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    make_synthetic_capture(tmp_path / "capture", SyntheticOptions(n_views=16, width=320, height=240, seed=0))
    run = _ingested(tmp_path / "capture" / "images", tmp_path / "run")
    run_stage(CHECK, run, CheckStageOptions(connectivity="sfm"))
    summary = read_json(run.quality_json)["summary"]
    assert summary["matched_with"] == DESCRIPTION
    assert len(summary["components"]) == 1 and summary["largest_component"] == 16
    from splatforge.poses.colmap_engine import verified_pairs
    from splatforge.poses.inputs import frame_names

    names = frame_names(run)[0]
    verified = {frozenset(pair) for pair in verified_pairs(run.database, names)[0]}
    steps_without_matches = sum(frozenset(names[k:k + 2]) not in verified for k in range(len(names) - 1))
    assert summary["pairs_matched"] == len(verified) + steps_without_matches > 15

    import pycolmap

    def no_extraction(*args, **kwargs):
        raise AssertionError("features extracted again")

    monkeypatch.setattr(pycolmap, "extract_features", no_extraction)
    result = estimate_poses(run, PoseOptions(engine="colmap"))
    assert result.registered == 16
    assert "features and matches reused from the database: features and matches" in result.notes


def test_sfm_connectivity_stops_a_capture_that_cannot_be_posed(copy_capture, tmp_path):
    from splatforge.capture.stages import CHECK, CheckStageOptions
    from splatforge.errors import CaptureRejected
    from splatforge.rundir import read_json
    from splatforge.stage import run_stage

    run = _ingested(copy_capture("room_no_overlap") / "images", tmp_path / "run")
    with pytest.raises(CaptureRejected):
        run_stage(CHECK, run, CheckStageOptions(connectivity="sfm"))
    quality = read_json(run.quality_json)
    assert quality["verdict"] == "will-fail" and "connectivity" in quality["summary"]["fatal"]
    assert len(quality["summary"]["components"]) > 1


def test_auto_connectivity_uses_sfm_only_where_it_is_cheap_and_needed(monkeypatch, tmp_path):
    import shutil

    from splatforge.capture import sfm_graph
    from splatforge.capture.stages import CHECK, CheckStageOptions
    from splatforge.rundir import read_json
    from splatforge.stage import run_stage
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    make_synthetic_capture(tmp_path / "capture", SyntheticOptions(n_views=8, width=160, height=120, seed=1))
    shutil.copytree(tmp_path / "capture" / "images", tmp_path / "photos")  # without the capture's own poses
    asked = []
    monkeypatch.setattr(sfm_graph, "sfm_view_graph", lambda run, names: asked.append(names))  # -> None: quick
    for gpu, expect in ((False, 0), (True, 1)):
        monkeypatch.setattr(sfm_graph, "sfm_available", lambda gpu=gpu: gpu)
        run = _ingested(tmp_path / "photos", tmp_path / f"run{gpu}")
        run_stage(CHECK, run, CheckStageOptions(force=True))
        assert len(asked) == expect
        assert "sfm" not in read_json(run.quality_json)["summary"]["matched_with"]  # None fell back to quick
    assert asked[0] == sorted(asked[0]) and len(asked[0]) == 8
    # a capture with poses of its own is not posed by SfM: no SfM features for its check
    run = _ingested(tmp_path / "capture" / "images", tmp_path / "posed")
    run_stage(CHECK, run, CheckStageOptions(force=True))
    assert len(asked) == 1
    with pytest.raises(ValueError, match="connectivity"):
        CheckStageOptions(connectivity="colmap")


def test_sfm_view_graph_has_every_step_and_splits_where_no_pair_is_verified(monkeypatch, tmp_path):
    import numpy as np

    from splatforge.capture import sfm_graph
    from splatforge.capture.imageio import write_image
    from splatforge.poses import colmap_engine
    from splatforge.poses.pairs import PairPlan
    from splatforge.rundir import RunDir

    run = RunDir(tmp_path / "run")
    names = [f"{k:03d}.png" for k in range(5)]
    for name in names:
        write_image(run.frames / name, np.zeros((8, 8, 3), np.uint8))
    matched = colmap_engine.Matched(False, {}, PairPlan("exhaustive", "", None), "nothing", {}, {})
    monkeypatch.setattr(colmap_engine, "features_and_matches", lambda *a, **k: matched)
    # 0-1-2 and 3-4 verified (0-2 skips a step); 2-3 never: two groups
    verified = {("000.png", "001.png"): 80, ("002.png", "000.png"): 40, ("003.png", "004.png"): 12}
    monkeypatch.setattr(colmap_engine, "verified_pairs", lambda db, n: (verified, {n_: 1000 for n_ in n}))
    graph = sfm_graph.sfm_view_graph(run, names)
    assert all((k, k + 1) in graph.matches for k in range(4))
    assert not graph.matches[(1, 2)].connected and not graph.matches[(2, 3)].connected
    assert not graph.matches[(3, 4)].connected  # 12 inliers: under the pose stage's 15
    assert graph.groups == [[0, 1, 2], [3], [4]] and graph.matches[(0, 1)].overlap == 0.08

    monkeypatch.setattr(colmap_engine, "features_and_matches",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no GPU")))
    assert sfm_graph.sfm_view_graph(run, names) is None  # the check then matches on its own
