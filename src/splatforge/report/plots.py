"""The report's plots, drawn with matplotlib's Agg canvas (no pyplot, no display) and returned as PNG bytes.

Each plot is one small figure, so the HTML can stack them on a phone and put them side by side on a
desktop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from splatforge.report import fmt


@dataclass(frozen=True)
class PlotOptions:
    width_in: float = 4.2
    height_in: float = 2.9
    dpi: int = 130
    color: str = "#2563eb"
    eval_color: str = "#dc2626"


def _figure(opts: PlotOptions, size: tuple[float, float] | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size or (opts.width_in, opts.height_in), dpi=opts.dpi)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _plane_basis(centers: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(e1, e2, u): u the scene's up direction, e1/e2 spanning the ground plane, e1 x e2 = u.

    Up is the cameras' mean up vector (people hold cameras roughly upright); when those disagree
    (e.g. a turntable shot from every side) it falls back to the normal of the cameras' best-fit plane.
    """
    mean_up = up.mean(axis=0) if len(up) else np.zeros(3)
    if np.linalg.norm(mean_up) > 0.3:
        u = mean_up / np.linalg.norm(mean_up)
    elif len(centers) >= 3:
        u = np.linalg.svd(centers - centers.mean(0))[2][2]
    else:
        u = np.array([0.0, 0.0, 1.0])
    # e1: the direction of largest spread of the cameras within the plane (a stable, readable layout).
    flat = centers - centers.mean(0)
    flat = flat - np.outer(flat @ u, u)
    e1 = np.linalg.svd(flat)[2][0] if len(centers) >= 2 and np.abs(flat).max() > 0 else np.zeros(3)
    if np.linalg.norm(e1) < 0.5:
        helper = np.array([1.0, 0.0, 0.0]) if abs(u[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        e1 = helper - (helper @ u) * u
    e1 = e1 / np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    return e1, e2, u


def camera_topdown(geometry: dict[str, Any], max_points: int = 4000, opts: PlotOptions | None = None) -> bytes:
    """Top-down view of camera positions (coloured by order) with their viewing directions and, in grey,
    the sparse points. geometry: centers (N,3), forward (N,3), up (N,3), points (M,3) | None."""
    opts = opts or PlotOptions()
    centers = np.asarray(geometry["centers"], dtype=np.float64).reshape(-1, 3)
    forward = np.asarray(geometry["forward"], dtype=np.float64).reshape(-1, 3)
    e1, e2, _ = _plane_basis(centers, np.asarray(geometry["up"], dtype=np.float64).reshape(-1, 3))
    xy = np.stack([centers @ e1, centers @ e2], axis=1)
    dirs = np.stack([forward @ e1, forward @ e2], axis=1)

    fig = _figure(opts, (opts.width_in, opts.width_in * 0.9))
    ax = fig.add_subplot()
    spread = float(np.ptp(xy, axis=0).max()) if len(xy) > 1 else 1.0
    spread = spread if spread > 0 else 1.0
    points = geometry.get("points")
    lo, hi = xy.min(0), xy.max(0)
    if points is not None and len(points):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if len(pts) > max_points:
            pts = pts[np.random.default_rng(0).choice(len(pts), max_points, replace=False)]
        pxy = np.stack([pts @ e1, pts @ e2], axis=1)
        # Sparse points have far outliers: frame the bulk of them, not every stray one.
        plo, phi = np.percentile(pxy, 3, axis=0), np.percentile(pxy, 97, axis=0)
        lo, hi = np.minimum(lo, plo), np.maximum(hi, phi)
        ax.scatter(pxy[:, 0], pxy[:, 1], s=1.5, c="#9ca3af", alpha=0.5, linewidths=0, label="sparse points")
    order = np.arange(len(xy))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=order, cmap="viridis", s=18, zorder=3, edgecolors="white",
                    linewidths=0.4, label="cameras")
    arrow = 0.06 * spread
    norms = np.linalg.norm(dirs, axis=1, keepdims=True)
    dirs = np.where(norms > 1e-9, dirs / np.maximum(norms, 1e-9), 0.0)
    ax.quiver(xy[:, 0], xy[:, 1], dirs[:, 0] * arrow, dirs[:, 1] * arrow, order, cmap="viridis",
              angles="xy", scale_units="xy", scale=1, width=0.004, zorder=2)
    # Equal axes in a square box: distances read the same in both directions.
    mid, half = (lo + hi) / 2, 0.54 * max(float((hi - lo).max()), spread)
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(f"{len(xy)} cameras seen from above")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(xy) > 1:
        cbar = fig.colorbar(sc, ax=ax, fraction=0.04, pad=0.02)
        cbar.set_label("image order")
    if points is not None and len(points):
        ax.legend(loc="upper right", fontsize=7, markerscale=2, framealpha=0.8)
    return _png(fig)


def _time_axis(ax, steps: np.ndarray, seconds: np.ndarray) -> None:
    """A second x axis on top: wall time, interpolated from the logged (step, elapsed) pairs."""
    keep = np.concatenate([[True], np.diff(steps) > 0])
    steps, seconds = steps[keep], np.maximum.accumulate(seconds[keep])
    if len(steps) < 2 or seconds[-1] <= seconds[0]:
        return
    scale, unit = (60.0, "min") if seconds[-1] > 180 else (1.0, "s")

    def to_time(s):
        return np.interp(s, steps, seconds) / scale

    def to_step(t):
        return np.interp(np.asarray(t) * scale, seconds, steps)

    top = ax.secondary_xaxis("top", functions=(to_time, to_step))
    top.tick_params(labelsize=7)
    ax.set_xlabel(f"step (top axis: time in {unit})", fontsize=8)


def training_curves(logs: list[dict], evals: list[dict], opts: PlotOptions | None = None) -> dict[str, bytes]:
    """PNG per curve: "loss", "psnr" (training and hold-out), "gaussians", "eval" (SSIM/LPIPS), each
    against steps (bottom axis) and wall time (top axis). Curves without data are left out."""
    opts = opts or PlotOptions()
    out: dict[str, bytes] = {}

    def series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        arr = np.array(pairs, dtype=np.float64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    time_rows = [r for r in logs + evals if isinstance(r.get("elapsed_s"), (int, float))]
    time_rows.sort(key=lambda r: r["step"])
    t_steps, t_secs = series(time_rows, "elapsed_s")
    eval_rows = [{"step": r["step"], **r["eval"]} for r in evals]

    def panel(name: str, title: str, ylabel: str, draw) -> None:
        fig = _figure(opts)
        ax = fig.add_subplot()
        if not draw(ax):
            return
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)  # _time_axis says more when it adds the time axis
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        _time_axis(ax, t_steps, t_secs)
        out[name] = _png(fig)

    def draw_loss(ax) -> bool:
        x, y = series(logs, "loss")
        if not len(x):
            return False
        ax.plot(x, y, color=opts.color, lw=1.2, marker="o" if len(x) < 3 else None)
        if (y > 0).all() and y.max() / max(y.min(), 1e-12) > 20:
            ax.set_yscale("log")
        return True

    def draw_psnr(ax) -> bool:
        x, y = series(logs, "psnr")
        ex, ey = series(eval_rows, "psnr")
        if not len(x) and not len(ex):
            return False
        if len(x):
            ax.plot(x, y, color=opts.color, lw=1.2, label="training views", marker="o" if len(x) < 3 else None)
        if len(ex):
            ax.plot(ex, ey, "o-", color=opts.eval_color, lw=1.2, ms=4, label="held-out views")
            ax.annotate(f"{ey[-1]:.2f} dB", (ex[-1], ey[-1]), textcoords="offset points", xytext=(-6, -4),
                        ha="right", va="top", fontsize=8, color=opts.eval_color)
        ax.legend(fontsize=7, loc="lower right")
        return True

    def draw_gaussians(ax) -> bool:
        x, y = series(logs, "num_gaussians")
        if not len(x):
            return False
        ax.plot(x, y / 1e6, color=opts.color, lw=1.2, marker="o" if len(x) < 3 else None)
        ax.annotate(fmt.count(y[-1]), (x[-1], y[-1] / 1e6), textcoords="offset points", xytext=(-6, -4),
                    ha="right", va="top", fontsize=8)
        return True

    def draw_eval(ax) -> bool:
        sx, sy = series(eval_rows, "ssim")
        lx, ly = series(eval_rows, "lpips")
        if not len(sx) and not len(lx):
            return False
        if len(sx):
            ax.plot(sx, sy, "o-", color=opts.eval_color, lw=1.2, ms=4, label="SSIM (higher is better)")
        if len(lx):
            ax.plot(lx, ly, "s--", color="#7c3aed", lw=1.2, ms=4, label="LPIPS (lower is better)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="center right")
        return True

    panel("loss", "Training loss", "loss", draw_loss)
    panel("psnr", "PSNR", "PSNR (dB)", draw_psnr)
    panel("gaussians", "Number of Gaussians", "millions", draw_gaussians)
    panel("eval", "Hold-out SSIM and LPIPS", "", draw_eval)
    return out


_STATUS_COLORS = {"done": "#16a34a", "failed": "#dc2626", "interrupted": "#dc2626", "running": "#9ca3af"}


def stage_times(rows: list[dict], opts: PlotOptions | None = None) -> bytes | None:
    """Horizontal bars of seconds per stage, coloured by status. None when no stage has a time."""
    opts = opts or PlotOptions()
    rows = [r for r in rows if r.get("seconds") is not None]
    if not rows:
        return None
    fig = _figure(opts, (opts.width_in * 1.3, 0.45 * len(rows) + 0.9))
    ax = fig.add_subplot()
    names = [r["name"] for r in rows][::-1]
    secs = np.array([r["seconds"] for r in rows][::-1], dtype=np.float64)
    colors = [_STATUS_COLORS.get(r.get("status"), "#6b7280") for r in rows][::-1]
    ax.barh(names, secs, color=colors)
    for i, s in enumerate(secs):
        ax.annotate(fmt.duration(s), (s, i), textcoords="offset points", xytext=(4, 0), va="center", fontsize=8)
    ax.set_xlim(0, max(float(secs.max()), 1e-3) * 1.25)
    ax.set_xlabel("seconds", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def capture_measures(images: list[dict], opts: PlotOptions | None = None) -> bytes | None:
    """Per-image sharpness (bars; flagged images in red) and feature count (line) from quality.json's
    `images`. None when the images carry neither measure."""
    opts = opts or PlotOptions()
    sharp = np.array([_float(m.get("sharpness")) for m in images])
    feats = np.array([_float(m.get("features")) for m in images])
    if np.isnan(sharp).all() and np.isnan(feats).all():
        return None
    x = np.array([m.get("index", i + 1) for i, m in enumerate(images)], dtype=np.float64)
    flagged = np.array([bool(m.get("flags")) for m in images])
    fig = _figure(opts, (opts.width_in * 1.5, opts.height_in))
    ax = fig.add_subplot()
    if not np.isnan(sharp).all():
        ax.bar(x, np.nan_to_num(sharp), width=0.8, color=np.where(flagged, "#dc2626", "#93c5fd"))
        ax.set_ylabel("sharpness (bars; red = flagged)", fontsize=8)
    if not np.isnan(feats).all():
        twin = ax.twinx()
        twin.plot(x, feats, color="#1e3a8a", lw=1.0, marker=".", ms=3)
        twin.set_ylabel("features (line)", fontsize=8)
        twin.tick_params(labelsize=7)
        twin.set_ylim(bottom=0)
    ax.set_xlabel("image", fontsize=8)
    ax.set_title("Per-image measures", fontsize=10)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")
