"""bench.json -> bench.md (one table per metric) and bench.html (plots), and the baseline comparison.

Regression rule (a cell present in both runs, compared on medians over repeats):
  * quality: PSNR lower by more than max(2 x spread, 0.1 dB), SSIM lower by more than max(2 x spread, 0.005);
  * time: training seconds higher by more than max(2 x spread, 10 % of the baseline).
`spread` is the larger of the two runs' half-ranges over repeats (0 with a single repeat).
"""

from __future__ import annotations

import base64
import io
import statistics
from pathlib import Path
from typing import Any

from splatforge.rundir import atomic_write_json, atomic_write_text


def median_and_spread(values: list[float]) -> tuple[float | None, float]:
    values = [v for v in values if v is not None]
    if not values:
        return None, 0.0
    return statistics.median(values), (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


# key, label, better ("max" | "min"), format
METRICS = [
    ("psnr", "Hold-out PSNR (dB)", "max", "{:.2f}"),
    ("ssim", "Hold-out SSIM", "max", "{:.4f}"),
    ("lpips", "Hold-out LPIPS", "min", "{:.4f}"),
    ("train_s", "Training time (s)", "min", "{:.1f}"),
    ("steps_per_s", "Steps per second", "max", "{:.1f}"),
    ("num_gaussians", "Gaussians", None, "{:,.0f}"),
    ("ply_mb", "PLY size (MB)", "min", "{:.1f}"),
    ("peak_gpu_mem_gb", "Peak GPU memory (GB)", "min", "{:.2f}"),
    ("gpu_busy_median", "GPU busy during training, median (%)", "max", "{:.0f}"),
    ("cpu_percent_median", "CPU load during training, median (% of one core)", None, "{:.0f}"),
]
RULES = {"psnr": ("down", 0.1, None), "ssim": ("down", 0.005, None), "train_s": ("up", 0.0, 0.10)}


def _stats(cells: list[dict], capture: str, preset: str, key: str) -> tuple[float | None, float, int]:
    values = [c.get(key) for c in cells if c["capture"] == capture and c["preset"] == preset and c.get("ok")]
    med, spread = median_and_spread(values)
    return med, spread, len([v for v in values if v is not None])


def compare(current: dict, baseline: dict) -> list[dict[str, Any]]:
    """Every cell and metric of RULES present in both; each with `delta` and `regression` (bool)."""
    rows = []
    for capture in current["captures"]:
        for preset in current["options"]["presets"]:
            for key, (direction, abs_tol, rel_tol) in RULES.items():
                now, s_now, n = _stats(current["cells"], capture, preset, key)
                then, s_then, m = _stats(baseline.get("cells", []), capture, preset, key)
                if now is None or then is None:
                    continue
                tol = max(2 * max(s_now, s_then), abs_tol, (rel_tol or 0) * abs(then))
                delta = now - then
                bad = delta < -tol if direction == "down" else delta > tol
                rows.append({"capture": capture, "preset": preset, "metric": key, "now": now, "baseline": then,
                             "delta": delta, "tolerance": tol, "regression": bool(bad)})
    return rows


def markdown(data: dict) -> str:
    captures = list(data["captures"])
    presets = data["options"]["presets"]
    cmp = {(r["capture"], r["preset"], r["metric"]): r for r in data.get("comparison", [])}
    m = data["machine"]
    gpu = ", ".join(g["name"] for g in m.get("gpus", [])) or "none"
    lines = [f"Bench of {data['date']} on {m.get('host')}: {m.get('cpu')} ({m.get('cores')} cores, "
             f"{m.get('ram_gb')} GB RAM), GPU: {gpu}; splatforge {data['versions'].get('splatforge')}, "
             f"torch {data['versions'].get('torch')}, gsplat {data['versions'].get('gsplat')}.", ""]
    if data.get("command"):
        lines += [f"Command: `{data['command']}`", ""]
    repeat = data["options"].get("repeat", 1)
    if repeat > 1:
        lines += [f"Cells show the median over {repeat} runs ± half the range.", ""]
    for key, label, better, fmt in METRICS:
        table = {}
        for c in captures:
            for p in presets:
                table[c, p] = _stats(data["cells"], c, p, key)
        if all(v[0] is None for v in table.values()):
            continue
        lines += [f"### {label}", "", "| capture | " + " | ".join(presets) + " |",
                  "|---|" + "---|" * len(presets)]
        for c in captures:
            vals = [table[c, p][0] for p in presets]
            present = [v for v in vals if v is not None]
            best = (max(present) if better == "max" else min(present)) if present and better else None
            cells = []
            for p, v in zip(presets, vals):
                if v is None:
                    cells.append("—")
                    continue
                text = fmt.format(v)
                if table[c, p][1]:
                    text += " ± " + fmt.format(table[c, p][1])
                if best is not None and v == best and len(present) > 1:
                    text = f"**{text}**"
                r = cmp.get((c, p, key))
                if r:
                    text += f" ({'+' if r['delta'] >= 0 else ''}{fmt.format(r['delta'])}{' ⚠ regression' if r['regression'] else ''})"
                cells.append(text)
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines.append("")
    failed = [c for c in data["cells"] if not c.get("ok")]
    if failed:
        lines += ["### Failed cells", ""] + [f"- {c['capture']} / {c['preset']} rep{c['rep']}: "
                                             f"{(c.get('error') or '').strip().splitlines()[-1:] or ['?']}" for c in failed]
    return "\n".join(lines) + "\n"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def html(data: dict, md: str) -> str:
    import html as h

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [c for c in data["cells"] if c.get("ok")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for preset in data["options"]["presets"]:
        pts = [(c["train_s"], c["psnr"]) for c in ok if c["preset"] == preset and c.get("psnr") is not None
               and c.get("train_s") is not None]
        if pts:
            ax.scatter(*zip(*pts), label=preset, s=40)
    for c in ok:
        if c.get("psnr") is not None and c.get("train_s") is not None:
            ax.annotate(c["capture"], (c["train_s"], c["psnr"]), fontsize=7, alpha=0.7)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("hold-out PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    scatter = _png(fig)
    plt.close(fig)

    stages = ("frames", "check", "poses", "train", "export", "report")
    labels = [f"{c['capture']}\n{c['preset']} r{c['rep']}" for c in ok]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(ok) + 2), 4.5))
    bottom = [0.0] * len(ok)
    for stage in stages:
        vals = [(c["seconds"].get(stage) or 0.0) for c in ok]
        ax.bar(range(len(ok)), vals, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(ok)), labels, fontsize=7)
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    stacked = _png(fig)
    plt.close(fig)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>splatforge bench</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
img{{max-width:100%}} pre{{white-space:pre-wrap;background:#f6f6f6;padding:1em;border-radius:6px}}</style></head>
<body><h1>splatforge bench</h1>
<h2>Hold-out PSNR against training time</h2><img alt="PSNR vs time" src="data:image/png;base64,{scatter}">
<h2>Time per stage</h2><img alt="time per stage" src="data:image/png;base64,{stacked}">
<h2>Tables</h2><pre>{h.escape(md)}</pre></body></html>"""


def write_outputs(data: dict, bench_dir: Path, baseline: dict | None = None) -> dict:
    if baseline is not None:
        data["comparison"] = compare(data, baseline)
        data["regressions"] = [r for r in data["comparison"] if r["regression"]]
    md = markdown(data)
    atomic_write_json(Path(bench_dir) / "bench.json", data)
    atomic_write_text(Path(bench_dir) / "bench.md", md)
    atomic_write_text(Path(bench_dir) / "bench.html", html(data, md))
    return data
