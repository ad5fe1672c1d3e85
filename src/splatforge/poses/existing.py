"""Poses a capture already has: a `transforms.json` or a COLMAP model (`sparse/0`, `sparse/`) beside the photos.

`find_existing_poses(folder, names)` looks in the input folder (and in its parent when the folder is an
`images/` folder), reads only the image names each file poses, and compares them with the capture's
images. `resolve_engine(run, options, names)` turns the pose engine `auto` into `known` (those poses) or
`colmap` (new SfM) from the input recorded in the run folder, with one line saying which and why.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from splatforge.poses.options import PoseOptions
from splatforge.rundir import RunDir, read_json

log = logging.getLogger("splatforge")

# A file that poses fewer of the capture's photos than this share is not trusted over a new SfM run: the
# photos were probably added or replaced since. The same share makes the colmap engine try its other mapper.
MIN_POSED_SHARE = 0.8


@dataclass
class ExistingPoses:
    """A pose file found beside a capture, and how well it fits the capture's images."""

    path: Path  # the transforms.json file or the COLMAP model folder
    kind: str  # "transforms.json" | "COLMAP model"
    total: int  # images in the capture
    posed: list[str] = field(default_factory=list)  # capture images the file poses
    unposed: list[str] = field(default_factory=list)  # capture images it does not pose
    listed_missing: int = 0  # entries of the file with no image in the capture
    has_points: bool = False

    @property
    def usable(self) -> bool:
        return bool(self.posed) and len(self.posed) >= MIN_POSED_SHARE * self.total

    def describe(self) -> str:
        """One line for the user: what is used (or ignored) and why."""
        extra = []
        if self.unposed:
            extra.append(f"{len(self.unposed)} photo{'s' if len(self.unposed) > 1 else ''} it does not pose "
                         f"({_names(self.unposed)}) will be left out")
        if self.listed_missing:
            extra.append(f"{self.listed_missing} {'entries' if self.listed_missing > 1 else 'entry'} "
                         "without a photo here skipped")
        detail = f" ({'; '.join(extra)})" if extra else ""
        if self.usable:
            return (f"using the camera poses and intrinsics of {self.path} for {len(self.posed)} of {self.total} "
                    f"photos{detail}: no pose estimation (--engine colmap estimates them anew)")
        return (f"not using {self.path}: it poses {len(self.posed)} of the {self.total} photos (at least "
                f"{MIN_POSED_SHARE:.0%} needed){detail}; estimating poses anew")


def _names(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _transforms_names(path: Path) -> tuple[list[str], bool]:
    """File names the transforms.json lists (a name without suffix matches any image suffix), and whether
    it points at sparse points."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [str(f["file_path"]) for f in data.get("frames", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.info("ignoring %s: not a readable transforms.json", path)
        return [], False
    return [Path(e).name for e in entries], bool(data.get("ply_file_path"))


def _colmap_names(model: Path) -> tuple[list[str], bool]:
    """Names of the images a COLMAP model registered, and whether it holds 3D points."""
    import pycolmap

    try:
        rec = pycolmap.Reconstruction(str(model))
    except Exception as exc:  # a broken model is not a reason to stop: SfM will run instead
        log.info("ignoring %s: not a readable COLMAP model (%s)", model, exc)
        return [], False
    return [Path(im.name).name for im in rec.images.values() if im.has_pose], rec.num_points3D() > 0


def _compare(path: Path, kind: str, listed: list[str], has_points: bool, names: list[str]) -> ExistingPoses:
    present = set(names)
    by_stem = {Path(n).stem: n for n in names}
    matched = set()
    missing = 0
    for entry in listed:
        name = entry if entry in present else (by_stem.get(entry) if not Path(entry).suffix else None)
        if name is None:
            missing += 1
        else:
            matched.add(name)
    return ExistingPoses(path=path, kind=kind, total=len(names), posed=[n for n in names if n in matched],
                         unposed=[n for n in names if n not in matched], listed_missing=missing,
                         has_points=has_points)


def pose_files(folder: Path) -> list[tuple[Path, str]]:
    """transforms.json and COLMAP models in `folder` (and its parent when it is an `images/` folder)."""
    from splatforge.scene.colmap import is_colmap_model

    folder = Path(folder)
    places = [folder] + ([folder.parent] if folder.name.lower() == "images" else [])
    found = []
    for place in places:
        if (place / "transforms.json").is_file():
            found.append((place / "transforms.json", "transforms.json"))
        for model in (place / "sparse" / "0", place / "sparse"):
            if is_colmap_model(model):
                found.append((model, "COLMAP model"))
                break
    return found


def find_existing_poses(folder: Path, names: list[str]) -> ExistingPoses | None:
    """The pose file beside the capture that best fits `names` (the capture's image file names).

    None when there is none. Otherwise the best one (most photos posed; a model with 3D points wins a
    tie): check `.usable` and show `.describe()`.
    """
    if not names or not Path(folder).is_dir():
        return None
    candidates = []
    for path, kind in pose_files(Path(folder)):
        listed, has_points = _transforms_names(path) if kind == "transforms.json" else _colmap_names(path)
        candidates.append(_compare(path, kind, listed, has_points, names))
    if not candidates:
        return None
    return max(candidates, key=lambda c: (len(c.posed), c.has_points))


def recorded_input(run: RunDir) -> Path | None:
    """The folder the run's images came from: ingest.json's source, else run.json's input."""
    for value in ((read_json(run.root / "ingest.json", default=None) or {}).get("source"),
                  run.read_manifest().get("input") if run.manifest.exists() else None):
        if value:
            return Path(value)
    return None


def resolve_engine(run: RunDir, options: PoseOptions, names: list[str]) -> tuple[PoseOptions, str | None]:
    """`engine="auto"` made concrete: `known` with the capture's own poses when they fit, else `colmap`.

    Returns the options to run with and the line that tells the user (None when nothing was found).
    Other engines are returned unchanged.
    """
    if options.engine != "auto":
        return options, None
    source = recorded_input(run)
    found = find_existing_poses(source, names) if source is not None else None
    if found is None:
        return replace(options, engine="colmap"), None
    if found.usable:
        return replace(options, engine="known", cameras=found.path), found.describe()
    return replace(options, engine="colmap"), found.describe()


def training_run_from_scene(source: Path, out: Path) -> RunDir:
    """A run folder to train in, made from a scene given directly (transforms.json, COLMAP model, rig file).

    A COLMAP model with distorted cameras (RADIAL, OPENCV, ... as COLMAP and splatforge write them) goes
    through the pose stage's `known` engine: its images are linked into frames/ and undistorted to PINHOLE
    exactly as after SfM (sparse/0, images_undistorted/, transforms.json, poses.json). Anything else is
    written as out/transforms.json (+ points.ply) with its images left where they are.
    """
    from splatforge.errors import InputError
    from splatforge.scene import find_colmap_model, read_scene, write_transforms

    source = Path(source)
    run = RunDir(out).create()
    model = None if source.is_file() or (source / "transforms.json").exists() else find_colmap_model(source)
    scene = read_scene(source)
    if model is None or all(c.model in ("PINHOLE", "SIMPLE_PINHOLE") for c in scene.cameras):
        write_transforms(scene, run.transforms_json, ply_file="points.ply" if scene.points is not None else None)
        return run
    image_dir = scene.frames[0].image.parent
    if not any(f.image.exists() for f in scene.frames):
        raise InputError(f"the photos of the COLMAP model {model} are not in {image_dir}",
                         "keep them in images/ beside sparse/ (the COLMAP layout), or train on a run folder")
    from splatforge.capture.ingest import ingest
    from splatforge.poses import estimate_poses

    log.info("%s has distorted cameras (%s): undistorting its photos into %s", model,
             ", ".join(sorted({c.model for c in scene.cameras})), run.images_undistorted)
    ingest(image_dir, run)
    options = PoseOptions(engine="known", cameras=model)
    with run.stage("poses", options.to_dict()) as summary:
        result = estimate_poses(run, options)
        summary.update({k: getattr(result, k) for k in ("engine", "registered", "total", "points")})
    return run
