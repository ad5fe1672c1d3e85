"""Scene model and formats. Conventions: see `splatforge.scene.conventions` (stated once, there).

This package imports no other splatforge package except `errors`/`rundir` helpers.
"""

from splatforge.scene.colmap import find_colmap_model, read_colmap, write_colmap
from splatforge.scene.conventions import (
    camera_center,
    invert_pose,
    look_at_w2c,
    opengl_c2w_from_w2c,
    w2c_from_opengl_c2w,
)
from splatforge.scene.rig import read_rig, write_rig_json
from splatforge.scene.transforms import read_transforms, write_transforms
from splatforge.scene.types import Camera, Frame, Scene


def read_scene(path, image_dir=None) -> Scene:
    """Read a scene from a transforms.json, a COLMAP model folder, a run folder or a rig file."""
    from pathlib import Path

    from splatforge.errors import InputError

    path = Path(path)
    if path.is_file() and path.suffix == ".json" and path.name != "transforms.json":
        import json

        head = json.loads(path.read_text())
        if isinstance(head, list) or "cameras" in head:
            return read_rig(path)
    if path.is_file() and path.suffix in (".pkl", ".pickle"):
        return read_rig(path)
    if path.is_file() and path.suffix == ".json":
        return read_transforms(path)
    if (path / "transforms.json").exists():
        return read_transforms(path / "transforms.json")
    model = find_colmap_model(path)
    if model is not None:
        return read_colmap(model, image_dir)
    raise InputError(f"no scene found at {path}",
                     "give a transforms.json, a COLMAP model folder (sparse/0), a run folder or a rig JSON/pickle")


__all__ = [
    "Camera", "Frame", "Scene", "read_scene", "read_colmap", "write_colmap", "find_colmap_model",
    "read_transforms", "write_transforms", "read_rig", "write_rig_json", "camera_center", "invert_pose",
    "look_at_w2c", "opengl_c2w_from_w2c", "w2c_from_opengl_c2w",
]
