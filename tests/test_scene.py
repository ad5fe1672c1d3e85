"""Scene model and formats: conventions (property tests) and round trips on real data."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splatforge.errors import InputError
from splatforge.scene import (
    Camera,
    Frame,
    Scene,
    read_colmap,
    read_rig,
    read_scene,
    read_transforms,
    write_colmap,
    write_rig_json,
    write_transforms,
)
from splatforge.scene import conventions as cv
from splatforge.scene.align import compare_poses

unit = st.floats(-1.0, 1.0, allow_nan=False)
coord = st.floats(-100.0, 100.0, allow_nan=False)


def _rotation(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if np.linalg.norm(q) < 1e-3:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    return cv.rotmat_from_quat(q)


def _pose(q, t) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = _rotation(q)
    pose[:3, 3] = t
    return pose


quats = st.tuples(unit, unit, unit, unit)
vecs = st.tuples(coord, coord, coord)


@settings(max_examples=200, deadline=None)
@given(quats, vecs)
def test_opengl_transform_round_trip(q, t):
    w2c = _pose(q, t)
    back = cv.w2c_from_opengl_c2w(cv.opengl_c2w_from_w2c(w2c))
    assert np.allclose(back, w2c, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(quats, vecs, vecs)
def test_world_point_lands_in_front_with_opencv_axes(q, t, p):
    """A point the camera sees in front (z > 0, OpenCV) is behind the OpenGL camera's -z, same x, flipped y."""
    w2c = _pose(q, t)
    x_world = np.append(np.asarray(p), 1.0)
    x_cv = w2c @ x_world
    c2w_gl = cv.opengl_c2w_from_w2c(w2c)
    x_gl = np.linalg.inv(c2w_gl) @ x_world
    assert np.allclose(x_gl[:3], x_cv[:3] * np.array([1, -1, -1]), atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(quats, vecs)
def test_center_and_direction(q, t):
    w2c = _pose(q, t)
    center = cv.camera_center(w2c)
    assert np.allclose((w2c @ np.append(center, 1.0))[:3], 0.0, atol=1e-8)
    ahead = center + 2.0 * cv.viewing_direction(w2c)
    assert np.allclose((w2c @ np.append(ahead, 1.0))[:3], [0.0, 0.0, 2.0], atol=1e-8)


@settings(max_examples=200, deadline=None)
@given(quats)
def test_quaternion_round_trip(q):
    rot = _rotation(q)
    assert np.allclose(cv.rotmat_from_quat(cv.quat_from_rotmat(rot)), rot, atol=1e-9)
    assert cv.rotation_angle_deg(rot, rot) < 1e-5


@settings(max_examples=100, deadline=None)
@given(vecs, vecs)
def test_look_at_points_the_camera_at_the_target(eye, target):
    eye, target = np.asarray(eye), np.asarray(target)
    if np.linalg.norm(target - eye) < 1e-3:
        return
    w2c = cv.look_at_w2c(eye, target)
    x = w2c @ np.append(target, 1.0)
    assert x[2] > 0 and np.allclose(x[:2], 0.0, atol=1e-6 * max(1.0, x[2]))
    assert np.allclose(cv.camera_center(w2c), eye, atol=1e-8)


def _assert_same_scene(a: Scene, b: Scene, atol: float = 1e-9) -> None:
    assert [f.image.name for f in a.frames] == [f.image.name for f in b.frames]
    for fa, fb in zip(a.frames, b.frames):
        assert np.abs(fa.w2c - fb.w2c).max() < atol
        ca, cb = fa.camera, fb.camera
        assert ca.model == cb.model and (ca.width, ca.height) == (cb.width, cb.height)
        assert np.allclose([ca.fx, ca.fy, ca.cx, ca.cy, *ca.distortion], [cb.fx, cb.fy, cb.cx, cb.cy, *cb.distortion],
                           atol=atol, rtol=0)


@pytest.mark.parametrize("binary", [True, False])
def test_fox_round_trip_transforms_colmap_transforms(copy_capture, tmp_path, binary):
    fox = copy_capture("fox")
    original = read_transforms(fox / "transforms.json")
    assert len(original.frames) == 50  # 67 listed, 50 files exist: the rest are skipped
    assert len(original.meta["skipped_missing"]) == 17
    # The file's rotations are orthonormal only to ~1e-7; reading projects them once (documented).
    raw = json.loads((fox / "transforms.json").read_text())
    first = next(f for f in raw["frames"] if (fox / f["file_path"]).exists())
    assert np.abs(cv.opengl_c2w_from_w2c(original.frames[0].w2c) - np.array(first["transform_matrix"])).max() < 1e-6

    model = write_colmap(original, tmp_path / "sparse" / "0", binary=binary)
    from_colmap = read_colmap(model, image_dir=fox)
    _assert_same_scene(original, from_colmap)

    write_transforms(from_colmap, fox / "again.json")
    again = read_transforms(fox / "again.json")
    _assert_same_scene(original, again)


def test_points_travel_with_transforms(tmp_path):
    cam = Camera("PINHOLE", 64, 48, 50.0, 50.0, 32.0, 24.0)
    (tmp_path / "a.png").write_bytes(b"")
    scene = Scene([Frame("a.png", tmp_path / "a.png", cam, cv.look_at_w2c([3, 0, 1], [0, 0, 0]))],
                  points=np.random.default_rng(0).normal(size=(100, 3)),
                  colors=np.random.default_rng(1).integers(0, 255, (100, 3)))
    write_transforms(scene, tmp_path / "transforms.json", ply_file="points.ply")
    back = read_scene(tmp_path)
    assert np.allclose(back.points, scene.points) and (back.colors == scene.colors).all()
    rec_dir = write_colmap(scene, tmp_path / "model")
    assert np.allclose(read_colmap(rec_dir, tmp_path).points, scene.points)


def _rig_cameras(n=4):
    cams = []
    for i in range(n):
        w2c = cv.look_at_w2c([4 * np.cos(i), 4 * np.sin(i), 1.0], [0, 0, 0])
        cams.append({"K": np.array([[500.0, 0, 320], [0, 505.0, 240], [0, 0, 1]]), "R": w2c[:3, :3],
                     "T": w2c[:3, 3].reshape(3, 1), "dist": np.zeros(5)})
    return cams


def test_rig_pickle_like_mammal(tmp_path):
    cams = _rig_cameras()
    (tmp_path / "new_cam.pkl").write_bytes(pickle.dumps(cams))
    scene = read_rig(tmp_path / "new_cam.pkl")
    assert len(scene.frames) == 4
    for cam, frame in zip(cams, scene.frames):
        assert np.allclose(frame.w2c[:3, :3], cam["R"]) and np.allclose(frame.w2c[:3, 3], cam["T"].ravel())
        assert np.allclose(frame.camera.K, cam["K"]) and frame.camera.model == "PINHOLE"
    # JSON round trip keeps everything
    write_rig_json(scene, tmp_path / "rig.json")
    _assert_same_scene(scene, read_rig(tmp_path / "rig.json"))


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_rig_pickle_refuses_arbitrary_objects(tmp_path):
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([{"K": Evil(), "R": np.eye(3), "T": np.zeros(3)}]))
    with pytest.raises(InputError, match="refused"):
        read_rig(tmp_path / "evil.pkl")


def test_compare_poses_is_invariant_to_similarity(copy_capture):
    fox = read_transforms(copy_capture("fox") / "transforms.json")
    # Apply a similarity to the world: x' = s R x + t. Then w2c' = w2c @ inv(S).
    s, rot, t = 2.5, cv.rotmat_from_quat([0.3, 0.1, -0.5, 0.8]), np.array([1.0, -2.0, 3.0])
    sim = np.eye(4)
    sim[:3, :3], sim[:3, 3] = s * rot, t
    frames = []
    for f in fox.frames:
        w2c = f.w2c @ np.linalg.inv(sim)
        w2c[:3] *= s  # keep the rotation block orthonormal: rescale the camera frame
        w2c[3] = [0, 0, 0, 1]
        frames.append(Frame(f.name, f.image, f.camera, w2c))
    errors = compare_poses(Scene(frames), fox)
    assert errors.matched == 50
    assert errors.median_rotation_deg < 1e-6 and errors.median_center_error < 1e-9
