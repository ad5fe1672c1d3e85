"""splatforge.capture.frames: sharpest frame per time window, rotation, VFR, bad files."""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from splatforge.capture.frames import FrameOptions, extract_frames
from splatforge.errors import InputError


def _scene(t: float, w: int = 320, h: int = 240) -> np.ndarray:
    """(h, w, 3) BGR textured picture panned horizontally by t seconds (60 px/s)."""
    rng = np.random.default_rng(0)
    texture = cv2.resize(
        rng.integers(0, 255, (60, 200), dtype=np.uint8), (2000, 600), interpolation=cv2.INTER_LINEAR
    )
    x = int(60 * t)
    crop = texture[100 : 100 + h, x : x + w]
    return cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)


def _write_video(
    path: Path, times: list[float], picture, rotation: int | None = None, w: int = 320, h: int = 240
) -> Path:
    """Encode frames at the given time stamps (seconds; irregular = variable frame rate)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)  # exact, irregular time stamps
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for t in times:
            frame = av.VideoFrame.from_ndarray(picture(t), format="bgr24")
            frame.pts = int(round(t * 1000))
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_sharpest_frame_per_window_and_frames_json(tmp_path):
    times = [k / 30 for k in range(180)]  # 6 s at 30 fps

    def picture(t):
        image = _scene(t)
        k = round(t * 30)
        return image if k % 5 == 2 else cv2.GaussianBlur(image, (0, 0), 2.5)  # one sharp frame in 5

    video = _write_video(tmp_path / "pan.mp4", times, picture)
    result = extract_frames(video, tmp_path / "run", FrameOptions(count=12))
    doc = json.loads((tmp_path / "run" / "frames.json").read_text())
    assert {"source", "frames", "chosen_count", "reason"} <= set(doc)
    assert doc["chosen_count"] == 12 and len(doc["frames"]) == 12 == len(result.frames)
    names = sorted(p.name for p in (tmp_path / "run" / "frames").iterdir())
    assert names == [f"{k:04d}.jpg" for k in range(1, 13)]
    for k, f in enumerate(doc["frames"]):
        assert f["file"] == names[k]
        assert f["index"] % 5 == 2, "the sharp frame of each window should win"
        assert k * 0.5 - 1e-6 <= f["time"] < (k + 1) * 0.5
    sharp = [f["sharpness"] for f in doc["frames"]]
    assert min(sharp) > 0
    first = cv2.imread(str(tmp_path / "run" / "frames" / "0001.jpg"))
    assert first.shape == (240, 320, 3), "never upscaled, never cropped"


def test_standing_still_is_skipped_and_automatic_count_explains_itself(tmp_path):
    # 4 s of panning, 6 s standing still, 2 s of panning.
    def pos(t):
        return t if t < 4 else 4 if t < 10 else 4 + (t - 10)

    times = [k / 30 for k in range(360)]
    video = _write_video(tmp_path / "still.mp4", times, lambda t: _scene(pos(t)))
    result = extract_frames(video, tmp_path / "run", FrameOptions(count=24))
    kept = [f.time for f in result.frames]
    still = [t for t in kept if 4.5 < t < 9.5]
    assert len(still) <= 1, f"windows while standing still should be skipped, kept {still}"
    assert result.duplicates_skipped >= 8
    assert "stood still" in result.reason

    auto = extract_frames(video, tmp_path / "auto", FrameOptions())
    assert auto.chosen_count == 60  # only ~6 s of motion -> 18 frames, raised to the minimum of 60 ...
    assert "moving for" in auto.reason and "60-150" in auto.reason
    assert len(auto.frames) < 60  # ... of which the still part is skipped


def test_variable_frame_rate_uses_time_not_frame_numbers(tmp_path):
    # 150 frames in the first second, then 1 frame every 0.5 s for 9 s: frame-number windows would
    # take almost everything from the first second.
    times = [k / 150 for k in range(150)] + [1 + 0.5 * k for k in range(19)]
    video = _write_video(tmp_path / "vfr.mp4", times, _scene)
    result = extract_frames(video, tmp_path / "run", FrameOptions(count=10))
    kept = [f.time for f in result.frames]
    assert sum(t < 1.0 for t in kept) == 1
    assert kept[-1] > 8.5
    assert kept == sorted(kept)


@pytest.mark.parametrize("rotation", [90, -90])
def test_rotation_metadata_is_honoured(tmp_path, rotation):
    def picture(t):
        image = np.zeros((240, 320, 3), np.uint8)
        image[:60, :80] = 255  # white block in the top-left corner of the stored picture
        image[100:140, 100:220] = 128
        return image

    video = _write_video(tmp_path / "rot.mp4", [k / 30 for k in range(30)], picture, rotation=rotation)
    result = extract_frames(video, tmp_path / "run", FrameOptions(count=1))
    assert result.rotation == rotation
    image = cv2.imread(str(tmp_path / "run" / "frames" / "0001.jpg"), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (320, 240)
    # Counter-clockwise by 90: the top-left corner goes to the bottom-left; clockwise: to the top-right.
    corner = image[-70:, :50] if rotation == 90 else image[:50, -70:]
    assert corner.mean() > 200


def test_max_size_downscales_only(tmp_path):
    video = _write_video(tmp_path / "pan.mp4", [k / 30 for k in range(30)], _scene)
    small = extract_frames(video, tmp_path / "a", FrameOptions(count=2, max_size=160))
    big = extract_frames(video, tmp_path / "b", FrameOptions(count=2, max_size=4000))
    assert small.size == (160, 120)
    assert big.size == (320, 240)


def _bad_file_writes_nothing(path: Path, out: Path, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        extract_frames(path, out)
    assert info.value.advice
    assert not out.exists() or not any(out.iterdir())


def test_bad_files_give_clear_errors_and_write_nothing(tmp_path, data_dir):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    _bad_file_writes_nothing(text, tmp_path / "out1", "could not be opened|no decodable")
    _bad_file_writes_nothing(tmp_path / "missing.mp4", tmp_path / "out2", "does not exist")

    audio = tmp_path / "sound.m4a"
    with av.open(str(audio), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    _bad_file_writes_nothing(audio, tmp_path / "out3", "no video stream")

    source = data_dir / "videos" / "colosseum.mp4"
    if not source.exists():
        pytest.skip("colosseum.mp4 missing")
    data = source.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    _bad_file_writes_nothing(truncated, tmp_path / "out4", "truncated|could not be|no decodable")


@pytest.mark.alone  # its budget is for the whole machine (conftest.py: other xdist workers wait)
def test_colosseum_60_frames_fast(data_dir, tmp_path):
    video = data_dir / "videos" / "colosseum.mp4"  # only read, never written
    if not video.exists():
        pytest.skip(f"{video} missing")
    t0 = time.perf_counter()
    result = extract_frames(video, tmp_path / "run", FrameOptions(count=60))
    seconds = time.perf_counter() - t0
    assert len(result.frames) == 60
    assert len(list((tmp_path / "run" / "frames").glob("*.jpg"))) == 60
    assert result.size == (640, 360)
    assert seconds < 10.0, f"60 frames took {seconds:.1f} s (budget 10 s on 2 cores)"
    times = [f.time for f in result.frames]
    assert times == sorted(times) and times[-1] > 21.0


def test_every_frame_of_a_slow_pan_can_be_asked_for(tmp_path):
    # 3 s at 30 fps panning 4 px a frame (thumbnails change little from frame to frame), then 1 s standing
    # still: asking for every frame keeps the moving ones; the still second still collapses.
    def pos(t):
        return 2 * min(t, 3.0)

    times = [k / 30 for k in range(120)]
    video = _write_video(tmp_path / "slow.mp4", times, lambda t: _scene(pos(t)))
    result = extract_frames(video, tmp_path / "run", FrameOptions(count=10_000))
    moving = [f for f in result.frames if f.time < 3.0]
    assert len(moving) >= 80, f"kept {len(moving)} of 90 moving frames"
    assert len([f for f in result.frames if f.time > 3.2]) <= 2
