"""Pose stage on real captures (../shared/data) and on the synthetic capture: registration and accuracy.

All slow (minutes on 2 cores): deselect with `-m "not slow"`. Data is copied to a temp folder first. SfM on
the real captures and on the forward-facing one runs in the background while other tests run, one capture at
a time (tests/pose_job.py through conftest.py's BackgroundCommand); the tests here read what it wrote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from splatforge.errors import PoseError
from splatforge.poses import PoseOptions, estimate_poses_for
from splatforge.scene import read_colmap, read_scene
from splatforge.scene.align import compare_poses

pytestmark = pytest.mark.slow

POSE_JOB = Path(__file__).resolve().parent / "pose_job.py"


def _pose_job(capture: str):
    return lambda folder: [sys.executable, str(POSE_JOB), capture, str(folder)]


BACKGROUND_COMMANDS = {f"poses:{name}": _pose_job(name)
                       for name in ("fox", "llff_fern", "dtu_scan24", "sacre_coeur", "forward-facing")}


def _posed(background, data_dir, name):
    """(capture copy, run folder, the PoseResult as poses.json holds it) of
    estimate_poses_for(capture/images, run, PoseOptions(engine="colmap")), run by tests/pose_job.py."""
    if data_dir is not None and not (data_dir / name).exists():
        pytest.skip(f"test capture {name} not found in {data_dir}")
    job = background(f"poses:{name}")
    done = job.result()
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = job.folder / "run"
    return job.folder / "capture", run_dir, SimpleNamespace(**json.loads((run_dir / "poses.json").read_text()))


@pytest.mark.background("poses:fox")
def test_fox_all_registered_and_accurate(background, data_dir):
    src, run_dir, result = _posed(background, data_dir, "fox")
    assert result.engine == "colmap"
    assert result.registered == result.total == 50 and result.unregistered == []
    reference = read_scene(src / "transforms.json")
    err = compare_poses(read_colmap(run_dir / "sparse" / "0", run_dir / "frames"), reference)
    assert err.matched == 50
    # the fast mapping settings (PoseOptions defaults) keep issue 17's bound: 0.2 degrees (measured 0.177)
    assert PoseOptions().mapping_preset == "fast"
    assert err.median_rotation_deg <= 0.2 and err.median_center_error <= 0.01, err.to_dict()
    train = read_scene(run_dir / "transforms.json")  # the training scene: PINHOLE, undistorted images, points
    assert {f.camera.model for f in train.frames} == {"PINHOLE"} and len(train.points) == result.points > 1000
    assert compare_poses(train, reference).median_rotation_deg <= 0.5
    poses = json.loads((run_dir / "poses.json").read_text())
    steps = {"features", "matching", "mapping", "undistortion", "total"}
    assert set(poses["seconds"]) >= steps and set(poses["cpu_seconds"]) >= steps


@pytest.mark.parametrize("name,minimum", [pytest.param(name, minimum, marks=pytest.mark.background(f"poses:{name}"))
                                          for name, minimum in (("llff_fern", 20), ("dtu_scan24", 49),
                                                                ("sacre_coeur", 8))])
def test_real_captures_register(background, data_dir, name, minimum):
    _, run_dir, result = _posed(background, data_dir, name)
    assert result.registered >= minimum, (result.unregistered_reasons, result.notes)
    assert set(result.unregistered_reasons) == set(result.unregistered)  # every missing image has a reason
    assert result.mean_reprojection_error < 2.0 and (run_dir / "transforms.json").exists()


def test_room_without_overlap_fails_with_advice(copy_capture, tmp_path):
    src = copy_capture("room_no_overlap")
    with pytest.raises(PoseError) as info:
        estimate_poses_for(src / "images", tmp_path / "run", PoseOptions(engine="colmap"))
    assert "splatforge check" in info.value.advice and "photos" in info.value.message
    assert not (tmp_path / "run" / "transforms.json").exists()  # no empty model presented as success
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["stages"]["poses"]["status"] == "failed"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic_capture(out, SyntheticOptions(n_views=16, width=320, height=240, seed=0))
    return out


@pytest.fixture(scope="module")
def synthetic_posed(synthetic, tmp_path_factory):
    run = tmp_path_factory.mktemp("synthetic_run") / "run"
    return estimate_poses_for(synthetic / "images", run, PoseOptions(engine="colmap")), run


def test_synthetic_capture_all_registered_and_accurate(synthetic, synthetic_posed):
    result, run = synthetic_posed
    assert result.registered == result.total == 16
    err = compare_poses(read_scene(run / "transforms.json"), read_scene(synthetic / "transforms.json"))
    # the fast mapping settings (PoseOptions defaults) keep issue 17's bound: 0.2 degrees (measured 0.177)
    assert PoseOptions().mapping_preset == "fast"
    assert err.median_rotation_deg <= 0.2 and err.median_center_error <= 0.01, err.to_dict()


def test_points_are_coloured_as_colmap_colours_them_and_written_everywhere(synthetic_posed):
    import pycolmap
    from plyfile import PlyData

    _, run = synthetic_posed
    ours = pycolmap.Reconstruction(str(run / "distorted" / "sparse" / "0"))
    colmaps = pycolmap.Reconstruction(ours)
    colmaps.extract_colors_for_all_images(str(run / "frames"))  # COLMAP's own colour pass, which the mapper skips
    ids = sorted(ours.points3D)
    a = np.array([ours.points3D[i].color for i in ids], dtype=float)
    b = np.array([colmaps.points3D[i].color for i in ids], dtype=float)
    assert len(ids) > 100 and a.mean() > 20  # coloured, not the mapper's black
    assert np.abs(a - b).mean() < 1.0 and np.abs(a - b).max() <= 3, (np.abs(a - b).mean(), np.abs(a - b).max())
    pinhole = pycolmap.Reconstruction(str(run / "sparse" / "0"))
    assert all((pinhole.points3D[i].color == ours.points3D[i].color).all() for i in ids)
    ply = PlyData.read(str(run / "sparse_points.ply"))["vertex"]
    assert sorted(map(tuple, np.stack([ply["red"], ply["green"], ply["blue"]], 1).tolist())) == \
        sorted(map(tuple, a.astype(int).tolist()))


@pytest.mark.parametrize("settings", [{"ordered": True, "video_keyframe_step": 2},
                                      {"ordered": False, "photo_keyframe_step": 2},
                                      {"ordered": True, "video_keyframe_step": 3},
                                      {"ordered": True, "video_keyframe_step": 0}],
                         ids=["video", "photos", "video-3", "one-go"])
def test_images_mapped_keyframes_first_are_all_placed_and_accurate(settings, tmp_path, monkeypatch):
    """PoseOptions.video_keyframe_step / photo_keyframe_step: every 2nd (3rd) image of a hand-held sequence
    mapped first, then the others registered against that model and the model refined: all placed, and no less
    accurate than mapping all in one go (0: the one-go mapping, for the comparison)."""
    import pycolmap

    from splatforge.poses import colmap_engine
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    capture = tmp_path / "capture"
    make_synthetic_capture(capture, SyntheticOptions(n_views=36, width=320, height=240, seed=0, path="handheld"))
    calls, original, joined = [], pycolmap.incremental_mapping, []

    def spy(database, images, out, opts, *args, **kwargs):
        models = original(database, images, out, opts, *args, **kwargs)
        placed = max((m.num_reg_images() for m in models.values()), default=0)
        calls.append((len(opts.image_names), bool(kwargs.get("input_path")), placed))
        return models

    monkeypatch.setattr(pycolmap, "incremental_mapping", spy)
    place = colmap_engine.place_remaining
    monkeypatch.setattr(colmap_engine, "place_remaining", lambda db, model, *args: joined.append(
        model.num_reg_images()) or place(db, model, *args))
    result = estimate_poses_for(capture / "images", tmp_path / "run",
                                PoseOptions(engine="colmap", keyframes_from_images=0, **settings))
    step = settings.get("video_keyframe_step", settings.get("photo_keyframe_step"))
    keys = calls[0][0]  # every 2nd image and the last (19); every 3rd is too thinly matched here (13 -> 19)
    assert calls[0][:2] == (19 if step else 36, False)
    if not step or calls[0][2] < keys / 2:
        # One go; or the keyframes placed fewer than half of themselves (GPU features on every 2nd frame here:
        # 5 of 19; the CPU's: 10 of 19), and all images are mapped in one go.
        assert [c[:2] for c in calls[1:2]] == ([(36, False)] if step else []) and not joined, calls
    else:
        assert len(calls) == 1 and joined == [calls[0][2]], (calls, joined)
    assert result.registered == result.total == 36
    err = compare_poses(read_scene(tmp_path / "run" / "transforms.json"), read_scene(capture / "transforms.json"))
    # Measured (median rotation error, degrees): all 36 in one go 0.79; video frames registered against every 2nd
    # 0.86; photos (all pairs matched, each registered photo refined locally) 0.18.
    assert err.median_rotation_deg <= 0.9 and err.median_center_error <= 0.015, err.to_dict()


def test_images_left_out_are_tried_again_from_the_finished_model(synthetic_posed, tmp_path, monkeypatch):
    """PoseOptions.retry_left_out: a model the incremental mapper finished without some images (here: it was
    not given the last four) is continued over all of them from the finished model."""
    import copy
    import shutil

    from splatforge.poses import colmap_engine

    _, run = synthetic_posed
    database = tmp_path / "database.db"
    shutil.copy2(run / "colmap" / "database.db", database)
    names = sorted(p.name for p in (run / "frames").iterdir())
    original = colmap_engine.run_incremental

    def leaves_four_out(db, images, out, opts, *args):
        fewer = copy.copy(opts)
        fewer.image_names = names[:-4]
        return original(db, images, out, fewer, *args)

    monkeypatch.setattr(colmap_engine, "run_incremental", leaves_four_out)
    placed = {}
    for retry in (False, True):
        models = colmap_engine._map("incremental", database, run / "frames", tmp_path / f"out{retry}", names,
                                    PoseOptions(retry_left_out=retry), True)
        placed[retry] = max(m.num_reg_images() for m in models.values())
    assert placed == {False: 12, True: 16}


def test_known_cameras_with_triangulation_put_points_on_the_surface(synthetic, tmp_path):
    truth = read_scene(synthetic / "transforms.json")
    result = estimate_poses_for(synthetic / "images", tmp_path / "run",
                                PoseOptions(cameras=synthetic / "transforms.json", triangulate=True))
    assert result.registered == 16 and result.points > 300 and result.mean_reprojection_error < 1.0
    est = read_scene(tmp_path / "run" / "transforms.json")
    assert compare_poses(est, truth).max_rotation_deg < 1e-3  # poses were held fixed
    # the points lie on the true surfaces: cast a ray from the nearest camera through each point and
    # compare the point's distance with the distance at which the ray really hits the synthetic world
    from splatforge.synthetic import SyntheticOptions, build_world, cast_rays

    world = build_world(SyntheticOptions(n_views=16, width=320, height=240, seed=0))
    centres = truth.centers
    nearest = np.argmin(((est.points[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    rel = []
    for k in np.unique(nearest):
        pts = est.points[nearest == k]
        vec = pts - centres[k]
        dist = np.linalg.norm(vec, axis=1)
        _, hit = cast_rays(world, centres[k], vec / dist[:, None])
        rel.append(np.abs(dist - hit) / hit)
    rel = np.concatenate(rel)
    assert np.median(rel) < 0.01 and np.mean(rel < 0.05) > 0.9


@pytest.mark.background("poses:forward-facing")
def test_forward_facing_capture_is_mapped_from_a_narrow_starting_pair_and_checked(background):
    """5 cm steps 4 m from the scene: COLMAP's incremental mapper used to spend most of its time looking for a
    wide starting pair that does not exist (0/25 in the issue); the matches show it (most pairs fit a
    homography), so it starts from a narrow one."""
    ff, run_dir, result = _posed(background, None, "forward-facing")  # pose_job.forward_facing_capture
    assert result.registered == result.total == 25
    assert result.mapper == "incremental" and result.evidence["low_parallax_share"] >= 0.5
    assert "4 degrees apart" in result.evidence["why"] and result.check["ok"]
    err = compare_poses(read_colmap(run_dir / "sparse" / "0", run_dir / "frames"), read_scene(ff / "transforms.json"))
    assert err.median_rotation_deg <= 0.5, err.to_dict()
