"""splatforge.capture.check on the shared real captures and on damaged copies of them."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from splatforge.capture import CheckOptions, check_capture, gate, write_quality
from splatforge.capture.check import _ranges
from splatforge.errors import CaptureRejected, InputError


def _flags(report, flag: str) -> list[int]:
    return [m.index for m in report.images if flag in m.flags]


def test_ranges_are_written_for_people():
    assert _ranges([1, 2, 3, 7, 9, 10]) == "1\u20133, 7, 9\u201310"
    assert _ranges([4]) == "4"


def test_room_no_overlap_will_fail(checked_capture):
    report, _, sheet_dir = checked_capture("room_no_overlap", sheet=True)
    assert report.verdict == "will-fail"
    assert report.score <= 20
    assert "connectivity" in report.summary["fatal"]
    assert report.summary["largest_component"] < 0.67 * 8
    assert len(report.summary["components"]) > 1
    text = " ".join(report.advice)
    assert "groups that share no features" in text and "only 8 images: take 50\u2013150" in text
    # Every image is measured, with the keys the pipeline stores in quality.json.
    doc = report.to_dict()
    assert {"score", "verdict", "advice", "images", "summary"} <= set(doc)
    assert len(doc["images"]) == 8
    for image in doc["images"]:
        for key in (
            "sharpness",
            "bright_fraction",
            "dark_fraction",
            "features",
            "width",
            "height",
            "component",
        ):
            assert key in image
    json.dumps(doc)  # plain JSON
    # The contact sheet: a PNG with one cell per image and a page that marks unmatched images.
    sheet = cv2.imread(str(sheet_dir / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 200
    page = (sheet_dir / "index.html").read_text()
    assert "will-fail" in page and 'class="apart"' in page
    # The gate stops the pipeline with the advice, unless forced.
    with pytest.raises(CaptureRejected, match="predicts that this capture cannot be reconstructed") as info:
        gate(report)
    assert "--force" in info.value.advice
    gate(report, force=True)


def test_fern_is_fine(checked_capture):
    report, _, _ = checked_capture("llff_fern")
    assert report.verdict != "will-fail"
    assert report.summary["largest_component"] == 20
    assert not _flags(report, "blurred") and not _flags(report, "overexposed")
    assert any("only 20 images" in a for a in report.advice)
    gate(report)  # does not stop a capture that is not will-fail


def test_damaged_fern_frames_are_flagged(copy_capture, tmp_path):
    fern = copy_capture("llff_fern") / "images"
    files = sorted(fern.iterdir())
    for k in (4, 5, 6):  # images 5-7
        image = cv2.imread(str(files[k]))
        cv2.imwrite(str(files[k]), cv2.GaussianBlur(image, (0, 0), 4))
    for k in (11, 12):  # images 12-13
        image = cv2.imread(str(files[k])).astype(np.float32)
        cv2.imwrite(str(files[k]), np.clip(image * 2.2, 0, 255).astype(np.uint8))
    report = check_capture(fern.parent, report_dir=tmp_path / "sheet")
    assert _flags(report, "blurred") == [5, 6, 7]
    assert _flags(report, "overexposed") == [12, 13]
    text = "\n".join(report.advice)
    assert "images 5\u20137" in text and "blurred" in text
    assert "images 12\u201313" in text and "over-exposed" in text
    assert report.score < 78  # worse than the undamaged fern
    page = (tmp_path / "sheet" / "index.html").read_text()
    assert page.count('class="flag"') == 5


def test_dark_frames_are_flagged(copy_capture):
    fern = copy_capture("llff_fern") / "images"
    files = sorted(fern.iterdir())
    image = cv2.imread(str(files[2])).astype(np.float32)
    cv2.imwrite(str(files[2]), (image * 0.2).astype(np.uint8))
    report = check_capture(fern.parent)
    assert _flags(report, "underexposed") == [3]


def test_duplicates_and_exif(tmp_path, copy_capture):
    fern = copy_capture("llff_fern") / "images"
    files = sorted(fern.iterdir())
    for f in files[8:]:
        f.unlink()
    # A copy of image 3, saved as JPEG with camera EXIF and orientation 6 (stored sideways).
    pixels = Image.open(files[2]).convert("RGB")
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Acme", "Cam 1", 6
    pixels.transpose(Image.Transpose.ROTATE_90).save(fern / "003b.jpg", quality=95, exif=exif)
    report = check_capture(fern.parent)
    by_name = {m.name: m for m in report.images}
    extra = by_name["003b.jpg"]
    assert (extra.width, extra.height) == (706, 529), "EXIF orientation applied"
    assert (extra.make, extra.model, extra.orientation) == ("Acme", "Cam 1", 6)
    assert extra.duplicate_of == "002.png" and "duplicate" in extra.flags
    assert any("near-duplicate" in a for a in report.advice)


def test_unordered_small_set_is_matched_all_pairs(checked_capture):
    report, _, _ = checked_capture("sacre_coeur")
    assert report.summary["ordered"] is False
    assert report.summary["pairs_matched"] == 45
    assert report.summary["largest_component"] >= 8
    assert report.verdict != "will-fail"
    assert any("different image sizes" in a for a in report.advice)


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        check_capture(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        check_capture(tmp_path / "empty")
    text = tmp_path / "clip.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError):
        check_capture(text)


def test_too_few_images_will_fail(copy_capture):
    fern = copy_capture("llff_fern") / "images"
    for f in sorted(fern.iterdir())[2:]:
        f.unlink()
    report = check_capture(fern.parent)
    assert report.verdict == "will-fail" and "count" in report.summary["fatal"]


def test_dtu_is_not_will_fail(checked_capture):
    report, _, _ = checked_capture("dtu_scan24")
    assert report.verdict != "will-fail"
    assert report.summary["largest_component"] == 49
    assert not _flags(report, "overexposed"), "a white background alone is not over-exposure"


def test_fox_not_will_fail_and_fast(checked_capture, tmp_path):
    assert CheckOptions().workers == 2  # the budget below is for two worker threads
    report, seconds, _ = checked_capture("fox")  # timed where it was made (here, or in test_check_connectivity)
    assert report.verdict != "will-fail"
    assert report.summary["count"] == 50
    # Images 31 and 32 (0054.jpg, 0072.jpg) are 18 source frames apart and do not match; the
    # capture still holds together through other pairs, which retrieval finds.
    assert report.summary["largest_component"] == 50
    assert seconds < 20.0, f"fox check took {seconds:.1f} s (budget 20 s on 2 cores)"
    write_quality(report, tmp_path / "quality.json")
    doc = json.loads((tmp_path / "quality.json").read_text())
    assert doc["verdict"] == report.verdict and len(doc["images"]) == 50


def test_colosseum_video_is_not_will_fail(data_dir):
    video = data_dir / "videos" / "colosseum.mp4"  # read only
    if not video.exists():
        pytest.skip(f"{video} missing")
    report = check_capture(video)
    assert report.verdict != "will-fail"
    assert report.summary["kind"] == "video" and report.summary["ordered"] is True
    assert 60 <= report.summary["count"] <= 70
    assert all(m.time is not None for m in report.images)


def test_cli_check_json_and_report(copy_capture, tmp_path):
    from splatforge.cli import app

    room = copy_capture("room_no_overlap")
    result = CliRunner().invoke(app, ["check", str(room), "--json", "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "will-fail" and doc["advice"]
    assert (tmp_path / "r" / "contact_sheet.png").exists()

    bad = CliRunner().invoke(app, ["check", str(tmp_path / "missing"), "--json"])
    assert bad.exit_code != 0
    assert "error" in json.loads(bad.stdout)


def test_cli_frames(data_dir, tmp_path):
    from splatforge.cli import app

    video = data_dir / "videos" / "colosseum.mp4"
    if not video.exists():
        pytest.skip(f"{video} missing")
    result = CliRunner().invoke(
        app, ["frames", str(video), "-o", str(tmp_path / "run"), "--count", "8", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["frames"]) == 8 == len(list((tmp_path / "run" / "frames").glob("*.jpg")))
    both = CliRunner().invoke(
        app, ["frames", str(video), "-o", str(tmp_path / "x"), "--count", "8", "--fps", "2"]
    )
    assert both.exit_code != 0
    assert not (tmp_path / "x" / "frames").exists()


def test_a_degenerate_pair_counts_as_unmatched(monkeypatch):
    # OpenCV's USAC asserts (cv2.error) on some degenerate point sets; one pair must not end the check.
    import cv2

    from splatforge.capture import matching

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (100, 2)).astype(np.float32)
    desc = rng.integers(0, 256, (100, 32), dtype=np.uint8)
    a = matching.Features(xy, desc, (500, 500))

    def fails(*args, **kwargs):
        raise cv2.error("(-215:Assertion failed) !model.empty() in function 'setModelParameters'")

    monkeypatch.setattr(matching.cv2, "findFundamentalMat", fails)
    m = matching.match_pair(a, a, 0, 1, matching.MatchOptions())
    assert m.matches == 100 and m.inliers == 0 and not m.connected
