"""The run folder as a COLMAP dataset other trainers read: images/ + a PINHOLE sparse/0 (undistorted),
and distorted/ (the model as estimated, of the original frames). Read back with pycolmap."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data_dir
from splatforge.poses import PoseOptions, estimate_poses_for

FOX = shared_data_dir() / "fox"


def _opencv_camera():
    import pycolmap

    return pycolmap.Camera(model="OPENCV", width=200, height=150, camera_id=1,
                           params=[180.0, 175.0, 103.0, 77.0, 0.08, -0.05, 0.001, -0.0005])


def test_undistorted_model_moves_each_keypoint_to_its_pinhole_projection(tmp_path):
    import pycolmap

    from splatforge.poses.undistort import undistortion_map, write_undistorted_model

    cam = _opencv_camera()
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(cam)
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.8, 0.8, (30, 3)) + [0, 0, 4]
    poses = [pycolmap.Rigid3d(pycolmap.Rotation3d(np.eye(3)), np.array([x, 0.0, 0.0])) for x in (0.0, 0.3)]
    for image_id, pose in enumerate(poses, start=1):
        cam_points = points + pose.translation
        keypoints = np.concatenate([cam.img_from_cam(cam_points), [[17.0 + image_id, 33.0]]])  # + one unmatched
        image = pycolmap.Image(name=f"{image_id}.png", camera_id=1, image_id=image_id,
                               points2D=[pycolmap.Point2D(xy) for xy in keypoints])
        rec.add_image_with_trivial_frame(image, pose)
    rec.add_image_with_trivial_frame(pycolmap.Image(name="unplaced.png", camera_id=1, image_id=3,
                                                    points2D=[pycolmap.Point2D([5.0, 6.0])]))
    for j, xyz in enumerate(points):
        track = pycolmap.Track()
        for image_id in (1, 2):
            track.add_element(image_id, j)
        rec.add_point3D(xyz, track, np.array([200, 100, 50], np.uint8))

    pinhole, _, _ = undistortion_map(cam)
    out = pycolmap.Reconstruction(write_undistorted_model(rec, {1: pinhole}, tmp_path / "sparse"))
    assert out.cameras[1].model.name == "PINHOLE" and rec.cameras[1].model.name == "OPENCV"  # input untouched
    assert (out.cameras[1].width, out.cameras[1].height) == (pinhole.width, pinhole.height)
    assert sorted(out.images) == [1, 2]  # the unplaced image has no undistorted file: left out
    for image_id, pose in enumerate(poses, start=1):
        moved = np.array([p.xy for p in out.images[image_id].points2D])
        extra = pinhole.img_from_cam(np.c_[cam.cam_from_img(np.array([[17.0 + image_id, 33.0]])), 1.0])
        expected = np.concatenate([pinhole.img_from_cam(points + pose.translation), extra])
        np.testing.assert_allclose(moved, expected, atol=1e-6)
        assert np.abs(moved[-1] - [17.0 + image_id, 33.0]).max() > 0.1  # an unmatched keypoint moves too
        assert [p.point3D_id for p in out.images[image_id].points2D] == \
               [p.point3D_id for p in rec.images[image_id].points2D]
        np.testing.assert_allclose(out.images[image_id].cam_from_world().matrix(), pose.matrix(), atol=1e-12)
    assert out.num_points3D() == 30
    out.update_point_3d_errors()
    assert out.compute_mean_reprojection_error() < 1e-6


def _tiny_capture(root: Path) -> Path:
    """Six known OPENCV cameras on a ring and noise images (the known-cameras engine needs no SfM)."""
    from splatforge.scene import Camera, Frame, Scene, look_at_w2c, write_transforms

    (root / "images").mkdir(parents=True)
    cam = Camera("OPENCV", 160, 120, 150.0, 151.0, 81.0, 59.0, (0.05, -0.02, 0.001, 0.0))
    rng = np.random.default_rng(0)
    frames = []
    for i in range(6):
        path = root / "images" / f"{i:04d}.png"
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path)
        a = 2 * np.pi * i / 6
        frames.append(Frame(f"images/{path.name}", path, cam,
                            look_at_w2c(np.array([4 * np.cos(a), 4 * np.sin(a), 1.0]), np.zeros(3))))
    write_transforms(Scene(frames), root / "transforms.json")
    return root


def check_colmap_datasets(run: Path, distorted_model: str) -> tuple:
    """Read both datasets with pycolmap as a trainer would (DATA/sparse/0 + DATA/images) and check every
    image file against its camera. Returns (undistorted, distorted) reconstructions."""
    import pycolmap

    assert (run / "images").is_symlink() and (run / "images").resolve() == (run / "images_undistorted").resolve()
    assert (run / "distorted" / "images").resolve() == (run / "frames").resolve()
    models = []
    for data, model in ((run, "PINHOLE"), (run / "distorted", distorted_model)):
        rec = pycolmap.Reconstruction(str(data / "sparse" / "0"))
        assert rec.num_images() > 0
        for image in rec.images.values():
            cam = rec.cameras[image.camera_id]
            assert cam.model.name == model
            with Image.open(data / "images" / image.name) as im:
                assert im.size == (cam.width, cam.height), (data, image.name)
        models.append(rec)
    undistorted, distorted = models
    assert sorted(i.name for i in undistorted.images.values()) == sorted(i.name for i in distorted.images.values())
    for image in undistorted.images.values():
        other = distorted.find_image_with_name(image.name)
        np.testing.assert_allclose(image.cam_from_world().matrix(), other.cam_from_world().matrix(), atol=1e-9)
    return undistorted, distorted


def test_pose_stage_writes_an_undistorted_colmap_dataset(tmp_path):
    capture = _tiny_capture(tmp_path / "capture")
    run = tmp_path / "run"
    estimate_poses_for(capture / "images", run, PoseOptions(cameras=capture / "transforms.json"))
    undistorted, distorted = check_colmap_datasets(run, "OPENCV")
    assert undistorted.num_images() == 6
    # The PINHOLE camera is COLMAP's own choice for this OPENCV camera (no blank pixels).
    import pycolmap

    expected = pycolmap.undistort_camera(pycolmap.UndistortCameraOptions(), next(iter(distorted.cameras.values())))
    cam = next(iter(undistorted.cameras.values()))
    assert (cam.width, cam.height) == (expected.width, expected.height)
    np.testing.assert_allclose(cam.params, expected.params)

    # Running the stage again replaces the links and models instead of failing on them.
    estimate_poses_for(capture / "images", run, PoseOptions(cameras=capture / "transforms.json"))
    check_colmap_datasets(run, "OPENCV")


def test_without_undistortion_sparse0_describes_the_frames(tmp_path):
    capture = _tiny_capture(tmp_path / "capture")
    run = tmp_path / "run"
    estimate_poses_for(capture / "images", run, PoseOptions(cameras=capture / "transforms.json", undistort=False))
    assert (run / "images").resolve() == (run / "frames").resolve()
    import pycolmap

    rec = pycolmap.Reconstruction(str(run / "sparse" / "0"))
    assert {c.model.name for c in rec.cameras.values()} == {"OPENCV"}
    for image in rec.images.values():
        with Image.open(run / "images" / image.name) as im:
            assert im.size == (rec.cameras[image.camera_id].width, rec.cameras[image.camera_id].height)


def test_a_folder_of_photos_named_images_is_never_replaced(tmp_path):
    capture = _tiny_capture(tmp_path / "capture")
    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    (run / "images" / "mine.txt").write_text("the user's")
    estimate_poses_for(capture / "images", run, PoseOptions(cameras=capture / "transforms.json"))
    assert (run / "images" / "mine.txt").read_text() == "the user's" and not (run / "images").is_symlink()
    assert (run / "sparse" / "0" / "cameras.bin").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not (FOX / "transforms.json").is_file(), reason=f"the fox capture is not at {FOX}")
def test_fox_with_triangulated_points_reads_as_both_datasets(tmp_path):
    """Real photos (OPENCV phone camera, 1080x1920): both models hold the same triangulated points with
    the same reprojection error, the PINHOLE one measured in the undistorted images."""
    capture = tmp_path / "fox"
    (capture / "images").mkdir(parents=True)
    for name in sorted(p.name for p in (FOX / "images").iterdir())[:5]:
        shutil.copy(FOX / "images" / name, capture / "images" / name)
    shutil.copy(FOX / "transforms.json", capture / "transforms.json")
    run = tmp_path / "run"
    result = estimate_poses_for(capture / "images", run,
                                PoseOptions(cameras=capture / "transforms.json", triangulate=True))
    assert result.points > 500
    undistorted, distorted = check_colmap_datasets(run, "OPENCV")
    assert undistorted.num_points3D() == distorted.num_points3D() == result.points
    undistorted.update_point_3d_errors()
    distorted.update_point_3d_errors()
    # Keypoints moved with the images: the error stays what it was (pixels shrink a little with the crop).
    assert abs(undistorted.compute_mean_reprojection_error() - distorted.compute_mean_reprojection_error()) < 0.05
    assert undistorted.compute_mean_reprojection_error() < 2.0
