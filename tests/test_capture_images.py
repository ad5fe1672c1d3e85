"""The one image module and ingest: every pixel layout normalised to 8-bit RGB, EXIF orientation applied
once (frames written upright, tag gone), HEIC accepted or refused with advice, the ingest record, and
file modes that follow the umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from splatforge.capture import imageio
from splatforge.capture.imageio import apply_orientation, read_image, read_info
from splatforge.capture.ingest import ingest, sniff_kind
from splatforge.errors import InputError
from splatforge.rundir import RunDir, atomic_path, atomic_write_bytes, atomic_write_json, make_temp_dir

# How to store an upright image so that a viewer applying the tag shows it upright again.
STORE = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, -1),
}


def photo(width: int = 96, height: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth, asymmetric RGB test picture (JPEG-friendly, every orientation distinguishable)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(seed)
    img = np.stack([255 * x / width, 255 * y / height, 128 + 60 * np.sin(x / 7.0 + y / 11.0)], axis=2)
    img[: height // 4, : width // 3] = rng.integers(0, 255, 3)  # a block in the top-left corner
    return np.clip(img, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def save_tagged(path: Path, upright: np.ndarray, orientation: int, **extra_exif) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestMake"
    for tag, value in extra_exif.items():
        exif[int(tag)] = value
    kw = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(np.ascontiguousarray(STORE[orientation](upright))).save(path, exif=exif.tobytes(), **kw)
    return path


# ---------------------------------------------------------------------------------------------------
# Formats and pixel layouts


def test_sniff_knows_heic_and_avif_photos_from_mp4_videos():
    head = lambda brand, compat=b"": (16 + len(compat)).to_bytes(4, "big") + b"ftyp" + brand + b"\0\0\0\0" + compat  # noqa: E731
    assert imageio.sniff_image_format(head(b"heic", b"mif1heic")) == "heif"
    assert imageio.sniff_image_format(head(b"mif1", b"mif1heic")) == "heif"
    assert imageio.sniff_image_format(head(b"avif", b"avifmif1")) == "avif"
    assert imageio.sniff_image_format(head(b"mif1", b"mif1avif")) == "avif"
    assert imageio.sniff_image_format(head(b"isom", b"isomavc1")) is None
    assert imageio.sniff_image_format(head(b"qt  ")) is None


def _expected(rgb: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    if alpha is None:
        return rgb
    return ((rgb.astype(np.uint16) * alpha[:, :, None] + 127) // 255).astype(np.uint8)


LAYOUTS = ["grey.jpg", "grey.png", "cmyk.jpg", "rgb16.png", "grey16.png", "rgba.png", "la.png", "palette.png",
           "palette_transparent.png", "rgb16.tif", "rgb8.tif", "float.tif", "rgb.webp", "rgb.bmp", "rgba16.png"]


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_pixel_layout_comes_out_as_8bit_rgb(tmp_path, name):
    rgb = photo()
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
    path = tmp_path / name
    tolerance = 0.0  # max abs difference allowed (lossy codecs and colour conversions)
    if name == "grey.jpg":
        Image.fromarray(grey).save(path, quality=95)
        expected, tolerance = np.repeat(grey[:, :, None], 3, 2), 6
    elif name == "grey.png":
        Image.fromarray(grey).save(path)
        expected = np.repeat(grey[:, :, None], 3, 2)
    elif name == "cmyk.jpg":
        Image.fromarray(rgb).convert("CMYK").save(path, quality=98)
        expected, tolerance = rgb, 20  # naive CMYK round trip + JPEG
    elif name in ("rgb16.png", "rgb16.tif"):
        cv2.imwrite(str(path), (rgb.astype(np.uint16) * 257)[:, :, ::-1])
        expected = rgb
    elif name == "rgba16.png":
        cv2.imwrite(str(path), np.dstack([(rgb.astype(np.uint16) * 257)[:, :, ::-1], alpha.astype(np.uint16) * 257]))
        expected, tolerance = _expected(rgb, alpha), 1
    elif name == "grey16.png":
        deep = grey.astype(np.uint16) * 256 + 100  # +100: rounded, not truncated, to 8 bits
        cv2.imwrite(str(path), deep)
        expected = np.repeat((deep * 255.0 / 65535).round().astype(np.uint8)[:, :, None], 3, 2)
    elif name == "rgba.png":
        Image.fromarray(np.dstack([rgb, alpha])).save(path)
        expected = _expected(rgb, alpha)
    elif name == "la.png":
        Image.fromarray(np.dstack([grey, alpha])).save(path)
        expected = np.repeat(_expected(grey[:, :, None], alpha), 3, 2)
    elif name in ("palette.png", "palette_transparent.png"):
        pal = Image.fromarray(rgb).quantize(64)
        index = np.asarray(pal)
        colours = np.array(pal.getpalette(), dtype=np.uint8).reshape(-1, 3)
        expected = colours[index]
        if name == "palette_transparent.png":
            pal.save(path, transparency=int(index[0, 0]))
            expected = np.where((index == index[0, 0])[:, :, None], 0, expected).astype(np.uint8)
        else:
            pal.save(path)
    elif name == "rgb8.tif":
        Image.fromarray(rgb).save(path)
        expected = rgb
    elif name == "float.tif":
        cv2.imwrite(str(path), (rgb.astype(np.float32) / 255.0)[:, :, ::-1])
        expected, tolerance = rgb, 1
    elif name == "rgb.webp":
        Image.fromarray(rgb).save(path, lossless=True)
        expected = rgb
    elif name == "rgb.bmp":
        Image.fromarray(rgb).save(path)
        expected = rgb
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (*rgb.shape[:2], 3), name
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= tolerance, name
    info = read_info(path)
    assert (info.width, info.height) == (rgb.shape[1], rgb.shape[0])
    if name in ("rgb8.tif", "rgb.webp", "rgb.bmp", "rgb16.png", "grey.png", "rgba.png", "cmyk.jpg"):
        assert imageio.rewrite_reasons(info), f"{name} must be re-written, not linked"


def test_readers_after_ingest_take_stored_pixels_and_ignore_the_tag(tmp_path):
    up = photo()
    tagged = save_tagged(tmp_path / "t.jpg", up, 6)
    assert read_image(tagged).shape[:2] == (96, 64)  # as stored, like COLMAP
    assert imageio.image_size(tagged) == (64, 96)
    assert read_info(tagged).orientation == 6 and (read_info(tagged).width, read_info(tagged).height) == (96, 64)
    assert psnr(imageio.read_upright(tagged), up) > 35


# ---------------------------------------------------------------------------------------------------
# Ingest: orientation, layouts, HEIC, the record


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_ingest_writes_every_orientation_upright_and_drops_the_tag(tmp_path, fmt):
    src = tmp_path / "photos"
    src.mkdir()
    up = photo()
    for o in range(1, 9):
        save_tagged(src / f"o{o}.{fmt}", up, o)
    run = RunDir(tmp_path / "run")
    result = ingest(src, run)
    assert sorted(p.name for p in result.frames) == [f"o{o}.{fmt}" for o in range(1, 9)]
    record = json.loads((run.root / "ingest.json").read_text())
    by_name = {r["name"]: r for r in record["frames"]}
    for o in range(1, 9):
        frame = run.frames / f"o{o}.{fmt}"
        pixels = read_image(frame)
        assert pixels.shape == (64, 96, 3), o
        if fmt == "png":
            assert np.array_equal(pixels, up), o  # lossless in, lossless out: the very same pixels
        else:
            assert psnr(pixels, read_image(src / "o1.jpg")) > 33, o  # upright (a wrong turn scores ~10 dB)
        with Image.open(frame) as im:
            assert im.getexif().get(0x0112, 1) == 1 and im.getexif().get(0x010F) == "TestMake"
        entry = by_name[f"o{o}.{fmt}"]
        assert entry["size"] == [96, 64]
        if o == 1:
            assert entry["action"] == "linked" and entry["changes"] == []
            assert os.path.samefile(frame, src / f"o1.{fmt}")
        else:
            assert entry["action"] == "written" and f"EXIF orientation {o} applied" in entry["changes"]
            assert entry["encoding"] == ("JPEG q95 4:4:4" if fmt == "jpg" else "PNG")
    assert record["sizes"] == {"96x64": 8}


def test_ingest_normalises_layouts_and_keeps_mixed_sizes(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    rgb = photo()
    Image.fromarray(rgb).save(src / "a_plain.jpg", quality=95)
    Image.fromarray(rgb).convert("CMYK").save(src / "b_cmyk.jpg", quality=95)
    Image.fromarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)).save(src / "c_grey.jpg")
    cv2.imwrite(str(src / "d_16bit.png"), (rgb.astype(np.uint16) * 257)[:, :, ::-1])
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(src / "e_alpha.png")
    Image.fromarray(rgb).save(src / "f_scan.tif")
    Image.fromarray(photo(120, 90, seed=1)).save(src / "g_bigger.jpg", quality=95)
    run = RunDir(tmp_path / "run")
    result = ingest(src, run)
    names = sorted(p.name for p in result.frames)
    assert names == ["a_plain.jpg", "b_cmyk.jpg", "c_grey.jpg", "d_16bit.png", "e_alpha.png", "f_scan.png",
                     "g_bigger.jpg"]
    for frame in result.frames:
        with Image.open(frame) as im:
            assert im.mode == "RGB" and im.format in ("JPEG", "PNG"), frame.name
        if frame.suffix == ".png":
            assert imageio._png_bit_depth(frame) == 8
    record = json.loads((run.root / "ingest.json").read_text())
    by_name = {r["name"]: r for r in record["frames"]}
    assert by_name["a_plain.jpg"]["action"] == "linked"
    assert "CMYK to RGB" in by_name["b_cmyk.jpg"]["changes"]
    assert "greyscale to RGB" in by_name["c_grey.jpg"]["changes"]
    assert "16-bit scaled to 8-bit" in by_name["d_16bit.png"]["changes"]
    assert "alpha composited over black" in by_name["e_alpha.png"]["changes"]
    assert "TIFF decoded" in by_name["f_scan.png"]["changes"] and by_name["f_scan.png"]["source"].endswith("f_scan.tif")
    assert record["sizes"] == {"96x64": 6, "120x90": 1}
    assert result.to_dict()["rewritten"] == 5
    assert np.array_equal(read_image(run.frames / "d_16bit.png"), rgb)
    assert np.abs(read_image(run.frames / "e_alpha.png").astype(int) - (rgb.astype(int) * 128 + 127) // 255).max() == 0


def test_reingest_keeps_written_frames_and_rewrites_a_changed_source(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    save_tagged(src / "a.jpg", photo(), 6)
    save_tagged(src / "b.jpg", photo(seed=2), 3)
    run = RunDir(tmp_path / "run")
    ingest(src, run)
    before = (run.frames / "a.jpg").stat().st_mtime_ns
    save_tagged(src / "b.jpg", photo(seed=3), 8)
    ingest(src, run)
    actions = {r["name"]: r["action"] for r in json.loads((run.root / "ingest.json").read_text())["frames"]}
    assert actions == {"a.jpg": "kept", "b.jpg": "written"}
    assert (run.frames / "a.jpg").stat().st_mtime_ns == before


def test_frames_placed_by_hand_are_normalised_in_place(tmp_path):
    run = RunDir(tmp_path / "run")
    run.frames.mkdir(parents=True)
    save_tagged(run.frames / "x.jpg", photo(), 8)
    Image.fromarray(photo(seed=4)).save(run.frames / "y.jpg", quality=95)
    result = ingest(run.frames, run)
    assert sorted(p.name for p in result.frames) == ["x.jpg", "y.jpg"]
    assert read_image(run.frames / "x.jpg").shape == (64, 96, 3) and read_info(run.frames / "x.jpg").orientation == 1
    actions = {r["name"]: r["action"] for r in json.loads((run.root / "ingest.json").read_text())["frames"]}
    assert actions == {"x.jpg": "written", "y.jpg": "kept"}


def test_heic_photos_are_decoded_upright_into_jpeg_frames(tmp_path):
    pytest.importorskip("pillow_heif")
    assert imageio.heif_decoder_available()
    src = tmp_path / "iphone"
    src.mkdir()
    up = photo(128, 96)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Apple"
    exif.get_ifd(0x8769)[0xA405] = 26  # 35 mm equivalent focal length
    # What the phone stores: the sensor's landscape pixels and "turn 90 degrees clockwise to view".
    Image.fromarray(np.ascontiguousarray(STORE[6](up))).save(src / "IMG_0001.HEIC", exif=exif.tobytes(), quality=95)
    Image.fromarray(up).save(src / "IMG_0002.HEIC", quality=95)
    assert sniff_kind(src / "IMG_0001.HEIC") == "image"
    run = RunDir(tmp_path / "run")
    result = ingest(src, run)
    assert sorted(p.name for p in result.frames) == ["IMG_0001.jpg", "IMG_0002.jpg"]
    for frame in result.frames:
        assert read_image(frame).shape == (96, 128, 3)
        assert psnr(read_image(frame), up) > 30
    info = read_info(run.frames / "IMG_0001.jpg")
    assert info.orientation == 1 and info.make == "Apple" and info.focal_35mm == 26
    record = json.loads((run.root / "ingest.json").read_text())
    assert all("HEIF decoded" in r["changes"] for r in record["frames"])


def test_heic_without_a_decoder_is_refused_with_how_to_convert(tmp_path, monkeypatch):
    pytest.importorskip("pillow_heif")
    imageio.heif_decoder_available()  # registered for the encoder below
    src = tmp_path / "iphone"
    src.mkdir()
    Image.fromarray(photo()).save(src / "IMG_0001.HEIC")
    Image.fromarray(photo()).save(src / "IMG_0002.jpg")
    monkeypatch.setattr(imageio, "heif_decoder_available", lambda: False)
    with pytest.raises(InputError) as err:
        ingest(src, RunDir(tmp_path / "run"))
    assert "HEIC" in err.value.message and "IMG_0001.HEIC" in err.value.message
    assert "pip install pillow-heif" in err.value.advice and "sips" in err.value.advice
    assert not (tmp_path / "run" / "frames").exists()  # refused before anything was written


def test_capture_check_of_heic_without_a_decoder_says_how_to_convert(tmp_path, monkeypatch):
    pytest.importorskip("pillow_heif")
    from splatforge.capture import check_capture

    imageio.heif_decoder_available()
    for i in range(3):
        Image.fromarray(photo(seed=i)).save(tmp_path / f"IMG_{i}.HEIC")
    monkeypatch.setattr(imageio, "heif_decoder_available", lambda: False)
    with pytest.raises(InputError) as err:
        check_capture(tmp_path)
    assert "HEIC" in err.value.message and "heif-convert" in err.value.advice


def test_upload_check_accepts_heic_and_names_it_so(tmp_path):
    pytest.importorskip("pillow_heif")
    from splatforge.service.settings import UploadLimits
    from splatforge.service.uploads import _image_suffix, check_image

    imageio.heif_decoder_available()
    path = tmp_path / "upload.bin"
    Image.fromarray(photo()).save(path, format="HEIF")
    assert _image_suffix(path) == ".heic"
    assert check_image(path, "IMG_1.HEIC", UploadLimits()) == (96, 64)


# ---------------------------------------------------------------------------------------------------
# File modes


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_the_run_writes_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        run = RunDir(tmp_path / "run")
        atomic_write_json(run.root / "report.json", {"a": 1})
        atomic_write_bytes(run.root / "export" / "scene.ply", b"ply\n")
        with atomic_path(run.root / "renders" / "r.png") as tmp:
            cv2.imwrite(str(tmp), np.zeros((4, 4, 3), np.uint8))
        imageio.write_image(run.images_undistorted / "u.jpg", photo())
        folder = make_temp_dir(run.root, ".frames.")
        src = tmp_path / "photos"
        src.mkdir()
        save_tagged(src / "turned.jpg", photo(), 6)
        ingest(src, run)
        files = [run.root / "report.json", run.root / "export" / "scene.ply", run.root / "renders" / "r.png",
                 run.images_undistorted / "u.jpg", run.frames / "turned.jpg", run.root / "ingest.json"]
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
        for path in (folder, run.frames, run.images_undistorted):
            assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask, path
        assert not [p for p in run.root.rglob(".*.tmp")]
    finally:
        os.umask(old)


def test_orientation_semantics_match_pillows_exif_transpose(tmp_path):
    from PIL import ImageOps

    up = photo(10, 6)
    for o, store in STORE.items():
        stored = np.ascontiguousarray(store(up))
        with Image.open(save_tagged(tmp_path / f"{o}.png", up, o)) as im:
            assert np.array_equal(np.asarray(ImageOps.exif_transpose(im)), up), o  # the test's STORE is right
        assert np.array_equal(apply_orientation(stored, o), up), o
