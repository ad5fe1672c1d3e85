"""Bring the user's input into a run folder's `frames/`: an image folder, a video, or a zip of either.

Photos that can be used as they are (upright 8-bit RGB JPEG or PNG) are hard-linked when the run folder
is on the same file system (no copy, and the run folder stays complete if the original is deleted),
copied otherwise. All others (an EXIF orientation tag, HEIC, 16-bit, CMYK, greyscale, alpha, TIFF ...)
are decoded once and written upright as 8-bit RGB by `splatforge.capture.imageio`; nothing later looks
at EXIF again. `ingest.json` records what was done to each file. Videos go through
`splatforge.capture.extract_frames`. Zips are unpacked into `input/` after checks: no member may land
outside it, no absurd expansion ratio or total size, and only image/video files are taken.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from splatforge.capture import imageio
from splatforge.capture.imageio import IMAGE_SUFFIXES, ImageInfo, list_images
from splatforge.console import log
from splatforge.errors import InputError
from splatforge.rundir import RunDir, atomic_write_json, read_json

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg"}


@dataclass
class ZipLimits:
    """Bounds for unpacking an uploaded zip."""

    max_members: int = 5000
    max_total_bytes: int = 20 * 1024**3
    max_ratio: float = 200.0  # uncompressed / compressed, per member and overall


@dataclass
class FrameRecord:
    """What ingest did with one input photo (a line of ingest.json)."""

    name: str  # in frames/
    source: str  # the input file
    action: str  # linked | copied | written | kept (already in frames/ as it should be)
    size: tuple[int, int]  # upright (width, height)
    changes: list[str] = field(default_factory=list)  # what was done to the pixels; empty: byte-identical
    encoding: str | None = None  # of a written frame
    source_stat: tuple[int, int] | None = None  # (bytes, mtime_ns) of the source when it was written


@dataclass
class IngestResult:
    kind: str  # "images" | "video"
    source: Path
    frames: list[Path]
    skipped: list[str] = field(default_factory=list)
    records: list[FrameRecord] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": str(self.source), "frames": len(self.frames), "skipped": self.skipped,
                "rewritten": sum(r.action == "written" for r in self.records)}


def sniff_kind(path: Path) -> str | None:
    """'image', 'video' or None, from the file's first bytes (not its name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if imageio.sniff_image_format(head):
        return "image"
    if head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ") \
            or head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "video"
    if head[:1] == b"\x47" and path.suffix.lower() in (".ts", ".mts", ".m2ts"):  # MPEG transport stream
        return "video"
    return None


def _link_or_copy(src: Path, dst: Path) -> str:
    """'kept' when `dst` is `src`, else 'linked' or 'copied' (a new file, so the umask decides its mode)."""
    if dst.exists() and os.path.samefile(src, dst):
        return "kept"
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
        return "linked"
    except OSError:
        shutil.copyfile(src, dst)
        return "copied"


COLMAP_MODEL_FILES = {f"{stem}.{ext}" for stem in ("cameras", "images", "points3D", "rigs", "frames")
                      for ext in ("bin", "txt")}


def is_pose_file(name: PurePosixPath) -> bool:
    """A capture's own poses, kept beside its images: a transforms.json, or a file of a COLMAP model
    under a `sparse/` folder (what the pose stage's `auto` engine looks for, see `poses.existing`)."""
    return name.name == "transforms.json" or ("sparse" in name.parts[:-1] and name.name in COLMAP_MODEL_FILES)


def safe_extract_zip(archive: Path, dest: Path, limits: ZipLimits = ZipLimits(),
                     keep_pose_files: bool = False) -> list[Path]:
    """Unpack the image and video members of `archive` into `dest` after checking every member, and with
    `keep_pose_files` the capture's pose files (`is_pose_file`) too.

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
            if suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES or (keep_pose_files and is_pose_file(name)):
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
    files = list_images(source)
    if not files:
        kind, files = _find_media(source)
        if kind == "video":
            return ingest(files[0], run, frame_count, frame_fps)
    return _ingest_images(files, run, source)


def _ingest_images(files: list[Path], run: RunDir, source: Path) -> IngestResult:
    readable: list[tuple[Path, ImageInfo]] = []
    skipped: dict[str, str] = {}
    for path in files:
        if sniff_kind(path) != "image":
            skipped[path.name] = "not an image"
    heif = [p for p in files if p.name not in skipped and imageio.file_format(p) == "heif"]
    if heif and not imageio.heif_decoder_available():
        raise InputError(f"{len(heif)} of the photos ({heif[0].name}{', ...' if len(heif) > 1 else ''}) are "
                         "HEIC/HEIF, what iPhones shoot, and no HEIC decoder is installed", imageio.HEIF_ADVICE)
    for path in files:
        if path.name in skipped:
            continue
        try:
            readable.append((path, imageio.read_info(path)))
        except Exception as exc:
            skipped[path.name] = f"unreadable ({exc})"
    if not readable:
        raise InputError(f"no readable image in {source}", "give JPG, PNG or HEIC photos")

    plans = _plan_names(readable)
    run.frames.mkdir(parents=True, exist_ok=True)
    earlier = {r["name"]: r for r in (read_json(run.root / "ingest.json", default={}) or {}).get("frames", [])}

    def work(plan: tuple[Path, ImageInfo, str, list[str]]) -> FrameRecord | str:
        path, info, name, changes = plan
        dst = run.frames / name
        size = (info.width, info.height)
        if not changes:
            return FrameRecord(name, str(path), _link_or_copy(path, dst), size)
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns)
        before = earlier.get(name, {})
        encoding = imageio.frame_encoding(dst)
        if dst.exists() and before.get("source") == str(path) and tuple(before.get("source_stat") or ()) == stamp:
            return FrameRecord(name, str(path), "kept", size, changes, encoding, stamp)
        try:
            imageio.write_upright_frame(path, dst, info)
        except InputError as exc:
            return exc.message
        return FrameRecord(name, str(path), "written", size, changes, encoding, stamp)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        outcomes = list(pool.map(work, plans))
    records = []
    for (path, *_), outcome in zip(plans, outcomes):
        if isinstance(outcome, str):
            skipped[path.name] = outcome
        else:
            records.append(outcome)
    if not records:
        raise InputError(f"no readable image in {source}", "give JPG, PNG or HEIC photos")
    keep = {r.name for r in records}
    for old in run.frames.iterdir():  # after the work: in-place ingest (source = frames/) reads from here
        if old.name not in keep and old.is_file():
            old.unlink()
    sizes: dict[str, int] = {}
    for r in records:
        sizes[f"{r.size[0]}x{r.size[1]}"] = sizes.get(f"{r.size[0]}x{r.size[1]}", 0) + 1
    written = sum(r.action == "written" for r in records)
    if written:
        log.info("%d of %d photos re-written upright as 8-bit RGB (see ingest.json)", written, len(records))
    if len(sizes) > 1:
        log.info("the photos come in %d sizes (%s): each size gets its own camera", len(sizes),
                 ", ".join(sorted(sizes)))
    atomic_write_json(run.root / "ingest.json", {
        "kind": "images", "source": str(source), "count": len(records), "skipped": list(skipped),
        "skipped_reasons": skipped, "sizes": sizes, "frames": [asdict(r) for r in records]})
    return IngestResult("images", source, sorted(run.frames / r.name for r in records), list(skipped), records)


def _plan_names(readable: list[tuple[Path, ImageInfo]]) -> list[tuple[Path, ImageInfo, str, list[str]]]:
    """(source, info, name in frames/, changes) per photo, in input order.

    Names are kept; a re-written frame takes the suffix of its new format (IMG_1.HEIC -> IMG_1.jpg).
    Clashes (the same name in two subfolders, or IMG_1.HEIC next to IMG_1.jpg) get the folder name in
    front, then a number; files that keep their own name choose first.
    """
    wanted, changes = [], []
    for path, info in readable:
        changes.append(imageio.rewrite_reasons(info))
        suffix = imageio.frame_suffix(info)
        same_kind = path.suffix.lower() in ((".jpg", ".jpeg") if suffix == ".jpg" else (suffix,))
        wanted.append(path.name if not changes[-1] or same_kind else path.stem + suffix)
    taken: set[str] = set()
    names: dict[int, str] = {}
    order = sorted(range(len(readable)), key=lambda i: wanted[i] != readable[i][0].name)
    for i in order:
        path, name = readable[i][0], wanted[i]
        if name in taken:
            name = f"{path.parent.name}_{name}"
        stem, suffix, k = Path(name).stem, Path(name).suffix, 2
        while name in taken:
            name, k = f"{stem}_{k}{suffix}", k + 1
        taken.add(name)
        names[i] = name
    return [(path, info, names[i], changes[i]) for i, (path, info) in enumerate(readable)]
