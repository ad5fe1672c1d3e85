"""Reference (CPU) backend speed against image size and Gaussian count, for `splat/cpu_preview.py`.

    PYTHONPATH=src python benchmarks/cpu_preview_calibrate.py /tmp/fern_run \\
        --config preview:4:10000:800 --config preview:5:8000:800 --threads 1 --json /tmp/cal.json

RUN is a posed run folder (`splatforge run CAPTURE -o RUN --until poses`). Each --config is
PRESET:DOWNSCALE:MAX_GAUSSIANS:STEPS[:SH_DEGREE] (--set: recipe changes), trained from scratch in a scratch copy of the run (images are not
copied). Every `--window` steps it records the process CPU seconds and wall seconds spent, the Gaussian
count and the training image size of that window (coarse-to-fine phases render smaller images), so that
seconds per step can be fitted against pixels and Gaussians. CPU seconds, not wall time: on a shared
machine wall time measures the neighbours; with --threads 1, CPU seconds are the single-core cost.
Prints one line per config and writes every window to --json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run_config(source: Path, scratch: Path, spec: str, args) -> dict:
    import torch
    from train_bench import prepare

    from splatforge.options import parse_assignments
    from splatforge.splat.cpu_preview import PRESET, RECIPE
    from splatforge.splat.trainer import TrainOptions, train
    from splatforge.stage import Events

    preset_name, downscale, cap, steps, *sh = spec.split(":")
    base = RECIPE if preset_name == "preview" else {}  # "preview": the measured recipe (its 800-step schedule)
    preset_name = PRESET if preset_name == "preview" else preset_name
    overrides = {**base, "steps": int(steps), "strategy.cap_max": int(cap), **parse_assignments(args.set)}
    if sh:
        overrides["sh_degree"] = int(sh[0])
    run = prepare(source, scratch, spec.replace(":", "_"))
    torch.set_num_threads(args.threads)
    options = TrainOptions(preset=preset_name, downscale=float(downscale), overrides=overrides, resume=False,
                           log_every=args.window, log_every_s=1e9, show_progress=False, save_renders=False,
                           checkpoint_every=10**9, checkpoint_every_s=1e9)
    config = options.config()
    windows: list[dict] = []
    last = {"step": 0, "cpu": None, "wall": None}

    def progress(event) -> None:
        if event.train is None:
            return
        cpu, wall = time.process_time(), time.perf_counter()
        if last["cpu"] is not None:
            windows.append({"steps": event.train.step - last["step"], "cpu_s": cpu - last["cpu"],
                            "wall_s": wall - last["wall"], "gaussians": event.train.num_gaussians,
                            "factor": config.resolution_factor(event.train.step - 1)})
        last.update(step=event.train.step, cpu=cpu, wall=wall)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = train(run, options, Events(on_progress=progress))
    info = json.loads((run / "train.json").read_text())
    w, h = info["resolution"]
    for win in windows:
        win["pixels"] = (w // win["factor"]) * (h // win["factor"])
    return {"config": spec, "threads": args.threads, "width": w, "height": h, "steps": config.steps,
            "train_cpu_s": round(time.process_time() - cpu0, 1), "train_wall_s": round(time.perf_counter() - wall0, 1),
            "psnr": round(result.eval["psnr"], 3), "ssim": round(result.eval["ssim"], 4),
            "initial_psnr": round(result.initial_eval["psnr"], 3), "num_gaussians": result.num_gaussians,
            "windows": windows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="a posed run folder")
    ap.add_argument("--config", action="append", required=True, help="PRESET:DOWNSCALE:MAX_GAUSSIANS:STEPS[:SH]")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe changes, e.g. --set strategy.reset_every=0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--window", type=int, default=20, help="steps per timing window")
    ap.add_argument("--scratch", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="cpu_cal_"))
    rows = []
    for spec in args.config:
        row = run_config(args.source, scratch, spec, args)
        rows.append(row)
        print(f"{row['config']} {row['width']}x{row['height']} threads {row['threads']}: "
              f"{row['train_cpu_s']} CPU s, {row['train_wall_s']} wall s, PSNR {row['initial_psnr']} -> "
              f"{row['psnr']} dB, SSIM {row['ssim']}, {row['num_gaussians']} Gaussians", flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
