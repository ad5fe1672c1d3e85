"""nerfstudio / instant-ngp `transforms.json` <-> Scene.

`transform_matrix` is camera-to-world with OpenGL axes; intrinsics are shared at the top level or
given per frame (`fl_x fl_y cx cy w h`, distortion `k1 k2 p1 p2`, optional `camera_model`).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from splatforge.errors import InputError
from splatforge.scene.conventions import opengl_c2w_from_w2c, w2c_from_opengl_c2w
from splatforge.scene.types import Camera, Frame, Scene

log = logging.getLogger(__name__)

_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2", "camera_model",
                   "camera_angle_x", "camera_angle_y")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def _camera_from(entry: dict, fallback: dict, image: Path | None) -> Camera:
    get = lambda key, default=None: entry.get(key, fallback.get(key, default))  # noqa: E731
    width, height = get("w"), get("h")
    if (width is None or height is None) and image is not None and image.exists():
        from splatforge.capture.imageio import image_size  # the one image reader (a header read)

        width, height = image_size(image)
    if width is None or height is None:
        raise InputError("transforms.json gives no image size (w, h) and the image could not be read",
                         "add \"w\" and \"h\" to transforms.json")
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None and get("camera_angle_x") is not None:
        fx = 0.5 * float(width) / math.tan(0.5 * float(get("camera_angle_x")))
    if fy is None and get("camera_angle_y") is not None:
        fy = 0.5 * float(height) / math.tan(0.5 * float(get("camera_angle_y")))
    if fx is None and fy is None:
        raise InputError("transforms.json gives no focal length", "add \"fl_x\" (and \"fl_y\") in pixels")
    fx = float(fx if fx is not None else fy)
    fy = float(fy if fy is not None else fx)
    cx = float(get("cx", float(width) / 2.0))
    cy = float(get("cy", float(height) / 2.0))
    dist = tuple(float(get(k, 0.0)) for k in ("k1", "k2", "p1", "p2"))
    model = get("camera_model")
    if model in (None, "OPENCV", "PINHOLE"):
        model = "OPENCV" if any(dist) else "PINHOLE"
    else:
        raise InputError(f"camera_model {model!r} in transforms.json is not supported",
                         "use OPENCV or PINHOLE (fisheye models are not supported yet)")
    return Camera(model, int(width), int(height), fx, fy, cx, cy, dist if model == "OPENCV" else ())


def _resolve_image(base: Path, file_path: str) -> Path | None:
    path = (base / file_path)
    if path.exists():
        return path
    if not path.suffix:  # Blender-style "./train/r_0"
        for suffix in _IMAGE_SUFFIXES:
            if path.with_suffix(suffix).exists():
                return path.with_suffix(suffix)
    return None


def read_transforms(path: Path) -> Scene:
    """Read a transforms.json. Frames whose image file is missing are skipped with a warning."""
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist", "give the path of a transforms.json or its folder") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}", "fix or regenerate the file") from None
    base = path.parent
    shared = {k: data[k] for k in _INTRINSIC_KEYS if k in data}
    frames, missing = [], []
    for entry in data.get("frames", []):
        image = _resolve_image(base, entry["file_path"])
        if image is None:
            missing.append(entry["file_path"])
            continue
        camera = _camera_from(entry, shared, image)
        w2c = w2c_from_opengl_c2w(np.array(entry["transform_matrix"], dtype=np.float64))
        name = str(Path(entry["file_path"]).with_suffix(image.suffix)) if not Path(entry["file_path"]).suffix \
            else entry["file_path"]
        frames.append(Frame(name=name, image=image, camera=camera, w2c=w2c))
    if missing:
        log.warning("transforms.json lists %d frame(s) whose image is missing; skipped: %s%s", len(missing),
                    ", ".join(missing[:5]), " ..." if len(missing) > 5 else "")
    if not frames:
        raise InputError(f"{path} has no frame whose image exists",
                         "check that file_path entries are relative to the transforms.json folder")
    points = colors = None
    if data.get("ply_file_path"):
        ply = base / data["ply_file_path"]
        if ply.exists():
            points, colors = read_points_ply(ply)
    meta = {"skipped_missing": missing}
    return Scene(frames=frames, points=points, colors=colors, meta=meta)


def write_transforms(scene: Scene, path: Path, ply_file: str | None = None) -> Path:
    """Write `scene` as transforms.json. Image paths are written relative to the file's folder.

    Intrinsics go at the top level when every frame shares one camera, per frame otherwise.
    With `ply_file` (a name relative to the folder) the sparse points are written there as a PLY and
    referenced as `ply_file_path`, as nerfstudio does.
    """
    from splatforge.rundir import atomic_write_json

    path = Path(path)
    base = path.parent.resolve()

    def intrinsics(cam: Camera) -> dict:
        out = {"camera_model": "OPENCV" if cam.model == "OPENCV" else "PINHOLE",
               "fl_x": cam.fx, "fl_y": cam.fy, "cx": cam.cx, "cy": cam.cy, "w": cam.width, "h": cam.height}
        if cam.model == "OPENCV":
            out.update(cam.distortion_dict)
        elif cam.model not in ("PINHOLE", "SIMPLE_PINHOLE"):
            raise ValueError(f"transforms.json cannot hold a {cam.model} camera: undistort first")
        return out

    cameras = scene.cameras
    data: dict = intrinsics(cameras[0]) if len(cameras) == 1 else {}
    frames = []
    for frame in scene.frames:
        try:
            rel = frame.image.resolve().relative_to(base)
        except ValueError:
            rel = Path(frame.image.resolve())  # outside the folder: keep an absolute path
        entry = {"file_path": rel.as_posix(),
                 "transform_matrix": opengl_c2w_from_w2c(frame.w2c).tolist()}
        if len(cameras) > 1:
            entry.update(intrinsics(frame.camera))
        frames.append(entry)
    data["frames"] = frames
    if ply_file and scene.points is not None:
        write_points_ply(base / ply_file, scene.points, scene.colors)
        data["ply_file_path"] = ply_file
    atomic_write_json(path, data)
    return path


def write_points_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    from plyfile import PlyData, PlyElement

    from splatforge.rundir import atomic_path

    verts = np.empty(len(points), dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"),
                                         ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    verts["x"], verts["y"], verts["z"] = points.T
    verts["red"], verts["green"], verts["blue"] = np.asarray(colors, dtype=np.uint8).T
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(verts, "vertex")]).write(str(tmp))


def read_points_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from plyfile import PlyData

    v = PlyData.read(str(path))["vertex"].data
    points = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)
    names = v.dtype.names
    if all(c in names for c in ("red", "green", "blue")):
        colors = np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.uint8)
    else:
        colors = np.full((len(points), 3), 128, dtype=np.uint8)
    return points, colors
