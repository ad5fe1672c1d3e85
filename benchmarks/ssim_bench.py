"""The loss's SSIM: fused Triton kernels (splat/fused_ssim.py) vs the reference (cuDNN convolutions).

    python benchmarks/ssim_bench.py [--json OUT]       # GPU: 1080x1920, 540x960, 270x480, batch 1
    python benchmarks/ssim_bench.py --interpret        # CPU check of this script: Triton's interpreter, tiny sizes
    python benchmarks/ssim_bench.py --tiles 4x128/8x64/w4,8x256/32x64/w8   # also time other tile shapes

Needs only torch (with Triton, as its CUDA builds have) and this checkout's src/ (put on sys.path here).
Per size and path, float32 images as the trainer passes them ([B, H, W, 3], contiguous):
  fwd+bwd ms   wall time of one forward+backward (synchronised, mean over --repeats after warm-up; the
               Python and launch overhead of each path counts, as in training)
  fwd ms       forward only, under no_grad (evaluation)
  gpu ms       GPU kernel time of one forward+backward (torch.profiler, CUDA activity only)
  peak MB      GPU memory a forward+backward allocates beyond its inputs
and how far apart they are: max |difference| of the SSIM value and of its gradient, fused vs reference
(both float32; the reference's convolutions use TF32 when cudnn.allow_tf32 is on, the default) and each
vs the reference in float64. `dispatch` says which path `losses.ssim` took for these images.
--tiles adds fused rows with other tiles (row-wise kernels ROWSxBLOCK / column-wise ROWSxBLOCK / warps);
the differences are those of the default tiles.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

GPU_SIZES = "1080x1920,540x960,270x480"
INTERPRET_SIZES = "24x40,13x17,7x9"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        h, w = item.lower().split("x")
        sizes.append((int(h), int(w)))
    return sizes


def parse_tiles(text: str | None) -> list[tuple[tuple[int, int], tuple[int, int], int]]:
    """'8x128/16x64/w8,...' -> [((8, 128), (16, 64), 8), ...]; every size a power of two (Triton's arange)."""
    configs = []
    for item in (text or "").split(","):
        if not item:
            continue
        row, column, warps = item.split("/")
        row_tile, column_tile = (tuple(int(v) for v in t.lower().split("x")) for t in (row, column))
        config = (row_tile, column_tile, int(warps.lstrip("w")))
        if any(v < 1 or v & (v - 1) for v in (*row_tile, *column_tile, config[2])):
            sys.exit(f"--tiles {item}: every size must be a power of two")
        configs.append(config)
    return configs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", help=f"HxW,... (default {GPU_SIZES}; with --interpret {INTERPRET_SIZES})")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, help="timed steps per measurement (default 50; 2 with --interpret)")
    ap.add_argument("--interpret", action="store_true",
                    help="run the kernels in Triton's interpreter on CPU tensors (checks this script, no GPU)")
    ap.add_argument("--tiles", help="also time the fused path with these tiles, e.g. 4x128/8x64/w4,8x256/32x64/w8")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # must precede the first import of triton
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

    import torch
    import triton

    from splatforge.splat import fused_ssim as fused_module
    from splatforge.splat import losses
    from splatforge.splat.fused_ssim import fused_ssim

    if not args.interpret and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --interpret to check the script on the CPU")
    device = torch.device("cpu" if args.interpret else "cuda")
    sizes = parse_sizes(args.sizes or (INTERPRET_SIZES if args.interpret else GPU_SIZES))
    repeats = args.repeats or (2 if args.interpret else 50)
    warmup = 1 if args.interpret else 10

    def reference(a, b):
        with mock.patch.dict(os.environ, {"SPLATFORGE_FUSED_SSIM": "0"}):
            return losses.ssim(a, b)

    @contextlib.contextmanager
    def tiles(config):
        """The fused kernels' tiles set to `config` (None: the module's) for forward and backward alike."""
        if config is None:
            yield
            return
        saved = fused_module.ROW_TILE, fused_module.COLUMN_TILE, fused_module.NUM_WARPS
        fused_module.ROW_TILE, fused_module.COLUMN_TILE, fused_module.NUM_WARPS = config
        try:
            yield
        finally:
            fused_module.ROW_TILE, fused_module.COLUMN_TILE, fused_module.NUM_WARPS = saved

    def tiles_label(config):
        (r0, b0), (r1, b1), w = config
        return f"fused {r0}x{b0}/{r1}x{b1}/w{w}"

    # label -> (function, tiles); the first two carry the comparisons
    paths = {"fused": (fused_ssim, None), "reference": (reference, None)}
    paths.update({tiles_label(c): (fused_ssim, c) for c in parse_tiles(args.tiles)})

    def dispatched_path(a, b):
        calls = []

        def spy(*xs):
            calls.append(1)
            return fused_ssim(*xs)

        with mock.patch.object(losses, "_fused_ssim", lambda: spy):
            losses.ssim(a, b)
        return "fused" if calls else "reference"

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def image_pair(h, w):
        """A smooth image with noise (render-like) and a perturbed copy (the photo), in [0, 1], float32."""
        gen = torch.Generator(device=device).manual_seed(h * 10_000 + w)
        shape = (args.batch, h, w, 3)
        coarse = torch.rand((args.batch, 3, max(h // 8, 1), max(w // 8, 1)), generator=gen, device=device)
        smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear").permute(0, 2, 3, 1)
        render = (smooth + 0.05 * torch.randn(shape, generator=gen, device=device)).clamp(0, 1).contiguous()
        photo = (0.9 * render + 0.1 * torch.rand(shape, generator=gen, device=device)).clamp(0, 1).contiguous()
        return render, photo

    def value_and_grad(fn, a, b):
        a = a.detach().clone().requires_grad_(True)
        value = fn(a, b)
        value.backward()
        return value.detach(), a.grad

    def step_fn(fn, a, b, backward):
        a = a.detach().clone().requires_grad_(backward)

        def step():
            if backward:
                a.grad = None
                fn(a, b).backward()
            else:
                with torch.no_grad():
                    fn(a, b)

        return step

    def wall_ms(step):
        for _ in range(warmup):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        sync()
        return (time.perf_counter() - t0) / repeats * 1e3

    def gpu_ms(step):
        if device.type != "cuda":
            return None
        try:
            from torch.profiler import ProfilerActivity, profile

            n = min(repeats, 10)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(n):
                    step()
                sync()
            us = sum(getattr(ev, "self_device_time_total", None) or getattr(ev, "self_cuda_time_total", 0)
                     for ev in prof.key_averages())
            return us / n / 1000
        except Exception as exc:  # the profiler is a nicety: never lose the other numbers to it
            print(f"profiler failed: {exc!r}", file=sys.stderr)
            return None

    def peak_mb(step):
        if device.type != "cuda":
            return None
        sync()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        sync()
        return (torch.cuda.max_memory_allocated() - base) / 2**20

    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (Triton interpreter)"
    tf32 = torch.backends.cudnn.allow_tf32
    print(f"{name}; torch {torch.__version__}, triton {triton.__version__}, cudnn.allow_tf32={tf32}, "
          f"batch {args.batch}, {repeats} timed steps")
    rows = []
    for h, w in sizes:
        a, b = image_pair(h, w)
        row: dict = {"size": f"{h}x{w}", "batch": args.batch}
        for label, (fn, config) in paths.items():
            with tiles(config):
                step = step_fn(fn, a, b, backward=True)
                row[label] = {"fwd_bwd_ms": wall_ms(step), "fwd_ms": wall_ms(step_fn(fn, a, b, backward=False)),
                              "gpu_ms": gpu_ms(step), "peak_mb": peak_mb(step)}
        v_f, g_f = value_and_grad(fused_ssim, a, b)
        v_r, g_r = value_and_grad(reference, a, b)
        v_64, g_64 = value_and_grad(reference, a.double(), b.double())
        row["dispatch"] = dispatched_path(a, b)
        row["ssim"] = float(v_64)
        row["grad_max"] = float(g_64.abs().max())
        row["diff"] = {
            "value_fused_vs_ref32": abs(float(v_f) - float(v_r)),
            "value_fused_vs_ref64": abs(float(v_f) - float(v_64)),
            "value_ref32_vs_ref64": abs(float(v_r) - float(v_64)),
            "grad_fused_vs_ref32": float((g_f - g_r).abs().max()),
            "grad_fused_vs_ref64": float((g_f.double() - g_64).abs().max()),
            "grad_ref32_vs_ref64": float((g_r.double() - g_64).abs().max()),
        }
        rows.append(row)
        del a, b, g_f, g_r, g_64

    def num(x, width, precision):
        return f"{'-':>{width}}" if x is None else f"{x:>{width}.{precision}f}"

    width = max(len(label) for label in paths)
    print(f"\n{'size':>10} {'path':>{width}} {'fwd+bwd ms':>11} {'fwd ms':>8} {'gpu ms':>8} {'peak MB':>8}")
    for row in rows:
        for label in paths:
            r = row[label]
            print(f"{row['size']:>10} {label:>{width}} {r['fwd_bwd_ms']:>11.3f} {r['fwd_ms']:>8.3f} "
                  f"{num(r['gpu_ms'], 8, 3)} {num(r['peak_mb'], 8, 1)}")
        speed = row["reference"]["fwd_bwd_ms"] / row["fused"]["fwd_bwd_ms"]
        print(f"{'':>10} {'speed-up':>{width}} {speed:>10.1f}x   (losses.ssim dispatches to: {row['dispatch']})")
    print(f"\n{'size':>10} {'SSIM':>8} {'max|grad|':>10}   max |difference|: value (fused-ref32, fused-ref64, "
          "ref32-ref64); gradient (same)")
    for row in rows:
        d = row["diff"]
        print(f"{row['size']:>10} {row['ssim']:>8.5f} {row['grad_max']:>10.3e}   "
              f"{d['value_fused_vs_ref32']:.1e} {d['value_fused_vs_ref64']:.1e} {d['value_ref32_vs_ref64']:.1e}; "
              f"{d['grad_fused_vs_ref32']:.1e} {d['grad_fused_vs_ref64']:.1e} {d['grad_ref32_vs_ref64']:.1e}")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "triton": triton.__version__,
                                         "cudnn_allow_tf32": tf32, "repeats": repeats, "tiles": {
                                             "default": [fused_module.ROW_TILE, fused_module.COLUMN_TILE,
                                                         fused_module.NUM_WARPS]}, "rows": rows}, indent=2))
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
