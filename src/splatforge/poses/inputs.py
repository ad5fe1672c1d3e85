"""Which images the pose stage works on, and where the run folder is.

Until the ingest stage lands, an image folder is linked into `run.frames` here (`prepare_run`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from splatforge.errors import InputError
from splatforge.rundir import RunDir, read_json

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


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
    run = RunDir(out if out is not None else Path("runs") / source.name)
    try:  # the lead's ingest stage, once it exists, knows videos and zips too
        from splatforge.ingest import ingest
    except ImportError:
        ingest = None
    if ingest is not None:
        ingest(source, run)
        return run
    if not source.is_dir():
        raise InputError(f"{source} is not a folder of images", "give a folder of JPG/PNG photos")
    names = list_images(source)
    if not names:
        raise InputError(f"{source} holds no JPG/PNG images", "give a folder of photos")
    run.frames.mkdir(parents=True, exist_ok=True)
    for name in names:
        dst = run.frames / name
        if dst.exists():
            continue
        shutil.copy2(source / name, dst)  # a copy, never a link: later stages may rewrite frames/
    return run
