"""Which images the pose stage works on, and where the run folder is.

An image folder (or video, or zip) given to the pose stage directly goes through the capture stage's
ingest first (`prepare_run`), so frames/ is always upright 8-bit RGB.
"""

from __future__ import annotations

from pathlib import Path

from splatforge.capture.imageio import IMAGE_SUFFIXES
from splatforge.errors import InputError
from splatforge.rundir import RunDir, read_json


def is_run_folder(path: Path) -> bool:
    return (path / "run.json").exists() or (path / "frames").is_dir()


def list_images(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def frame_names(run: RunDir) -> tuple[list[str], bool]:
    """The images of run.frames in their order, and whether that order is a sequence (a video)."""
    if not run.frames.is_dir():
        raise InputError(f"{run.root} has no frames/ folder", "give an image folder, or run `splatforge frames` first")
    present = set(list_images(run.frames))
    info = read_json(run.frames_json, default=None)
    if info and info.get("frames"):
        ordered = [f["file"] for f in sorted(info["frames"], key=lambda f: f.get("index", 0)) if f["file"] in present]
        ordered += sorted(present - set(ordered))
        return ordered, True
    return sorted(present), False


def prepare_run(source: Path, out: Path | None = None) -> RunDir:
    """A run folder for `source` (an image folder or a run folder), with the images in frames/."""
    source = Path(source).expanduser()
    if not source.exists():
        raise InputError(f"{source} does not exist", "give an image folder or a run folder")
    if source.is_dir() and is_run_folder(source) and out is None:
        return RunDir(source)
    from splatforge.capture.ingest import ingest

    run = RunDir(out if out is not None else Path("runs") / source.name)
    ingest(source, run)
    return run
