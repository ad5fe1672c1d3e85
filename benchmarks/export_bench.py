"""Export formats on one splat: file size, export time and (optionally) hold-out PSNR from the decoded file.

    python benchmarks/export_bench.py RUN                      # the run's newest checkpoint, every format
    python benchmarks/export_bench.py RUN --psnr               # + PSNR of each decoded file on the held-out views
    python benchmarks/export_bench.py --synthetic 1000000      # a synthetic splat of N Gaussians (size and time)
    python benchmarks/export_bench.py RUN --formats ply,sog --json out.json

Each format is written with `splatforge.splat.formats.write_splat` (what `splatforge export` does) into a
scratch folder, timed in wall seconds and CPU seconds (this process plus child processes: splat-transform
runs in Node.js), then read back with `read_splat` (timed too). With --psnr the decoded Gaussians are
rendered from the run's held-out cameras (every --test-every-th image of transforms.json, at the
training's downscale) with gsplat on CUDA, or with the PyTorch reference rasteriser elsewhere (small
scenes only), and compared with the photographs; the PLY's row is the exact splat, the others show
what each format loses. Where Node.js or splat-transform is missing (the GPU host), SPZ and SOG are not
written and the other compact formats are not read back (splat-transform is their reader), each with
the reason.

The synthetic splat imitates a trained MCMC one (Gaussians on noisy surfaces, log scales around -4.5,
opacities spread over (0, 1), small SH); real scenes compress somewhat better (smoother attributes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def synthetic_splat(n: int, sh_degree: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """N Gaussians on three noisy surfaces (a sphere, a box, a ground plane) with attributes that vary
    smoothly over space plus noise, as in a trained splat."""
    g = torch.Generator().manual_seed(seed)
    part = torch.randint(0, 3, (n,), generator=g)
    u = torch.rand(n, 3, generator=g)
    sphere = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1) * 1.0
    box = (u - 0.5) * 1.6
    face = torch.randint(0, 3, (n,), generator=g)
    box[torch.arange(n), face] = torch.sign(box[torch.arange(n), face]) * 0.8
    box = box + torch.tensor([2.5, 0.0, 0.0])
    ground = torch.stack([(u[:, 0] - 0.5) * 10, torch.full((n,), 1.2), (u[:, 1] - 0.5) * 10], 1)
    means = torch.where((part == 0)[:, None], sphere, torch.where((part == 1)[:, None], box, ground))
    means = means + torch.randn(n, 3, generator=g) * 0.01
    k = (sh_degree + 1) ** 2 - 1
    smooth = torch.sin(means @ torch.randn(3, 3, generator=g) * 2.0)  # colour field over space
    return {
        "means": means,
        "scales": (torch.randn(n, 3, generator=g) * 0.6 - 4.5).clamp(-9, -1),
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) * 1.5,
        "sh0": (smooth * 0.25 + torch.randn(n, 3, generator=g) * 0.1)[:, None, :] / 0.2821,
        "shN": (smooth[:, None, :] * torch.linspace(0.08, 0.01, k)[None, :, None]
                + torch.randn(n, k, 3, generator=g) * 0.02),
    }


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, *args, **kwargs):
    w0, c0 = time.perf_counter(), cpu_seconds()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w0, cpu_seconds() - c0


def load_source(args) -> tuple[dict[str, torch.Tensor], str]:
    if args.synthetic:
        return synthetic_splat(args.synthetic, seed=args.seed), f"synthetic splat, {args.synthetic:,} Gaussians"
    from splatforge.rundir import RunDir
    from splatforge.splat.checkpoint import load_checkpoint, newest_checkpoint
    from splatforge.splat.formats import read_splat

    run = RunDir(args.run)
    newest = newest_checkpoint(run.checkpoints)
    if newest is not None:
        return load_checkpoint(newest)["params"], f"{run.root.name}: {newest.name}"
    if run.ply.is_file():
        return read_splat(run.ply), f"{run.root.name}: {run.ply.name}"
    sys.exit(f"{run.root} has neither checkpoints/ nor export/scene.ply")


class HoldOut:
    """The run's held-out views, and PSNR of a splat rendered from them."""

    def __init__(self, run_root: Path, test_every: int | None, downscale: float | None, device: str | None):
        from splatforge.rundir import RunDir
        from splatforge.scene import read_scene
        from splatforge.splat.data import DataOptions, load_data
        from splatforge.splat.render import resolve_backend

        run = RunDir(run_root)
        config = run.read_manifest()["stages"].get("train", {}).get("config", {})
        test_every = test_every or int(config.get("test_every") or 8)
        downscale = downscale or float(config.get("downscale") or 1.0)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.backend = resolve_backend("auto", self.device)
        self.rasterize_mode = "classic"
        try:
            from splatforge.splat.config import PRESETS

            self.rasterize_mode = PRESETS[config.get("preset") or "default"].rasterize_mode
        except (ImportError, KeyError) as exc:  # another layout of the presets, or a custom recipe
            print(f"preset {config.get('preset')!r}: {exc!r}; rendering in classic mode", file=sys.stderr)
        data = load_data(read_scene(run.transforms_json), DataOptions(test_every=test_every, downscale=downscale),
                         self.device)
        if data.test is None:
            sys.exit("the run has no held-out views (test_every 0)")
        self.views = data.test
        self.note = (f"{len(self.views)} held-out views (every {test_every}th), downscale {downscale:g}, "
                     f"{self.backend} on {self.device}, {self.rasterize_mode}")

    @torch.no_grad()
    def psnr(self, params: dict[str, torch.Tensor]) -> float:
        from splatforge.splat.formats import sh_degree_of
        from splatforge.splat.losses import psnr
        from splatforge.splat.render import render

        p = {k: v.to(self.device).float().contiguous() for k, v in params.items()}
        values = []
        for i in range(len(self.views)):
            gt, viewmat, k = self.views.batch(torch.tensor([i]), self.device)
            out = render(p, viewmat, k, gt.shape[2], gt.shape[1], sh_degree_of(p), backend=self.backend,
                         rasterize_mode=self.rasterize_mode)
            values.append(float(psnr(out.image.clamp(0, 1), gt)))
        return float(np.mean(values))


def main() -> None:
    from splatforge.errors import SplatforgeError
    from splatforge.splat.formats import FORMATS, format_named, read_splat, write_splat
    from splatforge.splat.formats import splat_transform as st

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="?", type=Path, help="run folder (newest checkpoint, else export/scene.ply)")
    ap.add_argument("--synthetic", type=int, default=0, help="use a synthetic splat of N Gaussians instead")
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated (default: all)")
    ap.add_argument("--sh-degree", type=int, default=None, help="keep SH up to this degree in every file")
    ap.add_argument("--psnr", action="store_true", help="hold-out PSNR from each decoded file (needs RUN)")
    ap.add_argument("--test-every", type=int, default=None, help="held-out views (default: the training's)")
    ap.add_argument("--downscale", type=float, default=None, help="image downscale (default: the training's)")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda if present)")
    ap.add_argument("--no-read", action="store_true", help="do not read the files back (size and time only)")
    ap.add_argument("--out", type=Path, default=None, help="keep the files here (default: a scratch folder)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if bool(args.run) == bool(args.synthetic):
        ap.error("give a run folder or --synthetic N")
    if args.psnr and not args.run:
        ap.error("--psnr needs a run folder (its held-out photographs)")
    formats = [format_named(name) for name in args.formats.split(",") if name]

    params, source = load_source(args)
    holdout = HoldOut(args.run, args.test_every, args.downscale, args.device) if args.psnr else None
    header = {"source": source, "gaussians": len(params["means"]), "sh_degree_kept": args.sh_degree,
              "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
                         f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}",
              "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
              "holdout": holdout.note if holdout else None}
    print(json.dumps(header, indent=1))
    baseline = holdout.psnr(params) if holdout else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-bench-") as scratch:
        folder = args.out or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            st.command("reading the compact formats back")
            no_node = None
        except SplatforgeError as exc:
            no_node = exc.message
        for fmt in formats:
            row = {"format": fmt.name, "lossy": fmt.lossy}
            if fmt.needs_node and no_node:
                row["skipped"] = no_node
                rows.append(row)
                print(f"{fmt.name}: skipped ({no_node})", flush=True)
                continue
            path = folder / f"scene{fmt.suffix}"
            _, wall, cpu = timed(write_splat, params, path, fmt, args.sh_degree)
            row.update(bytes=path.stat().st_size, write_s=round(wall, 2), write_cpu_s=round(cpu, 2))
            if fmt.name != "ply" and no_node:  # every reader but the PLY's is splat-transform's
                row["read_skipped"] = no_node
            elif not args.no_read or holdout:
                decoded, wall, cpu = timed(read_splat, path)
                row.update(read_s=round(wall, 2), read_cpu_s=round(cpu, 2), decoded=len(decoded["means"]))
                if holdout:
                    row["psnr"] = round(holdout.psnr(decoded), 3)
                    row["psnr_drop"] = round(baseline - row["psnr"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    ply_bytes = next((r["bytes"] for r in rows if r["format"] == "ply" and "bytes" in r), None)
    print()
    print("| format | size | vs PLY | write s (CPU s) | read s (CPU s) |" + (" hold-out PSNR | drop |" if holdout else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if holdout else ""))
    for r in rows:
        if "skipped" in r:
            print(f"| {r['format']} | skipped: {r['skipped']} |")
            continue
        ratio = f"{ply_bytes / r['bytes']:.1f}x smaller" if ply_bytes and r["format"] != "ply" else "-"
        read = f"{r['read_s']} ({r['read_cpu_s']})" if "read_s" in r else "-"
        line = (f"| {r['format']} | {r['bytes'] / 1e6:.2f} MB | {ratio} | {r['write_s']} ({r['write_cpu_s']}) | "
                f"{read} |")
        if holdout:
            line += f" {r['psnr']:.2f} dB | {r['psnr_drop']:+.3f} dB |" if "psnr" in r else " - | - |"
        print(line)
    if holdout:
        print(f"\nexact splat (before any file): {baseline:.3f} dB")
    if args.json:
        args.json.write_text(json.dumps({**header, "psnr_exact": baseline, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
