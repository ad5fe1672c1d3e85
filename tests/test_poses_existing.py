"""Poses a capture already has (transforms.json, COLMAP sparse/0) are used instead of SfM, and a COLMAP
model with distorted cameras given to `splatforge train` is undistorted."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from splatforge.poses import PoseOptions, estimate_poses_for
from splatforge.poses.existing import MIN_POSED_SHARE, find_existing_poses, resolve_engine
from splatforge.rundir import RunDir, read_json
from splatforge.scene import Camera, read_scene, write_colmap


def _write_images(folder, names, size=(120, 160)):
    from PIL import Image

    rng = np.random.default_rng(len(names))
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)


def _posed_capture(tmp_path, n=6, layout="transforms"):
    """n random photos in capture/images with a ring of known cameras as transforms.json or sparse/0."""
    from splatforge.scene import Frame, Scene, look_at_w2c, write_transforms

    src = tmp_path / "capture"
    names = [f"{i:04d}.png" for i in range(n)]
    _write_images(src / "images", names)
    cam = Camera("OPENCV", 160, 120, 150.0, 151.0, 81.0, 59.0, (0.02, -0.01, 0.0, 0.0))
    frames = []
    for i, name in enumerate(names):
        a = 2 * np.pi * i / n
        frames.append(Frame(name, src / "images" / name, cam,
                            look_at_w2c(np.array([4 * np.cos(a), 4 * np.sin(a), 1.0]), np.zeros(3))))
    scene = Scene(frames, points=np.random.default_rng(1).normal(size=(50, 3)))
    if layout == "transforms":
        write_transforms(scene, src / "transforms.json")
    else:
        write_colmap(scene, src / "sparse" / "0")
    return src, scene


def test_a_transforms_json_beside_images_is_found_and_explained(tmp_path):
    src, _ = _posed_capture(tmp_path)
    names = sorted(p.name for p in (src / "images").iterdir())
    for folder in (src, src / "images"):  # the capture folder, or its images/ folder
        found = find_existing_poses(folder, names)
        assert found is not None and found.usable and found.kind == "transforms.json"
        assert found.path == src / "transforms.json" and found.posed == names and not found.unposed
        assert "using the camera poses and intrinsics of" in found.describe() and "--engine colmap" in found.describe()
    assert find_existing_poses(tmp_path, names) is None  # nothing there
    # an extra photo the file does not pose: still used, and the line names it
    found = find_existing_poses(src, names + ["extra.png"])
    assert found.usable and found.unposed == ["extra.png"] and "extra.png" in found.describe()
    # a capture mostly made of other photos: not used, and the line says why
    others = names + [f"new{i}.png" for i in range(4)]
    found = find_existing_poses(src, others)
    assert len(found.posed) / len(others) < MIN_POSED_SHARE and not found.usable
    assert found.describe().startswith("not using") and "6 of the 10 photos" in found.describe()
    # a file that lists photos that are not in the capture (fox: 67 listed, 50 present)
    found = find_existing_poses(src, names[:5])
    assert found.usable and found.listed_missing == 1 and "1 entry without a photo here skipped" in found.describe()


def test_a_colmap_model_is_found(tmp_path):
    src, _ = _posed_capture(tmp_path, layout="colmap")
    names = sorted(p.name for p in (src / "images").iterdir())
    found = find_existing_poses(src / "images", names)
    assert found.kind == "COLMAP model" and found.path == src / "sparse" / "0" and found.usable
    assert found.has_points


def test_auto_uses_the_poses_and_colmap_forces_sfm(tmp_path):
    src, truth = _posed_capture(tmp_path, layout="colmap")
    run_dir = tmp_path / "run"
    t0 = time.perf_counter()
    result = estimate_poses_for(src / "images", run_dir)  # engine auto is the default
    assert time.perf_counter() - t0 < 10
    assert result.engine == "known" and result.registered == result.total == 6
    assert not (run_dir / "colmap" / "database.db").exists()  # no SIFT, no matching
    assert any("using the camera poses and intrinsics of" in n for n in result.notes)
    poses = read_json(run_dir / "poses.json")
    assert poses["engine"] == "known" and "features" not in poses["seconds"]
    from splatforge.scene.align import compare_poses

    assert compare_poses(read_scene(run_dir / "transforms.json"), truth).max_rotation_deg < 1e-4
    assert result.points == 50  # the model's points come along
    run = RunDir(run_dir)
    names = sorted(p.name for p in run.frames.iterdir())
    options, line = resolve_engine(run, PoseOptions(engine="colmap"), names)
    assert options.engine == "colmap" and options.cameras is None and line is None
    options, line = resolve_engine(run, PoseOptions(), names)
    assert options.engine == "known" and options.cameras == src / "sparse" / "0"


def test_poses_that_do_not_fit_the_photos_fall_back_to_sfm(tmp_path, monkeypatch):
    import splatforge.poses as poses_pkg
    from splatforge.errors import PoseError

    src, _ = _posed_capture(tmp_path)
    _write_images(src / "images", [f"{i:04d}.png" for i in range(6)], size=(100, 100))  # other aspect ratio
    called = []

    def fake_sfm(run, names, ordered, options, say):
        called.append(options.engine)
        raise PoseError("sfm ran", "")

    monkeypatch.setattr(poses_pkg, "_run_colmap", fake_sfm)
    with pytest.raises(PoseError, match="sfm ran"):
        estimate_poses_for(src / "images", tmp_path / "run")
    assert called == ["colmap"]


def test_fox_transforms_json_is_used_by_the_poses_command(copy_capture, tmp_path):
    """fox's transforms.json lists 67 frames, 50 photos exist: all 50 posed, no SfM."""
    from splatforge.cli import app

    fox = copy_capture("fox")
    run_dir = tmp_path / "run"
    t0 = time.perf_counter()
    out = CliRunner().invoke(app, ["poses", str(fox / "images"), "-o", str(run_dir), "--json"])
    seconds = time.perf_counter() - t0
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["engine"] == "known" and data["registered"] == data["total"] == 50, data
    assert "17 entries without a photo here skipped" in data["notes"][0]
    assert not (run_dir / "colmap" / "database.db").exists()
    assert seconds < 60, seconds  # undistorting 50 photos of 1080x1920; SfM takes 46 s on 2 cores
    train = read_scene(run_dir / "transforms.json")
    assert {f.camera.model for f in train.frames} == {"PINHOLE"} and len(train.frames) == 50
    reference = read_scene(fox / "transforms.json")
    from splatforge.scene.align import compare_poses

    assert compare_poses(train, reference).max_rotation_deg < 1e-4


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic_capture(out, SyntheticOptions(n_views=10, width=160, height=120, seed=0, n_points=2000))
    return out


def test_run_on_a_colmap_folder_trains_without_pose_estimation(synthetic, tmp_path):
    """A newcomer's run on a posed COLMAP folder: poses taken from sparse/0, training starts."""
    from splatforge.pipeline import RunOptions, run_pipeline
    from splatforge.scene.align import compare_poses

    capture = tmp_path / "capture"
    shutil.copytree(synthetic / "images", capture / "images")
    truth = read_scene(synthetic / "transforms.json")
    write_colmap(truth, capture / "sparse" / "0")
    run = RunDir(tmp_path / "run")
    options = RunOptions().with_changes({  # the pose engine is left at its default: auto
        "train.preset": "demo", "train.steps": 2, "train.downscale": 2, "train.strategy.cap_max": 300,
        "train.backend": "reference", "check.force": True, "until_stage": "train"})
    result = run_pipeline(capture, run, options)
    assert result.stages["train"]["status"] == "done"
    poses = read_json(run.poses_json)
    assert poses["engine"] == "known" and poses["registered"] == 10 and poses["points"] == len(truth.points)
    assert not run.database.exists()
    assert poses["seconds"]["total"] < 10, poses["seconds"]
    assert compare_poses(read_scene(run.transforms_json), truth).max_rotation_deg < 1e-4
    assert read_json(run.train_json)["steps"] == 2
    # PINHOLE cameras need no undistortion: images_undistorted/ holds the frames themselves (hard links),
    # not decoded and re-encoded copies
    for frame in read_scene(run.transforms_json).frames:
        assert frame.image.parent == run.images_undistorted
        assert frame.image.samefile(run.frames / frame.image.name) or \
            frame.image.read_bytes() == (run.frames / frame.image.name).read_bytes()


def test_train_on_a_radial_colmap_model_undistorts_it(synthetic, tmp_path):
    """`splatforge train sparse/0 -o RUN` with a RADIAL camera (what SfM writes) used to die with
    "transforms.json cannot hold a RADIAL camera"."""
    from splatforge.cli import app
    from splatforge.scene import Frame, Scene

    truth = read_scene(synthetic / "transforms.json")
    capture = tmp_path / "capture"
    shutil.copytree(synthetic / "images", capture / "images")
    c = truth.frames[0].camera
    radial = Camera("RADIAL", c.width, c.height, c.fx, c.fx, c.cx, c.cy, (-0.05, 0.01))
    scene = Scene([Frame(f.image.name, capture / "images" / f.image.name, radial, f.w2c) for f in truth.frames],
                  truth.points, truth.colors)
    write_colmap(scene, capture / "sparse" / "0")
    run_dir = tmp_path / "run"
    out = CliRunner().invoke(app, ["train", str(capture / "sparse" / "0"), "-o", str(run_dir), "--steps", "2",
                                   "--preset", "fast", "--backend", "reference", "--max-gaussians", "300",
                                   "--downscale", "2", "--json"])
    assert out.exit_code == 0, out.output
    assert "Traceback" not in out.output and json.loads(out.stdout)["steps"] == 2
    train = read_scene(run_dir / "transforms.json")
    assert {f.camera.model for f in train.frames} == {"PINHOLE"} and len(train.frames) == 10
    assert all(f.image.parent == run_dir / "images_undistorted" and f.image.exists() for f in train.frames)
    assert read_scene(run_dir / "distorted" / "sparse" / "0").frames[0].camera.model == "RADIAL"  # the original kept
    assert read_scene(run_dir / "sparse" / "0").frames[0].camera.model == "PINHOLE"  # the model of images/
    assert read_json(run_dir / "poses.json")["engine"] == "known"
    # a model whose photos are not beside it: a clear error, not a traceback
    shutil.rmtree(capture / "images")
    out = CliRunner().invoke(app, ["train", str(capture / "sparse" / "0"), "-o", str(tmp_path / "r2"), "--json"])
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "images/ beside sparse/" in json.loads(out.stdout)["advice"]
