"""Check an upload by content and bounds, and lay it out in the job's folder.

Accepted: any number of images, or exactly one video, or exactly one zip of either (a zip may also hold the
capture's poses: a transforms.json, a COLMAP model under sparse/). The kind of each
file comes from its bytes (`splatforge.capture.ingest.sniff_kind`), never from its name; images are decoded
fully (a truncated file is refused), videos must yield a first frame, zips go through
`safe_extract_zip`. Stored names are made up from a sanitized base name and the sniffed kind, so no
client-supplied name can place a file outside `upload/`. A disk that fills up while storing gives 507.
"""

from __future__ import annotations

import re
import shutil
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from splatforge.capture import imageio
from splatforge.capture.ingest import ZipLimits, is_pose_file, safe_extract_zip, sniff_kind
from splatforge.errors import InputError, SplatforgeError
from splatforge.service.diskspace import is_disk_full, upload_too_large_for_disk
from splatforge.service.settings import UploadLimits


class UploadRefused(SplatforgeError):
    """An upload that is refused with an HTTP status (413 too large, 415 wrong kind, 422 unusable)."""

    def __init__(self, status: int, message: str, advice: str):
        super().__init__(message, advice)
        self.status = status


@dataclass
class UploadSummary:
    kind: str  # images | video | zip
    source: str  # relative to the job folder: what the pipeline ingests
    files: list[str] = field(default_factory=list)  # stored names (relative to upload/)
    images: int = 0
    bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def safe_name(filename: str | None, index: int) -> str:
    """A base name with only [A-Za-z0-9._-], never hidden, never empty; the suffix is decided later."""
    base = re.split(r"[\\/]", filename or "")[-1]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base.rsplit(".", 1)[0]).strip("._")[:80]
    return stem or f"file_{index:04d}"


def _content_kind(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        return "zip"
    return sniff_kind(path)


def _image_suffix(path: Path) -> str:
    return imageio.FORMAT_SUFFIX.get(imageio.file_format(path) or "", ".img")


def check_image(path: Path, shown_name: str, limits: UploadLimits) -> tuple[int, int]:
    """Decode the whole image; refuse it if damaged or over the pixel bound. Returns (width, height)."""
    from PIL import Image

    try:
        with imageio.open_image(path) as img:
            width, height = img.size
            if width * height > limits.max_image_pixels:
                raise UploadRefused(413, f"{shown_name} is {width}x{height} = {width * height / 1e6:.0f} MP "
                                    f"(limit {limits.max_image_pixels / 1e6:.0f} MP per image)",
                                    "downscale the images (12-24 MP is plenty) and upload again")
            img.load()
    except imageio.MissingDecoder as exc:
        raise UploadRefused(415, f"{shown_name} is a HEIC/HEIF photo and this server has no HEIC decoder",
                            exc.advice) from None
    except UploadRefused:
        raise
    except Image.DecompressionBombError:
        raise UploadRefused(413, f"{shown_name} declares an absurd pixel count",
                            "downscale the images (12-24 MP is plenty) and upload again") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if is_disk_full(exc):
            raise
        raise UploadRefused(422, f"{shown_name} is truncated or damaged ({exc})",
                            "upload the original file again; check that the copy finished") from None
    if _image_suffix(path) == ".jpg":
        _check_jpeg_data(path, shown_name)
    return width, height


# libjpeg warnings that mean picture data is missing or garbled (the decoder fills in grey and goes on;
# Pillow passes them over in silence). Others, such as "extraneous bytes before marker", are common in
# cameras' files and harmless.
_JPEG_DATA_LOST = re.compile(r"premature end|huffman|invalid|corrupt jpeg data: bad|unknown marker|"
                             r"ran out|too few|wrong|not a jpeg|failed", re.IGNORECASE)


def _check_jpeg_data(path: Path, shown_name: str) -> None:
    """Decode a JPEG's whole entropy-coded data with libjpeg-turbo in strict mode: a header that claims
    more pixels than the data holds (a 7000x7000 header on a small image) is refused like a truncated file.
    Decoded at 1/8 scale: every coefficient is still read, for a 64th of the memory."""
    import simplejpeg

    try:
        simplejpeg.decode_jpeg(path.read_bytes(), colorspace="GRAY", min_factor=8, strict=True)
    except ValueError as exc:
        if _JPEG_DATA_LOST.search(str(exc)):
            raise UploadRefused(422, f"{shown_name} is truncated or damaged ({exc})",
                                "upload the original file again; check that the copy finished") from None


def check_video(path: Path, shown_name: str, limits: UploadLimits) -> None:
    """Open the video and decode its first frame; refuse unreadable or oversized ones."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UploadRefused(422, f"{shown_name} has no video stream", "upload a video with picture")
            stream = container.streams.video[0]
            if stream.width * stream.height > limits.max_image_pixels:
                raise UploadRefused(413, f"{shown_name} has {stream.width}x{stream.height} frames "
                                    f"(limit {limits.max_image_pixels / 1e6:.0f} MP)", "upload a lower resolution")
            next(container.decode(stream))
    except UploadRefused:
        raise
    except (av.FFmpegError, StopIteration, OSError, ValueError) as exc:
        raise UploadRefused(422, f"{shown_name} is not a readable video ({type(exc).__name__}: {exc})",
                            "upload the original video file again; check that the copy finished") from None


def _copy_bounded(src: BinaryIO, dst: Path, budget: int) -> int:
    written = 0
    with open(dst, "wb") as out:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > budget:
                raise UploadRefused(413, f"the upload is larger than the limit of {_gb(budget)}",
                                    "send fewer or smaller files (downscale images, or trim the video)")
            out.write(chunk)
    return written


def _gb(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def _zip_precheck(path: Path, limits: UploadLimits) -> None:
    """The size bounds of a zip, as 413s; everything else is left to `safe_extract_zip` (422)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadRefused(422, f"the zip is not readable ({exc})", "upload a complete, valid .zip") from None
    if len(members) > limits.max_files:
        raise UploadRefused(413, f"the zip holds {len(members)} files (limit {limits.max_files})",
                            "send fewer files: 50-300 images are plenty for one scene")
    total = sum(m.file_size for m in members)
    packed = max(1, sum(m.compress_size for m in members))
    if total > limits.max_unpacked_bytes:
        raise UploadRefused(413, f"the zip unpacks to {_gb(total)} (limit {_gb(limits.max_unpacked_bytes)})",
                            "send a smaller capture or downscale the images")
    ratios = [m.file_size / m.compress_size for m in members if m.compress_size] + [total / packed]
    if max(ratios) > limits.max_zip_ratio:
        raise UploadRefused(413, f"the zip expands {max(ratios):.0f}x (limit {limits.max_zip_ratio:.0f}x): "
                            "refused as a zip bomb", "zip real photos or a video; they hardly compress")


def store_upload(files: Iterable[tuple[str | None, BinaryIO]], job_dir: Path, limits: UploadLimits) -> UploadSummary:
    """Write and check the uploaded files under `job_dir/upload`. Raises UploadRefused (507 when the disk
    fills up); the caller removes `job_dir` on refusal."""
    try:
        return _store_upload(files, job_dir, limits)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        message, advice = upload_too_large_for_disk(None, job_dir.parent)
        raise UploadRefused(507, message, advice) from None


def _store_upload(files: Iterable[tuple[str | None, BinaryIO]], job_dir: Path, limits: UploadLimits) -> UploadSummary:
    upload = job_dir / "upload"
    upload.mkdir(parents=True, exist_ok=False)
    staged: list[tuple[str, Path, str]] = []  # (name the client gave, path, kind)
    total = 0
    for index, (filename, fileobj) in enumerate(files):
        if index >= limits.max_files:
            raise UploadRefused(413, f"more than {limits.max_files} files in one upload",
                                "send fewer files (50-300 images are plenty for one scene), or one zip")
        tmp = upload / f".part{index:05d}"
        total += _copy_bounded(fileobj, tmp, limits.max_total_bytes - total)
        shown = safe_name(filename, index)
        kind = _content_kind(tmp)
        if kind is None:
            raise UploadRefused(415, f"{filename or shown!r} is not an image, a video or a zip (judged by its content)",
                                "send JPG/PNG photos, one video (MP4/MOV/MKV/WebM) or one zip of either")
        staged.append((filename or shown, tmp, kind))
    if not staged:
        raise UploadRefused(422, "the upload has no files",
                            "send images, one video or one zip in the multipart field `files`")
    kinds = {kind for _, _, kind in staged}
    if kinds != {"image"} and len(staged) > 1:
        raise UploadRefused(422, f"mixed upload: {len(staged)} files of kinds {', '.join(sorted(kinds))}",
                            "send either images, or exactly one video, or exactly one zip")
    summary = UploadSummary(kind="images" if kinds == {"image"} else staged[0][2], source="upload", bytes=total)
    used: set[str] = set()
    for index, (shown, tmp, kind) in enumerate(staged):
        stem = safe_name(shown, index)
        suffix = _image_suffix(tmp) if kind == "image" else {"video": ".video", "zip": ".zip"}[kind]
        if kind == "video":
            with open(tmp, "rb") as f:
                suffix = ".mkv" if f.read(4) == b"\x1a\x45\xdf\xa3" else ".mp4"
        name = f"{stem}{suffix}"
        n = 1
        while name.lower() in used:
            n += 1
            name = f"{stem}_{n}{suffix}"
        used.add(name.lower())
        final = upload / name
        tmp.rename(final)
        if kind == "image":
            check_image(final, shown, limits)
            summary.images += 1
        elif kind == "video":
            check_video(final, shown, limits)
            summary.source = f"upload/{name}"
        summary.files.append(name)
    if summary.kind == "zip":
        _unpack(upload / summary.files[0], upload, limits, summary)
    return summary


def _unpack(archive: Path, upload: Path, limits: UploadLimits, summary: UploadSummary) -> None:
    _zip_precheck(archive, limits)
    target = upload / "unzipped"
    try:
        extracted = safe_extract_zip(archive, target, ZipLimits(max_members=limits.max_files,
                                                                max_total_bytes=limits.max_unpacked_bytes,
                                                                max_ratio=limits.max_zip_ratio),
                                     keep_pose_files=True)
    except InputError as exc:
        raise UploadRefused(422, exc.message, exc.advice) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a wrong CRC, a corrupt deflate stream
        raise UploadRefused(422, f"the zip is damaged ({type(exc).__name__}: {exc})",
                            "make the zip again from the original files and upload it again") from None
    archive.unlink()
    # A posed capture's transforms.json or COLMAP model stays beside its images: the pose stage uses it.
    kinds = {p: sniff_kind(p) for p in extracted if not is_pose_file(PurePosixPath(p.relative_to(target).as_posix()))}
    images = [p for p, k in kinds.items() if k == "image"]
    videos = [p for p, k in kinds.items() if k == "video"]
    named_but_not = [p for p, k in kinds.items() if k is None]
    if named_but_not:
        raise UploadRefused(415, f"{named_but_not[0].relative_to(target)} in the zip is not an image or a video "
                            "(judged by its content)", "remove it from the zip, or replace it with the real file")
    if not images and len(videos) != 1:
        raise UploadRefused(422, f"the zip holds {len(videos)} videos and no images" if videos
                            else "the zip holds no images and no video",
                            "zip a folder of JPG/PNG photos, or one video")
    for path in images:
        check_image(path, str(path.relative_to(target)), limits)
    if images:
        for video in videos:  # the pipeline takes the images; a stray video would only confuse
            video.unlink()
    summary.images = len(images)
    summary.files = [str(p.relative_to(upload)) for p in (images or videos)]
    summary.source = "upload/unzipped"
    if not images:
        check_video(videos[0], str(videos[0].relative_to(target)), limits)


def remove_job_dir(job_dir: Path) -> None:
    shutil.rmtree(job_dir, ignore_errors=True)
