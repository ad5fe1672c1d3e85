"""Cheap per-image measures shared by frame extraction and the capture check.

Every measure works on a grey copy downscaled to a fixed long side, so numbers are comparable
between a 640x360 video frame and a 4000x3000 photo (and fast to compute).
"""

from __future__ import annotations

import cv2
import numpy as np

SHARPNESS_SIZE = 640  # long side (px) of the grey copy sharpness is measured on
THUMB_SIZE = 64  # side of the tiny grey thumbnail used for near-duplicate and motion tests


def downscale(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resize (H, W[, C]) so that max(H, W) <= long_side, keeping the aspect ratio; never upscales."""
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR or (H, W) grey uint8 -> (H, W) grey uint8."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def sharpness(gray: np.ndarray, long_side: int = SHARPNESS_SIZE) -> float:
    """Variance of the Laplacian of `gray` (H, W) uint8 after downscaling to `long_side`.

    Higher is sharper. Scene-dependent (texture-less scenes score low), so compare within a capture.
    """
    small = downscale(gray, long_side)
    return float(cv2.Laplacian(small, cv2.CV_32F, ksize=3).var())


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """(THUMB_SIZE, THUMB_SIZE) uint8 area-downscaled copy of `gray`, for near-duplicate tests.

    Stored as uint8 (4 KB) because the scan keeps one per video frame; `thumb_distance` normalises.
    """
    return cv2.resize(gray, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)


def normalise_thumbs(thumbs: np.ndarray) -> np.ndarray:
    """(..., THUMB_SIZE, THUMB_SIZE) uint8 -> float32 with zero mean and unit spread per thumbnail.

    Normalising makes the distance insensitive to auto-exposure changes.
    """
    t = thumbs.astype(np.float32)
    mean = t.mean(axis=(-2, -1), keepdims=True)
    std = t.std(axis=(-2, -1), keepdims=True)
    return (t - mean) / (std + 1e-3)


def thumb_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two normalised `thumbnail`s (in standard deviations); ~0 = same view."""
    return float(np.abs(normalise_thumbs(a) - normalise_thumbs(b)).mean())


def exposure(gray: np.ndarray, low: int = 5, high: int = 250) -> tuple[float, float, float]:
    """(share of pixels <= low, share >= high, mean brightness 0-255) of a grey (H, W) uint8 image."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    dark = hist[: low + 1].sum() / total
    bright = hist[high:].sum() / total
    mean = float((hist * np.arange(256)).sum() / total)
    return float(dark), float(bright), mean
