"""Training presets on one capture: wall time, speed, quality and how busy the GPU was.

    python benchmarks/train_bench.py ../shared/data/fox/transforms.json --presets fast,default
    python benchmarks/train_bench.py RUN_FOLDER --presets fast --steps 3000 --downscale 2

For each preset it copies nothing: a scene (transforms.json / COLMAP) is written once into a scratch run
folder per preset (images stay where they are), then `splatforge.splat.train` runs in this process with
--no-resume. A thread samples NVML utilisation every 50 ms while the training loop runs (image loading
and the final evaluation excluded, using the progress callback to mark the first and last step). Prints
a table: preset, steps, wall s (training loop), steps/s, PSNR, SSIM, #G, peak mem, GPU busy median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


class GpuSampler(threading.Thread):
    """NVML utilisation (%) samples while `active` is set."""

    def __init__(self, index: int = 0, period: float = 0.05):
        super().__init__(daemon=True)
        self.period, self.samples, self.active = period, [], threading.Event()
        self.stop_flag = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.nvml = pynvml
        except Exception as exc:  # no NVML: report utilisation as unknown
            print(f"NVML unavailable ({exc}); GPU busy will be empty", file=sys.stderr)
            self.nvml = None

    def run(self) -> None:
        while not self.stop_flag.is_set():
            if self.nvml is not None and self.active.is_set():
                self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            time.sleep(self.period)


def nvml_index(cuda_index: int) -> int:
    """NVML numbers the host's GPUs and ignores CUDA_VISIBLE_DEVICES: map torch's index to the physical one
    (round 12 sampled GPU 0 for lanes that trained on GPUs 1-3)."""
    import os

    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if cuda_index < len(visible) and visible[cuda_index].isdigit():
        return int(visible[cuda_index])
    return cuda_index


def prepare(source: Path, scratch: Path, name: str) -> Path:
    from splatforge.rundir import RunDir
    from splatforge.scene import read_scene, write_transforms

    if source.is_dir() and (source / "transforms.json").exists() and (source / "run.json").exists():
        run = RunDir(scratch / name).create()
        scene = read_scene(source / "transforms.json")
    else:
        run = RunDir(scratch / name).create()
        scene = read_scene(source)
    write_transforms(scene, run.transforms_json, ply_file="points.ply" if scene.points is not None else None)
    return run.root


def bench_one(source: Path, scratch: Path, preset: str, args) -> dict:
    import torch

    from splatforge.options import from_dict, parse_assignments
    from splatforge.splat.trainer import TrainOptions, train
    from splatforge.stage import Events

    run = prepare(source, scratch, preset)
    sampler = GpuSampler(nvml_index(args.gpu))
    sampler.start()
    marks: dict[str, float] = {}

    def progress(event) -> None:
        if event.train is None:
            return
        marks.setdefault("first", time.perf_counter())
        marks["last"] = time.perf_counter()
        marks["first_step"] = marks.get("first_step", event.train.step)
        if event.train.step >= event.train.total:
            sampler.active.clear()
        else:
            sampler.active.set()

    changes = {"preset": preset, "resume": False, "downscale": args.downscale, "backend": args.backend,
               "log_every": args.log_every, "log_every_s": 1e9, "show_progress": False, "save_renders": True,
               "checkpoint_every": 10**9, "checkpoint_every_s": 1e9, **parse_assignments(args.set)}
    if args.steps:
        changes["steps"] = args.steps
    opts = from_dict(TrainOptions, changes, "train")
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t_stage = time.perf_counter()
    result = train(run, opts, Events(on_progress=progress))
    stage_s = time.perf_counter() - t_stage
    sampler.stop_flag.set()
    steps = result.steps
    loop_s = marks["last"] - marks["first"]
    loop_steps = steps - marks["first_step"]
    return {"preset": preset, "steps": steps, "wall_s": round(result.seconds, 2), "stage_s": round(stage_s, 2),
            "steps_per_s": round(loop_steps / loop_s, 2) if loop_s > 0 else None,
            "psnr": round(result.eval["psnr"], 3), "ssim": round(result.eval["ssim"], 4),
            "lpips": result.eval["lpips"], "num_gaussians": result.num_gaussians,
            "peak_mem_gb": round(result.peak_gpu_mem_gb, 2) if result.peak_gpu_mem_gb else None,
            "gpu_busy_median": statistics.median(sampler.samples) if sampler.samples else None,
            "gpu_samples": len(sampler.samples), "run": str(run)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="run folder, transforms.json or COLMAP model folder")
    ap.add_argument("--presets", default="fast,default")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--downscale", type=float, default=1)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--scratch", type=Path, default=None, help="where the run folders go (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any train option or recipe key for every preset, e.g. --set strategy.reset_every=0 --set batch_size=2")
    args = ap.parse_args()

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="train_bench_"))
    rows = [bench_one(args.source, scratch, p.strip(), args) for p in args.presets.split(",") if p.strip()]
    cols = ["preset", "steps", "wall_s", "steps_per_s", "psnr", "ssim", "num_gaussians", "peak_mem_gb",
            "gpu_busy_median"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
