"""Calibrated camera rigs: per camera `K` (3x3), `R` (3x3), `T` (3) world-to-camera (OpenCV axes).

Accepted files:
* JSON: a list of camera dicts, or {"cameras": [...]}; optional keys per camera: `name` or `image`
  (the image it belongs to), `width`, `height`, `dist` (k1 k2 p1 p2 [k3 ignored when zero]).
* Python pickle holding a list of such dicts with numpy arrays (the layout of multi-camera animal
  rigs such as MAMMAL's `new_cam.pkl`). Only plain containers and numpy arrays are unpickled:
  any other object in the file is refused, so a pickle cannot run code.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np

from splatforge.errors import InputError
from splatforge.scene.types import Camera, Frame, Scene

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "float"), ("builtins", "int"), ("builtins", "complex"),
    ("collections", "OrderedDict"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to unpickle {module}.{name}: only plain containers and numpy "
                                     "arrays are allowed in a rig file")


def safe_load_pickle(data: bytes):
    """Unpickle `data`, allowing only plain containers, numbers, strings and numpy arrays."""
    return _SafeUnpickler(io.BytesIO(data)).load()


def _load_entries(path: Path) -> list[dict]:
    raw = path.read_bytes()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON: {exc}", "fix the rig file") from None
    else:
        try:
            data = safe_load_pickle(raw)
        except pickle.UnpicklingError as exc:
            raise InputError(f"{path}: {exc}", "save the rig as a list of dicts of numpy arrays, or as JSON") from None
        except Exception as exc:
            raise InputError(f"{path} could not be read as a pickle ({exc})", "give a rig JSON or pickle") from None
    if isinstance(data, dict) and "cameras" in data:
        data = data["cameras"]
    if isinstance(data, dict):  # {name: camera}
        data = [{"name": k, **v} for k, v in data.items()]
    if not isinstance(data, (list, tuple)) or not all(isinstance(d, dict) for d in data):
        raise InputError(f"{path} does not hold a list of cameras", "each camera is a dict with K, R and T")
    return list(data)


def read_rig(path: Path, images: list[Path] | None = None) -> Scene:
    """Read a rig file into a Scene. Camera i is paired with `images[i]` (sorted image files) unless
    the camera names its image. Image size comes from the entry, else from the image file."""
    path = Path(path)
    entries = _load_entries(path)
    images = sorted(images or [])
    if images and len(images) != len(entries) and not all(("name" in e or "image" in e) for e in entries):
        raise InputError(f"the rig has {len(entries)} cameras but {len(images)} images were given",
                         "give one image per camera, in camera order, or name each camera's image in the rig")
    by_name = {p.name: p for p in images}
    frames = []
    for i, entry in enumerate(entries):
        try:
            K = np.asarray(entry["K"], dtype=np.float64).reshape(3, 3)
            R = np.asarray(entry["R"], dtype=np.float64).reshape(3, 3)
            T = np.asarray(entry["T"], dtype=np.float64).reshape(3)
        except (KeyError, ValueError) as exc:
            raise InputError(f"rig camera {i} in {path} lacks a valid K, R or T ({exc})",
                             "K is 3x3, R is 3x3, T has 3 numbers (world-to-camera)") from None
        ref = entry.get("image", entry.get("name"))
        image = by_name.get(Path(str(ref)).name) if ref is not None else None
        if image is None and images:
            image = images[i]
        if image is None:
            image = path.parent / (str(ref) if ref is not None else f"cam_{i:03d}.jpg")
        width, height = entry.get("width"), entry.get("height")
        if (width is None or height is None) and image.exists():
            from splatforge.capture.imageio import image_size  # the one image reader (a header read)

            width, height = image_size(image)
        if width is None or height is None:
            width, height = round(2 * K[0, 2]), round(2 * K[1, 2])
        dist = np.asarray(entry.get("dist", []), dtype=np.float64).reshape(-1)
        if dist.size and np.any(dist[:4] != 0):
            camera = Camera("OPENCV", width, height, K[0, 0], K[1, 1], K[0, 2], K[1, 2],
                            tuple(np.pad(dist[:4], (0, max(0, 4 - dist[:4].size)))))
        else:
            camera = Camera("PINHOLE", width, height, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = R, T
        frames.append(Frame(name=image.name, image=image, camera=camera, w2c=w2c))
    return Scene(frames=frames)


def write_rig_json(scene: Scene, path: Path) -> Path:
    from splatforge.rundir import atomic_write_json

    cams = []
    for frame in scene.frames:
        c = frame.camera
        cams.append({"name": frame.name, "K": c.K.tolist(), "R": frame.w2c[:3, :3].tolist(),
                     "T": frame.w2c[:3, 3].tolist(), "width": c.width, "height": c.height,
                     "dist": list(c.distortion_dict.get(k, 0.0) for k in ("k1", "k2", "p1", "p2"))})
    atomic_write_json(Path(path), {"cameras": cams})
    return Path(path)
