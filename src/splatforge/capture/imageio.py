"""Every image the project reads is decoded here; frames are written upright here.

The orientation policy, once: ingest applies the EXIF orientation tag and writes `frames/` upright with
no tag (`write_upright_frame`). Every later reader (`read_image`, `image_size`) takes the pixels as
stored and ignores any tag, as COLMAP does, so the SfM cameras, undistortion and training always see
the same image, even in a run folder made before this rule. The capture check, which may look at a
folder that was never ingested, sees it upright (`read_for_analysis`): what ingest will write.

Pixels come out as 8-bit RGB (H, W, 3) whatever the file holds: greyscale and palettes expanded,
CMYK converted, 16-bit and float scaled, alpha composited over black (the trainer's default
background, so transparent areas need no Gaussians).

Decoders: OpenCV for JPEG/PNG/TIFF/BMP/WebP (libjpeg-turbo, and it releases the GIL, so the threaded
loaders scale; Pillow gives the same JPEG pixels but ~1.5x slower and without scaling on threads),
Pillow for headers (size, EXIF, ICC, without decoding pixels), for AVIF, and for HEIC/HEIF through
pillow-heif, which OpenCV cannot read.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from splatforge.capture.measures import downscale
from splatforge.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif", ".hif",
                            ".avif"})
FORMAT_SUFFIX = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "tiff": ".tif", "webp": ".webp", "heif": ".heic",
                 "avif": ".avif"}
LOSSY_FORMATS = frozenset({"jpeg", "heif", "avif"})  # re-written as JPEG; the others as PNG (no loss added)
JPEG_QUALITY = 95  # frames that must be re-written: ~50 dB from the decoded source, size like a phone's JPEG
PNG_COMPRESSION = 1  # zlib level: 4x faster than the default 6 for ~20% more bytes (measured on fox)
HEIF_ADVICE = ("install the HEIC decoder (`pip install pillow-heif`), or convert the photos to JPEG "
               "(macOS: `sips -s format jpeg IMG.HEIC --out IMG.jpg`; Linux: `heif-convert IMG.HEIC IMG.jpg`), "
               "or set the iPhone to Settings > Camera > Formats > Most Compatible")

_CV2_FORMATS = frozenset({"jpeg", "png", "tiff", "bmp", "webp"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1",
                          b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_ORIENTATION, _EXIF_IFD, _PIXEL_X, _PIXEL_Y = 0x0112, 0x8769, 0xA002, 0xA003
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


class MissingDecoder(InputError):
    """The file is an image in a format whose decoder is not installed (HEIC without pillow-heif)."""


@dataclass
class ImageInfo:
    width: int  # upright size of the full-resolution image
    height: int
    orientation: int  # EXIF orientation tag (1 = upright / absent)
    make: str | None = None
    model: str | None = None
    focal_mm: float | None = None
    focal_35mm: float | None = None
    format: str | None = None  # jpeg | png | tiff | bmp | webp | heif | avif (from the bytes)
    mode: str = "RGB"  # Pillow's mode of the stored pixels: RGB, L, P, CMYK, RGBA, LA, I;16 ...
    bits: int = 8  # bits per sample
    alpha: bool = False  # an alpha channel or a transparent palette entry

    @property
    def stored_size(self) -> tuple[int, int]:
        """(width, height) of the pixels as stored, before the orientation is applied."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


# ---------------------------------------------------------------------------------------------------
# What a file is


def sniff_image_format(head: bytes) -> str | None:
    """The image format from a file's first bytes (at least 32), or None when it is not an image."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":  # ISO base media: HEIF/AVIF photos share the box layout with MP4/MOV videos
        major = head[8:12]
        box_end = min(int.from_bytes(head[:4], "big"), len(head))
        compatible = {head[i:i + 4] for i in range(16, box_end - 3, 4)}
        if major in _AVIF_BRANDS or (major in (b"mif1", b"msf1") and compatible & _AVIF_BRANDS
                                     and not compatible & {b"heic", b"heix"}):
            return "avif"
        if major in _HEIF_BRANDS:
            return "heif"
    return None


def file_format(path: Path) -> str | None:
    with open(path, "rb") as f:
        return sniff_image_format(f.read(64))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder` (or in `folder/images` when the top level has none), sorted by name."""
    folder = Path(folder)
    if (folder / "images").is_dir() and not any(_is_image(p) for p in folder.iterdir()):
        folder = folder / "images"
    return sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


@functools.cache
def heif_decoder_available() -> bool:
    """True when pillow-heif is installed (its opener is then registered with Pillow)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def _missing_heif(path: Path) -> MissingDecoder:
    return MissingDecoder(f"{Path(path).name} is a HEIC/HEIF photo and no HEIC decoder is installed", HEIF_ADVICE)


@contextmanager
def open_image(path: Path):
    """The file as a lazy Pillow image (header read, pixels not yet decoded). HEIC/HEIF through pillow-heif.

    Raises MissingDecoder for HEIC without pillow-heif; Pillow's own errors otherwise.
    """
    from PIL import Image

    fmt = file_format(path)
    if fmt == "heif" and not heif_decoder_available():
        raise _missing_heif(path)
    with Image.open(path) as im:
        yield im


# ---------------------------------------------------------------------------------------------------
# Headers


def read_info(path: Path) -> ImageInfo:
    """Size, orientation, pixel layout and camera of an image from its header (no pixel decoding)."""
    from PIL import UnidentifiedImageError

    fmt = file_format(path)
    try:
        with open_image(path) as im:
            w, h = im.size
            mode = im.mode
            alpha = "A" in mode or "a" in mode or "transparency" in im.info
            exif = im.getexif()
            orientation = int(exif.get(_ORIENTATION, 1) or 1)
            sub = exif.get_ifd(_EXIF_IFD) if exif else {}
    except UnidentifiedImageError:
        if fmt not in _CV2_FORMATS:
            raise
        return _info_from_pixels(path, fmt)  # e.g. a float TIFF: OpenCV reads it, Pillow does not
    if orientation not in range(1, 9):
        orientation = 1
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    bits = 16 if mode.startswith("I") else 32 if mode == "F" else 8
    if fmt == "png":
        bits = _png_bit_depth(path) or bits

    def text(v) -> str | None:
        return str(v).strip("\x00 ").strip() or None if v is not None else None

    def number(v) -> float | None:
        try:
            return round(float(v), 2) if v is not None and float(v) > 0 else None
        except (TypeError, ValueError, ZeroDivisionError):
            return None

    return ImageInfo(width=w, height=h, orientation=orientation, make=text(exif.get(0x010F)),
                     model=text(exif.get(0x0110)), focal_mm=number(sub.get(0x920A)),
                     focal_35mm=number(sub.get(0xA405)), format=fmt, mode=mode, bits=bits, alpha=alpha)


def _info_from_pixels(path: Path, fmt: str) -> ImageInfo:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if raw is None:
        raise InputError(f"could not decode image {path}", "check that the file is a readable JPEG/PNG")
    channels = 1 if raw.ndim == 2 else raw.shape[2]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    return ImageInfo(width=raw.shape[1], height=raw.shape[0], orientation=1, format=fmt, mode=mode,
                     bits=raw.dtype.itemsize * 8, alpha=channels in (2, 4))


def _png_bit_depth(path: Path) -> int | None:
    """Bits per sample from the PNG header (Pillow reports 16-bit RGB as plain "RGB"); None for palettes."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[12:16] != b"IHDR" or head[25] == 3:  # colour type 3: palette indices
        return None
    return head[24]


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the pixels as stored, from the header; what `read_image` returns."""
    with open_image(path) as im:
        return im.size


def rewrite_reasons(info: ImageInfo) -> list[str]:
    """Why a file cannot go into frames/ as it is (empty: it can be linked unchanged)."""
    reasons = []
    if info.orientation != 1:
        reasons.append(f"EXIF orientation {info.orientation} applied")
    if info.format not in ("jpeg", "png"):
        reasons.append(f"{(info.format or 'unknown').upper()} decoded")
    if info.bits != 8:
        reasons.append(f"{info.bits}-bit scaled to 8-bit")
    if info.alpha:
        reasons.append("alpha composited over black")
    if info.mode in ("L", "LA", "La", "1", "I", "I;16", "I;16B", "I;16L", "F"):
        reasons.append("greyscale to RGB")
    elif info.mode in ("P", "PA"):
        reasons.append("palette to RGB")
    elif info.mode not in ("RGB", "RGBA", "RGBa"):
        reasons.append(f"{info.mode} to RGB")
    return reasons


# ---------------------------------------------------------------------------------------------------
# Pixels


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the pixels as stored; an orientation tag is not applied (see the module doc).

    Raises InputError when the file cannot be decoded.
    """
    try:
        raw, order = _decode(Path(path))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"could not decode image {path} ({exc})", "check that the file is a readable JPEG/PNG") \
            from None
    return to_rgb8(raw, order)


def read_upright(path: Path, info: ImageInfo | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB with the EXIF orientation applied: what ingest writes into frames/."""
    info = info or read_info(path)
    return apply_orientation(read_image(path), info.orientation)


def _decode(path: Path) -> tuple[np.ndarray, str]:
    """Stored pixels (H, W[, C]) of any depth, and their channel order ('bgr' or 'rgb')."""
    fmt = file_format(path)
    if fmt in _CV2_FORMATS:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if raw is not None:
            return raw, "bgr"
    with open_image(path) as im:  # HEIF, AVIF, and whatever OpenCV could not read
        return _pillow_pixels(im), "rgb"


def _pillow_pixels(im) -> np.ndarray:
    mode = im.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        return np.asarray(im)
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    if mode in ("P", "PA"):
        return np.asarray(im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB"))
    if mode in ("RGBa", "La"):  # premultiplied: undo it first, then composite like the others
        return np.asarray(im.convert("RGBA" if mode == "RGBa" else "LA"))
    return np.asarray(im.convert("RGB"))  # 1, CMYK, YCbCr, LAB, HSV


def to_rgb8(pixels: np.ndarray, order: str = "rgb") -> np.ndarray:
    """(H, W, 3) uint8 RGB from (H, W[, 1|2|3|4]) pixels of any depth in channel `order` ('rgb' or 'bgr').

    16-bit is rounded to 8 bits, float taken as [0, 1], alpha composited over black.
    """
    a = pixels
    if a.dtype == np.uint16:
        a = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = (np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] in (2, 4):
        colour, alpha = a[:, :, :-1].astype(np.uint16), a[:, :, -1:].astype(np.uint16)
        a = ((colour * alpha + 127) // 255).astype(np.uint8)
    # cv2.cvtColor, not a numpy [..., ::-1] copy: 0.7 ms against 20 ms for a 1080p frame (fox's undistortion
    # read every photo through here: 2 CPU s of the 2-core pose stage)
    a = np.ascontiguousarray(a)
    if a.shape[2] == 1:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
    if order == "bgr":
        return cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    return a


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Make (H, W[, C]) upright given its EXIF orientation tag (1-8)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(image)) if op else image


def read_for_analysis(path: Path, info: ImageInfo, long_side: int) -> np.ndarray | None:
    """(H, W, 3) BGR uint8, upright, long side <= `long_side`; None when the file cannot be decoded.

    JPEGs are decoded at reduced size by libjpeg itself (cv2.IMREAD_REDUCED_*), several times faster
    than decoding the full 12 MP and resizing.
    """
    try:
        if info.format == "jpeg":
            full = max(info.width, info.height)
            # Allow the decoded copy to be up to 10% under long_side: 1554 px decodes at 777 for 800.
            factor = max((f for f in (1, 2, 4, 8) if full / f >= 0.9 * long_side), default=1)
            image = cv2.imread(str(path), _REDUCED.get(factor, cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION)
        else:
            image = cv2.cvtColor(read_image(path), cv2.COLOR_RGB2BGR)
    except Exception:
        return None
    if image is None:
        return None
    return downscale(apply_orientation(image, info.orientation), long_side)


# ---------------------------------------------------------------------------------------------------
# Writing


def frame_suffix(info: ImageInfo) -> str:
    """.jpg for a lossy source (JPEG, HEIC, AVIF), .png for the others: a re-written frame adds no loss to a
    lossless source and no bulk to a lossy one."""
    return ".jpg" if info.format in LOSSY_FORMATS else ".png"


def frame_encoding(path: Path) -> str:
    return f"JPEG q{JPEG_QUALITY} 4:4:4" if Path(path).suffix.lower() in (".jpg", ".jpeg") else "PNG"


def write_upright_frame(source: Path, dest: Path, info: ImageInfo | None = None) -> None:
    """Decode `source`, apply its orientation, make it 8-bit RGB and write `dest` (JPEG or PNG by suffix).

    EXIF is kept (COLMAP takes its focal-length prior from it) without the orientation tag, with the pixel
    dimensions of the new image; the ICC profile is kept. The write is atomic and honours the umask.
    """
    from PIL import Image

    from splatforge.rundir import atomic_path

    info = info or read_info(source)
    rgb = read_upright(source, info)
    with open_image(source) as im:
        exif = im.getexif()
        icc = im.info.get("icc_profile")
    exif.pop(_ORIENTATION, None)
    sub = exif.get_ifd(_EXIF_IFD)
    if _PIXEL_X in sub or _PIXEL_Y in sub:
        sub[_PIXEL_X], sub[_PIXEL_Y] = rgb.shape[1], rgb.shape[0]
    extra = {"exif": exif.tobytes()} if len(exif) else {}
    if icc:
        extra["icc_profile"] = icc
    jpeg = Path(dest).suffix.lower() in (".jpg", ".jpeg")
    options = dict(format="JPEG", quality=JPEG_QUALITY, subsampling=0) if jpeg else \
        dict(format="PNG", compress_level=PNG_COMPRESSION)
    with atomic_path(dest) as tmp:
        Image.fromarray(rgb).save(tmp, **options, **extra)


def write_image(path: Path, rgb: np.ndarray, jpeg_quality: int = JPEG_QUALITY) -> None:
    """(H, W, 3) uint8 RGB to `path` (format by suffix), atomically; for derived images (no metadata)."""
    from splatforge.rundir import atomic_path

    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if Path(path).suffix.lower() in (".jpg", ".jpeg") else []
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), params):
            raise OSError(f"could not write {path}")
