"""Runs captures x presets x repeats, each training in a fresh process, resumably.

Layout of a bench folder:
    DIR/bench.json, bench.md, bench.html      the evidence (rewritten after every finished cell)
    DIR/_captures/synthetic_N/                generated captures (`synthetic:N`)
    DIR/<capture>/poses/                      run folder up to `poses`, computed once per capture
    DIR/<capture>/<preset>/rep<k>/            one cell: the pose outputs hard-linked in, then
                                              `splatforge run --from train` in its own process
    DIR/<capture>/<preset>/rep<k>/cell.json   the cell's numbers; its presence marks the cell finished
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from splatforge.bench.sampler import Sampler, summarize
from splatforge.errors import InputError
from splatforge.rundir import RunDir, atomic_write_json, collect_versions, read_json

POSE_FILES = ("frames", "frames.json", "ingest.json", "quality.json", "quality", "sparse", "distorted", "images",
              "images_undistorted", "transforms.json", "poses.json")


@dataclass
class BenchOptions:
    presets: list[str] = field(default_factory=lambda: ["fast", "default", "quality"])
    repeat: int = 1
    steps: int | None = None  # override every preset's step count (quick looks)
    backend: str = "auto"
    gpu: int | None = None
    timeout_s: float = 6 * 3600  # per cell
    sample_interval_s: float = 0.5


def machine_info() -> dict[str, Any]:
    import psutil

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = []
    try:
        import pynvml

        pynvml.nvmlInit()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            gpus.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                         "memory_gb": round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 1024**3, 1)})
    except Exception:
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1), "gpus": gpus}


def resolve_capture(spec: str, bench_dir: Path) -> tuple[str, Path]:
    """(name, path) of a capture given as a path or as `synthetic:N` (N views, generated once)."""
    if spec.startswith("synthetic:"):
        from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

        n = int(spec.split(":", 1)[1] or 24)
        name = f"synthetic_{n}"
        folder = bench_dir / "_captures" / name
        if not (folder / "transforms.json").exists():
            # 160x120 and >= ~20 views is the least SfM poses reliably (smaller registers almost nothing).
            make_synthetic_capture(folder, SyntheticOptions(n_views=n, width=160, height=120, seed=n))
        return name, folder / "images"
    path = Path(spec).expanduser().resolve()
    if not path.exists():
        raise InputError(f"capture {spec} does not exist", "give image folders, videos or zips, or synthetic:N")
    name = path.parent.name if path.name == "images" else path.stem
    return name, path


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "splatforge", *args]


def _link_tree(src: Path, dst: Path) -> None:
    if src.is_symlink():  # the run folder's `images` -> images_undistorted: a link stays a relative link
        dst.symlink_to(os.readlink(src))
    elif src.is_dir():
        shutil.copytree(src, dst, copy_function=_link_or_copy, dirs_exist_ok=True)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _epoch(iso: str | None) -> float | None:
    return dt.datetime.fromisoformat(iso).timestamp() if iso else None


def prepare_poses(name: str, source: Path, bench_dir: Path, log: Callable[[str], None]) -> RunDir:
    """Frames, check and poses once per capture (in its own process, like every measured step)."""
    run = RunDir(bench_dir / name / "poses")
    stages = run.read_manifest()["stages"] if run.manifest.exists() else {}
    if stages.get("poses", {}).get("status") == "done":
        return run
    log(f"[{name}] poses")
    # --engine colmap: the bench measures SfM even on a capture that has poses (fox's transforms.json)
    cmd = _cli(["run", str(source), "-o", str(run.root), "--until", "poses", "--force", "--engine", "colmap",
                "--json"])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"poses failed for {name}: {proc.stderr.strip()[-800:]}",
                         f"run `{shlex.join(cmd)}` to see the whole message")
    return run


def run_cell(capture: str, source: Path, poses: RunDir, preset: str, rep: int, bench_dir: Path,
             options: BenchOptions, log: Callable[[str], None]) -> dict[str, Any]:
    cell_dir = bench_dir / capture / preset / f"rep{rep}"
    done = read_json(cell_dir / "cell.json")
    if done and done.get("ok"):
        return done
    if cell_dir.exists():
        shutil.rmtree(cell_dir)  # a failed or interrupted cell starts clean
    cell_dir.mkdir(parents=True)
    for name in POSE_FILES:
        if (poses.root / name).exists():
            _link_tree(poses.root / name, cell_dir / name)
    for extra in poses.root.glob("*.ply"):  # sparse points referenced by transforms.json
        _link_or_copy(extra, cell_dir / extra.name)
    shutil.copy2(poses.manifest, cell_dir / "run.json")
    args = ["run", str(source), "-o", str(cell_dir), "--preset", preset, "--from", "train", "--json",
            "--backend", options.backend]
    if options.steps:
        args += ["--steps", str(options.steps)]
    if options.gpu is not None:
        args += ["--gpu", str(options.gpu)]
    cmd = _cli(args)
    log(f"[{capture}] {preset} rep{rep}: {shlex.join(cmd[2:])}")
    t0 = time.time()
    with open(cell_dir / "bench_stdout.log", "w") as out, open(cell_dir / "bench_stderr.log", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        sampler = Sampler(proc.pid, interval=options.sample_interval_s,
                          gpu_index=options.gpu or 0).start()
        try:
            rc = proc.wait(timeout=options.timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        samples = sampler.stop()
    wall = time.time() - t0
    run = RunDir(cell_dir)
    stages = run.read_manifest()["stages"]
    pose_stages = poses.read_manifest()["stages"]
    seconds = {s: (pose_stages if s in ("frames", "check", "poses") else stages).get(s, {}).get("seconds")
               for s in ("frames", "check", "poses", "train", "export", "report")}
    train = read_json(run.train_json) or {}
    evaluation = train.get("eval") or {}
    train_stage = stages.get("train", {})
    usage = summarize(samples, _epoch(train_stage.get("start")), _epoch(train_stage.get("end")))
    result = {
        "capture": capture, "preset": preset, "rep": rep, "ok": rc == 0 and bool(train),
        "returncode": rc, "command": shlex.join(cmd), "wall_s": round(wall, 2),
        "seconds": seconds, "train_s": seconds["train"],
        "psnr": evaluation.get("psnr"), "ssim": evaluation.get("ssim"), "lpips": evaluation.get("lpips"),
        "steps": train.get("steps"), "steps_per_s": train.get("steps_per_s"),
        "num_gaussians": train.get("num_gaussians"),
        "ply_mb": round(run.ply.stat().st_size / 1e6, 2) if run.ply.exists() else None,
        "peak_gpu_mem_gb": train.get("peak_gpu_mem_gb") or usage["gpu_mem_max_gb"],
        "gpu_busy_median": usage["gpu_busy_median"], "gpu_busy_max": usage["gpu_busy_max"],
        "cpu_percent_median": usage["cpu_percent_median"], "samples": usage["samples"],
        "device": train.get("device"), "backend": train.get("backend"),
    }
    if not result["ok"]:
        result["error"] = (cell_dir / "bench_stderr.log").read_text()[-1500:]
    atomic_write_json(cell_dir / "cell.json", result)
    return result


def run_bench(captures: list[str], bench_dir: Path, options: BenchOptions | None = None,
              baseline: Path | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the bench; writes bench.json, bench.md and bench.html; returns bench.json's data."""
    from splatforge.bench.report import write_outputs

    options = options or BenchOptions()
    bench_dir = Path(bench_dir).resolve()
    bench_dir.mkdir(parents=True, exist_ok=True)
    resolved = [resolve_capture(spec, bench_dir) for spec in captures]
    data: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["splatforge", "bench", *sys.argv[2:]]) if "bench" in sys.argv else None,
        "machine": machine_info(), "versions": collect_versions(), "options": asdict(options),
        "captures": {}, "cells": [],
    }
    baseline_data = read_json(baseline) if baseline else None
    if baseline and baseline_data is None:
        raise InputError(f"baseline {baseline} not found", "give the path of an earlier bench.json")
    for name, source in resolved:
        try:
            poses = prepare_poses(name, source, bench_dir, log)
        except InputError as exc:
            data["captures"][name] = {"source": str(source), "error": exc.message}
            log(f"[{name}] {exc.message}")
            continue
        from splatforge.poses.summary import summarize_poses

        reference = source.parent / "transforms.json" if source.name == "images" else source / "transforms.json"
        data["captures"][name] = {"source": str(source),
                                  "poses_s": poses.read_manifest()["stages"].get("poses", {}).get("seconds"),
                                  **summarize_poses(poses.root, reference)}
        for preset in options.presets:
            for rep in range(options.repeat):
                data["cells"].append(run_cell(name, source, poses, preset, rep, bench_dir, options, log))
                write_outputs(data, bench_dir, baseline_data)
    return write_outputs(data, bench_dir, baseline_data)
