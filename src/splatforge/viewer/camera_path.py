"""The viewer's `cameras.json`: the run's camera path and a sensible initial view, in three.js terms.

three.js cameras use OpenGL axes (x right, y up, looking along -z). Our poses are world-to-camera with
OpenCV axes (`splatforge.scene.conventions`), so per camera we hand the page world-space vectors it
can use directly, with no axis convention left to get wrong in JavaScript:

    position  camera centre                       = -R^T t
    forward   viewing direction (OpenCV +z)       =  R[2]
    up        camera up (OpenCV -y)               = -R[1]

The world frame is left as it is (COLMAP worlds are often y-down); the page sets three's `camera.up`
to `up` below, the mean camera up, so orbiting keeps the capture's horizon level.

Document layout (all vectors are world coordinates, lists of 3 floats):

    {"source": str|null,          the transforms.json the path came from
     "cameras": [{"name", "position", "forward", "up", "look_at", "fov_y_deg", "aspect"}],
     "target": [3],               orbit centre: splat centres' median, else sparse points, else
                                  the point nearest to all optical axes
     "radius": float,             scene size around `target` (for clipping planes and frustum size)
     "up": [3], "up_source": "cameras"|"default"}
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splatforge.errors import InputError
from splatforge.rundir import RunDir
from splatforge.scene.conventions import camera_center, viewing_direction, w2c_from_opengl_c2w

log = logging.getLogger(__name__)

# Most 3DGS PLYs without cameras come from COLMAP worlds, whose y axis usually points down.
DEFAULT_UP = (0.0, -1.0, 0.0)


@dataclass(frozen=True)
class ViewerInput:
    """What `splatforge view` shows: the splat file (any format of `splat.formats`) and, when found,
    the transforms.json of its run."""

    splat: Path
    transforms: Path | None

    @property
    def format(self):
        from splatforge.splat.formats import sniff_format

        return sniff_format(self.splat)


@dataclass(frozen=True)
class PathCamera:
    """One camera of the path in world coordinates. Vectors: shape (3,) float64."""

    name: str
    position: np.ndarray
    forward: np.ndarray
    up: np.ndarray
    fov_y_deg: float
    aspect: float


def run_splat(run: RunDir, format_name: str | None = None) -> Path | None:
    """The splat file of a run the viewer shows: `format_name`'s, else the default compact format's,
    else the PLY, else any other exported format; None when the run has none."""
    from splatforge.splat.formats import DEFAULT_COMPACT, FORMATS

    if format_name is not None:
        path = run.export_file(format_name)
        return path if path.is_file() else None
    for name in (DEFAULT_COMPACT, "ply", *FORMATS):
        if run.export_file(name).is_file():
            return run.export_file(name)
    return None


def resolve_input(target: Path, format_name: str | None = None) -> ViewerInput:
    """Find the splat and the transforms.json for a run folder, a splat file, or a transforms.json.

    A run folder shows its export in `format_name` (default: the compact format, else the PLY).
    """
    from splatforge.splat.formats import FORMATS, format_named, sniff_format

    path = Path(target).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist", "give a run folder or a splat file")
    if format_name is not None:
        format_name = format_named(format_name).name
    if path.is_dir():
        run = RunDir(path)
        splat = run_splat(run, format_name)
        if splat is None:
            wanted = run.export_file(format_name) if format_name else run.ply
            export = f"splatforge export {path}" + (f" --format {format_name}" if format_name else "")
            raise InputError(f"the run folder {path} has no {wanted.relative_to(run.root)}",
                             f"train and export first: splatforge train {path} && {export}")
        return ViewerInput(splat, run.transforms_json if run.transforms_json.is_file() else None)
    if path.suffix.lower() == ".json":
        raise InputError(f"{path} is not a splat file or a run folder",
                         "give a run folder (with export/) or a splat file: "
                         + ", ".join(f.suffix for f in FORMATS.values()))
    sniff_format(path)  # an unknown kind of file is refused here, with the list of formats
    # A splat inside a run (RUN/export/scene.*) or beside its transforms.json: use that camera path.
    for folder in (path.parent, path.parent.parent):
        if (folder / "transforms.json").is_file():
            return ViewerInput(path.resolve(), (folder / "transforms.json").resolve())
    return ViewerInput(path.resolve(), None)


def read_path_cameras(transforms: Path) -> list[PathCamera]:
    """Cameras of a transforms.json, sorted by name (video frames and photos: capture order).

    Uses `read_transforms`; a run folder copied without its images still has its poses, so when no
    image exists the poses are read from the JSON directly (intrinsics only as far as given there).
    """
    from splatforge.scene import read_transforms

    try:
        scene = read_transforms(transforms)
        items = [(f.name, f.w2c, f.camera.width, f.camera.height, f.camera.fy) for f in scene.frames]
    except InputError as exc:
        log.warning("camera path from %s without its images (%s)", transforms, exc.message)
        items = _poses_without_images(transforms)
    cameras = []
    for name, w2c, width, height, fy in sorted(items, key=lambda item: item[0]):
        fov = 2.0 * math.degrees(math.atan(0.5 * height / fy)) if fy and height else 50.0
        cameras.append(PathCamera(name=name, position=camera_center(w2c), forward=viewing_direction(w2c),
                                  up=-np.asarray(w2c)[1, :3], fov_y_deg=fov,
                                  aspect=(width / height) if width and height else 1.5))
    return cameras


def _poses_without_images(transforms: Path) -> list[tuple]:
    try:
        data = json.loads(Path(transforms).read_text(encoding="utf-8"))
        items = []
        for entry in data.get("frames", []):
            merged = {**data, **entry}  # per-frame intrinsics override the shared ones
            w2c = w2c_from_opengl_c2w(np.array(entry["transform_matrix"], dtype=np.float64))
            items.append((entry["file_path"], w2c, merged.get("w"), merged.get("h"),
                          merged.get("fl_y") or merged.get("fl_x")))
        return items
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read camera poses from {transforms}: {exc}",
                         "regenerate it with splatforge poses, or view the PLY on its own") from None


def splat_centers(splat: Path, max_points: int = 200_000) -> np.ndarray:
    """Centres of (a regular subsample of) the Gaussians in a splat file, shape (M, 3) float64,
    M <= max_points.

    Gaussians with opacity below 0.1 are left out (they are mostly floaters and training debris).
    A plain PLY is read directly; other formats are decoded with `splat.formats.read_splat`, and when
    that cannot run (no Node.js) the page still works, only without a centre taken from the splat.
    """
    from splatforge.errors import SplatforgeError
    from splatforge.splat.formats import read_splat, sniff_format

    if sniff_format(splat).name == "ply":
        xyz, logit = _ply_centers(splat)
    else:
        try:
            params = read_splat(splat)
        except SplatforgeError as exc:
            log.warning("no splat centres for the camera path: %s", exc.message)
            return np.zeros((0, 3))
        xyz, logit = params["means"].double().numpy(), params["opacities"].double().numpy()
    step = max(1, len(xyz) // max_points)
    xyz, logit = xyz[::step], (logit[::step] if logit is not None else None)
    if logit is not None:
        keep = 1.0 / (1.0 + np.exp(-logit)) >= 0.1
        if keep.sum() >= 10:
            xyz = xyz[keep]
    return xyz[np.isfinite(xyz).all(axis=1)]


def _ply_centers(ply: Path) -> tuple[np.ndarray, np.ndarray | None]:
    from plyfile import PlyData

    try:
        vertex = PlyData.read(str(ply))["vertex"]
    except Exception as exc:  # plyfile raises several unrelated types for a broken file
        raise InputError(f"{ply} is not a readable PLY: {exc}", "re-export it with splatforge export") from None
    data = vertex.data
    xyz = np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float64)
    logit = data["opacity"].astype(np.float64) if "opacity" in data.dtype.names else None
    return xyz, logit


def axes_focus(cameras: list[PathCamera]) -> np.ndarray | None:
    """The point nearest (least squares) to every camera's optical axis, shape (3,), or None when the
    axes are near parallel (forward-facing captures) or the point lies behind most cameras."""
    if len(cameras) < 2:
        return None
    a = np.zeros((3, 3))
    b = np.zeros(3)
    for cam in cameras:
        proj = np.eye(3) - np.outer(cam.forward, cam.forward)
        a += proj
        b += proj @ cam.position
    if np.linalg.cond(a) > 1e4:
        return None
    point = np.linalg.solve(a, b)
    in_front = [float(np.dot(point - c.position, c.forward)) > 0 for c in cameras]
    return point if np.mean(in_front) > 0.5 else None


def mean_up(cameras: list[PathCamera]) -> tuple[np.ndarray, str]:
    if cameras:
        up = np.sum([c.up for c in cameras], axis=0)
        if np.linalg.norm(up) > 1e-6 * len(cameras):
            return up / np.linalg.norm(up), "cameras"
    return np.array(DEFAULT_UP), "default"


def _pivot(cam: PathCamera, target: np.ndarray, radius: float) -> np.ndarray:
    """The orbit centre for a view from `cam`: on its optical axis at the depth of `target`, so that
    jumping to a camera shows exactly its view and orbiting still turns around the scene."""
    depth = float(np.dot(target - cam.position, cam.forward))
    if depth < 0.05 * radius:  # the scene centre is beside or behind this camera
        depth = max(float(np.linalg.norm(target - cam.position)), 0.05 * radius)
    return cam.position + cam.forward * depth


def camera_path(view: ViewerInput) -> dict:
    """The `cameras.json` document (layout in the module docstring) for a resolved viewer input."""
    cameras = read_path_cameras(view.transforms) if view.transforms else []
    centers = splat_centers(view.splat)
    positions = np.array([c.position for c in cameras]).reshape(-1, 3)
    if len(centers):
        target = np.median(centers, axis=0)
        dist = np.linalg.norm(centers - target, axis=1)
        radius = float(np.percentile(dist, 90))
    else:
        focus = axes_focus(cameras)
        target = focus if focus is not None else (positions.mean(0) if len(positions) else np.zeros(3))
        radius = 0.0
    if len(positions):
        radius = max(radius, float(np.median(np.linalg.norm(positions - target, axis=1))))
    radius = radius if radius > 0 else 1.0
    up, up_source = mean_up(cameras)
    return {
        "source": str(view.transforms) if view.transforms else None,
        "cameras": [
            {"name": c.name, "position": c.position.tolist(), "forward": c.forward.tolist(), "up": c.up.tolist(),
             "look_at": _pivot(c, target, radius).tolist(),
             "fov_y_deg": round(c.fov_y_deg, 4), "aspect": round(c.aspect, 6)}
            for c in cameras
        ],
        "target": target.tolist(),
        "radius": radius,
        "up": up.tolist(),
        "up_source": up_source,
    }


def camera_path_json(run_or_splat: Path, format_name: str | None = None) -> dict:
    """The viewer's `cameras.json` for a run folder or a splat file (whose run's transforms.json is used)."""
    return camera_path(resolve_input(run_or_splat, format_name))
