"""Pick the sharpest, non-redundant frames of a video and write them as JPEGs.

Two decoding passes with PyAV:

1. scan: every frame's time stamp (variable frame rate is fine: windows are in seconds, not frame
   numbers), sharpness (variance of the Laplacian, `measures.sharpness`) and a tiny thumbnail; no
   colour conversion, only the luma plane, so this pass costs little more than decoding.
2. keep: the video is split into N equal time windows; the sharpest frame of each window is kept
   unless it is a near-duplicate of the previously kept frame (camera standing still). Only those
   frames are converted to colour, rotated upright (display matrix) and written.

Nothing is written until the whole video decoded cleanly, and frames go to a temporary folder that
is renamed into place at the end: a bad file writes nothing.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from splatforge.capture.measures import downscale, sharpness, thumb_distance, thumbnail
from splatforge.console import log
from splatforge.errors import InputError
from splatforge.rundir import atomic_write_json, make_temp_dir


@dataclass
class FrameOptions:
    """How many frames to keep and how to write them. `count` wins over `fps`; neither = automatic."""

    count: int | None = None  # exactly this many time windows (one frame per window at most)
    fps: float | None = None  # windows per second of video
    max_size: int | None = None  # long side of written frames in px (downscale only, never upscale)
    min_count: int = 60  # automatic N: lower bound
    max_count: int = 150  # automatic N: upper bound
    frames_per_moving_second: float = 3.0  # automatic N: frames per second of camera motion
    motion_step_s: float = 0.25  # automatic N: motion is measured between frames this far apart
    motion_threshold: float = 0.03  # thumbnail distance per step above which the camera moves
    duplicate_threshold: float = 0.025  # thumbnail distance below which a frame repeats the last kept
    jpeg_quality: int = 95
    decode_threads: int = 2  # PyAV/FFmpeg decoding threads (this machine has 2 shared cores)


@dataclass
class ExtractedFrame:
    file: str  # "0001.jpg"
    time: float  # seconds from the start of the video
    index: int  # frame number in decoding order (0-based)
    sharpness: float


@dataclass
class FramesResult:
    source: str
    frames: list[ExtractedFrame]
    chosen_count: int  # number of time windows (N)
    reason: str  # why N was chosen, in plain words
    duplicates_skipped: int
    duration: float  # seconds
    decoded_frames: int
    rotation: int  # degrees counter-clockwise applied to make frames upright
    size: tuple[int, int]  # (width, height) of the written frames
    seconds: float = 0.0
    frames_dir: Path | None = None
    frames_json: Path | None = None

    def to_dict(self) -> dict:
        """The frames.json document (contract: source, frames, chosen_count, reason)."""
        return {
            "source": self.source,
            "frames": [asdict(f) for f in self.frames],
            "chosen_count": self.chosen_count,
            "reason": self.reason,
            "duplicates_skipped": self.duplicates_skipped,
            "duration": self.duration,
            "decoded_frames": self.decoded_frames,
            "rotation": self.rotation,
            "size": list(self.size),
            "seconds": self.seconds,
        }


@dataclass
class FrameStat:
    """What the scan pass remembers of one decoded frame."""

    index: int
    time: float
    sharpness: float
    thumb: np.ndarray = field(repr=False)  # (THUMB_SIZE, THUMB_SIZE) uint8


@dataclass
class VideoScan:
    frames: list[FrameStat]
    duration: float
    rotation: int
    width: int  # stored (unrotated) size
    height: int


@dataclass
class Selection:
    indices: list[int]  # frame indices to keep, in time order
    chosen_count: int
    reason: str
    duplicates_skipped: int


def _open(video: Path):
    import av

    video = Path(video)
    if not video.is_file():
        raise InputError(f"{video} does not exist or is not a file.", "Give the path of a video file.")
    try:
        container = av.open(str(video))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(
            f"{video.name} could not be opened as a video ({exc}).",
            "Check that the file is a complete video (mp4, mov, mkv...); re-export or copy it again.",
        ) from exc
    if not container.streams.video:
        container.close()
        raise InputError(
            f"{video.name} has no video stream.", "Give a file that contains video, not only audio or data."
        )
    return container


def _luma(frame) -> np.ndarray:
    """(H, W) uint8 grey of a decoded av.VideoFrame; the Y plane directly when it is 8-bit YUV."""
    name = frame.format.name
    if name in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"):
        plane = frame.planes[0]
        buf = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        return buf[:, : plane.width]
    return frame.to_ndarray(format="gray8")


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate (H, W[, C]) counter-clockwise by `rotation` degrees (a multiple of 90)."""
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def _decode(container, threads: int) -> Iterator:
    import av

    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    try:
        yield from container.decode(stream)
    except av.FFmpegError as exc:
        raise InputError(
            f"{Path(container.name).name} could not be decoded to the end ({exc}).",
            "The file is probably truncated or damaged: copy or export it again.",
        ) from exc


def scan_video(video: Path, options: FrameOptions = FrameOptions()) -> VideoScan:
    """Pass 1: time stamp, sharpness and thumbnail of every frame. Raises InputError on a bad file."""
    container = _open(video)
    try:
        stream = container.streams.video[0]
        declared = None
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
        elif container.duration:
            declared = container.duration / 1e6
        stats: list[FrameStat] = []
        rotation = 0
        start = None
        last_duration = 0.0
        for i, frame in enumerate(_decode(container, options.decode_threads)):
            if frame.time is None:
                continue
            if start is None:
                start = frame.time
                rotation = int(round((frame.rotation or 0) / 90.0) * 90)
            gray = _luma(frame)
            stats.append(FrameStat(i, float(frame.time - start), sharpness(gray), thumbnail(gray)))
            if frame.duration and frame.time_base:
                last_duration = float(frame.duration * frame.time_base)
        width, height = stream.codec_context.width, stream.codec_context.height
    finally:
        container.close()
    if not stats:
        raise InputError(
            f"{Path(video).name} contains no decodable video frames.",
            "The file is empty, truncated or uses a codec FFmpeg cannot decode: export it again as H.264 mp4.",
        )
    duration = stats[-1].time + (last_duration or (stats[-1].time / max(1, len(stats) - 1)))
    if declared and declared > 2.0 and duration < 0.9 * declared:
        raise InputError(
            f"{Path(video).name} is truncated: only {duration:.1f} s of its {declared:.1f} s could be decoded.",
            "Copy or export the video again; a partial upload or an interrupted recording looks like this.",
        )
    return VideoScan(stats, duration, rotation, width, height)


def moving_seconds(scan: VideoScan, options: FrameOptions) -> float:
    """Seconds during which the camera moves: thumbnails `motion_step_s` apart differ by > threshold."""
    samples: list[FrameStat] = []
    for stat in scan.frames:
        if not samples or stat.time - samples[-1].time >= options.motion_step_s - 1e-6:
            samples.append(stat)
    moving = 0.0
    for a, b in zip(samples, samples[1:]):
        if thumb_distance(a.thumb, b.thumb) > options.motion_threshold:
            moving += b.time - a.time
    return moving


def choose_count(scan: VideoScan, options: FrameOptions) -> tuple[int, str]:
    """Number of time windows N and the reason, in plain words."""
    total = len(scan.frames)
    if options.count is not None:
        if options.count < 1:
            raise InputError("--count must be at least 1.", "Ask for 50-150 frames for a splat.")
        n, reason = options.count, f"{options.count} frames asked for"
    elif options.fps is not None:
        if options.fps <= 0:
            raise InputError("--fps must be positive.", "Try --fps 2 to --fps 5.")
        n = max(1, math.ceil(scan.duration * options.fps))
        reason = f"{options.fps:g} frames per second asked for over {scan.duration:.1f} s"
    else:
        moving = moving_seconds(scan, options)
        raw = round(options.frames_per_moving_second * moving)
        n = min(max(raw, options.min_count), options.max_count)
        reason = (
            f"{scan.duration:.1f} s video with the camera moving for {moving:.1f} s: "
            f"{options.frames_per_moving_second:g} frames per moving second = {raw}, "
            f"kept within {options.min_count}-{options.max_count}"
        )
    if n > total:
        reason += f"; the video has only {total} frames, so all of them are candidates"
        n = total
    return n, reason


def select_frames(scan: VideoScan, options: FrameOptions = FrameOptions()) -> Selection:
    """Sharpest frame of each of N equal time windows, skipping near-duplicates of the last kept one."""
    n, reason = choose_count(scan, options)
    windows: dict[int, list[FrameStat]] = {}
    if n >= len(scan.frames):  # every frame asked for: one window each (equal time windows would leave some
        windows = {k: [stat] for k, stat in enumerate(scan.frames)}  # empty and put two frames in others)
    for stat in scan.frames if not windows else ():
        windows.setdefault(min(n - 1, int(stat.time / scan.duration * n)), []).append(stat)
    # "Stood still" is relative to the window: a camera moving at the motion threshold changes the thumbnail by
    # motion_threshold per motion_step_s, so over a short window (every frame asked for: 1/25 s) a moving
    # camera's frames differ by less than duplicate_threshold. Colosseum, 567 frames asked for: 155 kept
    # with the fixed threshold, all but a few with this one.
    window_s = scan.duration / n if n else 0.0
    threshold = min(options.duplicate_threshold, options.motion_threshold * window_s / options.motion_step_s)
    kept: list[FrameStat] = []
    skipped = 0
    for w in sorted(windows):
        # Sharpest first; a frame that repeats the last kept one is passed over for the next sharpest,
        # and the window is skipped only when all its frames repeat it (the camera stood still).
        for stat in sorted(windows[w], key=lambda s: -s.sharpness):
            if not kept or thumb_distance(stat.thumb, kept[-1].thumb) >= threshold:
                kept.append(stat)
                break
        else:
            skipped += 1
    if skipped:
        reason += f"; {skipped} windows skipped because the camera stood still (near-duplicate frames)"
    return Selection([s.index for s in kept], n, reason, skipped)


def read_selected(
    video: Path, indices: list[int], rotation: int, options: FrameOptions
) -> Iterator[np.ndarray]:
    """Pass 2: (H, W, 3) BGR uint8 upright frames for `indices` (sorted), downscaled to max_size."""
    wanted = set(indices)
    last = max(indices) if indices else -1
    container = _open(video)
    try:
        for i, frame in enumerate(_decode(container, options.decode_threads)):
            if i in wanted:
                image = _upright(frame.to_ndarray(format="bgr24"), rotation)
                if options.max_size:
                    image = downscale(image, options.max_size)
                yield image
            if i >= last:
                break
    finally:
        container.close()


def sample_video(
    video: Path, options: FrameOptions = FrameOptions()
) -> tuple[list[ExtractedFrame], list[np.ndarray], Selection]:
    """Frames `extract_frames` would keep, in memory: (records, BGR images (H, W, 3), selection)."""
    scan = scan_video(video, options)
    selection = select_frames(scan, options)
    by_index = {s.index: s for s in scan.frames}
    records = [
        ExtractedFrame(f"{k + 1:04d}.jpg", round(by_index[i].time, 4), i, round(by_index[i].sharpness, 2))
        for k, i in enumerate(selection.indices)
    ]
    images = list(read_selected(video, selection.indices, scan.rotation, options))
    return records, images, selection


def extract_frames(video: Path, out_dir: Path, options: FrameOptions = FrameOptions()) -> FramesResult:
    """Write `out_dir/frames/0001.jpg ...` and `out_dir/frames.json` from `video`.

    Raises `InputError` (and writes nothing) when the file is not a decodable, complete video.
    An existing `out_dir/frames` is replaced.
    """
    t0 = time.perf_counter()
    video, out_dir = Path(video), Path(out_dir)
    scan = scan_video(video, options)
    selection = select_frames(scan, options)
    by_index = {s.index: s for s in scan.frames}
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_dir, ".frames.")
    records: list[ExtractedFrame] = []
    size = (0, 0)
    try:
        params = [cv2.IMWRITE_JPEG_QUALITY, options.jpeg_quality]
        for k, (index, image) in enumerate(
            zip(selection.indices, read_selected(video, selection.indices, scan.rotation, options))
        ):
            name = f"{k + 1:04d}.jpg"
            ok, buf = cv2.imencode(".jpg", image, params)
            if not ok:
                raise InputError(f"could not encode frame {index} as JPEG.", "Report this as a bug.")
            (tmp / name).write_bytes(buf.tobytes())
            stat = by_index[index]
            records.append(ExtractedFrame(name, round(stat.time, 4), index, round(stat.sharpness, 2)))
            size = (image.shape[1], image.shape[0])
        if len(records) != len(selection.indices):
            raise InputError(
                f"{video.name} decoded differently the second time ({len(records)} of "
                f"{len(selection.indices)} frames).",
                "The file may be damaged: copy or export it again.",
            )
        frames_dir = out_dir / "frames"
        if frames_dir.exists():
            shutil.rmtree(frames_dir)
        tmp.rename(frames_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = FramesResult(
        source=str(video),
        frames=records,
        chosen_count=selection.chosen_count,
        reason=selection.reason,
        duplicates_skipped=selection.duplicates_skipped,
        duration=round(scan.duration, 3),
        decoded_frames=len(scan.frames),
        rotation=scan.rotation,
        size=size,
        frames_dir=frames_dir,
        frames_json=out_dir / "frames.json",
    )
    result.seconds = round(time.perf_counter() - t0, 3)
    atomic_write_json(result.frames_json, result.to_dict())
    log.info("kept %d frames of %s (%s)", len(records), video.name, selection.reason)
    return result
