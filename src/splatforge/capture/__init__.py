"""Capture stage: bring photos, a video or a zip into frames/ (`capture.ingest`; every image is decoded
by `capture.imageio`), pick frames from a video and check a capture before spending time on it.

from splatforge.capture import extract_frames, check_capture, write_quality
"""

from __future__ import annotations

from splatforge.capture.check import (
    CheckOptions,
    ImageMeasures,
    QualityReport,
    check_capture,
    gate,
    write_quality,
)
from splatforge.capture.frames import ExtractedFrame, FrameOptions, FramesResult, extract_frames

__all__ = [
    "CheckOptions",
    "ExtractedFrame",
    "FrameOptions",
    "FramesResult",
    "ImageMeasures",
    "QualityReport",
    "check_capture",
    "extract_frames",
    "gate",
    "write_quality",
]
