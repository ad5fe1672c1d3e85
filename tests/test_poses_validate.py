"""Pose stage: a model is checked before it is trusted, the mapper is chosen from the matches, and features and
matches already in the database are reused (fast: COLMAP's own synthetic datasets, no images)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pycolmap
import pytest

from splatforge.errors import PoseError
from splatforge.poses import colmap_engine, validate
from splatforge.poses.options import PoseOptions


@pytest.fixture
def synthetic(tmp_path):
    """(reconstruction, database path, image names): 12 photos of 300 points, matches verified, as COLMAP's
    synthetic dataset makes them (the reconstruction is the truth)."""
    options = pycolmap.SyntheticDatasetOptions()
    options.num_rigs, options.num_cameras_per_rig, options.num_frames_per_rig = 1, 1, 12
    options.num_points3D = 300
    path = tmp_path / "colmap" / "database.db"
    path.parent.mkdir()
    db = pycolmap.Database.open(path)
    try:
        rec = pycolmap.synthesize_dataset(options, db)
    finally:
        db.close()
    return rec, path, sorted(im.name for im in rec.images.values())


def _turn_every_other_camera(rec, degrees: float) -> None:
    """Corrupt a model the way the global mapper did on fox: half the cameras look the wrong way, while every
    stored reprojection error stays as small as before."""
    turn = pycolmap.Rotation3d(np.array([0.0, np.radians(degrees), 0.0]))
    for k, image in enumerate(sorted(rec.images.values(), key=lambda im: im.name)):
        if k % 2 == 0:
            frame = rec.frame(image.frame_id)
            pose = frame.rig_from_world
            frame.rig_from_world = pycolmap.Rigid3d(turn * pose.rotation, pose.translation)


def test_a_true_model_passes_its_checks(synthetic):
    rec, db, names = synthetic
    check = validate.check_model(rec, len(names), db)
    assert check.ok, check.problems
    assert check.registered == 12 and check.pair_agreement == 1.0 and check.pairs_checked >= 30
    validate.require_trustworthy(check)  # no exception


def test_a_model_with_half_its_cameras_turned_is_caught(synthetic):
    rec, db, names = synthetic
    _turn_every_other_camera(rec, 20.0)
    check = validate.check_model(rec, len(names), db)
    assert rec.compute_mean_reprojection_error() < 0.01  # the mapper's own error measure sees nothing wrong
    assert not check.ok and check.pair_agreement < 0.5
    assert any("contradict the photos' own matches" in p for p in check.problems)
    with pytest.raises(PoseError) as info:
        validate.require_trustworthy(check, "global")
    assert "global mapper" in info.value.message and "not trustworthy" in info.value.message
    assert "training was not started" in info.value.advice and "splatforge check" in info.value.advice


def test_too_few_placed_photos_and_an_implausible_lens_are_problems(synthetic):
    rec, db, names = synthetic
    assert not validate.check_model(rec, 40, db).ok  # 12 of 40 placed
    camera = rec.cameras[next(iter(rec.cameras))]
    camera.params = [camera.params[0] * 20, *list(camera.params)[1:]]  # a 20x longer lens
    check = validate.check_model(rec, len(names), None)
    assert any("lens is implausible" in p for p in check.problems)


def test_two_mappers_that_disagree_are_measured(synthetic):
    rec, _, _ = synthetic
    other = pycolmap.Reconstruction(rec)
    assert validate.rotation_disagreement_deg(rec, other) == pytest.approx(0.0, abs=1e-6)
    _turn_every_other_camera(other, 20.0)
    assert validate.rotation_disagreement_deg(rec, other) > 10.0


def _relabel_low_parallax(db_path, share: float) -> None:
    """Mark `share` of the verified pairs as explained by a homography (what COLMAP's verification says of
    photos taken from nearly the same spot)."""
    db = pycolmap.Database.open(db_path)
    try:
        pair_ids, geometries = db.read_two_view_geometries()
        for k, (pair_id, geom) in enumerate(zip(pair_ids, geometries)):
            if k < share * len(pair_ids):
                geom.config = pycolmap.TwoViewGeometryConfiguration.PLANAR_OR_PANORAMIC
                a, b = pycolmap.pair_id_to_image_pair(pair_id)
                db.update_two_view_geometry(a, b, geom)
    finally:
        db.close()


def test_the_mapper_is_chosen_from_the_matches(synthetic):
    _, db, names = synthetic
    options = PoseOptions()
    evidence = colmap_engine.read_evidence(db, names, options.min_num_inliers)
    assert evidence.verified_pairs == 66 and evidence.low_parallax_share == 0.0 and evidence.largest_group_share == 1
    order, why = colmap_engine.order_of_mappers(options, evidence)
    assert order == ["incremental", "global"] and "parallax" in why

    _relabel_low_parallax(db, 0.75)  # a forward-facing capture: most pairs barely differ in viewpoint
    evidence = colmap_engine.read_evidence(db, names, options.min_num_inliers)
    assert evidence.low_parallax_share == pytest.approx(50 / 66)
    order, why = colmap_engine.order_of_mappers(options, evidence)
    assert order == ["incremental", "global"] and "a pair 4 degrees apart" in why
    assert colmap_engine.order_of_mappers(PoseOptions(mapper="global"), evidence)[0] == ["global"]


def test_low_parallax_gives_the_incremental_mapper_a_narrow_starting_pair(synthetic, monkeypatch, tmp_path):
    rec, db, names = synthetic
    seen = []

    def fake_map(kind, *args, **kwargs):
        seen.append((kind, args[-1]))  # the last positional argument: low_parallax
        return {0: pycolmap.Reconstruction(rec)}

    monkeypatch.setattr(colmap_engine, "_map", fake_map)
    evidence = colmap_engine.read_evidence(db, names, PoseOptions().min_num_inliers)
    colmap_engine.map_with_fallback(db, tmp_path, names, PoseOptions(), tmp_path, False, evidence)
    evidence.low_parallax_share = 0.75
    colmap_engine.map_with_fallback(db, tmp_path, names, PoseOptions(), tmp_path, False, evidence)
    assert seen == [("incremental", False), ("incremental", True)]


def test_real_mapping_on_synthetic_matches_keeps_a_checked_model(synthetic, tmp_path):
    rec, db, names = synthetic
    (tmp_path / "images").mkdir()
    options = PoseOptions(num_threads=2)
    evidence = colmap_engine.read_evidence(db, names, options.min_num_inliers)
    choice = colmap_engine.map_with_fallback(db, tmp_path / "images", names, options, tmp_path / "work", False,
                                             evidence)
    assert choice.mapper == "incremental" and [a["mapper"] for a in choice.attempts] == ["incremental"]
    assert choice.best.num_reg_images() == 12 and choice.check.ok
    assert choice.attempts[0]["check"]["pair_agreement"] == 1.0


def test_an_untrustworthy_model_falls_back_and_is_never_kept_over_a_checked_one(synthetic, monkeypatch, tmp_path):
    rec, db, names = synthetic
    wrong = pycolmap.Reconstruction(rec)
    _turn_every_other_camera(wrong, 25.0)
    runs = []

    def fake_map(kind, *args, **kwargs):
        runs.append(kind)
        return {0: wrong} if kind == "incremental" else {0: pycolmap.Reconstruction(rec)}

    monkeypatch.setattr(colmap_engine, "_map", fake_map)
    options = PoseOptions()
    choice = colmap_engine.map_with_fallback(db, tmp_path, names, options, tmp_path, False)
    assert runs == ["incremental", "global"]  # 12/12 registered, but the checks sent it to the next mapper
    assert choice.mapper == "global" and choice.check.ok
    assert not choice.attempts[0]["check"]["ok"] and choice.attempts[1]["disagreement_deg"] > 10
    colmap_engine.refuse_untrustworthy(choice, len(names), options)  # the kept one is fine


def test_a_doubtful_model_gets_a_second_opinion_and_the_better_explaining_one_is_kept(synthetic, monkeypatch,
                                                                                       tmp_path):
    rec, db, names = synthetic
    first, second = pycolmap.Reconstruction(rec), pycolmap.Reconstruction(rec)
    monkeypatch.setattr(colmap_engine, "_map", lambda kind, *a, **k: {0: first if kind == "incremental" else second})
    agreement = {id(first): 0.91, id(second): 1.0}  # 91 %: passes (>= 90 %) but leaves pairs unexplained

    def check(model, total, *a, **k):
        return validate.ModelCheck(model.num_reg_images(), total, 0.1, pair_agreement=agreement[id(model)])

    monkeypatch.setattr(validate, "check_model", check)
    evidence = colmap_engine.read_evidence(db, names, PoseOptions().min_num_inliers)
    choice = colmap_engine.map_with_fallback(db, tmp_path, names, PoseOptions(), tmp_path, False, evidence)
    assert [a["mapper"] for a in choice.attempts] == ["incremental", "global"]
    assert choice.mapper == "global" and choice.best is second
    agreement[id(second)] = 0.85  # the second opinion is worse: the doubtful (but passing) model stays
    choice = colmap_engine.map_with_fallback(db, tmp_path, names, PoseOptions(), tmp_path, False, evidence)
    assert choice.mapper == "incremental" and choice.best is first
    agreement[id(first)] = 0.99  # confident: no second mapper runs
    choice = colmap_engine.map_with_fallback(db, tmp_path, names, PoseOptions(), tmp_path, False, evidence)
    assert [a["mapper"] for a in choice.attempts] == ["incremental"]


def test_when_every_model_is_wrong_the_stage_refuses_with_advice(synthetic, monkeypatch, tmp_path):
    rec, db, names = synthetic
    _turn_every_other_camera(rec, 25.0)
    monkeypatch.setattr(colmap_engine, "_map", lambda kind, *a, **k: {0: rec})
    options = PoseOptions()
    choice = colmap_engine.map_with_fallback(db, tmp_path, names, options, tmp_path, False)
    assert choice.best is rec and not choice.check.ok
    with pytest.raises(PoseError) as info:
        colmap_engine.refuse_untrustworthy(choice, len(names), options)
    assert "not trustworthy" in info.value.message and info.value.advice
    colmap_engine.refuse_untrustworthy(choice, len(names), PoseOptions(validate=False))  # asked not to check


def test_features_and_matches_in_the_database_are_reused_only_with_the_same_settings(synthetic):
    _, db, _ = synthetic
    extraction = {"camera_model": "RADIAL", "first_octave": 0, "images": {"a.jpg": [640, 480, 1234]}}
    matching = colmap_engine.matching_settings(PoseOptions())
    colmap_engine.note_path(db).write_text(json.dumps({"extraction": extraction, "matching": matching}))

    def counts():
        d = pycolmap.Database.open(db)
        try:
            return d.num_keypoints(), d.num_verified_image_pairs()
        finally:
            d.close()

    before = counts()
    assert before[0] > 0 and before[1] == 66
    assert colmap_engine.prepare_database(db, extraction, matching) == "features and matches"
    assert counts() == before

    stricter = colmap_engine.matching_settings(PoseOptions(min_num_inliers=30))
    assert colmap_engine.prepare_database(db, extraction, stricter) == "features"
    assert counts() == (before[0], 0)  # matches made with other settings are gone, features stay
    assert "matching" not in json.loads(colmap_engine.note_path(db).read_text())

    assert colmap_engine.prepare_database(db, {**extraction, "first_octave": -1}, stricter) == "nothing"
    assert not db.exists() and not colmap_engine.note_path(db).exists()


def test_gpu_use_follows_pycolmap_and_the_machine(monkeypatch):
    monkeypatch.setattr(pycolmap, "has_cuda", False, raising=False)
    assert not colmap_engine.use_gpu(PoseOptions(use_gpu=True))  # asked, but this build has no CUDA
    monkeypatch.setattr(pycolmap, "has_cuda", True, raising=False)
    monkeypatch.setattr(colmap_engine, "gpu_visible", lambda: True)
    assert colmap_engine.use_gpu(PoseOptions()) and not colmap_engine.use_gpu(PoseOptions(use_gpu=False))
    monkeypatch.setattr(colmap_engine, "gpu_visible", lambda: False)
    assert not colmap_engine.use_gpu(PoseOptions())


def test_no_gpu_is_visible_when_cuda_visible_devices_hides_them(monkeypatch):
    colmap_engine.gpu_visible.cache_clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    try:
        assert colmap_engine.gpu_visible() is False
    finally:
        colmap_engine.gpu_visible.cache_clear()


def test_the_pair_plan_is_kept_beside_the_features_and_made_again_when_anything_it_depends_on_changes(
        synthetic, monkeypatch):
    from splatforge.poses import pairs as pairing

    _, db, names = synthetic
    extraction = {"camera_model": "RADIAL", "first_octave": 0, "images": {}}
    colmap_engine.note_path(db).write_text(json.dumps({"extraction": extraction}))
    options = PoseOptions(all_pairs_up_to=3, sequential_overlap=1, loop_closure_neighbors=2)
    made = []
    real = pairing.bow_vectors
    monkeypatch.setattr(pairing, "bow_vectors", lambda *a, **k: made.append(1) or real(*a, **k))

    first = colmap_engine.plan_pairs(db, names, options, True)
    assert first.scheme == "sequential" and first.pairs and len(made) == 1
    again = colmap_engine.plan_pairs(db, names, options, True)
    assert again == first and len(made) == 1  # read from the note: no vocabulary built
    colmap_engine.plan_pairs(db, names, replace(options, loop_closure_neighbors=3), True)
    colmap_engine.plan_pairs(db, names[:-1], replace(options, loop_closure_neighbors=3), True)
    assert len(made) == 3  # another option, other images: planned again
    colmap_engine.prepare_database(db, {**extraction, "first_octave": -1}, colmap_engine.matching_settings(options))
    assert not colmap_engine.note_path(db).exists()  # other features: the plan went with them
