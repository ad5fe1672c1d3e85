"""Write the pose stage's outputs: two COLMAP datasets and the training scene.

    distorted/sparse/0/   the model as estimated: original camera models (e.g. RADIAL), of frames/
    distorted/images   -> ../frames
    images_undistorted/   PINHOLE images, same file names
    images             -> images_undistorted
    sparse/0/             the same model for images/: PINHOLE cameras, the same poses and 3D points,
                          keypoints moved into the undistorted images
    transforms.json       the training scene (PINHOLE, paths into images_undistorted/), sparse points as a PLY

`images/` + `sparse/0` is the undistorted dataset that COLMAP's image_undistorter writes and that
gsplat's simple_trainer and the INRIA 3DGS trainer (`-s RUN`) read as it is; nerfstudio reads
transforms.json. `distorted/` is the dataset to re-run SfM tools on. Without undistortion, sparse/0
is the original model and `images` links to frames/.

Undistortion uses pycolmap's own choice of the PINHOLE camera (`pycolmap.undistort_camera`, no blank
pixels) and one OpenCV remap table per camera, shared by every image of that camera: this is what
`pycolmap.undistort_images` does, but without recomputing the table per image (8x faster on fox). A camera
whose table moves no pixel (PINHOLE already, e.g. known poses of a posed capture) gets hard links to its
frames instead of decoded, remapped and re-encoded copies (300 1080p JPEGs: 20 CPU s and 150 MB saved).
pycolmap has no binding for COLMAP's UndistortReconstruction, so the PINHOLE model is made here: the
cameras replaced, each keypoint mapped through the original camera's rays into the PINHOLE one (in the written
images.bin, all keypoints of a camera at once: `move_keypoints` says why).
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from splatforge.capture.imageio import read_image, write_image
from splatforge.rundir import RunDir
from splatforge.scene.colmap import reconstruction_to_scene
from splatforge.scene.transforms import write_transforms
from splatforge.scene.types import Camera, Frame, Scene

log = logging.getLogger(__name__)
PLY_NAME = "sparse_points.ply"


def _write_model(reconstruction, folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    reconstruction.write_binary(str(folder))
    return folder


def _link_folder(link: Path, target: Path) -> None:
    """`link` -> `target` (relative). A real folder already at `link` is left alone (it may hold the
    user's own photos, e.g. when RUN/images was the input): only the COLMAP layout is then incomplete."""
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        log.warning("%s is a folder of its own, not splatforge's link to %s: left as it is", link, target.name)
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)


def write_sparse(reconstruction, run: RunDir) -> Path:
    """The model as estimated into distorted/sparse/0 (+ distorted/images -> frames), and into
    sparse/0 (+ images -> frames) until `undistort` replaces that pair with the PINHOLE one."""
    _write_model(reconstruction, run.distorted_sparse)
    _link_folder(run.distorted_images, run.frames)
    _write_model(reconstruction, run.sparse)
    _link_folder(run.images, run.frames)
    return run.sparse


def write_undistorted_model(reconstruction, pinholes: dict, folder: Path) -> Path:
    """Write the model of the undistorted images into `folder`: a copy of `reconstruction` with each camera
    replaced by its PINHOLE camera (`pinholes`: camera_id -> pycolmap.Camera), each keypoint moved to where its
    ray meets the PINHOLE image, unregistered images dropped. Poses and 3D points are unchanged."""
    import pycolmap

    rec = pycolmap.Reconstruction(reconstruction)
    rec.tear_down()  # drops the images without a pose (they have no undistorted file)
    for cam_id, cam in rec.cameras.items():
        pinhole = pinholes[cam_id]
        cam.model, cam.width, cam.height, cam.params = pinhole.model, pinhole.width, pinhole.height, pinhole.params
    _write_model(rec, folder)
    originals = reconstruction.cameras

    def move(camera_id: int, xy: np.ndarray) -> np.ndarray:
        rays = originals[camera_id].cam_from_img(xy)
        moved = pinholes[camera_id].img_from_cam(np.concatenate([rays, np.ones((len(rays), 1))], axis=1))
        return np.where(np.isfinite(moved).all(axis=1, keepdims=True), moved, xy)

    move_keypoints(folder / "images.bin", move)
    return folder


# One keypoint in COLMAP's images.bin: x, y (float64, COLMAP's pixels), then the id of its 3D point (uint64).
_KEYPOINT = np.dtype([("xy", "<f8", (2,)), ("point3D_id", "<u8")])
NO_POINT3D = np.iinfo(np.uint64).max  # a keypoint without a 3D point


def keypoints_in_file(data: bytes | bytearray) -> dict[int, tuple[int, np.ndarray]]:
    """image id -> (camera id, its keypoints: a `_KEYPOINT` array viewing `data`, the bytes of an images.bin;
    writable where `data` is a bytearray).

    By hand, on the file: pycolmap reads and writes an image's keypoints one Python call at a time (fox's 75k
    took 0.5 s on one thread, the undistortion step's longest serial part, and held the GIL against the image
    workers; 150 video frames 1.6-2.0 s of the step on the H100), while COLMAP's binary layout is fixed and
    documented (src/colmap/scene/reconstruction_io_binary.cc): uint64 count, then per image uint32 id, 4 + 3
    float64 pose, uint32 camera id, a NUL-terminated name, uint64 keypoint count and the keypoints.
    """
    (count,) = struct.unpack_from("<Q", data, 0)
    offset, images = 8, {}
    for _ in range(count):
        (image_id,) = struct.unpack_from("<I", data, offset)
        (camera_id,) = struct.unpack_from("<I", data, offset + 4 + 56)
        name_end = data.index(0, offset + 64)
        (num_points,) = struct.unpack_from("<Q", data, name_end + 1)
        start = name_end + 9
        images[image_id] = camera_id, np.frombuffer(data, _KEYPOINT, num_points, start)
        offset = start + num_points * _KEYPOINT.itemsize
    if offset != len(data):
        raise ValueError(f"not COLMAP's images.bin layout ({len(data) - offset} bytes left over)")
    return images


def move_keypoints(images_bin: Path, move) -> None:
    """Rewrite the keypoint positions in a COLMAP images.bin in place (`keypoints_in_file` says why by hand):
    `move(camera_id, xy)` -> new xy, with xy every keypoint of that camera's images, (N, 2) float64."""
    data = bytearray(Path(images_bin).read_bytes())
    by_camera: dict[int, list[np.ndarray]] = {}
    for camera_id, keypoints in keypoints_in_file(data).values():
        if len(keypoints):
            by_camera.setdefault(camera_id, []).append(keypoints)
    for camera_id, arrays in by_camera.items():
        moved = move(camera_id, np.concatenate([a["xy"] for a in arrays]))
        start = 0
        for a in arrays:
            a["xy"] = moved[start:start + len(a)]
            start += len(a)
    tmp = Path(images_bin).with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(images_bin)


# COLMAP camera models that are OpenCV's pinhole + distortion model: (focal x, focal y, principal point x, y)
# parameter indices, then the indices of OpenCV's distortion coefficients (k1, k2, p1, p2[, k3, k4, k5, k6]).
_OPENCV_LAYOUT = {
    "SIMPLE_PINHOLE": ((0, 0, 1, 2), ()),
    "PINHOLE": ((0, 1, 2, 3), ()),
    "SIMPLE_RADIAL": ((0, 0, 1, 2), (3,)),
    "RADIAL": ((0, 0, 1, 2), (3, 4)),
    "OPENCV": ((0, 1, 2, 3), (4, 5, 6, 7)),
    "FULL_OPENCV": ((0, 1, 2, 3), (4, 5, 6, 7, 8, 9, 10, 11)),
}


def _opencv_intrinsics(camera) -> tuple[np.ndarray, np.ndarray] | None:
    """OpenCV's camera matrix (pixel centres at integers) and distortion coefficients for a pycolmap camera,
    or None for a model OpenCV's pinhole model does not cover (fisheye and the others)."""
    layout = _OPENCV_LAYOUT.get(camera.model.name)
    if layout is None:
        return None
    params = np.asarray(camera.params, dtype=np.float64)
    (fx, fy, cx, cy), distortion = layout
    matrix = np.array([[params[fx], 0.0, params[cx] - 0.5], [0.0, params[fy], params[cy] - 0.5], [0.0, 0.0, 1.0]])
    coefficients = np.zeros(max(4, len(distortion)))
    coefficients[:len(distortion)] = params[list(distortion)]
    return matrix, coefficients


def undistortion_map(camera, max_image_size: int = -1):
    """PINHOLE camera for a pycolmap camera, and the cv2.remap tables (H', W') float32 into the original.

    COLMAP puts pixel centres at +0.5, OpenCV at integers: the tables convert between the two.
    """
    import cv2
    import pycolmap

    opts = pycolmap.UndistortCameraOptions()
    opts.max_image_size = max_image_size
    pinhole = pycolmap.undistort_camera(opts, camera)
    w, h = pinhole.width, pinhole.height
    opencv = _opencv_intrinsics(camera)
    if opencv is None:
        return pinhole, *_traced_map(camera, pinhole)
    # OpenCV's own table for the models it shares with COLMAP: the numbers of `_traced_map` (tests/test_poses.py)
    # in 12 ms instead of 480 for a 1080p RADIAL camera (2 CPU cores), time spent before any image is read.
    target, _ = _opencv_intrinsics(pinhole)
    map_x, map_y = cv2.initUndistortRectifyMap(*opencv, None, target, (w, h), cv2.CV_32FC1)
    return pinhole, map_x, map_y


def _traced_map(camera, pinhole) -> tuple[np.ndarray, np.ndarray]:
    """The remap tables of any camera model: each PINHOLE pixel's ray traced into the original camera."""
    w, h = pinhole.width, pinhole.height
    u, v = np.meshgrid(np.arange(w, dtype=np.float64) + 0.5, np.arange(h, dtype=np.float64) + 0.5)
    rays = pinhole.cam_from_img(np.stack([u.ravel(), v.ravel()], axis=1))
    src = camera.img_from_cam(np.concatenate([rays, np.ones((len(rays), 1))], axis=1), check_cheirality=False)
    map_x = (src[:, 0] - 0.5).reshape(h, w).astype(np.float32)
    map_y = (src[:, 1] - 0.5).reshape(h, w).astype(np.float32)
    return map_x, map_y


def _is_identity(map_x: np.ndarray, map_y: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Whether the remap tables leave every pixel where it is (a camera without distortion)."""
    h, w = map_x.shape
    return bool(np.abs(map_x - np.arange(w, dtype=np.float32)[None, :]).max() <= tolerance
                and np.abs(map_y - np.arange(h, dtype=np.float32)[:, None]).max() <= tolerance)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no bytes written), or a copy where the file system has none."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def observed_colours(rgb: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) ids of the 3D points an image observes and (N, 3) float32 colours of `rgb`, its (H, W, 3) uint8
    pixels, at their keypoints (`keypoints`: the image's `_KEYPOINT` array, as `keypoints_in_file` reads it):
    bilinear, COLMAP's pixel centres at +0.5, as COLMAP samples them."""
    # By hand, not cv2.remap: COLMAP averages unrounded samples over a track (remap rounds each to uint8), and
    # remap's maps are capped at 32767 wide (an image can observe more points than that).
    observed = keypoints[keypoints["point3D_id"] != NO_POINT3D]
    ids = observed["point3D_id"].astype(np.int64)
    xy = observed["xy"].reshape(-1, 2) - 0.5
    h, w = rgb.shape[:2]
    x, y = np.clip(xy[:, 0], 0, w - 1), np.clip(xy[:, 1], 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    pixels = rgb[np.stack([y0, y0, y1, y1]), np.stack([x0, x1, x0, x1])].astype(np.float32)  # (4, N, 3)
    colours = ((1 - fx) * (1 - fy) * pixels[0] + fx * (1 - fy) * pixels[1]
               + (1 - fx) * fy * pixels[2] + fx * fy * pixels[3])
    return ids, colours.astype(np.float32).reshape(-1, 3)


def colour_points(reconstruction, samples: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Each 3D point's colour: the mean of its observations' colours (`observed_colours` per image), as
    COLMAP's ExtractColorsForAllImages sets it."""
    if not samples:
        return
    ids = np.concatenate([s[0] for s in samples])
    if not len(ids):
        return
    colours = np.concatenate([s[1] for s in samples])
    points, where = np.unique(ids, return_inverse=True)
    sums = np.zeros((len(points), 3), np.float64)
    np.add.at(sums, where, colours)
    means = np.clip(np.round(sums / np.bincount(where)[:, None]), 0, 255).astype(np.uint8)
    by_id = reconstruction.points3D
    for point_id, colour in zip(points.tolist(), means):
        by_id[point_id].color = colour


def undistort(reconstruction, run: RunDir, max_image_size: int = -1, num_threads: int = -1,
              colour: bool = False) -> Scene:
    """Undistort the registered images to PINHOLE cameras into images_undistorted/ (same file names),
    and write their model into sparse/0 with `images` -> images_undistorted.

    colour: also set the 3D points' colours from the frames decoded here, and write them into
    distorted/sparse/0 too. The pose stage maps without COLMAP's own colour pass (which decodes every frame
    once more, single file at a time: 0.7 s of fox's 11 s mapping on 2 cores) and colours the kept model here.

    Returns the training scene: frames point into images_undistorted/, poses and points unchanged.
    """
    import cv2

    if run.images_undistorted.exists():
        shutil.rmtree(run.images_undistorted)
    run.images_undistorted.mkdir(parents=True)
    tables = {}
    cameras = {}
    pinholes = {}
    for cam_id, cam in reconstruction.cameras.items():
        pinhole, map_x, map_y = undistortion_map(cam, max_image_size)
        tables[cam_id] = None if _is_identity(map_x, map_y) else (map_x, map_y)
        pinholes[cam_id] = pinhole
        cameras[cam_id] = Camera.from_colmap("PINHOLE", pinhole.width, pinhole.height, list(pinhole.params))

    keypoints = {}
    if colour:  # each image's keypoints and 3D point ids, read back in bulk (keypoints_in_file says why)
        # Written here although write_sparse wrote the same files just before in the pose stage: the keypoints
        # must be this reconstruction's whatever the caller did (10 ms on fox, 20 on 150 video frames, 2 cores).
        _write_model(reconstruction, run.distorted_sparse)
        keypoints = keypoints_in_file((run.distorted_sparse / "images.bin").read_bytes())

    def work(image: tuple[int, str, int]):  # (image id, name, camera id): no pycolmap calls on the pool
        image_id, name, camera_id = image
        identity = tables[camera_id] is None
        if identity:  # a PINHOLE camera already: the same file, not a re-encoded copy
            _link_or_copy(run.frames / name, run.images_undistorted / name)
            if not colour:
                return None
        src = read_image(run.frames / name)  # the pixels COLMAP saw (frames/ is upright, no EXIF tag)
        if not identity:
            map_x, map_y = tables[camera_id]
            out = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            write_image(run.images_undistorted / name, out)
        return observed_colours(src, keypoints[image_id][1]) if colour else None

    images = [(im.image_id, im.name, im.camera_id) for im in reconstruction.images.values() if im.has_pose]
    threads = num_threads if num_threads > 0 else (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        samples = [s for s in pool.map(work, images) if s is not None]
    if colour:
        colour_points(reconstruction, samples)
        _write_model(reconstruction, run.distorted_sparse)  # now with the colours

    write_undistorted_model(reconstruction, pinholes, run.sparse)
    _link_folder(run.images, run.images_undistorted)
    scene = reconstruction_to_scene(reconstruction, run.images_undistorted)
    cam_of = {name: camera_id for _, name, camera_id in images}
    scene.frames = [Frame(f.name, f.image, cameras[cam_of[f.name]], f.w2c) for f in scene.frames]
    return scene


def write_training_scene(scene: Scene, run: RunDir) -> Path:
    """transforms.json with PINHOLE cameras and the sparse points (ply_file_path)."""
    return write_transforms(scene, run.transforms_json, ply_file=PLY_NAME if scene.points is not None else None)
