"""Known cameras: use given poses and intrinsics, skip SfM; optionally triangulate real points.

`--cameras` takes a transforms.json, a COLMAP model folder or a rig JSON/pickle (read by
`splatforge.scene.read_scene` / `read_rig`). Cameras are paired with frames by file name (rigs: by the
name in the rig, else by order). With `triangulate`, SIFT features are extracted and matched as in the
colmap engine and pycolmap triangulates 3D points with poses and intrinsics held fixed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from splatforge.errors import InputError
from splatforge.poses.options import PoseOptions
from splatforge.rundir import RunDir
from splatforge.scene.types import Camera, Frame, Scene

log = logging.getLogger("splatforge")


def read_known(path: Path, image_dir: Path, names: list[str]) -> Scene:
    """The given scene, with frames renamed to (and only for) images present in `image_dir`."""
    from splatforge.scene import read_rig, read_scene

    path = Path(path)
    if not path.exists():
        raise InputError(f"the cameras file {path} does not exist", "give a transforms.json, a COLMAP folder or a rig")
    is_rig = path.suffix.lower() in (".pkl", ".pickle") or (
        path.suffix.lower() == ".json" and path.name != "transforms.json" and _looks_like_rig(path))
    scene = read_rig(path, [image_dir / n for n in names]) if is_rig else read_scene(path)
    present = set(names)
    frames = []
    for frame in scene.frames:
        name = Path(frame.name).name if Path(frame.name).name in present else Path(frame.image).name
        if name not in present:
            continue
        frames.append(Frame(name, image_dir / name, _fit_camera(frame.camera, image_dir / name), frame.w2c))
    if not frames:
        raise InputError(f"none of the cameras in {path} belongs to an image of this capture",
                         "the cameras file must name the same image files (or list one camera per image, in order)")
    return Scene(frames=sorted(frames, key=lambda f: f.name), points=scene.points, colors=scene.colors)


def _looks_like_rig(path: Path) -> bool:
    import json

    head = json.loads(path.read_text())
    return isinstance(head, list) or "cameras" in head


def _fit_camera(camera: Camera, image: Path) -> Camera:
    """The camera rescaled when the image on disk has another resolution than the file states."""
    from splatforge.capture.imageio import image_size

    width, height = image_size(image)
    if (width, height) == (camera.width, camera.height):
        return camera
    sx, sy = width / camera.width, height / camera.height
    if abs(sx - sy) > 0.01:
        rotated = " (ingest turned the photo upright from its EXIF orientation; the cameras describe it as " \
            "stored)" if (width, height) == (camera.height, camera.width) else ""
        raise InputError(f"{image.name} is {width}x{height} but its camera is {camera.width}x{camera.height}{rotated}",
                         "give the cameras of these very images (same aspect ratio)")
    return camera.scaled(sx)


def _colmap_camera(camera: Camera, camera_id: int):
    import pycolmap

    return pycolmap.Camera(model=camera.model, width=camera.width, height=camera.height,
                           params=camera.colmap_params(), camera_id=camera_id)


def _pose(w2c: np.ndarray):
    import pycolmap

    return pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3])


def triangulate(run: RunDir, scene: Scene, names: list[str], options: PoseOptions, say) -> tuple[object, dict]:
    """Features + matching into run.database, then points triangulated with the given cameras fixed."""
    import pycolmap

    from splatforge.poses import colmap_engine

    seconds = {}
    posed = [f.name for f in scene.frames]
    db_path = run.database
    db_path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    say("features", 0.0)
    t = time.perf_counter()
    feat_opts = PoseOptions(**{**options.to_dict(), "single_camera": False, "camera_model": "SIMPLE_RADIAL"})
    colmap_engine.extract(db_path, run.frames, posed, feat_opts)
    seconds["features"] = time.perf_counter() - t

    say("matching", 0.3)
    t = time.perf_counter()
    plan = colmap_engine.plan_pairs(db_path, posed, options, ordered_hint=False)
    colmap_engine.match(db_path, posed, plan, options, run.colmap_dir)
    seconds["matching"] = time.perf_counter() - t

    say("triangulation", 0.6)
    t = time.perf_counter()
    by_name = {f.name: f for f in scene.frames}
    db = pycolmap.Database.open(db_path)
    try:
        rec = pycolmap.Reconstruction()
        for image in sorted(db.read_all_images(), key=lambda im: im.image_id):
            frame = by_name[image.name]
            cam = _colmap_camera(frame.camera, image.camera_id)
            db.update_camera(cam)  # the database must agree with the fixed intrinsics
            rec.add_camera_with_trivial_rig(cam)
            rec.add_image_with_trivial_frame(
                pycolmap.Image(name=image.name, camera_id=image.camera_id, image_id=image.image_id),
                _pose(frame.w2c))
    finally:
        db.close()
    mapper = pycolmap.IncrementalPipelineOptions()
    mapper.num_threads = options.num_threads
    mapper.random_seed = options.seed
    out = run.colmap_dir / "triangulated"
    out.mkdir(parents=True, exist_ok=True)
    rec = pycolmap.triangulate_points(rec, db_path, run.frames, out, clear_points=True, options=mapper,
                                      refine_intrinsics=False)
    seconds["mapping"] = time.perf_counter() - t
    return rec, {"seconds": seconds, "matching": f"{plan.scheme}: {plan.reason}"}


def from_known_cameras(run: RunDir, names: list[str], options: PoseOptions, say):
    """(reconstruction, seconds, PoseResult extras) for the known-cameras engine."""
    from splatforge.scene.colmap import scene_to_reconstruction

    if options.cameras is None:
        raise InputError("the known-cameras engine needs --cameras", "give a transforms.json, COLMAP folder or rig")
    scene = read_known(options.cameras, run.frames, names)
    missing = sorted(set(names) - {f.name for f in scene.frames})
    notes = [f"poses and intrinsics from {options.cameras}"]
    reasons = {n: "not in the cameras file" for n in missing}
    if options.triangulate:
        rec, info = triangulate(run, scene, names, options, say)
        notes.append(f"{rec.num_points3D()} points triangulated with the given cameras fixed")
        return rec, info["seconds"], {"matching": info["matching"], "mapper": "triangulation (poses fixed)",
                                      "unregistered_reasons": reasons, "notes": notes}
    rec = scene_to_reconstruction(scene)
    if scene.points is None:
        notes.append("no 3D points: training will start from random points (use --triangulate for real ones)")
    return rec, {}, {"matching": None, "mapper": None, "unregistered_reasons": reasons, "notes": notes}
