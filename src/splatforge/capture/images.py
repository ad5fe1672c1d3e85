"""Read photos for analysis: a downscaled upright copy plus what the file says about the camera.

JPEGs are decoded at reduced size by libjpeg itself (cv2.IMREAD_REDUCED_*), which is several times
faster than decoding the full 12 MP and resizing. EXIF orientation is applied here, explicitly, so the
analysis sees what a viewer (and COLMAP after the pipeline's ingest) sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from splatforge.capture.measures import downscale

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


@dataclass
class ImageInfo:
    width: int  # upright size of the full-resolution image
    height: int
    orientation: int  # EXIF orientation tag (1 = upright / absent)
    make: str | None = None
    model: str | None = None
    focal_mm: float | None = None
    focal_35mm: float | None = None


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder` (or in `folder/images` when that exists), sorted by name."""
    folder = Path(folder)
    if (folder / "images").is_dir() and not any(_is_image(p) for p in folder.iterdir()):
        folder = folder / "images"
    return sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_info(path: Path) -> ImageInfo:
    """Size, orientation and camera of an image from its header (no pixel decoding)."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        exif = im.getexif()
        orientation = int(exif.get(0x0112, 1) or 1)
        sub = exif.get_ifd(0x8769) if exif else {}
    if orientation in (5, 6, 7, 8):
        w, h = h, w

    def text(v) -> str | None:
        return str(v).strip("\x00 ").strip() or None if v is not None else None

    def number(v) -> float | None:
        try:
            return round(float(v), 2) if v is not None and float(v) > 0 else None
        except (TypeError, ValueError, ZeroDivisionError):
            return None

    return ImageInfo(
        width=w,
        height=h,
        orientation=orientation,
        make=text(exif.get(0x010F)),
        model=text(exif.get(0x0110)),
        focal_mm=number(sub.get(0x920A)),
        focal_35mm=number(sub.get(0xA405)),
    )


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
    """(H, W, 3) BGR uint8, upright, long side <= `long_side`; None when the file cannot be decoded."""
    flags = cv2.IMREAD_IGNORE_ORIENTATION
    full = max(info.width, info.height)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        # Allow the decoded copy to be up to 10% under long_side: 1554 px decodes at 777 for 800.
        factor = max((f for f in (1, 2, 4, 8) if full / f >= 0.9 * long_side), default=1)
        flags |= _REDUCED.get(factor, cv2.IMREAD_COLOR)
    else:
        flags |= cv2.IMREAD_COLOR
    image = cv2.imread(str(path), flags)
    if image is None:
        return None
    return downscale(apply_orientation(image, info.orientation), long_side)
