"""The loss's L1 weight: splatforge's 1.0*L1 + 0.2*D-SSIM against 3DGS/gsplat's 0.8*L1 + 0.2*D-SSIM.

    python benchmarks/loss_weight_bench.py RUN [RUN ...] --preset default --weights 1.0,0.8 --json out.json

Each RUN is a posed run folder (`splatforge run CAPTURE -o RUN --until poses`), e.g. fox, llff_fern,
dtu_scan24 and the colosseum frames. For every run and weight it trains the preset from scratch with
`benchmarks/train_bench.py`'s `bench_one` (same poses, split, seed; only the L1 weight differs) and
prints hold-out PSNR / SSIM / LPIPS, loop time and Gaussians, then per weight the mean PSNR over runs
and the mean difference to the first weight. The weight is the recipe key `l1_weight` (TrainConfig).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def train_one(run: Path, scratch: Path, preset: str, weight: float, args) -> dict:
    from train_bench import bench_one

    ns = argparse.Namespace(set=[f"l1_weight={weight}", *args.set], steps=args.steps, downscale=args.downscale,
                            backend="auto", log_every=100, gpu=0)
    row = bench_one(run, scratch / f"{run.name}_l1_{weight}", preset, ns)
    return {"run": run.name, "l1_weight": weight, **{k: row[k] for k in (
        "steps", "wall_s", "steps_per_s", "psnr", "ssim", "lpips", "num_gaussians", "gpu_busy_median")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="posed run folders")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--weights", default="1.0,0.8")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--downscale", type=float, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other Preset field")
    ap.add_argument("--scratch", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="l1_bench_"))
    rows = []
    for run in args.runs:
        for w in weights:
            rows.append(train_one(run, scratch, args.preset, w, args))
            print(json.dumps(rows[-1]), flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    cols = ["run", "l1_weight", "psnr", "ssim", "lpips", "wall_s", "num_gaussians"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    base = {r["run"]: r["psnr"] for r in rows if r["l1_weight"] == weights[0]}
    for w in weights:
        mine = [r for r in rows if r["l1_weight"] == w]
        diff = statistics.mean(r["psnr"] - base[r["run"]] for r in mine)
        print(f"l1_weight {w}: mean hold-out PSNR {statistics.mean(r['psnr'] for r in mine):.3f} dB "
              f"over {len(mine)} runs, {diff:+.3f} dB against l1_weight {weights[0]}")


if __name__ == "__main__":
    main()
