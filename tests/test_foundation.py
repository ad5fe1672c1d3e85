"""Run directory, ingest (folders, zips and their safety checks) and the CLI shell."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from splatforge.capture.ingest import ZipLimits, ingest, safe_extract_zip, sniff_kind
from splatforge.errors import InputError
from splatforge.rundir import RunDir, atomic_write_json, read_json


def _png_bytes(seed=0, size=32) -> bytes:
    import cv2

    img = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})

    class Boom:
        def to_dict(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_json(target, {"bad": Boom()})
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_stage_records_status_and_error(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.stage("check", {"x": 1}) as summary:
        summary["score"] = 80
    with pytest.raises(InputError):
        with run.stage("poses"):
            raise InputError("no images", "add images")
    manifest = read_json(run.manifest)
    assert manifest["stages"]["check"]["status"] == "done"
    assert manifest["stages"]["check"]["summary"] == {"score": 80}
    assert manifest["stages"]["poses"]["status"] == "failed"
    assert manifest["stages"]["poses"]["error"]["advice"] == "add images"
    assert manifest["versions"]["splatforge"]


def test_ingest_folder_links_images_and_skips_non_images(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        (src / f"img_{i}.png").write_bytes(_png_bytes(i))
    (src / "fake.jpg").write_text("not an image")
    (src / "notes.txt").write_text("hello")
    run = RunDir(tmp_path / "run")
    result = ingest(src, run)
    assert sorted(p.name for p in result.frames) == ["img_0.png", "img_1.png", "img_2.png"]
    assert result.skipped == ["fake.jpg"]
    assert (run.frames / "img_0.png").read_bytes() == (src / "img_0.png").read_bytes()


def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_ingest_zip_of_images(tmp_path):
    archive = _zip(tmp_path / "cap.zip", {f"cap/{i:02d}.png": _png_bytes(i) for i in range(4)} | {"cap/x.exe": b"MZ"})
    run = RunDir(tmp_path / "run")
    result = ingest(archive, run)
    assert result.kind == "images" and len(result.frames) == 4
    assert not any(p.suffix == ".exe" for p in run.root.rglob("*"))


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "a/../../evil.png"])
def test_zip_with_paths_outside_is_refused(tmp_path, name):
    archive = _zip(tmp_path / "bad.zip", {"ok.png": _png_bytes(), name: _png_bytes(1)})
    dest = tmp_path / "out"
    with pytest.raises(InputError, match="outside"):
        safe_extract_zip(archive, dest)
    assert not dest.exists() and not (tmp_path / "evil.png").exists()


def test_zip_bomb_is_refused(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", {"a.png": b"\0" * 50_000_000}, zipfile.ZIP_DEFLATED)
    with pytest.raises(InputError, match="bomb"):
        safe_extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_too_many_files_is_refused(tmp_path):
    archive = _zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(20)})
    with pytest.raises(InputError, match="20 files"):
        safe_extract_zip(archive, tmp_path / "out", ZipLimits(max_members=10))


def test_sniff_kind_reads_content_not_names(tmp_path):
    (tmp_path / "photo.mp4").write_bytes(_png_bytes())
    (tmp_path / "movie.jpg").write_bytes(b"\0\0\0\x20ftypisom" + b"\0" * 32)
    assert sniff_kind(tmp_path / "photo.mp4") == "image"
    assert sniff_kind(tmp_path / "movie.jpg") == "video"


def test_ingest_missing_input_says_what_to_do(tmp_path):
    with pytest.raises(InputError) as err:
        ingest(tmp_path / "nope", RunDir(tmp_path / "run"))
    assert "folder of images" in err.value.advice


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "splatforge", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_version_and_help():
    out = _cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("splatforge ")
    out = _cli("--help")
    assert out.returncode == 0 and "Usage" in out.stdout
