"""Bring the user's input into a run folder's `frames/`: an image folder, a video, or a zip of either.

Images are hard-linked when the run folder is on the same file system (no copy, and the run folder
stays complete if the original is deleted), copied otherwise. Videos go through
`splatforge.capture.extract_frames`. Zips are unpacked into `input/` after checks: no member may land
outside it, no absurd expansion ratio or total size, and only image/video files are taken.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from splatforge.errors import InputError
from splatforge.rundir import RunDir, atomic_write_json

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg"}


@dataclass
class ZipLimits:
    """Bounds for unpacking an uploaded zip."""

    max_members: int = 5000
    max_total_bytes: int = 20 * 1024**3
    max_ratio: float = 200.0  # uncompressed / compressed, per member and overall


@dataclass
class IngestResult:
    kind: str  # "images" | "video"
    source: Path
    frames: list[Path]
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": str(self.source), "frames": len(self.frames), "skipped": self.skipped}


def sniff_kind(path: Path) -> str | None:
    """'image', 'video' or None, from the file's first bytes (not its name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n") or head[:2] == b"BM" \
            or head[:4] in (b"II*\x00", b"MM\x00*") or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ") \
            or head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "video"
    if head[:1] == b"\x47" and path.suffix.lower() in (".ts", ".mts", ".m2ts"):  # MPEG transport stream
        return "video"
    return None


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder` (or in `folder/images` when the top level has none), sorted."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files and (folder / "images").is_dir():
        return list_images(folder / "images")
    return files


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def safe_extract_zip(archive: Path, dest: Path, limits: ZipLimits = ZipLimits()) -> list[Path]:
    """Unpack the image and video members of `archive` into `dest` after checking every member.

    Raises InputError (nothing written) for: not a zip, a member path outside `dest`, a symlink member,
    too many members, too large in total, or a suspicious compression ratio (a zip bomb).
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{archive.name} is not a readable zip file ({exc})", "upload a valid .zip of images or a video") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > limits.max_members:
            raise InputError(f"the zip holds {len(members)} files (limit {limits.max_members})",
                             "send fewer files: 50-300 images are plenty for one scene")
        total = sum(m.file_size for m in members)
        packed = max(1, sum(m.compress_size for m in members))
        if total > limits.max_total_bytes:
            raise InputError(f"the zip unpacks to {total / 1e9:.1f} GB (limit {limits.max_total_bytes / 1e9:.1f} GB)",
                             "send a smaller capture or downscale the images")
        if total / packed > limits.max_ratio:
            raise InputError(f"the zip expands {total / packed:.0f}x (limit {limits.max_ratio:.0f}x): refused as a zip bomb",
                             "zip real photos or a video; they hardly compress")
        take = []
        for m in members:
            name = PurePosixPath(m.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or m.filename.startswith("/"):
                raise InputError(f"the zip member {m.filename!r} would land outside the upload folder",
                                 "make the zip from inside the capture folder (relative paths only)")
            if stat.S_ISLNK(m.external_attr >> 16):
                raise InputError(f"the zip member {m.filename!r} is a symbolic link", "zip the files themselves")
            if m.file_size and m.compress_size and m.file_size / m.compress_size > limits.max_ratio:
                raise InputError(f"the zip member {m.filename!r} expands {m.file_size / m.compress_size:.0f}x: refused",
                                 "zip real photos or a video; they hardly compress")
            suffix = name.suffix.lower()
            if name.name.startswith(".") or "__MACOSX" in name.parts:
                continue
            if suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
                take.append((m, name))
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for m, name in take:
            target = dest / Path(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(target, "wb") as dst:
                # Stream with a hard cap: a lying header cannot make us write more than it declared.
                remaining = m.file_size
                while chunk := src.read(1 << 20):
                    remaining -= len(chunk)
                    if remaining < 0:
                        raise InputError(f"the zip member {m.filename!r} is larger than its header says", "re-create the zip")
                    dst.write(chunk)
            out.append(target)
    return out


def _find_media(folder: Path) -> tuple[str, list[Path]]:
    """Within an unpacked folder: ('video', [file]) or ('images', files) by content."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    kinds = {p: sniff_kind(p) for p in files}
    videos = [p for p, k in kinds.items() if k == "video"]
    images = [p for p, k in kinds.items() if k == "image"]
    if images:
        return "images", images
    if len(videos) == 1:
        return "video", videos
    if len(videos) > 1:
        raise InputError(f"found {len(videos)} videos and no images", "give one video per scene")
    raise InputError("found no images or video in the input", "give a folder of JPG/PNG photos, a video, or a zip of either")


def ingest(source: Path, run: RunDir, frame_count: int | None = None, frame_fps: float | None = None,
           zip_limits: ZipLimits = ZipLimits()) -> IngestResult:
    """Fill `run.frames` from `source` (an image folder, a video file, or a zip of either).

    Image names are kept (frames/<name>); duplicates across subfolders are made unique with their
    folder name. Re-running with the same source is cheap: linked files are simply replaced.
    """
    source = Path(source).expanduser().resolve()
    if not source.exists():
        raise InputError(f"{source} does not exist", "give a folder of images, a video file or a zip")
    run.create()
    if source.is_file() and zipfile.is_zipfile(source):
        unpacked = run.input / "unzipped"
        if unpacked.exists():
            shutil.rmtree(unpacked)
        safe_extract_zip(source, unpacked, zip_limits)
        kind, files = _find_media(unpacked)
        if kind == "video":
            return ingest(files[0], run, frame_count, frame_fps)
        return _ingest_images(files, run, source)
    if source.is_file():
        kind = sniff_kind(source)
        if kind == "video" or source.suffix.lower() in VIDEO_SUFFIXES:
            from splatforge.capture import FrameOptions, extract_frames

            extract_frames(source, run.root, FrameOptions(count=frame_count, fps=frame_fps))
            return IngestResult("video", source, sorted(run.frames.glob("*.jpg")))
        raise InputError(f"{source.name} is neither a video nor a zip", "give a folder of images, a video file or a zip")
    if source == run.frames.resolve():
        return IngestResult("images", source, list_images(source))
    files = list_images(source)
    if not files:
        kind, files = _find_media(source)
        if kind == "video":
            return ingest(files[0], run, frame_count, frame_fps)
    return _ingest_images(files, run, source)


def _ingest_images(files: list[Path], run: RunDir, source: Path) -> IngestResult:
    good, skipped = [], []
    for path in files:
        (good if sniff_kind(path) == "image" else skipped).append(path)
    if not good:
        raise InputError(f"no readable image in {source}", "give JPG or PNG photos")
    names: dict[str, Path] = {}
    for path in good:
        name = path.name
        if name in names:
            name = f"{path.parent.name}_{path.name}"
        names[name] = path
    run.frames.mkdir(parents=True, exist_ok=True)
    for old in run.frames.iterdir():
        if old.name not in names:
            old.unlink()
    for name, path in names.items():
        _link_or_copy(path, run.frames / name)
    atomic_write_json(run.root / "ingest.json", {"kind": "images", "source": str(source), "count": len(names),
                                                  "skipped": [p.name for p in skipped]})
    return IngestResult("images", source, sorted(run.frames / n for n in names), [p.name for p in skipped])
