"""The loss's SSIM: speed of candidate implementations (forward + backward), optionally training with each.

    PYTHONPATH=src python benchmarks/ssim_candidates_bench.py                      # timings on cuda if present, else cpu
    PYTHONPATH=src python benchmarks/ssim_candidates_bench.py --device cpu --threads 1
    PYTHONPATH=src python benchmarks/ssim_candidates_bench.py --train RUN --preset fast   # + hold-out PSNR per candidate

Candidates (all Gaussian window 11, sigma 1.5, C1 = 0.01^2, C2 = 0.03^2):
  separable  splatforge's loss (losses.ssim): 'valid' windows, two 1D convolutions over 5 stacked moments
             (on CUDA float32 images losses.ssim runs main's Triton kernels, splat/fused_ssim.py)
  conv2d     the same 'valid' SSIM with one 11x11 depthwise convolution (3DGS's original form, unpadded)
  torchmetrics  torchmetrics' functional SSIM (reflection padding, 11x11 convolution): the reported metric
  fused      fused-ssim's CUDA kernel, padding="valid" (gsplat's simple_trainer loss), when it imports
Prints ms per forward+backward per image size; with --train, trains RUN once per candidate (the loss's
SSIM replaced by the candidate; everything else equal) and prints loop seconds and hold-out PSNR / SSIM.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZES = [(1080, 1920), (529, 706), (265, 353), (132, 176)]


def _gauss(device, dtype):
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def ssim_conv2d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    x, y = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    c = x.shape[1]
    g = _gauss(x.device, x.dtype)
    w = (g[:, None] * g[None, :]).expand(c, 1, 11, 11).contiguous()
    n = x.shape[0]
    mx, my, sxx, syy, sxy = F.conv2d(torch.cat([x, y, x * x, y * y, x * y]), w, groups=c).split(n)
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mx * my + c1) * (2 * (sxy - mx * my) + c2)
    den = (mx * mx + my * my + c1) * (sxx - mx * mx + syy - my * my + c2)
    return (num / den).mean()


def candidates(device: torch.device) -> dict:
    from splatforge.splat.losses import ssim as separable
    from splatforge.splat.metrics import holdout_ssim

    out = {"separable": separable, "conv2d": ssim_conv2d, "torchmetrics": holdout_ssim}
    if device.type == "cuda":
        try:
            from fused_ssim import fused_ssim

            out["fused"] = lambda a, b: fused_ssim(a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2), padding="valid")
        except Exception as exc:  # not installed / no wheel for this torch
            print(f"fused-ssim unavailable: {exc}", file=sys.stderr)
    return out


def time_one(fn, h: int, w: int, device: torch.device, repeat: int) -> float:
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, h, w, 3, generator=g).to(device)
    render = (target + 0.1 * torch.randn(1, h, w, 3, generator=g).to(device)).clamp(0, 1).requires_grad_()

    def once():
        loss = 1 - fn(render, target)
        loss.backward()
        render.grad = None

    for _ in range(3):
        once()
    # CPU: process CPU time (a shared machine's wall time measures its neighbours); CUDA: wall time, synced
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = clock()
    for _ in range(repeat):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (clock() - t0) / repeat * 1000


def train_with(run_src: Path, scratch: Path, name: str, fn, args) -> dict:
    from train_bench import bench_one

    import splatforge.splat.losses as losses

    original = losses.ssim
    losses.ssim = fn  # photometric_loss looks `ssim` up in its module at call time
    try:
        ns = argparse.Namespace(set=[], steps=args.steps, downscale=1, backend="auto", log_every=100, gpu=0)
        row = bench_one(run_src, scratch / name, args.preset, ns)
    finally:
        losses.ssim = original
    return {"candidate": name, **{k: row[k] for k in ("steps", "wall_s", "steps_per_s", "psnr", "ssim", "num_gaussians")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=None, help="calls per timing (default: 50 cuda, 5 cpu)")
    ap.add_argument("--train", type=Path, default=None, help="a posed run folder: also train once per candidate")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/ssim_bench"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeat = args.repeat or (50 if device.type == "cuda" else 5)
    cands = candidates(device)
    rows = []
    unit = "wall ms" if device.type == "cuda" else f"CPU ms ({torch.get_num_threads()} threads)"
    print(f"SSIM forward+backward per call on {device}, {unit}")
    print("| size | " + " | ".join(cands) + " |")
    print("|---|" + "---|" * len(cands))
    for h, w in SIZES if device.type == "cuda" else SIZES[1:]:
        times = {name: time_one(fn, h, w, device, repeat) for name, fn in cands.items()}
        rows.append({"height": h, "width": w, **{k: round(v, 3) for k, v in times.items()}})
        print(f"| {w}x{h} | " + " | ".join(f"{times[n]:.2f}" for n in cands) + " |", flush=True)
    trained = []
    if args.train:
        for name in [n for n in cands if n != "torchmetrics"]:  # the metric is not a loss candidate
            trained.append(train_with(args.train, args.scratch, name, cands[name], args))
            print(trained[-1], flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "timings": rows, "training": trained}, indent=1))


if __name__ == "__main__":
    main()
