"""The run report: numbers carried from the run folder's files, a self-contained HTML, graceful gaps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from splatforge.report import build_report, summary_lines
from splatforge.report.build import ply_vertex_count, read_metrics
from splatforge.report.plots import _plane_basis
from splatforge.rundir import RunDir, atomic_write_json
from splatforge.scene import Camera, Frame, Scene, look_at_w2c, write_transforms

STAGE_SECONDS = {"frames": 4.5, "check": 2.25, "poses": 71.0, "train": 612.5, "export": 3.75}
N_GAUSSIANS = 57
FINAL_EVAL = {"psnr": 26.734, "ssim": 0.8812, "lpips": 0.1423}


def _write_image(path: Path, width: int, height: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


RENDER_NOISE = (4.0, 16.0, 8.0)  # noise of each held-out render against its photograph: 0001 is the worst


def _write_render_pair(path: Path, sigma: float, seed: int) -> None:
    """render | photograph, the render being the photograph plus Gaussian noise of `sigma` grey levels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photo = rng.integers(40, 215, (120, 160, 3)).astype(np.float64)
    rendered = np.clip(np.round(photo + rng.normal(0, sigma, photo.shape)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([rendered, photo], axis=1).astype(np.uint8)).save(path)


def _orbit_scene(run: RunDir, n: int = 8) -> Scene:
    cam = Camera("PINHOLE", 48, 32, 40.0, 40.0, 24.0, 16.0)
    frames = []
    for i in range(n):
        angle = 2 * np.pi * i / n
        eye = np.array([3 * np.cos(angle), 3 * np.sin(angle), 1.0])
        image = run.images_undistorted / f"{i:04d}.jpg"
        _write_image(image, cam.width, cam.height, i)
        frames.append(Frame(image.name, image, cam, look_at_w2c(eye, np.zeros(3), up=(0.0, 0.0, 1.0))))
    points = np.random.default_rng(1).normal(scale=0.5, size=(200, 3))
    return Scene(frames, points)


def _write_gaussian_ply(path: Path, n: int) -> None:
    from plyfile import PlyData, PlyElement

    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    data = np.zeros(n, dtype=[(k, "f4") for k in names])
    data["x"] = np.linspace(-1, 1, n)
    data["rot_0"] = 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))


def _stage(name: str, status: str = "done", error: dict | None = None) -> dict:
    return {"status": status, "start": f"2026-11-22T10:0{len(name) % 10}:00+00:00",
            "end": "2026-11-22T10:30:00+00:00", "seconds": STAGE_SECONDS[name], "error": error,
            "config": {}, "summary": {}}


def _write_metrics(path: Path, truncated_tail: bool = False) -> None:
    lines = []
    for step in range(100, 3001, 100):
        lines.append({"step": step, "elapsed_s": step * 0.2, "loss": 0.3 * np.exp(-step / 800) + 0.02,
                      "psnr": 15 + 12 * (1 - np.exp(-step / 900)), "num_gaussians": 10_000 + step * 40,
                      "gpu_mem_gb": 1.5 + step / 3000, "steps_per_s": 5.0})
        if step % 1000 == 0:
            ev = FINAL_EVAL if step == 3000 else {"psnr": 20.0 + step / 1000, "ssim": 0.7, "lpips": 0.3}
            lines.append({"step": step, "elapsed_s": step * 0.2 + 1, "eval": ev})
    text = "".join(json.dumps(row) + "\n" for row in lines)
    if truncated_tail:
        text += '{"step": 3100, "elapsed_s": 62'  # a run killed while writing a line
    path.write_text(text)


def make_run(root: Path, *, failed_stage: str | None = None) -> RunDir:
    """A realistic run folder with every contract file. With `failed_stage`, that stage failed and the
    files of it and of every later stage are absent."""
    run = RunDir(root).create()
    order = ["frames", "check", "poses", "train", "export"]
    upto = order.index(failed_stage) if failed_stage else len(order)
    stages = {name: _stage(name) for name in order[:upto]}
    if failed_stage:
        stages[failed_stage] = _stage(failed_stage, "failed", {
            "type": "PoseError", "message": "only 3 of 40 images could be registered",
            "advice": "take photos with more overlap (each spot in at least 3 photos)"})
    atomic_write_json(run.manifest, {
        "created": "2026-11-22T10:00:00+00:00",
        "versions": {"splatforge": "0.1.0", "python": "3.11.2", "torch": "2.13.0", "gsplat": "1.5.3",
                     "cuda": "12.8", "gpu": "NVIDIA H100 80GB HBM3"},
        "stages": stages})
    if upto > 1:
        atomic_write_json(run.quality_json, {
            "score": 78, "verdict": "good", "advice": ["a few frames are blurry; they were dropped"],
            "images": [{"index": i + 1, "name": f"{i:04d}.jpg", "width": 48, "height": 32, "sharpness": 100.0 + i,
                        "features": 900 + 10 * i, "flags": ["blurred"] if i == 5 else []} for i in range(8)],
            "summary": {"count": 8, "median_sharpness": 104.0, "connected_share": 0.62,
                        "components": [[f"{i:04d}.jpg" for i in range(8)]],
                        "flag_counts": {"blurred": 1, "overexposed": 0},
                        "options": {"risky_below": 65.0}}})
    if upto > 2:
        scene = _orbit_scene(run)
        write_transforms(scene, run.transforms_json, ply_file="sparse_points.ply")
        atomic_write_json(run.poses_json, {
            "engine": "colmap", "registered": 8, "total": 9, "unregistered": ["0008.jpg"],
            "mean_reprojection_error": 0.734, "points": 200,
            "seconds": {"features": 10.5, "matching": 20.0, "mapping": 40.5}, "model": "sparse/0",
            "matching": "exhaustive (9 images)", "mapper": "incremental",
            "unregistered_reasons": {"0008.jpg": "no overlap with the others"}, "notes": []})
    if upto > 3:
        _write_metrics(run.metrics_jsonl)
        atomic_write_json(run.train_json, {
            "steps": 3000, "seconds": 605.0, "eval": FINAL_EVAL, "num_gaussians": 130_000, "backend": "gsplat",
            "device": "cuda", "preset": "fast", "steps_per_s": 4.96, "peak_gpu_mem_gb": 2.5,
            "initial_eval": {"psnr": 11.2, "ssim": 0.3, "lpips": None}, "lpips_note": None,
            "eval_on": "held-out", "held_out": 3, "train_views": 5, "resolution": [48, 32]})
        for i, sigma in enumerate(RENDER_NOISE):
            _write_render_pair(run.renders / f"{i:04d}.png", sigma, 10 + i)
    if upto > 4:
        _write_gaussian_ply(run.ply, N_GAUSSIANS)
    return run


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("report") / "my-run")
    return run, build_report(run)


def test_report_json_carries_the_numbers(full):
    run, report = full
    assert json.loads(run.report_json.read_text()) == json.loads(json.dumps(report))

    head = report["headline"]
    assert head["psnr"] == pytest.approx(FINAL_EVAL["psnr"])
    assert head["ssim"] == pytest.approx(FINAL_EVAL["ssim"])
    assert head["lpips"] == pytest.approx(FINAL_EVAL["lpips"])
    assert (head["registered"], head["total_images"]) == (8, 9)
    assert head["num_gaussians"] == N_GAUSSIANS  # from the exported PLY's header
    assert head["verdict"] == "good"
    assert head["capture_verdict"] == "good" and head["capture_score"] == 78

    rows = {r["name"]: r for r in report["stages"]["stages"]}
    assert list(rows) == ["frames", "check", "poses", "train", "export"]
    for name, secs in STAGE_SECONDS.items():
        assert rows[name]["seconds"] == pytest.approx(secs) and rows[name]["status"] == "done"
    assert report["stages"]["total_seconds"] == pytest.approx(sum(STAGE_SECONDS.values()))
    assert head["total_seconds"] == pytest.approx(sum(STAGE_SECONDS.values()))

    poses = report["poses"]
    assert poses["mean_reprojection_error"] == pytest.approx(0.734)
    assert poses["unregistered"] == ["0008.jpg"]
    assert poses["camera_source"] == "transforms.json" and poses["num_cameras"] == 8
    expected = np.array([[3 * np.cos(a), 3 * np.sin(a), 1.0] for a in 2 * np.pi * np.arange(8) / 8])
    np.testing.assert_allclose(np.array(poses["camera_positions"]), expected, atol=1e-4)

    train = report["training"]
    assert train["status"] == "ok" and train["steps"] == 3000 and train["preset"] == "fast"
    assert [e["step"] for e in train["eval_history"]] == [1000, 2000, 3000]
    assert train["eval_history"][0]["psnr"] == pytest.approx(21.0)
    assert train["log_lines"] == 30 and train["peak_gpu_mem_gb"] == pytest.approx(2.5)

    capture = report["capture"]
    assert capture["num_images"] == 8 and capture["score"] == 78
    assert capture["summary"]["connected_share"] == pytest.approx(0.62)
    assert capture["summary"]["flag_counts"] == {"blurred": 1}  # zero counts dropped
    assert "options" not in capture["summary"] and "components" not in capture["summary"]
    assert capture["flagged"] == [{"name": "0005.jpg", "flags": ["blurred"]}]
    assert poses["unregistered_reasons"] == {"0008.jpg": "no overlap with the others"}
    assert train["eval_on"] == "held-out" and train["held_out"] == 3 and train["initial_eval"]["psnr"] == 11.2

    views = {v["name"]: v["psnr"] for v in report["renders"]["views"]}
    for i, sigma in enumerate(RENDER_NOISE):  # PSNR of noise with std sigma: 20 log10(255 / sigma)
        assert views[f"{i:04d}"] == pytest.approx(20 * np.log10(255 / sigma), abs=0.3)
    assert report["renders"]["worst"]["name"] == "0001"
    assert any(s.startswith("Weakest held-out view: 0001") for s in report["next_steps"])
    assert report["renders"]["count"] == 3 and report["renders"]["files"][0] == "renders/0000.png"
    assert report["export"]["bytes"] == run.ply.stat().st_size
    assert report["environment"]["versions"]["gpu"] == "NVIDIA H100 80GB HBM3"
    assert report["files"]["ply"] == str(run.ply)
    assert any(s == f"Look at the result: splatforge view {run.root}" for s in report["next_steps"])


def test_html_is_self_contained(full):
    run, report = full
    html = run.report_html.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    jpegs = [s for s in srcs if s.startswith("data:image/jpeg;base64,")]
    assert len(jpegs) == report["renders"]["count"]
    # capture measures + camera plot + 4 training curves + stage-time chart
    assert len(srcs) - len(jpegs) == 7
    assert len(html.encode()) < 5 * 1024 * 1024
    assert 'name="viewport"' in html
    for text in ("26.73 dB", "0.881", f"splatforge view {run.root}", "NVIDIA H100 80GB HBM3", "0.734 px",
                 "0008.jpg (no overlap with the others)", "0005.jpg (blurred)", "5 for training, 3 held out"):
        assert text in html


def test_embedded_renders_are_downscaled(tmp_path):
    import base64
    import io

    from PIL import Image

    from splatforge.report import ReportOptions

    run = make_run(tmp_path / "run")
    _write_image(run.renders / "big.png", 4000, 1500, 99)
    build_report(run, ReportOptions(render_max_width=800))
    html = run.report_html.read_text()
    sizes = [Image.open(io.BytesIO(base64.b64decode(m))).size
             for m in re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html)]
    assert (800, 300) in sizes and max(w for w, _ in sizes) <= 800


def test_failed_stage_degrades_gracefully(tmp_path):
    run = make_run(tmp_path / "run", failed_stage="poses")
    report = build_report(run)
    assert report["headline"]["verdict"] == "failed"
    assert report["capture"]["status"] == "ok"
    poses = report["poses"]
    assert poses["status"] == "failed"
    assert poses["error"]["advice"] == "take photos with more overlap (each spot in at least 3 photos)"
    for key in ("training", "renders", "export"):
        assert report[key]["status"] == "missing", key
        assert "has not run" in report[key]["note"]
    assert report["stages"]["failed"] == ["poses"]
    assert report["files"]["ply"] is None
    assert any("only 3 of 40 images" in s and "more overlap" in s for s in report["next_steps"])
    assert not any("splatforge view" in s for s in report["next_steps"])
    html = run.report_html.read_text()
    assert "only 3 of 40 images could be registered" in html and "more overlap" in html
    lines = summary_lines(report)
    assert any("poses stage failed" in line for line in lines)
    assert any("more overlap" in line for line in lines)


def test_empty_and_broken_folders_never_crash(tmp_path):
    empty = RunDir(tmp_path / "empty").create()
    report = build_report(empty)
    assert report["headline"]["verdict"] == "incomplete"
    assert all(report[k]["status"] == "missing" for k in ("capture", "poses", "training", "renders", "export"))
    assert empty.report_html.exists() and empty.report_json.exists()

    broken = make_run(tmp_path / "broken")
    broken.quality_json.write_text("{not json")
    broken.train_json.unlink()  # training killed: only its metrics are there
    _write_metrics(broken.metrics_jsonl, truncated_tail=True)
    manifest = json.loads(broken.manifest.read_text())
    manifest["stages"]["train"]["status"] = "running"
    broken.manifest.write_text(json.dumps(manifest))
    report = build_report(broken)
    assert report["capture"]["status"] == "unreadable"
    train = report["training"]
    assert train["status"] == "partial" and train["log_lines"] == 30 and train["steps"] == 3000
    assert train["eval"]["psnr"] == pytest.approx(FINAL_EVAL["psnr"])  # last evaluation in metrics.jsonl
    assert train["peak_gpu_mem_gb"] == pytest.approx(2.5)  # the largest gpu_mem_gb logged
    assert "has not finished" in train["note"] and "metrics.jsonl" in broken.report_html.read_text()

    # Training stopped by a signal: run.json says failed with advice; the curves are still shown.
    manifest["stages"]["train"].update(status="failed", error={
        "type": "TrainingInterrupted", "message": "training stopped by SIGTERM at step 3000",
        "advice": "run the same command again to continue from it"})
    broken.manifest.write_text(json.dumps(manifest))
    train = build_report(broken)["training"]
    assert train["status"] == "partial" and train["error"]["type"] == "TrainingInterrupted"
    html = broken.report_html.read_text()
    assert "run the same command again to continue from it" in html
    assert html.count('src="data:image/png') >= 5  # the curves (and other plots) are drawn


def test_summary_lines(full):
    run, report = full
    lines = summary_lines(report)
    text = "\n".join(lines)
    assert "PSNR 26.73 dB" in text and "SSIM 0.881" in text
    assert str(run.ply) in text and str(run.report_html) in text and str(run.renders) in text
    assert "train 10 min 12 s" in text and "poses 1 min 11 s" in text and "total 11 min 34 s" in text
    assert lines[-1] == f"Look at it:  splatforge view {run.root}"


def test_cli_report_json(tmp_path):
    import typer
    from typer.testing import CliRunner

    from splatforge.report.cli import register

    run = make_run(tmp_path / "run")
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer in sub-command mode
    result = CliRunner().invoke(app, ["report", str(run.root), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["headline"]["psnr"] == pytest.approx(FINAL_EVAL["psnr"])
    assert "report" not in [r["name"] for r in out["stages"]["stages"]]
    assert json.loads(run.manifest.read_text())["stages"]["report"]["status"] == "done"

    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--json"])
    assert missing.exit_code != 0
    assert json.loads(missing.stdout)["ok"] is False


def test_metrics_and_ply_readers(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write_metrics(path, truncated_tail=True)
    logs, evals = read_metrics(path)
    assert len(logs) == 30 and len(evals) == 3 and evals[-1]["eval"] == FINAL_EVAL
    _write_gaussian_ply(tmp_path / "s.ply", 1234)
    assert ply_vertex_count(tmp_path / "s.ply") == 1234
    (tmp_path / "bad.ply").write_bytes(b"not a ply")
    assert ply_vertex_count(tmp_path / "bad.ply") is None


def test_topdown_plane_is_the_ground(tmp_path):
    # Cameras on a tilted-up orbit in a world whose up is +z: the plot's plane normal must be +z.
    run = RunDir(tmp_path)
    scene = _orbit_scene(run, n=12)
    up = np.array([-f.w2c[1, :3] for f in scene.frames])
    e1, e2, u = _plane_basis(scene.centers, up)
    assert u @ np.array([0.0, 0.0, 1.0]) > 0.9
    np.testing.assert_allclose(np.cross(e1, e2), u, atol=1e-9)
    assert abs(e1 @ u) < 1e-9 and abs(e2 @ u) < 1e-9


def test_scores_without_hold_out_are_labelled(tmp_path):
    run = make_run(tmp_path / "run")
    train = json.loads(run.train_json.read_text())
    train.update(eval_on="training views (no hold-out)", held_out=0, train_views=8)
    train["eval"]["psnr"] = 18.5
    atomic_write_json(run.train_json, train)
    report = build_report(run)
    head = report["headline"]
    assert head["held_out"] is False and head["verdict"] == "poor"
    assert "training views" in head["reason"]
    assert any("No views were held out" in s for s in report["next_steps"])
    assert any("Hold-out PSNR is low (18.5 dB)" in s for s in report["next_steps"])
    assert "PSNR (train views)" in run.report_html.read_text()


def test_many_renders_stay_within_budget_and_show_the_weakest(tmp_path):
    from splatforge.report import ReportOptions

    run = make_run(tmp_path / "run")
    for i in range(3, 9):
        _write_render_pair(run.renders / f"{i:04d}.png", 2.0, 20 + i)
    _write_render_pair(run.renders / "zz_worst.png", 40.0, 99)  # last in file order, weakest by far
    report = build_report(run, ReportOptions(max_renders=4))
    assert report["renders"]["count"] == 10 and report["renders"]["worst"]["name"] == "zz_worst"
    html = run.report_html.read_text()
    assert html.count('src="data:image/jpeg') == 4
    assert "zz_worst: render (left)" in html and "6 more in" in html

    build_report(run, ReportOptions(max_embedded_bytes=1))  # budget too small for even one render
    html = run.report_html.read_text()
    assert html.count('src="data:image/jpeg') == 0 and "10 more in" in html


@pytest.mark.parametrize("garbage", ['[1, 2, 3]', '"text"', 'null',
                                     '{"registered": "many", "total": "x", "eval": [], "score": "high", '
                                     '"stages": {"train": "done"}, "images": [1, "a"], "steps": {}}'])
def test_wrongly_shaped_files_never_crash(tmp_path, garbage):
    run = make_run(tmp_path / "run")
    for path in (run.manifest, run.quality_json, run.poses_json, run.train_json, run.transforms_json):
        path.write_text(garbage)
    run.metrics_jsonl.write_text(garbage + "\n" + '{"step": "x", "loss": "y"}\n')
    run.ply.write_bytes(b"ply\nformat ascii 1.0\nelement vertex many\nend_header\n")
    report = build_report(run)
    assert run.report_html.exists() and json.loads(run.report_json.read_text())["run"] == str(run.root)
    assert isinstance(summary_lines(report), list)


def test_missing_lpips_says_how_to_enable_it(tmp_path, monkeypatch):
    """The trainer's note when LPIPS weights are absent (real, from an empty torch hub cache) reaches the page."""
    from html import unescape

    from splatforge.splat.lpips_files import ALEXNET_URL
    from splatforge.splat.metrics import make_lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fn, note = make_lpips("cpu")
    assert fn is None
    run = make_run(tmp_path / "run")
    train = json.loads(run.train_json.read_text())
    train["eval"] = {**train["eval"], "lpips": None}
    train["lpips_note"] = note
    atomic_write_json(run.train_json, train)
    report = build_report(run)
    assert report["training"]["lpips_note"] == note
    page = unescape(run.report_html.read_text())
    assert note in page and f"curl -L -o {tmp_path / 'torch' / 'hub' / 'checkpoints'}" in page and ALEXNET_URL in page


def test_the_report_takes_each_views_score_from_training_instead_of_decoding_it(tmp_path, monkeypatch):
    """renders/views.json (written by training's evaluation) gives each view's PSNR; the PNGs are not read
    again (a 1000-image capture's 125 hold-out pairs took the report 30 s to decode)."""
    import splatforge.report.build as build

    run = RunDir(tmp_path / "run").create()
    for i in range(3):
        _write_render_pair(run.renders / f"{i:04d}.png", 4.0, 10 + i)
    atomic_write_json(run.render_scores, {"views": [{"name": "0000", "psnr": 31.5, "ssim": 0.9, "lpips": None},
                                                    {"name": "0001", "psnr": 22.25, "ssim": 0.8, "lpips": None}]})
    decoded = []
    real = build.pair_psnr
    monkeypatch.setattr(build, "pair_psnr", lambda path: decoded.append(path.name) or real(path))
    section = build.renders_section(run, {})
    views = {v["name"]: v["psnr"] for v in section["views"]}
    assert views["0000"] == 31.5 and views["0001"] == 22.25 and section["worst"]["name"] == "0001"
    assert decoded == ["0002.png"]  # only the view training did not score is measured from its PNG
    assert views["0002"] == pytest.approx(20 * np.log10(255 / 4.0), abs=0.3)
