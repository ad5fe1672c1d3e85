"""The run directory: the one contract between stages.

Every stage reads files that earlier stages wrote here and writes only its own, so any stage can be
re-run, resumed, or run on another machine. Layout (paths relative to the run folder):

    run.json                 manifest: versions, configuration, each stage's status/start/end/error
    input/                   what the user gave, when it had to be unpacked (zip) or linked
    frames/                  the images the pipeline works on (extracted video frames or the photos:
                             upright 8-bit RGB JPEG/PNG, no EXIF orientation; see capture/imageio.py)
    ingest.json              per photo: source, linked / copied / written, what was changed, size
    frames.json              per frame: source (file or video time stamp), sharpness, source index
    quality.json             capture check result (score, verdict, advice, per-image measures)
    quality/                 contact sheet (PNG + HTML)
    colmap/database.db       SfM features and matches
    distorted/sparse/0/      COLMAP model of `frames/` as estimated (original camera models, 3D points)
    distorted/images         link to frames/: distorted/ is a COLMAP dataset of the original photos
    images_undistorted/      PINHOLE images for training (originals stay in frames/)
    images                   link to images_undistorted/ (to frames/ when undistortion is off)
    sparse/0/                COLMAP model of `images/`: PINHOLE cameras, same poses and 3D points. With
                             `images`, the undistorted dataset gsplat's simple_trainer and the INRIA
                             3DGS trainer read as it is (COLMAP image_undistorter's layout)
    transforms.json          the training scene: nerfstudio layout (camera-to-world, OpenGL axes),
                             PINHOLE intrinsics, file paths into images_undistorted/ (or frames/)
    poses.json               what the pose stage measured (registered, errors, timings)
    checkpoints/             ckpt_XXXXXXX.pt, newest last; written atomically
    metrics.jsonl            one JSON line per logging step
    renders/                 held-out renders next to their photographs
    export/scene.ply         the splat in the standard 3DGS PLY layout (exact)
    export/scene.<ending>    the same splat in compact formats (splat/formats): .sog, .spz,
                             .compressed.ply, .splat; the export stage writes the PLY and .spz
    report.json, report.html the human report

Writes are atomic (write to a temporary file in the same folder, then rename): a crash never leaves a
half-written file that a later stage would trust. Files and folders get the modes the umask allows
(0644 / 0755 under the usual 022), so others on a shared host can read a run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splatforge.console import to_jsonable


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _new_temp_file(folder: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """An open, new, empty file beside the target, created with mode 0o666 so that the umask decides
    who may read it (tempfile.mkstemp makes every file 0600, which left scene.ply, report.html and the
    undistorted images unreadable to a colleague or a web server on a shared host)."""
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new, empty folder in `parent` whose mode the umask decides (tempfile.mkdtemp makes it 0700)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            tmp.mkdir(mode=0o777)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {parent}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(value), indent=2) + "\n")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    For writers that want a file name rather than bytes (torch.save, plyfile, cv2.imwrite). The
    temporary name keeps the suffix so that writers choosing a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(path.parent, f".{path.stem}.", path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_json(path: Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def collect_versions() -> dict[str, str | None]:
    """Versions of everything that changes results. Imports are optional: a missing one is None."""
    import importlib.metadata as md

    from splatforge import __version__

    versions: dict[str, str | None] = {
        "splatforge": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for dist in ("torch", "gsplat", "pycolmap", "numpy", "opencv-python-headless", "av"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    try:
        import torch

        versions["cuda"] = torch.version.cuda
        versions["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception:  # torch missing or broken: the doctor explains, the manifest just records it
        versions["cuda"] = versions["gpu"] = None
    return versions


RENDER_SCORES = "views.json"  # in renders/: each held-out view's scores


@dataclass(frozen=True)
class RunDir:
    """Paths of one run folder. Creating the object touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    # --- layout ---------------------------------------------------------------------------------
    @property
    def manifest(self) -> Path:
        return self.root / "run.json"

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def frames_json(self) -> Path:
        return self.root / "frames.json"

    @property
    def quality_json(self) -> Path:
        return self.root / "quality.json"

    @property
    def quality_dir(self) -> Path:
        return self.root / "quality"

    @property
    def colmap_dir(self) -> Path:
        return self.root / "colmap"

    @property
    def database(self) -> Path:
        return self.colmap_dir / "database.db"

    @property
    def sparse(self) -> Path:
        return self.root / "sparse" / "0"

    @property
    def images_undistorted(self) -> Path:
        return self.root / "images_undistorted"

    @property
    def images(self) -> Path:
        """Link to the images `sparse/0` describes (images_undistorted/, or frames/ without undistortion)."""
        return self.root / "images"

    @property
    def distorted_sparse(self) -> Path:
        """The model as estimated (original camera models) of `frames/`."""
        return self.root / "distorted" / "sparse" / "0"

    @property
    def distorted_images(self) -> Path:
        """Link to frames/, so that distorted/ is a COLMAP dataset of its own."""
        return self.root / "distorted" / "images"

    @property
    def transforms_json(self) -> Path:
        return self.root / "transforms.json"

    @property
    def poses_json(self) -> Path:
        return self.root / "poses.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics_jsonl(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def train_json(self) -> Path:
        return self.root / "train.json"

    @property
    def renders(self) -> Path:
        return self.root / "renders"

    @property
    def render_scores(self) -> Path:
        """Each held-out view's PSNR / SSIM (/ LPIPS), as training measured it."""
        return self.renders / RENDER_SCORES

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    @property
    def ply(self) -> Path:
        return self.export_dir / "scene.ply"

    # The other export formats (splat/formats): export/scene<suffix>, one property per format name.
    @property
    def ply_compressed(self) -> Path:
        return self.export_dir / "scene.compressed.ply"

    @property
    def splat(self) -> Path:
        return self.export_dir / "scene.splat"

    @property
    def spz(self) -> Path:
        return self.export_dir / "scene.spz"

    @property
    def sog(self) -> Path:
        return self.export_dir / "scene.sog"

    def export_file(self, format_name: str) -> Path:
        """export/scene<suffix> for a format name of `splat.formats.FORMATS` (ply, ply-compressed, ...)."""
        from splatforge.splat.formats import format_named

        return getattr(self, format_named(format_name).name.replace("-", "_"))

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    def create(self) -> RunDir:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    # --- manifest -------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        data = read_json(self.manifest, default=None) or {}
        data.setdefault("stages", {})
        return data

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        data = self.read_manifest()
        data.update(fields)
        data.setdefault("created", now_iso())
        atomic_write_json(self.manifest, data)
        return data

    def set_stage(self, stage: str, **fields: Any) -> None:
        data = self.read_manifest()
        entry = data["stages"].setdefault(stage, {})
        entry.update(fields)
        data.setdefault("created", now_iso())
        atomic_write_json(self.manifest, data)

    def stage_status(self, stage: str) -> str | None:
        return self.read_manifest()["stages"].get(stage, {}).get("status")

    @contextmanager
    def stage(self, name: str, options: Any = None) -> Iterator[dict[str, Any]]:
        """Record a stage in run.json: running -> done | failed | cancelled | interrupted (with the error
        and its advice). `options` is the stage's options dataclass: stored in full (`options`) and as the
        part that changes the result (`result_options`, what a re-run compares against).

        Yields a dict the stage may fill with a short summary (stored under the stage's entry).
        """
        from splatforge.options import comparable, to_dict

        self.create()
        if not self.read_manifest().get("versions"):
            self.update_manifest(versions=collect_versions())
        summary: dict[str, Any] = {}
        self.set_stage(name, status="running", start=now_iso(), end=None, error=None, seconds=None,
                       pid=os.getpid(), host=platform.node(), options=to_jsonable(to_dict(options)),
                       result_options=to_jsonable(comparable(options)))
        t0 = _dt.datetime.now()
        try:
            yield summary
        except BaseException as exc:
            from splatforge.errors import SplatforgeError

            status = ("cancelled" if getattr(exc, "exit_code", None) == 130
                      else "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            error = {"type": type(exc).__name__, "message": getattr(exc, "message", str(exc))}
            if isinstance(exc, SplatforgeError):
                error["advice"] = exc.advice
            elif status == "failed":
                error["traceback"] = traceback.format_exc(limit=8)
            self.set_stage(name, status=status, end=now_iso(),
                           seconds=(_dt.datetime.now() - t0).total_seconds(), error=error,
                           summary=to_jsonable(summary))
            raise
        self.set_stage(name, status="done", end=now_iso(),
                       seconds=(_dt.datetime.now() - t0).total_seconds(), summary=to_jsonable(summary))
