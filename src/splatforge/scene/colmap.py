"""COLMAP sparse models (binary or text) <-> Scene, through pycolmap.

COLMAP's `cam_from_world` is world-to-camera with OpenCV axes, which is our convention: no axis
conversion happens here, only the change of representation (Rigid3d <-> 4x4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splatforge.errors import InputError
from splatforge.scene.types import Camera, Frame, Scene


def _pycolmap():
    import pycolmap

    return pycolmap


def is_colmap_model(path: Path) -> bool:
    path = Path(path)
    return any((path / f"cameras.{ext}").exists() for ext in ("bin", "txt"))


def find_colmap_model(path: Path) -> Path | None:
    """The model folder at `path`, `path/sparse/0`, `path/sparse` or `path/0`, if any."""
    path = Path(path)
    for candidate in (path, path / "sparse" / "0", path / "sparse", path / "0"):
        if is_colmap_model(candidate):
            return candidate
    return None


def reconstruction_to_scene(rec, image_dir: Path) -> Scene:
    """A pycolmap.Reconstruction as a Scene; only registered images become frames, sorted by name."""
    image_dir = Path(image_dir)
    cameras = {
        cam_id: Camera.from_colmap(cam.model.name, cam.width, cam.height, list(cam.params))
        for cam_id, cam in rec.cameras.items()
    }
    frames = []
    for image in sorted(rec.images.values(), key=lambda im: im.name):
        if not image.has_pose:
            continue
        w2c = np.eye(4)
        w2c[:3] = image.cam_from_world().matrix()
        frames.append(Frame(name=image.name, image=image_dir / image.name, camera=cameras[image.camera_id], w2c=w2c))
    points = colors = None
    if rec.num_points3D():
        pts = [rec.points3D[i] for i in sorted(rec.points3D)]
        points = np.array([p.xyz for p in pts], dtype=np.float64)
        colors = np.array([p.color for p in pts], dtype=np.uint8)
    return Scene(frames=frames, points=points, colors=colors)


def read_colmap(model_dir: Path, image_dir: Path | None = None) -> Scene:
    """Read a COLMAP model (binary or text). Images are looked up in `image_dir` (default: the
    `images` folder beside `sparse/`)."""
    model_dir = Path(model_dir)
    found = find_colmap_model(model_dir)
    if found is None:
        raise InputError(f"no COLMAP model (cameras.bin or cameras.txt) in {model_dir}",
                         "point at the folder that holds cameras/images/points3D (.bin or .txt), e.g. sparse/0")
    if image_dir is None:
        root = found.parent.parent if found.parent.name == "sparse" else found.parent
        image_dir = root / "images"
    rec = _pycolmap().Reconstruction(str(found))
    return reconstruction_to_scene(rec, image_dir)


def scene_to_reconstruction(scene: Scene):
    """A Scene as a pycolmap.Reconstruction (one trivial rig per camera, one frame per image)."""
    pycolmap = _pycolmap()
    rec = pycolmap.Reconstruction()
    camera_ids: dict[Camera, int] = {}
    for cam_id, cam in enumerate(scene.cameras, start=1):
        camera_ids[cam] = cam_id
        rec.add_camera_with_trivial_rig(pycolmap.Camera(
            model=cam.model, width=cam.width, height=cam.height, params=cam.colmap_params(), camera_id=cam_id))
    for image_id, frame in enumerate(scene.frames, start=1):
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(frame.w2c[:3, :3]), frame.w2c[:3, 3])
        image = pycolmap.Image(name=frame.name, camera_id=camera_ids[frame.camera], image_id=image_id)
        rec.add_image_with_trivial_frame(image, pose)
    if scene.points is not None:
        for xyz, rgb in zip(scene.points, scene.colors):
            rec.add_point3D(np.asarray(xyz, dtype=np.float64), pycolmap.Track(), np.asarray(rgb, dtype=np.uint8))
    return rec


def write_colmap(scene: Scene, model_dir: Path, binary: bool = True) -> Path:
    """Write `scene` as a COLMAP model into `model_dir` (created). Returns the folder."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    rec = scene_to_reconstruction(scene)
    if binary:
        rec.write_binary(str(model_dir))
    else:
        rec.write_text(str(model_dir))
    return model_dir
