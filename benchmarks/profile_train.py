"""Where a training step's time goes, per phase of the coarse-to-fine schedule (GPU).

    python benchmarks/profile_train.py RUN [--preset fast] [--window 20] [--json OUT]

Trains RUN's scene with the preset (a scratch copy of transforms.json, so RUN is not touched) and
profiles `--window` steps at the middle of each resolution phase with torch.profiler: per phase the
wall time per step (synchronised), the GPU time per step, and the kernels that take it, grouped
(rasterise forward/backward, projection, SSIM/loss, optimizer, densification, other).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

GROUPS = [  # (group, substrings of kernel names), first match wins
    ("rasterize_bwd", ("rasterize_to_pixels_bwd", "rasterize_to_pixels_3dgs_bwd")),
    ("rasterize_fwd", ("rasterize_to_pixels",)),
    ("project", ("projection", "fully_fused_projection", "isect", "spherical_harmonics", "radix", "Sort",
                 "sort")),
    ("optimizer", ("adam", "Adam", "multi_tensor", "foreach")),
    ("conv/ssim", ("conv", "Conv", "cudnn", "implicit_gemm", "sm90_xmma", "cutlass", "_ssim_")),
]


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "other"


def main() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from splatforge.options import from_dict
    from splatforge.rundir import RunDir
    from splatforge.splat import trainer
    from splatforge.splat.config import TrainOptions

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    scratch = RunDir(Path(tempfile.mkdtemp(prefix="profile_")) / "run").create()
    for name in ("transforms.json", "sparse_points.ply", "points.ply"):
        if (args.run / name).exists():
            shutil.copy2(args.run / name, scratch.root / name)
    for name in ("images_undistorted", "frames", "images"):
        if (args.run / name).is_dir():
            (scratch.root / name).symlink_to((args.run / name).resolve())
    from splatforge.options import parse_assignments

    options = from_dict(TrainOptions, {"preset": args.preset, "resume": False, "show_progress": False,
                                       "save_renders": False, "checkpoint_every": 10**9,
                                       "checkpoint_every_s": 1e9, **parse_assignments(args.set)}, "train")
    config = options.config()
    phases, start = [], 0.0
    for fraction, factor, *_views in (*config.resolution_schedule, (1.0, 1)):
        mid = int((start + fraction) / 2 * config.steps)
        phases.append((f"1/{factor}", mid, mid + args.window))
        start = fraction
    results: dict[str, dict] = {}
    real_step = trainer._train_step
    state = {"prof": None, "t0": 0.0, "phase": None}

    def step(step_index, *a, **kw):
        for name, lo, _hi in phases:
            if step_index == lo:
                torch.cuda.synchronize()
                state.update(prof=profile(activities=[ProfilerActivity.CUDA]), t0=time.perf_counter(), phase=name)
                state["prof"].__enter__()
        out = real_step(step_index, *a, **kw)
        for name, lo, hi in phases:
            if step_index == hi - 1 and state["phase"] == name:
                torch.cuda.synchronize()
                wall = (time.perf_counter() - state["t0"]) / (hi - lo)
                state["prof"].__exit__(None, None, None)
                groups: dict[str, float] = defaultdict(float)
                kernels: dict[str, float] = defaultdict(float)
                for ev in state["prof"].key_averages():
                    cuda_us = getattr(ev, "self_device_time_total", None) or getattr(ev, "self_cuda_time_total", 0)
                    if cuda_us:
                        groups[group_of(ev.key)] += cuda_us / (hi - lo) / 1000
                        kernels[ev.key[:90]] += cuda_us / (hi - lo) / 1000
                top = sorted(kernels.items(), key=lambda kv: -kv[1])[:12]
                results[name] = {"steps": [lo, hi], "wall_ms": round(wall * 1000, 3),
                                 "gpu_ms": round(sum(groups.values()), 3),
                                 "groups_ms": {k: round(v, 3) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
                                 "top_kernels_ms": [(k, round(v, 3)) for k, v in top]}
                state["phase"] = None
        return out

    trainer._train_step = step
    t0 = time.perf_counter()
    result = trainer.train(scratch, options)
    total = time.perf_counter() - t0
    doc = {"preset": args.preset, "steps": config.steps, "train_s": round(total, 2),
           "psnr": round(result.eval["psnr"], 3), "num_gaussians": result.num_gaussians, "phases": results}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    for name, r in results.items():
        print(f"\n== phase {name}: steps {r['steps']}: {r['wall_ms']} ms/step wall, {r['gpu_ms']} ms/step GPU")
        print("   groups: " + ", ".join(f"{k} {v}" for k, v in r["groups_ms"].items()))
        for k, v in r["top_kernels_ms"]:
            print(f"   {v:8.3f} ms  {k}")
    print(f"\n{args.preset}: {config.steps} steps, train() {total:.1f} s, PSNR {result.eval['psnr']:.2f}, "
          f"{result.num_gaussians} Gaussians")


if __name__ == "__main__":
    main()
