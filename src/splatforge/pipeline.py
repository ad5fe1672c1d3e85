"""The order of stages, skip/resume, and the GPU choice. Nothing here passes in-memory state between
stages: each stage reads what the previous ones wrote in the run folder (see `splatforge.rundir`).

    ingest (frames) -> check (gate) -> poses -> train -> export -> report

A stage is skipped on a re-run when run.json says it finished and its outputs are on disk; `from_stage`
redoes it and everything after; an interrupted training resumes from its newest checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from splatforge.errors import CaptureRejected, InputError
from splatforge.rundir import STAGES, RunDir, atomic_write_json, read_json

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]
"""Receives {"stage": str, "fraction": 0..1 within the stage, "message": str, ...stage-specific keys}."""


@dataclass
class PipelineOptions:
    """Every knob of `splatforge run`, with defaults a first-time user should get."""

    preset: str = "default"  # training preset: fast | default | quality | mcmc | demo
    steps: int | None = None  # override the preset's step count
    from_stage: str | None = None  # redo this stage and all after it
    until_stage: str | None = None  # stop after this stage (e.g. "poses" to share poses between runs)
    force: bool = False  # continue past a `will-fail` capture verdict
    gpu: int | None = None  # index among visible GPUs; None = the one with most free memory
    backend: str = "auto"  # rasterizer: auto | gsplat | reference
    engine: str = "colmap"  # poses: colmap | known | vggt
    cameras: Path | None = None  # known cameras (transforms.json, COLMAP folder, rig file)
    frame_count: int | None = None  # frames to keep from a video (None: chosen from the video)
    frame_fps: float | None = None
    downscale: float | None = None  # training image downscale (None: 1)
    max_gaussians: int | None = None  # cap on the number of Gaussians (None: the preset's own)
    max_image_size: int | None = None  # SfM feature image size (None: the pose engine's default)
    extra: dict[str, Any] = field(default_factory=dict)  # passed through untouched to custom job runners

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PipelineResult:
    run: RunDir
    stages: dict[str, dict[str, Any]]
    summary: list[str]
    report: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"run": str(self.run.root), "stages": self.stages, "report": self.report}


def select_gpu(index: int | None = None) -> tuple[str, str | None]:
    """Choose the torch device: GPU `index` among visible ones, else the one with most free memory.

    Returns (device string, GPU name or None). Indices are those torch sees (after CUDA_VISIBLE_DEVICES).
    """
    try:
        import torch
    except ImportError:
        return "cpu", None
    if not torch.cuda.is_available():
        if index is not None:
            raise InputError(f"--gpu {index} was asked for but no CUDA GPU is visible",
                             "run `splatforge doctor` to see why, or drop --gpu to train on the CPU (slow)")
        return "cpu", None
    count = torch.cuda.device_count()
    if index is not None:
        if not 0 <= index < count:
            raise InputError(f"--gpu {index} is out of range: {count} GPU(s) visible (0..{count - 1})",
                             "pick an index from `splatforge doctor`")
        chosen = index
    else:
        free = []
        for i in range(count):
            try:
                free.append(torch.cuda.mem_get_info(i)[0])
            except RuntimeError:
                free.append(-1)
        chosen = max(range(count), key=lambda i: free[i])
    torch.cuda.set_device(chosen)
    return f"cuda:{chosen}", torch.cuda.get_device_name(chosen)


def _stage_valid(run: RunDir, stage: str) -> bool:
    """True when run.json says `stage` finished and its outputs are on disk."""
    if run.stage_status(stage) != "done":
        return False
    outputs = {
        "frames": lambda: run.frames.is_dir() and any(run.frames.iterdir()),
        "check": lambda: run.quality_json.exists(),
        "poses": lambda: run.transforms_json.exists() and run.sparse.exists(),
        "train": lambda: run.train_json.exists(),
        "export": lambda: run.ply.exists(),
        "report": lambda: run.report_json.exists(),
    }
    return outputs[stage]()


def run_pipeline(source: Path | None, run: RunDir, options: PipelineOptions | None = None,
                 progress: ProgressFn | None = None) -> PipelineResult:
    """Run every stage that is not already done. `source` may be None to continue an existing run."""
    options = options or PipelineOptions()
    run.create()
    manifest = run.read_manifest()
    if source is None:
        if not manifest.get("input"):
            raise InputError(f"{run.root} is not a run folder with a recorded input", "give the input to start a run")
        source = Path(manifest["input"])
    source = Path(source).expanduser().resolve()
    for given in (options.from_stage, options.until_stage):
        if given is not None and given not in STAGES:
            raise InputError(f"unknown stage {given!r}", f"use one of: {', '.join(STAGES)}")
    last = STAGES.index(options.until_stage) if options.until_stage else len(STAGES) - 1
    if manifest.get("input") and Path(manifest["input"]) != source and options.from_stage is None:
        raise InputError(f"{run.root} was started from {manifest['input']}, not {source}",
                         "choose another -o folder, or pass --from frames to start this folder over")
    run.update_manifest(input=str(source), options=options.to_dict())

    redo_from = STAGES.index(options.from_stage) if options.from_stage else len(STAGES)
    emit = progress or (lambda event: None)  # may answer "stop" (a cancelled job): passed to the trainer
    timings: dict[str, dict[str, Any]] = {}

    def should_run(stage: str) -> bool:
        if STAGES.index(stage) >= redo_from:
            return True
        return not _stage_valid(run, stage)

    def stage(name: str, fn: Callable[[dict[str, Any]], None], config: dict[str, Any] | None = None) -> None:
        if STAGES.index(name) > last:
            timings[name] = {"status": "not asked for"}
            return
        if not should_run(name):
            timings[name] = {"status": "skipped (already done)"}
            emit({"stage": name, "fraction": 1.0, "message": "already done"})
            return
        emit({"stage": name, "fraction": 0.0, "message": "started"})
        t0 = time.perf_counter()
        with run.stage(name, config) as summary:
            fn(summary)
        timings[name] = {"status": "done", "seconds": round(time.perf_counter() - t0, 2)}
        emit({"stage": name, "fraction": 1.0, "message": "done", "seconds": timings[name]["seconds"]})

    # 1. frames -------------------------------------------------------------------------------
    def do_frames(summary: dict[str, Any]) -> None:
        from splatforge.capture.ingest import ingest

        result = ingest(source, run, frame_count=options.frame_count, frame_fps=options.frame_fps)
        summary.update(result.to_dict())

    stage("frames", do_frames, {"frame_count": options.frame_count, "frame_fps": options.frame_fps})

    # 2. check (the gate) -----------------------------------------------------------------------
    def do_check(summary: dict[str, Any]) -> None:
        from splatforge.capture import CheckOptions, check_capture

        report = check_capture(run.frames, CheckOptions(), report_dir=run.quality_dir)
        data = report.to_dict()
        atomic_write_json(run.quality_json, data)
        summary.update({"score": data["score"], "verdict": data["verdict"]})
        if data["verdict"] == "will-fail" and not options.force:
            advice = " ".join(data.get("advice", [])[:4])
            raise CaptureRejected(
                f"the capture check predicts that this capture cannot be reconstructed (score {data['score']}/100)",
                f"{advice} Details: {run.quality_json}. To try anyway, re-run with --force.")
        if data["verdict"] == "will-fail":
            log.warning("capture verdict is will-fail; continuing because of --force")

    stage("check", do_check)

    # 3. poses --------------------------------------------------------------------------------
    def do_poses(summary: dict[str, Any]) -> None:
        from splatforge.poses import PoseOptions, estimate_poses

        pose_options = PoseOptions(engine=options.engine, cameras=options.cameras)
        if options.max_image_size:
            pose_options.max_image_size = options.max_image_size
        result = estimate_poses(run, pose_options,
                                progress=lambda step, frac: emit({"stage": "poses", "fraction": frac, "message": step}))
        data = result.to_dict()
        summary.update({k: data.get(k) for k in ("engine", "registered", "total", "mean_reprojection_error", "points")})

    stage("poses", do_poses, {"engine": options.engine, "cameras": options.cameras})

    # 4. train --------------------------------------------------------------------------------
    device, gpu_name = select_gpu(options.gpu) if last >= STAGES.index("train") else ("cpu", None)
    if gpu_name:
        log.info("training on GPU %s (%s)", device, gpu_name)
        run.update_manifest(gpu={"device": device, "name": gpu_name})

    def do_train(summary: dict[str, Any]) -> None:
        from splatforge.splat import TrainOptions, train

        train_options = TrainOptions(preset=options.preset, steps=options.steps, backend=options.backend,
                                     device=device, resume=True, show_progress=False)
        if options.downscale:
            train_options.downscale = options.downscale
        if options.max_gaussians:
            train_options.max_gaussians = options.max_gaussians

        def on_step(event: dict[str, Any]) -> str | None:
            total = max(1, int(event.get("total") or 1))
            return emit({"stage": "train", "fraction": float(event.get("step", 0)) / total, **event})

        result = train(run, train_options, progress=on_step)
        summary.update({k: v for k, v in result.to_dict().items() if k in ("steps", "seconds", "eval", "num_gaussians")})

    # A training that was interrupted has checkpoints and no train.json: re-running resumes it.
    stage("train", do_train, {"preset": options.preset, "steps": options.steps, "backend": options.backend,
                              "device": device})

    # 5. export -------------------------------------------------------------------------------
    def do_export(summary: dict[str, Any]) -> None:
        from splatforge.splat import export_ply

        path = export_ply(run)
        summary.update({"ply": str(path), "bytes": path.stat().st_size})

    stage("export", do_export)

    # 6. report -------------------------------------------------------------------------------
    report: dict[str, Any] | None = None

    def do_report(summary: dict[str, Any]) -> None:
        nonlocal report
        from splatforge.report import build_report

        report = build_report(run)
        summary["html"] = str(run.report_html)

    stage("report", do_report)
    if report is None and last >= STAGES.index("report"):
        report = read_json(run.report_json)
    try:
        from splatforge.report import summary_lines

        lines = summary_lines(report) if report else []
    except ImportError:
        lines = []
    return PipelineResult(run=run, stages=timings, summary=lines, report=report)
