"""Synthetic captures: files, determinism, and geometry that SIFT and COLMAP agree with.

The geometric tests check the images against the *known* cameras with tools that know nothing of the
generator (OpenCV SIFT, epipolar geometry, pycolmap), so a convention slip in the renderer would fail them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from splatforge.scene import Camera, read_transforms
from splatforge.scene.conventions import camera_center
from splatforge.synthetic import (
    GridTexture,
    SyntheticOptions,
    _sample_numpy,
    build_world,
    camera_path,
    make_camera,
    make_synthetic_capture,
    render_view,
)


@pytest.fixture(scope="module")
def orbit(tmp_path_factory):
    """The default capture: 24 orbit views at 320x240, and the CPU seconds it took (all threads: the
    one-core cost, which unlike wall time does not grow when others share the machine)."""
    out = tmp_path_factory.mktemp("orbit")
    start = time.process_time()
    scene = make_synthetic_capture(out, SyntheticOptions())
    return out, scene, time.process_time() - start


def _grey(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return image


def _sift(image: np.ndarray):
    return cv2.SIFT_create().detectAndCompute(image, None)


def _sift_inliers(feat1, feat2) -> tuple[np.ndarray, np.ndarray]:
    """Ratio-test (0.75) SIFT matches that survive fundamental-matrix RANSAC, in our pixel convention
    (the centre of pixel (0, 0) is (0.5, 0.5); OpenCV's keypoints put it at (0, 0))."""
    (k1, d1), (k2, d2) = feat1, feat2
    if d1 is None or d2 is None:
        return np.zeros((0, 2)), np.zeros((0, 2))
    good = [m for m, n in cv2.BFMatcher().knnMatch(d1, d2, k=2) if m.distance < 0.75 * n.distance]
    if len(good) < 8:
        return np.zeros((0, 2)), np.zeros((0, 2))
    x1 = np.float64([k1[m.queryIdx].pt for m in good]) + 0.5
    x2 = np.float64([k2[m.trainIdx].pt for m in good]) + 0.5
    _, mask = cv2.findFundamentalMat(x1, x2, cv2.FM_RANSAC, 1.0, 0.999)
    keep = mask.ravel().astype(bool)
    return x1[keep], x2[keep]


def _fundamental(cam1: Camera, w2c1: np.ndarray, cam2: Camera, w2c2: np.ndarray) -> np.ndarray:
    """F with x2^T F x1 = 0, from the known poses and intrinsics."""
    rel = w2c2 @ np.linalg.inv(w2c1)
    t = rel[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    return np.linalg.inv(cam2.K).T @ tx @ rel[:3, :3] @ np.linalg.inv(cam1.K)


def _sampson(F: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:  # noqa: N803
    h1, h2 = np.c_[x1, np.ones(len(x1))], np.c_[x2, np.ones(len(x2))]
    fx1, ftx2 = h1 @ F.T, h2 @ F
    num = np.sum(h2 * fx1, axis=1) ** 2
    return np.sqrt(num / (fx1[:, 0] ** 2 + fx1[:, 1] ** 2 + ftx2[:, 0] ** 2 + ftx2[:, 1] ** 2))


# ---------------------------------------------------------------------------------------------------------
# Files and determinism


def test_capture_layout_and_speed(orbit):
    out, scene, seconds = orbit
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == [f"{i:04d}.png" for i in range(1, 25)]
    for name in names:
        image = cv2.imread(str(out / "images" / name))
        assert image.shape == (240, 320, 3)
    assert (out / "transforms.json").exists() and (out / "points.ply").exists()
    assert scene.cameras == [Camera("PINHOLE", 320, 240, scene.frames[0].camera.fx, scene.frames[0].camera.fx,
                                    160.0, 120.0)]
    assert scene.frames[0].camera.fx == pytest.approx(160 / np.tan(np.radians(30)))
    # "a few seconds on one core" (about 4 s of CPU here); generous, as the test machine is shared.
    assert seconds < 20, f"24 views at 320x240 took {seconds:.1f} CPU s"


def test_transforms_round_trip(orbit):
    out, scene, _ = orbit
    back = read_transforms(out / "transforms.json")
    assert [f.name for f in back.frames] == [f.name for f in scene.frames]
    for a, b in zip(back.frames, scene.frames):
        assert a.image.resolve() == b.image.resolve()
        assert a.camera == b.camera
        np.testing.assert_allclose(a.w2c, b.w2c, atol=1e-9)
    np.testing.assert_allclose(back.points, scene.points, atol=1e-9)
    np.testing.assert_array_equal(back.colors, scene.colors)
    assert 9000 <= len(scene.points) <= 10000


def test_same_seed_same_capture_other_seed_other_scene(tmp_path):
    opts = SyntheticOptions(n_views=4, width=80, height=60, n_points=500)
    a = make_synthetic_capture(tmp_path / "a", opts)
    b = make_synthetic_capture(tmp_path / "b", opts)
    c = make_synthetic_capture(tmp_path / "c", SyntheticOptions(n_views=4, width=80, height=60, n_points=500,
                                                                seed=1))
    for fa, fb, fc in zip(a.frames, b.frames, c.frames):
        ia, ib, ic = (cv2.imread(str(f.image)) for f in (fa, fb, fc))
        np.testing.assert_array_equal(ia, ib)
        assert np.abs(ia.astype(int) - ic.astype(int)).mean() > 10
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.colors, b.colors)
    assert a.meta["world"] == b.meta["world"] != c.meta["world"]


def test_layout_does_not_depend_on_resolution():
    small = build_world(SyntheticOptions(width=48, height=32)).describe()
    large = build_world(SyntheticOptions(width=160, height=120)).describe()
    assert small == large


def test_jpeg_output_and_bad_options(tmp_path):
    scene = make_synthetic_capture(tmp_path / "j", SyntheticOptions(n_views=3, width=48, height=32,
                                                                    image_format="jpg", n_points=100))
    assert [f.image.name for f in scene.frames] == ["0001.jpg", "0002.jpg", "0003.jpg"]
    assert cv2.imread(str(scene.frames[0].image)).shape == (32, 48, 3)
    with pytest.raises(ValueError):
        make_synthetic_capture(tmp_path / "x", SyntheticOptions(image_format="gif"))
    with pytest.raises(ValueError):
        camera_path(SyntheticOptions(path="spiral"))


def test_low_resolution_is_fast_and_textured(tmp_path):
    start = time.process_time()
    scene = make_synthetic_capture(tmp_path / "small", SyntheticOptions(n_views=60, width=64, height=64))
    seconds = time.process_time() - start
    assert len(scene.frames) == 60
    assert seconds < 3, f"60 views at 64x64 took {seconds:.2f} CPU s"  # about 0.5 s
    images = [cv2.imread(str(f.image), cv2.IMREAD_GRAYSCALE) for f in scene.frames]
    assert min(float(im.std()) for im in images) > 15
    # Neighbouring views differ (the camera moves) but are alike (they overlap).
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(images, images[1:])]
    assert min(diffs) > 3


def test_every_part_of_the_image_carries_texture(orbit):
    out, scene, _ = orbit
    for frame in scene.frames[::6]:
        grey = _grey(frame.image).astype(np.float32)
        local_mean = cv2.blur(grey, (9, 9))
        local_std = np.sqrt(np.maximum(cv2.blur(grey * grey, (9, 9)) - local_mean**2, 0))
        assert np.mean(local_std > 4.0) > 0.97, frame.name


def test_texture_lookup_matches_plain_multilinear_interpolation():
    """The fast cv2.remap look-ups (2D, and 3D as two 2D ones) agree with a plain numpy reference."""
    rng = np.random.default_rng(0)
    for shape in ((40, 30), (12, 9, 7)):
        data = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        tex = GridTexture(data, origin=np.full(len(shape), -0.3), texel=0.05)
        coords = -0.3 + rng.random((2000, len(shape))) * (np.array(shape) * 0.05)
        ref = _sample_numpy(data, (coords + 0.3) / 0.05 - 0.5)
        np.testing.assert_allclose(tex.sample(coords), ref, atol=2.5 / 255)
        centres = -0.3 + (np.argwhere(np.ones(shape)) + 0.5) * 0.05  # at texel centres: exact stored colours
        np.testing.assert_allclose(tex.sample(centres) * 255, data.reshape(-1, 3), atol=0.51)


# ---------------------------------------------------------------------------------------------------------
# Geometry


def test_neighbouring_orbit_views_match_under_sift_and_agree_with_the_known_poses(orbit):
    out, scene, _ = orbit
    frames = scene.frames
    features = [_sift(_grey(f.image)) for f in frames]
    for i in range(len(frames)):
        j = (i + 1) % len(frames)
        f1, f2 = frames[i], frames[j]
        x1, x2 = _sift_inliers(features[i], features[j])
        assert len(x1) >= 100, f"{f1.name}-{f2.name}: {len(x1)} inliers"
        dist = _sampson(_fundamental(f1.camera, f1.w2c, f2.camera, f2.w2c), x1, x2)
        assert np.median(dist) < 0.5, f"{f1.name}-{f2.name}: median Sampson distance {np.median(dist):.2f} px"
        assert np.mean(dist < 1.5) > 0.9


def test_true_points_project_onto_their_colour(orbit):
    """The reference points, projected with the known cameras, land on pixels of their own colour and depth."""
    out, scene, _ = orbit
    world = build_world(SyntheticOptions())
    rng = np.random.default_rng(0)
    for frame in scene.frames[::5]:
        image, depth = render_view(world, frame.camera, frame.w2c, supersample=1, return_depth=True)
        cam_pts = scene.points @ frame.w2c[:3, :3].T + frame.w2c[:3, 3]
        z = cam_pts[:, 2]
        front = z > 0.1
        u = frame.camera.fx * cam_pts[front, 0] / z[front] + frame.camera.cx
        v = frame.camera.fy * cam_pts[front, 1] / z[front] + frame.camera.cy
        inside = (u >= 2) & (u < frame.camera.width - 2) & (v >= 2) & (v < frame.camera.height - 2)
        cols, rows = u[inside].astype(int), v[inside].astype(int)
        zs, colours = z[front][inside], scene.colors[front][inside].astype(int)
        visible = np.abs(depth[rows, cols] - zs) < 0.02 * zs + 0.02
        assert visible.sum() > 300, frame.name
        err = np.abs(image[rows, cols].astype(int) - colours).mean(axis=1)[visible]
        # The same points compared with pixels a few pixels off: the texture decorrelates quickly.
        dr, dc = rng.choice([-3, 3], size=(2, visible.sum()))
        off = np.abs(image[np.clip(rows[visible] + dr, 0, frame.camera.height - 1),
                           np.clip(cols[visible] + dc, 0, frame.camera.width - 1)].astype(int)
                     - colours[visible]).mean(axis=1)
        assert np.median(err) < 12, f"{frame.name}: median colour error {np.median(err):.1f}"
        assert np.median(err) < 0.5 * np.median(off)


def test_handheld_path_is_smooth_looks_at_the_scene_and_matches(tmp_path):
    opts = SyntheticOptions(n_views=30, width=160, height=120, path="handheld", seed=3, n_points=1000)
    poses = camera_path(opts)
    centres = np.array([camera_center(p) for p in poses])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.min() > 0.02 and steps.max() < 4 * np.median(steps)
    assert np.ptp(centres[:, 2]) > 0.05  # not a flat orbit
    camera = make_camera(opts)
    for pose in poses:  # the scene centre is in view, well inside the frame
        p = pose[:3, :3] @ [0.0, 0.0, opts.target_height] + pose[:3, 3]
        u, v = camera.fx * p[0] / p[2] + camera.cx, camera.fy * p[1] / p[2] + camera.cy
        assert p[2] > 0 and 0.15 * camera.width < u < 0.85 * camera.width and 0.15 * camera.height < v < 0.85 * camera.height
    scene = make_synthetic_capture(tmp_path / "hh", opts)
    for f1, f2 in list(zip(scene.frames, scene.frames[1:]))[::7]:
        x1, x2 = _sift_inliers(_sift(_grey(f1.image)), _sift(_grey(f2.image)))
        assert len(x1) >= 40, f"{f1.name}-{f2.name}: {len(x1)} inliers"
        assert np.median(_sampson(_fundamental(f1.camera, f1.w2c, f2.camera, f2.w2c), x1, x2)) < 0.5


def pycolmap_models(folder: Path) -> None:
    """pycolmap alone (SIFT, exhaustive matching, incremental mapping; one thread) on the default capture,
    made in folder/orbit: models in folder/sparse/<k>. Run in the background while other tests run
    (conftest.py, BackgroundCommand)."""
    import pycolmap

    out = folder / "orbit"
    make_synthetic_capture(out, SyntheticOptions())
    database, sparse = folder / "database.db", folder / "sparse"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_PINHOLE"  # one focal length, to be found by self-calibration
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = 1
    extraction.use_gpu = False
    pycolmap.extract_features(database, out / "images", camera_mode=pycolmap.CameraMode.SINGLE,
                              reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = 1
    matching.use_gpu = False
    pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = 1
    mapping.random_seed = 0
    pycolmap.incremental_mapping(database, out / "images", sparse, mapping)


_CODE = (f"import sys; from pathlib import Path; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
         "import test_synthetic as t; t.pycolmap_models(Path(sys.argv[1]))")
BACKGROUND_COMMANDS = {"pycolmap:orbit": lambda folder: [sys.executable, "-c", _CODE, str(folder)]}


@pytest.mark.background("pycolmap:orbit")
def test_pycolmap_recovers_the_known_cameras(background):
    pycolmap = pytest.importorskip("pycolmap")
    from splatforge.scene import read_colmap
    from splatforge.scene.align import compare_poses

    job = background("pycolmap:orbit")
    done = job.result()
    assert done.returncode == 0, done.stderr[-3000:]
    out, sparse = job.folder / "orbit", job.folder / "sparse"
    scene = read_transforms(out / "transforms.json")
    models = {int(d.name): pycolmap.Reconstruction(str(d)) for d in sparse.iterdir()} if sparse.exists() else {}
    assert models, "pycolmap built no model"
    best = max(models, key=lambda k: models[k].num_reg_images())
    assert models[best].num_reg_images() == len(scene.frames)
    estimate = read_colmap(sparse / str(best), out / "images")
    assert estimate.frames[0].camera.fx == pytest.approx(scene.frames[0].camera.fx, rel=0.01)
    errors = compare_poses(estimate, scene)
    assert errors.matched == len(scene.frames)
    assert errors.max_rotation_deg < 0.5
    assert errors.max_center_error < 0.01
