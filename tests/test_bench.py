"""Bench tables, plots and the regression rule on constructed data; a real tiny bench on CPU (slow)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from splatforge.bench.report import compare, markdown, write_outputs


def _cell(capture, preset, rep, psnr, train_s, ok=True):
    return {"capture": capture, "preset": preset, "rep": rep, "ok": ok, "psnr": psnr, "ssim": 0.9, "lpips": None,
            "train_s": train_s, "steps_per_s": 100.0, "num_gaussians": 1000, "ply_mb": 1.0, "peak_gpu_mem_gb": None,
            "gpu_busy_median": None, "cpu_percent_median": 180.0,
            "seconds": {"frames": 1.0, "check": 2.0, "poses": 10.0, "train": train_s, "export": 0.5, "report": 1.0}}


def _bench(cells, repeat=2):
    return {"date": "2026-11-22T00:00:00+00:00", "command": "splatforge bench a b", "versions": {"splatforge": "0.1.0"},
            "machine": {"host": "h", "cpu": "cpu", "cores": 2, "ram_gb": 24, "gpus": []},
            "options": {"presets": ["fast", "default"], "repeat": repeat},
            "captures": {"fox": {}, "fern": {}}, "cells": cells}


BASE = _bench([_cell("fox", "fast", 0, 30.0, 30.0), _cell("fox", "fast", 1, 30.2, 32.0),
               _cell("fox", "default", 0, 31.0, 90.0), _cell("fox", "default", 1, 31.1, 91.0),
               _cell("fern", "fast", 0, 22.0, 10.0), _cell("fern", "fast", 1, 22.1, 10.5),
               _cell("fern", "default", 0, 23.0, 40.0), _cell("fern", "default", 1, 23.2, 41.0)])


def test_markdown_has_one_table_per_metric_with_best_in_bold_and_spread():
    md = markdown(BASE)
    assert "### Hold-out PSNR (dB)" in md and "### Training time (s)" in md
    fox_psnr = next(line for line in md.splitlines() if line.startswith("| fox") and "30.10" in line)
    assert "**31.05 ± 0.05**" in fox_psnr  # best PSNR of the row in bold, median ± half range
    fox_time = next(line for line in md.splitlines() if line.startswith("| fox") and "31.0 ±" in line)
    assert "**31.0 ± 1.0**" in fox_time  # fastest in bold


def test_no_regression_against_itself_and_noise_within_spread():
    assert not any(r["regression"] for r in compare(BASE, BASE))
    noisy = copy.deepcopy(BASE)
    noisy["cells"][0]["psnr"] -= 0.05  # within max(2 x spread, 0.1 dB)
    assert not any(r["regression"] for r in compare(noisy, BASE))


def test_injected_regressions_are_flagged():
    worse = copy.deepcopy(BASE)
    for c in worse["cells"]:
        if c["capture"] == "fox" and c["preset"] == "default":
            c["psnr"] -= 1.0
        if c["capture"] == "fern" and c["preset"] == "fast":
            c["train_s"] *= 1.5
    flagged = {(r["capture"], r["preset"], r["metric"]) for r in compare(worse, BASE) if r["regression"]}
    assert flagged == {("fox", "default", "psnr"), ("fern", "fast", "train_s")}
    assert "⚠ regression" in markdown({**worse, "comparison": compare(worse, BASE)})


def test_write_outputs_makes_self_contained_html(tmp_path):
    data = write_outputs(copy.deepcopy(BASE), tmp_path, baseline=BASE)
    assert data["regressions"] == []
    html = (tmp_path / "bench.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "http://" not in html and "https://" not in html
    assert json.loads((tmp_path / "bench.json").read_text())["cells"][0]["psnr"] == 30.0


def _bench_command(folder):
    # 10 training steps: the cells are checked for running and being measured, not for what training learns
    # (the untrained PSNR is already ~13 dB here)
    return [sys.executable, "-m", "splatforge", "bench", "synthetic:24", "--presets", "demo", "--repeat", "2",
            "--steps", "10", "-o", str(folder / "bench"), "--backend", "reference"]


# The first bench run is started in the background as the session starts (conftest.py, BackgroundCommand).
BACKGROUND_COMMANDS = {"tiny_bench": _bench_command}


@pytest.fixture
def tiny_bench(background):
    """(bench folder, command, CompletedProcess) of the first run."""
    job = background("tiny_bench", _bench_command)
    return job.folder / "bench", job.args, job.result(timeout=900)


@pytest.mark.slow
def test_tiny_bench_on_cpu_resumes_and_flags_regressions(tiny_bench, tmp_path):
    out, cmd, first = tiny_bench
    assert first.returncode == 0, first.stderr[-2000:]
    data = json.loads((out / "bench.json").read_text())
    assert len(data["cells"]) == 2 and all(c["ok"] for c in data["cells"])
    assert all(c["steps"] == 10 for c in data["cells"])
    assert all(c["psnr"] > 10 and c["train_s"] > 0 and c["cpu_percent_median"] is not None for c in data["cells"])
    marks = {p: p.stat().st_mtime_ns for p in out.glob("*/*/rep*/cell.json")}
    assert len(marks) == 2
    # Resumable: a second run re-runs nothing.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/rep*/cell.json")} == marks
    # A baseline that was much better makes the comparison fail with exit 1.
    better = json.loads((out / "bench.json").read_text())
    for c in better["cells"]:
        c["psnr"] += 5.0
    (tmp_path / "better.json").write_text(json.dumps(better))
    cmp = subprocess.run(cmd + ["--baseline", str(tmp_path / "better.json")], capture_output=True, text=True, timeout=300)
    assert cmp.returncode == 1 and "regression" in cmp.stdout + cmp.stderr
