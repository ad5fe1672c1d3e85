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

from splatforge.capture.ingest import sniff_kind
from splatforge.errors import InputError
from splatforge.pipeline import RunOptions, stages
from splatforge.rundir import atomic_write_json, atomic_write_text
from splatforge.stage import Cancelled, Events, TrainMetrics

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


def fake_pipeline(source, run, options: RunOptions | None = None, events: Events | None = None):
    options, events = options or RunOptions(), events or Events()
    run.create()
    run.update_manifest(input=str(source), options=options.to_dict())
    total = int(options.train.overrides.get("steps") or 20)
    source = Path(source)
    for stage in [s.name for s in stages()]:
        if _done(run, stage):
            events.progress(stage, 1.0, "already done")
            continue
        events.progress(stage, 0.0, "started")
        with run.stage(stage, options.stages[stage]) as summary:
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
                    events.progress("train", step / total, f"step {step}/{total}",
                                    train=TrainMetrics(total=total, **line))
                    if events.cancelled and not IGNORE_CANCEL:  # like the trainer: checkpoint, clean stop
                        atomic_write_text(run.checkpoints / f"ckpt_{step:07d}.pt", str(step))
                        raise Cancelled("train", f"stopped at step {step}; a checkpoint was written")
                atomic_write_json(run.train_json, {"steps": total, "seconds": time.perf_counter() - t0,
                                                   "eval": {"psnr": 25.0, "ssim": 0.9, "lpips": None},
                                                   "num_gaussians": 400, "device": "cpu", "preset": options.train.preset,
                                                   "resumed_from": start})
            elif stage == "export":
                write_splat_ply(run.ply)
            elif stage == "report":
                atomic_write_json(run.report_json, {"summary": "fake", "steps": total})
                atomic_write_text(run.report_html, "<!doctype html><title>report</title><h1>Fake report</h1>")
        events.progress(stage, 1.0, "done")
    return None


IGNORE_CANCEL = False  # set by `stubborn_pipeline`: a stage busy in native code never hears a cancel


def stubborn_pipeline(source, run, options=None, events=None):
    """`fake_pipeline` that never hears a stop, like a stage busy in native code: only a kill ends it."""
    global IGNORE_CANCEL
    IGNORE_CANCEL = True
    try:
        return fake_pipeline(source, run, options, events)
    finally:
        IGNORE_CANCEL = False


CRASH_AT_STEP = 8


def crashing_pipeline(source, run, options=None, events=None):
    """Dies like a worker killed by the kernel (no exception, no word) at training step 8, once per run
    folder: a retry goes past it. With a file `crash-always` in the capture it dies on every attempt
    (a worker the OOM killer takes each time)."""
    events = events or Events()
    marker = Path(run.root) / "crashed-once"
    if (Path(source) / "crash-always").exists():
        marker.unlink(missing_ok=True)
    report = events.on_progress

    def crash_in_train(event):
        if event.train is not None and event.train.step >= CRASH_AT_STEP and not marker.exists():
            marker.write_text(str(event.train.step))
            os._exit(3)
        if report is not None:
            report(event)

    events.on_progress = crash_in_train
    return fake_pipeline(source, run, options, events)


def gpu_probe(source, run, options=None, events=None):
    """Records the GPU Ray gave this job (CUDA_VISIBLE_DEVICES) and when it ran; a second of work."""
    run.create()
    start = time.time()
    time.sleep(float(os.environ.get("SPLATFORGE_PROBE_S", "1.5")))
    atomic_write_json(run.root / "gpu_probe.json", {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                                    "start": start, "end": time.time(), "pid": os.getpid()})
