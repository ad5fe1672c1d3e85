"""A small real job runner for the service tests, with `run_pipeline`'s signature and resume behaviour.

It writes the stages' files into the run folder, reports progress like the pipeline (train reports
per step with loss/psnr), saves a checkpoint every few steps and resumes from the newest one, and
fails with an InputError when given fewer than 3 images. Each training step sleeps, so cancel and
kill can happen mid-job. Imported by name inside Ray workers (`service_runner:fake_pipeline`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from splatforge.errors import InputError, TrainingError
from splatforge.ingest import sniff_kind
from splatforge.rundir import STAGES, atomic_write_json, atomic_write_text

STEP_SECONDS = float(os.environ.get("SPLATFORGE_FAKE_STEP_S", "0.05"))
CHECKPOINT_EVERY = 5


def write_splat_ply(path: Path, n: int = 400, seed: int = 0) -> None:
    """A small splat in the standard 3DGS PLY layout: a colourful ball of Gaussians around the origin."""
    from plyfile import PlyData, PlyElement

    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    data = np.zeros(n, dtype=[(k, "f4") for k in names])
    data["x"], data["y"], data["z"] = xyz.T
    colour = (xyz * 0.5 + 0.5 - 0.5) / 0.28209479
    data["f_dc_0"], data["f_dc_1"], data["f_dc_2"] = colour.T
    data["opacity"] = 4.0
    data["scale_0"] = data["scale_1"] = data["scale_2"] = np.log(0.08)
    data["rot_0"] = 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))


def _done(run, stage: str) -> bool:
    return run.stage_status(stage) == "done"


def fake_pipeline(source, run, options=None, progress=None):
    emit = progress or (lambda event: None)
    run.create()
    run.update_manifest(input=str(source), options=options.to_dict() if options else {})
    total = int(options.steps or 20) if options else 20
    source = Path(source)
    for stage in STAGES:
        if _done(run, stage):
            emit({"stage": stage, "fraction": 1.0, "message": "already done"})
            continue
        emit({"stage": stage, "fraction": 0.0, "message": "started"})
        with run.stage(stage, {}) as summary:
            if stage == "frames":
                files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
                images = [p for p in files if sniff_kind(p) == "image"]
                videos = [p for p in files if sniff_kind(p) == "video"]
                if len(images) < 3 and not videos:  # worded like the CLI's errors: a path, a flag
                    raise InputError(f"only {len(images)} image(s) in {source}: too few to reconstruct a scene",
                                     "take at least 20 overlapping photos around the subject, or re-run with "
                                     "--force to try anyway")
                run.frames.mkdir(exist_ok=True)
                for p in images:
                    (run.frames / p.name).write_bytes(p.read_bytes())
                atomic_write_json(run.frames_json, {"source": str(source), "frames": [
                    {"file": p.name, "index": i} for i, p in enumerate(images)], "chosen_count": len(images),
                    "reason": "all"})
                summary["frames"] = len(images)
            elif stage == "check":
                atomic_write_json(run.quality_json, {"score": 80, "verdict": "good", "advice": [], "images": []})
            elif stage == "poses":
                time.sleep(STEP_SECONDS)
                atomic_write_json(run.poses_json, {"engine": "fake", "registered": 3, "total": 3})
            elif stage == "train":
                run.checkpoints.mkdir(exist_ok=True)
                ckpts = sorted(run.checkpoints.glob("ckpt_*.pt"))
                start = int(ckpts[-1].stem.split("_")[1]) if ckpts else 0
                history = json.loads((run.root / "resumes.json").read_text()) if (run.root / "resumes.json").exists() else []
                atomic_write_json(run.root / "resumes.json", [*history, start])
                t0 = time.perf_counter()
                for step in range(start + 1, total + 1):
                    time.sleep(STEP_SECONDS)
                    loss = 1.0 / step
                    line = {"step": step, "elapsed_s": time.perf_counter() - t0, "loss": loss, "psnr": 10 + step * 0.1,
                            "num_gaussians": 400, "steps_per_s": 1.0 / max(STEP_SECONDS, 1e-3)}
                    with open(run.metrics_jsonl, "a") as f:
                        f.write(json.dumps(line) + "\n")
                    if step % CHECKPOINT_EVERY == 0 or step == total:
                        atomic_write_text(run.checkpoints / f"ckpt_{step:07d}.pt", str(step))
                    answer = emit({"stage": "train", "fraction": step / total, "total": total, **line})
                    if answer == "stop" and not options.extra.get("ignore_stop"):  # like the trainer: checkpoint, raise
                        atomic_write_text(run.checkpoints / f"ckpt_{step:07d}.pt", str(step))
                        raise TrainingError(f"training stopped by request at step {step}; a checkpoint was written",
                                            "run again to continue from it")
                atomic_write_json(run.train_json, {"steps": total, "seconds": time.perf_counter() - t0,
                                                   "eval": {"psnr": 25.0, "ssim": 0.9, "lpips": None},
                                                   "num_gaussians": 400, "device": "cpu", "preset": options.preset,
                                                   "resumed_from": start})
            elif stage == "export":
                write_splat_ply(run.ply)
            elif stage == "report":
                atomic_write_json(run.report_json, {"summary": "fake", "steps": total})
                atomic_write_text(run.report_html, "<!doctype html><title>report</title><h1>Fake report</h1>")
        emit({"stage": stage, "fraction": 1.0, "message": "done"})
    return None


def stubborn_pipeline(source, run, options=None, progress=None):
    """`fake_pipeline` that never hears a stop: it swallows the answers and the JobStopped raised to it,
    like a stage busy in native code. Only a kill ends it early."""
    from splatforge.service.executor import JobStopped

    def deaf(event):
        try:
            progress(event)
        except JobStopped:
            pass
        return None

    return fake_pipeline(source, run, options, deaf if progress else None)


CRASH_AT_STEP = 8


def crashing_pipeline(source, run, options=None, progress=None):
    """Dies like a worker killed by the kernel (no exception, no word) at training step 8, once per run
    folder: a retry goes past it."""
    marker = Path(run.root) / "crashed-once"

    def crash_in_train(event):
        if event.get("stage") == "train" and event.get("step", 0) >= CRASH_AT_STEP and not marker.exists():
            marker.write_text(str(event["step"]))
            os._exit(3)
        return progress(event) if progress else None

    return fake_pipeline(source, run, options, crash_in_train)
