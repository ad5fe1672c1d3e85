"""Pose stage: pair planning, retrieval, explanations, undistortion maps, known cameras, CLI (fast)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from splatforge.poses import PoseOptions, PoseResult, explain
from splatforge.poses import pairs as pairing

BRIEF_KEYS = {"engine", "registered", "total", "unregistered", "mean_reprojection_error", "points", "seconds",
              "model"}


def test_options_validate_and_cameras_imply_known(tmp_path):
    assert PoseOptions(cameras=tmp_path / "t.json").engine == "known"
    with pytest.raises(ValueError, match="mapper"):
        PoseOptions(mapper="magic")
    with pytest.raises(ValueError, match="engine"):
        PoseOptions(engine="nerf")
    for name in ("ba_global_function_tolerance", "ba_final_function_tolerance", "video_ba_function_tolerance",
                 "video_keyframe_step", "photo_keyframe_step", "keyframes_from_images", "principal_point_max_shift"):
        with pytest.raises(ValueError, match=f"{name} must be 0"):
            PoseOptions(**{name: -1})


def test_result_dict_has_the_brief_keys(tmp_path):
    r = PoseResult("colmap", 3, 4, ["d.jpg"], 0.7, 100, {"features": 1.0}, tmp_path / "sparse" / "0")
    d = json.loads(json.dumps(r.to_dict()))
    assert BRIEF_KEYS <= set(d) and d["model"].endswith("sparse/0") and d["unregistered"] == ["d.jpg"]


def test_sequential_pairs_window_and_quadratic():
    plain = pairing.sequential_pairs(20, overlap=3, quadratic=False)
    assert (0, 3) in plain and (0, 4) not in plain and len(plain) == 3 * 20 - 6
    quad = pairing.sequential_pairs(20, overlap=3, quadratic=True)
    assert {(0, 4), (0, 8), (0, 16), (3, 19)} <= quad and (0, 5) not in quad
    assert all(i < j for i, j in quad)


def _trajectory_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors that drift smoothly (like frames of a video) and come back (a loop)."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(8, 64))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    v = np.stack([np.cos(k * t) for k in range(1, 5)] + [np.sin(k * t) for k in range(1, 5)], 1) @ basis
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_order_is_detected_and_shuffles_are_not():
    sim = pairing.similarity_matrix(_trajectory_vectors(40))
    ordered, score = pairing.looks_ordered(sim)
    assert ordered and score > 0.9
    perm = np.random.default_rng(3).permutation(40)
    shuffled, score = pairing.looks_ordered(sim[perm][:, perm])
    assert not shuffled and score < 0.7


def test_loop_closure_pairs_join_the_ends_of_a_loop():
    sim = pairing.similarity_matrix(_trajectory_vectors(40))
    far = pairing.top_k_pairs(sim, k=2, min_index_distance=10)
    assert all(j - i > 10 for i, j in far)
    assert any(i < 3 and j > 36 for i, j in far)  # first and last frames see the same place


def test_bow_vectors_rank_shared_descriptors_first():
    rng = np.random.default_rng(0)
    # two places, each with its own 40 kinds of local detail; each photo sees 300 details of one place
    places = [rng.uniform(0, 200, size=(40, 128)) for _ in range(2)]

    def photo(place: int) -> np.ndarray:
        kinds = rng.integers(0, 40, size=300)
        return np.clip(places[place][kinds] + rng.normal(0, 4, size=(300, 128)), 0, 255).astype(np.uint8)

    descs = [photo(0), photo(1), photo(0), photo(1), np.zeros((0, 128), np.uint8)]
    sim = pairing.similarity_matrix(pairing.bow_vectors(descs, vocabulary_size=64))
    assert sim[0].argmax() == 2 and sim[1].argmax() == 3 and sim[2].argmax() == 0
    assert np.all(sim[4, :4] == 0)  # an image without features is similar to nothing


def test_numbered_names():
    assert pairing.numbered_names(["0001.jpg", "0002.jpg", "IMG_0010.JPG"])
    assert not pairing.numbered_names(["front.jpg", "0002.jpg"])


def test_unregistered_reasons_name_the_cause():
    names = ["a", "b", "c", "d", "e", "f", "g"]
    keypoints = {"a": 900, "b": 900, "c": 900, "d": 20, "e": 900, "f": 900, "g": 900}
    neighbours = {"a": {"b", "c"}, "b": {"a", "c"}, "c": {"a", "b"}, "f": {"g"}, "g": {"f"}}
    other = [{"images": 2, "names": ["f", "g"]}]
    reasons = explain.unregistered_reasons(names, {"a", "b"}, keypoints, neighbours, other)
    assert set(reasons) == {"c", "d", "e", "f", "g"}
    assert "few features" in reasons["d"]
    assert "no verified matches" in reasons["e"]
    assert "separate group" in reasons["f"]
    assert "too weakly" in reasons["c"]


def test_failure_speaks_to_photographers():
    keypoints = {f"{i}.jpg": 800 for i in range(8)}
    err = explain.failure(8, 0, keypoints, {}, [])
    text = f"{err.message} {err.advice}"
    assert "barely overlap" in err.message and "splatforge check" in err.advice
    assert "Error" not in text and "LinAlg" not in text


def test_undistortion_map_inverts_the_distortion():
    import pycolmap

    from splatforge.poses.undistort import undistortion_map

    cam = pycolmap.Camera(model="OPENCV", width=200, height=150,
                          params=[180.0, 175.0, 103.0, 77.0, 0.08, -0.05, 0.001, -0.0005])
    pinhole, map_x, map_y = undistortion_map(cam)
    assert pinhole.model.name == "PINHOLE" and map_x.shape == (pinhole.height, pinhole.width)
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-0.3, 0.3, (50, 2)), np.ones(50)]  # camera-space points
    undist = pinhole.img_from_cam(pts)  # where they land in the undistorted image (COLMAP pixels)
    dist = cam.img_from_cam(pts)  # and in the original
    iu, iv = np.floor(undist[:, 0]).astype(int), np.floor(undist[:, 1]).astype(int)
    ok = (iu >= 0) & (iv >= 0) & (iu < pinhole.width) & (iv < pinhole.height)
    # the table at the pixel holding the point points (OpenCV pixels = COLMAP - 0.5) at the original one
    assert np.all(np.abs(map_x[iv[ok], iu[ok]] + 0.5 - dist[ok, 0]) < 1.5)
    assert np.all(np.abs(map_y[iv[ok], iu[ok]] + 0.5 - dist[ok, 1]) < 1.5)


@pytest.mark.parametrize("model, params", [
    ("SIMPLE_PINHOLE", [170.0, 99.0, 76.0]),
    ("PINHOLE", [180.0, 175.0, 103.0, 77.0]),
    ("SIMPLE_RADIAL", [170.0, 99.0, 76.0, 0.09]),
    ("RADIAL", [170.0, 101.0, 74.0, 0.06, -0.08]),
    ("OPENCV", [180.0, 175.0, 103.0, 77.0, 0.08, -0.05, 0.001, -0.0005]),
    ("FULL_OPENCV", [180.0, 175.0, 103.0, 77.0, 0.08, -0.05, 0.001, -0.0005, 0.01, 0.02, -0.01, 0.005]),
])
def test_opencv_undistortion_tables_match_tracing_each_ray(model, params):
    import pycolmap

    from splatforge.poses.undistort import _traced_map, undistortion_map

    cam = pycolmap.Camera(model=model, width=200, height=150, params=params)
    pinhole, map_x, map_y = undistortion_map(cam)
    traced_x, traced_y = _traced_map(cam, pinhole)
    assert map_x.shape == traced_x.shape == (pinhole.height, pinhole.width)
    assert np.abs(map_x - traced_x).max() < 1e-3 and np.abs(map_y - traced_y).max() < 1e-3


def _tiny_posed_capture(tmp_path):
    """A ring of 6 known cameras and random images (no SfM needed for the known-cameras engine)."""
    from PIL import Image

    from splatforge.scene import Camera, Frame, Scene, look_at_w2c, write_transforms

    src = tmp_path / "capture"
    (src / "images").mkdir(parents=True)
    cam = Camera("OPENCV", 160, 120, 150.0, 151.0, 81.0, 59.0, (0.02, -0.01, 0.0, 0.0))
    frames = []
    rng = np.random.default_rng(0)
    for i in range(6):
        path = src / "images" / f"{i:04d}.png"
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path)
        a = 2 * np.pi * i / 6
        frames.append(Frame(f"images/{path.name}", path, cam,
                            look_at_w2c(np.array([4 * np.cos(a), 4 * np.sin(a), 1.0]), np.zeros(3))))
    scene = Scene(frames)
    write_transforms(scene, src / "transforms.json")
    return src, scene


def test_known_cameras_skip_sfm_and_write_every_output(tmp_path):
    from splatforge.poses import estimate_poses_for
    from splatforge.scene import read_colmap, read_scene
    from splatforge.scene.align import compare_poses

    src, truth = _tiny_posed_capture(tmp_path)
    run_dir = tmp_path / "run"
    result = estimate_poses_for(src / "images", run_dir, PoseOptions(cameras=src / "transforms.json"))
    assert result.engine == "known" and result.registered == result.total == 6
    assert (run_dir / "sparse" / "0" / "cameras.bin").exists() and not (run_dir / "colmap" / "database.db").exists()
    model = read_colmap(run_dir / "distorted" / "sparse" / "0", run_dir / "frames")
    assert {f.camera.model for f in model.frames} == {"OPENCV"}  # original camera kept in distorted/
    assert {f.camera.model for f in read_colmap(run_dir / "sparse" / "0").frames} == {"PINHOLE"}
    train = read_scene(run_dir / "transforms.json")
    assert {f.camera.model for f in train.frames} == {"PINHOLE"}
    assert all(f.image.parent.name == "images_undistorted" and f.image.exists() for f in train.frames)
    err = compare_poses(train, truth)
    assert err.max_rotation_deg < 1e-4 and err.max_center_error < 1e-6
    poses = json.loads((run_dir / "poses.json").read_text())
    assert BRIEF_KEYS <= set(poses) and poses["registered"] == 6
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["stages"]["poses"]["status"] == "done"


def test_cli_json_and_a_readable_failure(tmp_path):
    from typer.testing import CliRunner

    from splatforge.cli import app

    src, _ = _tiny_posed_capture(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["poses", str(src / "images"), "-o", str(tmp_path / "r1"), "--cameras",
                              str(src / "transforms.json"), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert BRIEF_KEYS <= set(data) and data["registered"] == 6
    # two photos of noise: SfM cannot work, and the user is told why and what to do, as JSON
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("0000.png", "0001.png"):
        (bad / name).write_bytes((src / "images" / name).read_bytes())
    out = runner.invoke(app, ["poses", str(bad), "-o", str(tmp_path / "r2"), "--json"])
    assert out.exit_code != 0
    err = json.loads(out.stdout)
    assert err["ok"] is False and "photo" in err["error"] and err["advice"]
    assert "Traceback" not in out.output


def test_failure_names_separate_groups():
    names = [f"{i}.jpg" for i in range(8)]
    keypoints = dict.fromkeys(names, 900)
    links = [("0.jpg", "1.jpg"), ("1.jpg", "2.jpg"), ("3.jpg", "4.jpg"), ("5.jpg", "6.jpg"), ("6.jpg", "7.jpg")]
    neighbours: dict[str, set[str]] = {}
    for a, b in links:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    assert [len(g) for g in explain.groups(names, neighbours)] == [3, 3, 2]
    err = explain.failure(8, 0, keypoints, neighbours, [])
    assert "3 groups" in err.message and "(3, 3, 2 photos)" in err.message


class _FakeModel:
    def __init__(self, registered: int):
        self.registered = registered

    def num_reg_images(self) -> int:
        return self.registered


@pytest.mark.parametrize("incremental,global_,expect_kind,expect_runs", [
    (10, 9, "incremental", ["incremental"]),  # enough: no fallback
    (3, 10, "global", ["incremental", "global"]),  # too few: global runs and wins
    (6, 4, "incremental", ["incremental", "global"]),  # fallback tried, but incremental kept (larger)
    (None, 9, "global", ["incremental", "global"]),  # incremental crashed
])
def test_mapper_fallback_keeps_the_largest_model(monkeypatch, tmp_path, incremental, global_, expect_kind,
                                                 expect_runs):
    from splatforge.poses import colmap_engine

    runs = []

    def fake_map(kind, *args, **kwargs):
        runs.append(kind)
        n = incremental if kind == "incremental" else global_
        if n is None:
            raise RuntimeError("Ceres: LinAlgError")
        return {0: _FakeModel(n), 1: _FakeModel(2)}

    monkeypatch.setattr(colmap_engine, "_map", fake_map)
    names = [f"{i}.jpg" for i in range(10)]
    choice = colmap_engine.map_with_fallback(tmp_path / "db", tmp_path, names, PoseOptions(validate=False),
                                             tmp_path, False)
    assert choice.mapper == expect_kind and runs == expect_runs
    assert [a["mapper"] for a in choice.attempts] == expect_runs
    assert choice.best.num_reg_images() == {"incremental": incremental, "global": global_}[expect_kind]
    assert choice.best is choice.models[0]


def _incremental_options(monkeypatch, tmp_path, options: PoseOptions, video: bool = False):
    """The IncrementalPipelineOptions `_map` hands to pycolmap for `options` (pycolmap's mapping not run)."""
    import pycolmap

    from splatforge.poses import colmap_engine

    seen = []
    monkeypatch.setattr(pycolmap, "incremental_mapping", lambda db, images, out, opts: seen.append(opts) or {})
    monkeypatch.setattr(colmap_engine, "run_incremental",
                        lambda db, images, out, opts, *schedules: seen.append(opts) or {})
    assert colmap_engine._map("incremental", tmp_path / "db", tmp_path, tmp_path / "out", ["a.jpg"], options,
                              True, video=video) == {}
    return seen[0]


def test_video_frames_get_global_bundle_adjustments_that_stop_when_they_stall(monkeypatch, tmp_path):
    photos = _incremental_options(monkeypatch, tmp_path, PoseOptions())
    video = _incremental_options(monkeypatch, tmp_path, PoseOptions(), video=True)
    off = _incremental_options(monkeypatch, tmp_path, PoseOptions(video_ba_function_tolerance=0), video=True)
    assert video.ba_global_function_tolerance == PoseOptions().video_ba_function_tolerance > 0
    assert video.ba_local_function_tolerance == 0.0  # COLMAP's: local BAs of video frames keep their schedule
    assert off.ba_global_function_tolerance == 0.0
    assert video.ba_global_max_num_iterations == photos.ba_global_max_num_iterations  # the limit is unchanged


def test_photos_get_global_bundle_adjustments_that_stop_when_they_stall_when_asked(monkeypatch, tmp_path):
    default = _incremental_options(monkeypatch, tmp_path, PoseOptions())
    asked = _incremental_options(monkeypatch, tmp_path, PoseOptions(ba_global_function_tolerance=1e-3))
    thorough = _incremental_options(monkeypatch, tmp_path,
                                    PoseOptions(ba_global_function_tolerance=1e-3, mapping_preset="thorough"))
    assert default.ba_local_function_tolerance == default.ba_global_function_tolerance == 0.0  # COLMAP's
    assert asked.ba_global_function_tolerance == 1e-3
    assert asked.ba_local_function_tolerance == 0.0  # local BAs keep their schedule
    assert thorough.ba_local_function_tolerance == thorough.ba_global_function_tolerance == 0.0
    video = _incremental_options(monkeypatch, tmp_path, PoseOptions(ba_global_function_tolerance=0.5), video=True)
    assert video.ba_global_function_tolerance == PoseOptions().video_ba_function_tolerance  # not the photos'


def test_the_video_flag_reaches_the_mapper(monkeypatch, tmp_path):
    from splatforge.poses import colmap_engine

    seen = []

    def fake_map(kind, *args, video=False, **kwargs):
        seen.append(video)
        return {0: _FakeModel(10)}

    monkeypatch.setattr(colmap_engine, "_map", fake_map)
    names = [f"{i}.jpg" for i in range(10)]
    for video in (False, True):
        colmap_engine.map_with_fallback(tmp_path / "db", tmp_path, names, PoseOptions(validate=False), tmp_path,
                                        False, video=video)
    assert seen == [False, True]
    assert colmap_engine.frames_are_ordered(PoseOptions(), True)
    assert not colmap_engine.frames_are_ordered(PoseOptions(), False)
    assert not colmap_engine.frames_are_ordered(PoseOptions(ordered=False), True)
    assert colmap_engine.frames_are_ordered(PoseOptions(ordered=True), False)


def test_video_frames_are_described_at_the_first_octave_whatever_their_size(tmp_path):
    from PIL import Image

    from splatforge.poses import colmap_engine

    for name in ("0001.jpg", "0002.jpg"):
        Image.new("RGB", (640, 360), (90, 120, 60)).save(tmp_path / name)
    names = ["0001.jpg", "0002.jpg"]

    def octave(options, video):
        return colmap_engine.extraction_settings(tmp_path, names, options, video=video)["first_octave"]

    assert octave(PoseOptions(), video=False) == -1  # small photos: SIFT doubles them (upsample_below)
    assert octave(PoseOptions(), video=True) == PoseOptions().video_first_octave == 0
    assert octave(PoseOptions(video_first_octave=None), video=True) == -1  # as for photos
    assert octave(PoseOptions(first_octave=-1), video=True) == -1  # the user's choice wins


class _FakePipeline:
    """Stands in for pycolmap.IncrementalPipeline: registers `grow` images after a starting pair, in `models`
    models, and records whether each bundle adjustment would refine the distortion."""

    models: list[int] = []
    seen: list[tuple[int, bool]] = []
    tolerances: list[tuple[int, float]] = []  # the global BAs' function tolerance after registration n

    def __init__(self, options, database, manager):
        self.options, self.manager, self.callbacks = options, manager, {}

    def add_callback(self, kind, fn):
        self.callbacks[kind] = fn

    def run(self):
        import pycolmap

        kinds = pycolmap.IncrementalPipelineCallback
        for grow in self.models:
            self.callbacks[kinds.INITIAL_IMAGE_PAIR_REG_CALLBACK]()
            for n in range(3, grow + 3):
                self.callbacks[kinds.NEXT_IMAGE_REG_CALLBACK]()
                self.seen.append((n, self.options.ba_refine_extra_params))  # the BA after registration n
                self.tolerances.append((n, self.options.ba_global_function_tolerance))
            self.manager.models.append(pycolmap.Reconstruction())


class _FakeManager:
    def __init__(self):
        self.models = []

    def size(self):
        return len(self.models)

    def get(self, i):
        return self.models[i]


def test_distortion_is_fixed_until_the_model_is_large_enough(monkeypatch, tmp_path):
    import pycolmap

    from splatforge.poses import colmap_engine

    run_incremental = colmap_engine.run_incremental  # _incremental_options replaces it
    # the schedule's settings reach pycolmap: distortion off at the start, on from `fix_distortion_until` images
    assert PoseOptions().fix_distortion_until == 0  # off by default: see its comment
    scheduled = PoseOptions(fix_distortion_until=10)
    assert not _incremental_options(monkeypatch, tmp_path, scheduled).ba_refine_extra_params
    assert _incremental_options(monkeypatch, tmp_path, PoseOptions(fix_distortion_until=0)).ba_refine_extra_params
    assert colmap_engine.distortion_from(scheduled, 67) == 10
    assert colmap_engine.distortion_from(scheduled, 8) == 4  # small captures: half the photos
    assert colmap_engine.distortion_from(scheduled, 4) == 3
    assert colmap_engine.distortion_from(PoseOptions(fix_distortion_until=0), 67) == 0

    monkeypatch.setattr(pycolmap, "IncrementalPipeline", _FakePipeline)
    monkeypatch.setattr(pycolmap, "ReconstructionManager", _FakeManager)
    monkeypatch.setattr(pycolmap.Database, "open", lambda path: type("Db", (), {"close": lambda self: None})())
    _FakePipeline.models, _FakePipeline.seen = [12, 3], []
    opts = pycolmap.IncrementalPipelineOptions()
    models = run_incremental(tmp_path / "db", tmp_path, tmp_path / "out", opts, 10)
    assert len(models) == 2 and (tmp_path / "out" / "1" / "cameras.bin").exists()
    first, second = _FakePipeline.seen[:12], _FakePipeline.seen[12:]
    # fixed while the model has fewer than 10 images; refined from then on, the final global BA included
    assert [refined for _, refined in first] == [n >= 10 for n, _ in first] and first[-1] == (14, True)
    assert second == [(3, False), (4, False), (5, False)]  # a new model starts with the distortion fixed again

    # 0: pycolmap's own incremental mapping, distortion refined from the first two-view bundle adjustment
    called = []
    monkeypatch.setattr(pycolmap, "incremental_mapping", lambda *a: called.append(a[3].ba_refine_extra_params) or {})
    opts.ba_refine_extra_params = True
    assert run_incremental(tmp_path / "db", tmp_path, tmp_path / "out", opts, 0) == {}
    assert called == [True]


def test_global_bundle_adjustments_get_the_final_tolerance_once_every_photo_is_placed(monkeypatch, tmp_path):
    import pycolmap

    from splatforge.poses import colmap_engine

    run_incremental = colmap_engine.run_incremental
    seen = []
    monkeypatch.setattr(colmap_engine, "run_incremental", lambda *a: seen.append(a[4:]) or {})
    fast = PoseOptions(ba_global_function_tolerance=1e-3)
    assert 0 <= fast.ba_final_function_tolerance < fast.ba_global_function_tolerance
    for options, video, expect in ((fast, False, 7), (PoseOptions(), False, 0),  # off: COLMAP's throughout
                                   (replace(fast, ba_final_function_tolerance=1e-3), False, 0),  # the same throughout
                                   (replace(fast, mapping_preset="thorough"), False, 0),
                                   (fast, True, 0),  # video frames: their own, as small as the final one
                                   (PoseOptions(video_ba_function_tolerance=1e-3), True, 7)):
        colmap_engine._map("incremental", tmp_path / "db", tmp_path, tmp_path / "out", [f"{i}.jpg" for i in range(7)],
                           options, True, video=video)
        assert seen.pop() == (0, expect, options.ba_final_function_tolerance)

    monkeypatch.setattr(pycolmap, "IncrementalPipeline", _FakePipeline)
    monkeypatch.setattr(pycolmap, "ReconstructionManager", _FakeManager)
    monkeypatch.setattr(pycolmap.Database, "open", lambda path: type("Db", (), {"close": lambda self: None})())
    _FakePipeline.models, _FakePipeline.seen, _FakePipeline.tolerances = [12, 3], [], []
    opts = pycolmap.IncrementalPipelineOptions()
    opts.ba_global_function_tolerance = 1e-3
    run_incremental(tmp_path / "db", tmp_path, tmp_path / "out", opts, 0, 14)
    first, second = _FakePipeline.tolerances[:12], _FakePipeline.tolerances[12:]
    assert first[:-1] == [(n, 1e-3) for n in range(3, 14)] and first[-1] == (14, 0.0)  # the final BA: to convergence
    assert second == [(3, 1e-3), (4, 1e-3), (5, 1e-3)]  # a new model grows with the early stops again
    assert all(refined for _, refined in _FakePipeline.seen)  # no distortion schedule: refined throughout


def test_keyframes_first_only_when_asked_for_enough_images_of_their_kind(monkeypatch, tmp_path):
    from splatforge.poses import colmap_engine

    taken = []
    names = [f"{i:04d}.jpg" for i in range(40)]
    monkeypatch.setattr(colmap_engine, "run_incremental", lambda *a: taken.append("one go") or {})
    monkeypatch.setattr(colmap_engine, "map_keyframes_first",
                        lambda db, images, out, opts, keys, refine_each, principal_point_max_shift:
                        taken.append((len(opts.image_names), len(keys), refine_each)) or {})
    everything = {(a, b): 100 for a in names for b in names if a < b}  # every pair matched
    monkeypatch.setattr(colmap_engine, "verified_pairs", lambda db, wanted: (everything, {}))
    asked = PoseOptions(video_keyframe_step=3, photo_keyframe_step=0, keyframes_from_images=0)
    photos = PoseOptions(photo_keyframe_step=2, video_keyframe_step=0, keyframes_from_images=0)
    off = PoseOptions(video_keyframe_step=0, photo_keyframe_step=1)
    # every 3rd of 40: 14 keyframes; of 12: 4 and the last; every 2nd of 12: 6 and the last. Photos registered
    # against the keyframes get the mapper's local refinement each; video frames do not.
    for options, video, count, expect in ((PoseOptions(), True, 40, (40, 14, False)),  # on from 40 images
                                          (PoseOptions(), False, 40, (40, 14, True)),
                                          (PoseOptions(), True, 39, "one go"),
                                          (off, True, 40, "one go"),
                                          (off, False, 40, "one go"),
                                          (asked, True, 12, (12, 5, False)),
                                          (asked, False, 12, "one go"),  # the video step is for video
                                          (photos, False, 12, (12, 7, True)),
                                          (photos, True, 12, "one go"),
                                          (asked, True, 8, "one go"),  # fewer than 3 keyframes' worth
                                          (replace(asked, fix_distortion_until=10), True, 12, "one go"),
                                          (replace(asked, video_ba_function_tolerance=1e-3), True, 12,
                                           (12, 5, False))):
        colmap_engine._map("incremental", tmp_path / "db", tmp_path, tmp_path / "out", names[:count], options, True,
                           video=video)
        assert taken.pop() == expect


def test_left_out_images_retried_only_when_missing_and_kept_only_when_more_are_placed(monkeypatch, tmp_path):
    import pycolmap

    from splatforge.poses import colmap_engine

    class Model(_FakeModel):
        def write(self, path):
            pass

    opts = pycolmap.IncrementalPipelineOptions()
    opts.image_names = [f"{i}.jpg" for i in range(10)]
    opts.min_model_size = 3  # as the stage sets it (PoseOptions.min_model_size)
    runs = []

    def continued(placed):
        def run(db, images, out, again, input_path):
            runs.append(again.multiple_models)
            if placed is None:
                raise RuntimeError("boom")
            return {0: Model(placed)}
        return run

    for first, result, expect, tried in ((10, 10, 10, False),  # all placed: no retry
                                         (7, 10, 10, True),  # the retry placed more: kept
                                         (7, 6, 7, True),  # fewer: the first model stays
                                         (7, None, 7, True),  # the retry crashed: the first model stays
                                         (2, 10, 2, False)):  # below min_model_size: nothing to continue
        monkeypatch.setattr(pycolmap, "incremental_mapping", continued(result))
        models = colmap_engine.complete_model(tmp_path, tmp_path, tmp_path / "out", opts,
                                              {0: Model(1), 1: Model(first)})
        assert models[1].num_reg_images() == expect and models[0].num_reg_images() == 1
        assert (runs.pop() is False) if tried else not runs  # one model continued, no new ones started


def test_a_principal_point_that_drifted_is_put_back_at_the_centre_and_the_model_adjusted(monkeypatch):
    import pycolmap

    from splatforge.poses import colmap_engine

    adjusted = []
    monkeypatch.setattr(pycolmap, "bundle_adjustment", lambda model, ba: adjusted.append(ba.refine_principal_point))
    opts = pycolmap.IncrementalPipelineOptions()
    for cy, max_shift, expect_cy, expect_adjusted in ((81.9, 0.03, 120.0, [False]),  # the 48-view orbit's drift
                                                      (116.2, 0.03, 116.2, []),  # 1.6 %: kept
                                                      (81.9, 0.0, 81.9, [])):  # 0: never
        camera = pycolmap.Camera(model="PINHOLE", width=320, height=240, params=[277.0, 277.0, 160.0, cy])
        model = SimpleNamespace(cameras={1: camera})
        assert colmap_engine.recentre_drifted_principal_point(model, opts, max_shift) == bool(expect_adjusted)
        assert camera.principal_point_y == pytest.approx(expect_cy) and adjusted == expect_adjusted
        adjusted.clear()


def test_keyframes_are_every_nth_image_whose_images_are_matched_well_among_themselves():
    from splatforge.poses.colmap_engine import keyframe_subset

    names = [f"{i:02d}.jpg" for i in range(30)]

    def chain(reach, inliers=100):  # each image matched to those up to `reach` places on (sequential matching)
        return {(names[i], names[j]): inliers for i in range(30) for j in range(i + 1, min(30, i + reach + 1))}

    assert keyframe_subset(names, chain(29), 3, 15) == names[::3] + ["29.jpg"]  # every pair matched
    # overlap 5: every 3rd meets only the keyframes 3 on either side; every 2nd meets 4 of them
    assert keyframe_subset(names, chain(5), 3, 15) == names[::2] + ["29.jpg"]
    assert keyframe_subset(names, chain(5), 2, 15) == names[::2] + ["29.jpg"]
    assert keyframe_subset(names, chain(3), 3, 15) is None  # every 2nd meets only 2
    assert keyframe_subset(names, chain(29, inliers=10), 3, 15) is None  # matches too weak to count
    halves = {pair: n for pair, n in chain(29).items() if (pair[0] < "15") == (pair[1] < "15")}
    assert keyframe_subset(names, halves, 3, 15) is None  # two groups that share nothing


def test_keyframes_that_map_badly_give_way_to_mapping_all_in_one_go(monkeypatch, tmp_path):
    """map_keyframes_first: fewer than half the keyframes placed (dtu_scan24's every 3rd photo: 2-6 of 17) maps
    all images in one go; half or more go on to `place_remaining`."""
    import pycolmap

    from splatforge.poses import colmap_engine

    class Model(_FakeModel):
        def write(self, path):
            pass

    opts = pycolmap.IncrementalPipelineOptions()
    opts.image_names = [f"{i:02d}.jpg" for i in range(49)]
    runs, placed = [], []
    monkeypatch.setattr(colmap_engine, "place_remaining", lambda db, model, o, refine_each: placed.append(
                        model.registered) or Model(49))
    for keyframes_placed, expect_runs, expect_placed in ((8, [17, 49], []), (9, [17], [9]), (None, [17, 49], [])):
        def mapping(db, images, out, o, keyframes_placed=keyframes_placed):
            runs.append(len(o.image_names))
            if len(o.image_names) == 49:
                return {0: Model(49)}
            return {} if keyframes_placed is None else {0: Model(1), 1: Model(keyframes_placed)}
        monkeypatch.setattr(pycolmap, "incremental_mapping", mapping)
        models = colmap_engine.map_keyframes_first(tmp_path, tmp_path, tmp_path / "out", opts,
                                                   opts.image_names[::3])
        assert runs == expect_runs and placed == expect_placed and models[0].num_reg_images() == 49
        runs.clear(), placed.clear()


def test_a_principal_point_drifted_among_the_keyframes_is_held_at_the_centre_for_the_other_images(monkeypatch,
                                                                                                   tmp_path):
    """map_keyframes_first: a keyframes' model whose principal point drifted over the bound has it put back at the
    centre, and the other images are placed (and the model refined) with it held there; one within the bound keeps
    refining it. The caller's options are left as they were."""
    import pycolmap

    from splatforge.poses import colmap_engine

    class Model(_FakeModel):
        def __init__(self, registered, cy):
            super().__init__(registered)
            self.cameras = {1: pycolmap.Camera(model="PINHOLE", width=640, height=360,
                                               params=[580.0, 580.0, 320.0, cy])}

        def write(self, path):
            pass

    opts = pycolmap.IncrementalPipelineOptions()
    opts.image_names = [f"{i:03d}.jpg" for i in range(150)]
    opts.ba_refine_principal_point = True
    seen = []
    monkeypatch.setattr(colmap_engine, "place_remaining", lambda db, model, o, refine_each: seen.append(
                        (o.ba_refine_principal_point, model.cameras[1].principal_point_y)) or model)
    for cy, expect_cy, expect_refined in ((143.3, 180.0, False),  # colosseum's keyframes: 10 % off, recentred
                                          (175.0, 175.0, True)):  # 1.4 %: kept, and still refined
        keyframes = Model(51, cy)
        monkeypatch.setattr(pycolmap, "incremental_mapping", lambda *a, model=keyframes: {0: model})
        colmap_engine.map_keyframes_first(tmp_path, tmp_path, tmp_path / "out", opts, opts.image_names[::3],
                                          principal_point_max_shift=0.03)
        assert seen == [(expect_refined, pytest.approx(expect_cy))]
        assert opts.ba_refine_principal_point
        seen.clear()


def test_photos_placed_against_keyframes_are_refined_locally_and_video_frames_adjusted_as_the_model_grows(
        monkeypatch, tmp_path):
    """place_remaining's schedule: photos get a local refinement each and one round of final refinement; video
    frames none each, a global adjustment whenever the model has grown by the global ratio, and the final
    refinement's full rounds."""
    import pycolmap

    from splatforge.poses import colmap_engine

    class Mapper:
        def __init__(self, cache):
            self.calls = []

        def begin_reconstruction(self, model):
            self.model = model

        def find_next_images(self, options, structure_less):
            missing = 12 - self.model.registered
            return list(range(missing))

        def register_next_image(self, options, image_id):
            self.model.registered += 1
            return True

        def triangulate_image(self, triangulation, image_id):
            pass

        def iterative_local_refinement(self, *args):
            self.calls.append("local")

        def complete_and_merge_tracks(self, triangulation):
            pass

        def adjust_global_bundle(self, options, ba):
            self.calls.append(("global", self.model.registered))

        def filter_points(self, options):
            pass

        def iterative_global_refinement(self, rounds, *args):
            self.calls.append(("final", rounds))

        def end_reconstruction(self, discard):
            pass

    mappers = []
    monkeypatch.setattr(pycolmap.Database, "open", lambda path: SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(pycolmap.DatabaseCache, "create", lambda db, options: None)
    monkeypatch.setattr(pycolmap, "IncrementalMapper", lambda cache: mappers.append(Mapper(cache)) or mappers[-1])
    opts = pycolmap.IncrementalPipelineOptions()
    opts.image_names = [f"{i}.jpg" for i in range(12)]
    opts.ba_global_frames_ratio, opts.ba_global_max_refinements = 2.0, 2
    for refine_each, expect in ((True, ["local"] * 8 + [("final", 1)]),
                                (False, [("global", 8), ("final", 2)])):  # 4 placed, adjusted at 8
        model = colmap_engine.place_remaining(tmp_path, _FakeModel(4), opts, refine_each)
        assert model.num_reg_images() == 12 and mappers[-1].calls == expect


def test_fast_mapping_settings_reach_pycolmap(monkeypatch, tmp_path):
    defaults = PoseOptions()
    opts = _incremental_options(monkeypatch, tmp_path, defaults)
    assert opts.ba_global_frames_ratio == opts.ba_global_points_ratio == defaults.ba_global_ratio
    assert opts.ba_global_max_refinements == defaults.ba_global_max_refinements
    assert opts.ba_local_max_refinements == defaults.ba_local_max_refinements
    assert opts.ba_global_max_num_iterations == defaults.ba_global_max_iterations
    assert opts.ba_local_max_num_iterations == defaults.ba_local_max_iterations
    assert opts.mapper.ba_local_num_images == defaults.ba_local_num_images
    assert opts.mapper.ba_global_ignore_redundant_points3D == defaults.ba_skip_redundant_points
    assert opts.ba_refine_principal_point and opts.num_threads == defaults.num_threads
    custom = PoseOptions(ba_local_num_images=3, ba_global_max_iterations=7, ba_skip_redundant_points=True,
                         ba_threads_always=True)
    opts = _incremental_options(monkeypatch, tmp_path, custom)
    assert opts.mapper.ba_local_num_images == 3 and opts.ba_global_max_num_iterations == 7
    assert opts.mapper.ba_global_ignore_redundant_points3D and opts.ba_min_num_residuals_for_cpu_multi_threading == 0


def test_thorough_mapping_is_colmaps_own_schedule(monkeypatch, tmp_path):
    import pycolmap

    colmap = pycolmap.IncrementalPipelineOptions()
    opts = _incremental_options(monkeypatch, tmp_path, PoseOptions(mapping_preset="thorough", ba_local_num_images=3))
    for name in ("ba_global_frames_ratio", "ba_global_points_ratio", "ba_global_max_refinements",
                 "ba_local_max_refinements", "ba_global_max_num_iterations", "ba_local_max_num_iterations",
                 "ba_min_num_residuals_for_cpu_multi_threading"):
        assert getattr(opts, name) == getattr(colmap, name), name
    assert opts.mapper.ba_local_num_images == colmap.mapper.ba_local_num_images
    assert opts.mapper.ba_global_ignore_redundant_points3D == colmap.mapper.ba_global_ignore_redundant_points3D
    with pytest.raises(ValueError, match="mapping_preset"):
        PoseOptions(mapping_preset="quick")


def test_bundle_adjustment_backend_is_selectable(monkeypatch, tmp_path):
    import pycolmap

    opts = _incremental_options(monkeypatch, tmp_path, PoseOptions())
    assert opts.ba_local_backend == opts.ba_global_backend == pycolmap.BundleAdjustmentBackend.CERES
    opts = _incremental_options(monkeypatch, tmp_path, PoseOptions(ba_backend="caspar"))
    assert opts.ba_local_backend == opts.ba_global_backend == pycolmap.BundleAdjustmentBackend.CASPAR
    with pytest.raises(ValueError, match="ba_backend"):
        PoseOptions(ba_backend="g2o")


def test_prescaled_features_are_in_the_original_pixels(tmp_path):
    """Photos shrunk with OpenCV before SIFT (PoseOptions.prescale) give the database COLMAP's own resize gives:
    cameras of the original size, keypoints in the original pixels, and no copies left behind."""
    import cv2
    import pycolmap

    from splatforge.poses import colmap_engine

    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        texture = cv2.resize(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (800, 600),
                             interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(images / f"{i:04d}.jpg"), cv2.GaussianBlur(texture, (0, 0), 2.0))
    names = ["0000.jpg", "0001.jpg"]
    keypoints = {}
    for prescale in (False, True):
        database = tmp_path / f"db_{prescale}" / "database.db"
        database.parent.mkdir()
        options = PoseOptions(max_image_size=400, prescale=prescale, num_threads=1, use_gpu=False)
        colmap_engine.extract(database, images, names, options)
        assert not (database.parent / "prescaled").exists()
        db = pycolmap.Database.open(database)
        try:
            assert [(c.width, c.height) for c in db.read_all_cameras()] == [(800, 600)]
            keypoints[prescale] = {im.name: np.asarray(db.read_keypoints(im.image_id)) for im in db.read_all_images()}
        finally:
            db.close()
        assert json.loads((database.parent / "features.json").read_text())["extraction"]["prescale"] is prescale
    for name in names:
        own, ours = keypoints[False][name], keypoints[True][name]
        assert len(own) > 50 and len(ours) > 50
        assert ours[:, 0].max() > 500 and ours[:, 1].max() > 350  # original pixels, not the 400 px copy's
        nearest = np.linalg.norm(own[:, None, :2] - ours[None, :, :2], axis=2).min(axis=1)
        assert np.mean(nearest < 2.0) > 0.7


def test_photos_left_out_at_the_small_feature_size_get_a_second_pass_at_the_larger(monkeypatch, tmp_path):
    """dtu_scan24 on the H100 placed 48/49 photos with SIFT at 1024 px and 49/49 at 1280: where the first
    pass leaves photos out, features are extracted again at retry_image_size and the better pass is kept."""
    from splatforge.poses import colmap_engine as ce
    from splatforge.poses.options import PoseOptions

    class Rec:
        def __init__(self, n):
            self.n = n

        def num_reg_images(self):
            return self.n

    placed = {1024: 48, 1280: 49}
    calls = []

    def once(database, image_dir, names, options, work, ordered_hint, progress):
        calls.append(options.max_image_size)
        n = placed[options.max_image_size]
        out = ce.SfmOutput(Rec(n), "incremental", "sequential", {"features": 1.0, "mapping": 2.0},
                           cpu_seconds={"features": 3.0})
        return out, ce.MappingChoice(out.reconstruction, "incremental", {}, [], None)

    monkeypatch.setattr(ce, "_reconstruct_once", once)
    monkeypatch.setattr(ce, "_longest_side", lambda image_dir, names: 1554)
    names = [f"{i:03d}.jpg" for i in range(49)]
    options = PoseOptions()
    assert (options.max_image_size, options.retry_image_size) == (1024, 1280)

    out = ce.reconstruct(tmp_path / "db.db", tmp_path, names, options, tmp_path / "work")
    assert calls == [1024, 1280]
    assert out.reconstruction.num_reg_images() == 49
    assert out.seconds == {"features": 2.0, "mapping": 4.0} and out.cpu_seconds == {"features": 6.0}
    assert out.evidence["feature_passes"] == [{"max_image_size": 1024, "registered": 48},
                                              {"max_image_size": 1280, "registered": 49}]
    assert "again at 1280 px after 48/49 at 1024 px" in out.matching

    placed[1280] = 47  # the second pass is worse: the first stays, its seconds still counted
    calls.clear()
    out = ce.reconstruct(tmp_path / "db.db", tmp_path, names, options, tmp_path / "work")
    assert calls == [1024, 1280] and out.reconstruction.num_reg_images() == 48 and out.seconds["mapping"] == 4.0

    placed[1024] = 49  # every photo placed: one pass
    calls.clear()
    assert ce.reconstruct(tmp_path / "db.db", tmp_path, names, options, tmp_path / "w").reconstruction.n == 49
    assert calls == [1024]

    placed[1024] = 48  # photos the first pass did not shrink: a larger size would change nothing
    monkeypatch.setattr(ce, "_longest_side", lambda image_dir, names: 706)
    calls.clear()
    ce.reconstruct(tmp_path / "db.db", tmp_path, names, options, tmp_path / "w")
    assert calls == [1024]
    calls.clear()
    monkeypatch.setattr(ce, "_longest_side", lambda image_dir, names: 1554)
    ce.reconstruct(tmp_path / "db.db", tmp_path, names, PoseOptions(retry_image_size=0), tmp_path / "w")
    assert calls == [1024]


def test_bundle_adjustment_on_the_gpu_follows_use_gpu_unless_asked_otherwise(monkeypatch, tmp_path):
    from splatforge.poses import colmap_engine

    monkeypatch.setattr(colmap_engine, "use_gpu", lambda options: options.use_gpu is not False)
    assert _incremental_options(monkeypatch, tmp_path, PoseOptions()).ba_use_gpu
    assert not _incremental_options(monkeypatch, tmp_path, PoseOptions(ba_use_gpu=False)).ba_use_gpu
    assert not _incremental_options(monkeypatch, tmp_path, PoseOptions(use_gpu=False)).ba_use_gpu
    # asked for, but no GPU for pycolmap: stays on the CPU
    assert not _incremental_options(monkeypatch, tmp_path, PoseOptions(use_gpu=False, ba_use_gpu=True)).ba_use_gpu


def test_verification_gets_the_ransac_trial_budget_and_a_changed_budget_invalidates_matches(monkeypatch, tmp_path):
    import pycolmap

    from splatforge.poses import colmap_engine
    from splatforge.poses.pairs import PairPlan

    seen = []
    monkeypatch.setattr(pycolmap, "match_image_pairs", lambda db, **kw: seen.append(kw["verification_options"]))
    db = tmp_path / "database.db"
    pycolmap.Database.open(db).close()  # empty: the pairs are named in a file
    options = PoseOptions(verify_min_trials=30, verify_trials_multiplier=1.5, verify_max_trials=500)
    colmap_engine.match(db, ["a.jpg", "b.jpg"], PairPlan("sequential", "", [(0, 1)]), options, tmp_path / "work")
    ransac = seen[0].ransac
    assert (ransac.min_num_trials, ransac.dyn_num_trials_multiplier, ransac.max_num_trials) == (30, 1.5, 500)
    colmap_engine.match(db, ["a.jpg", "b.jpg"], PairPlan("sequential", "", [(0, 1)]),
                        PoseOptions(verify_min_trials=5000, verify_max_trials=2000), tmp_path / "work")
    assert seen[1].ransac.min_num_trials == 2000  # never more than the maximum
    assert colmap_engine.matching_settings(PoseOptions()) != colmap_engine.matching_settings(
        PoseOptions(verify_trials_multiplier=3.0))
    # by default: a small budget for photos, COLMAP's for the frames of a video
    colmap_engine.match(db, ["a.jpg", "b.jpg"], PairPlan("sequential", "", [(0, 1)]), PoseOptions(),
                        tmp_path / "work")
    colmap_engine.match(db, ["a.jpg", "b.jpg"], PairPlan("sequential", "", [(0, 1)]), PoseOptions(),
                        tmp_path / "work", video=True)
    colmaps = pycolmap.TwoViewGeometryOptions().ransac
    assert (seen[2].ransac.min_num_trials, seen[2].ransac.dyn_num_trials_multiplier) == (20, 1.0)
    assert (seen[3].ransac.min_num_trials, seen[3].ransac.dyn_num_trials_multiplier) == \
        (colmaps.min_num_trials, colmaps.dyn_num_trials_multiplier) == (100, 3.0)
    assert colmap_engine.matching_settings(PoseOptions(), video=True) != colmap_engine.matching_settings(PoseOptions())
