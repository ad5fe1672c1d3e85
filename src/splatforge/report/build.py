"""Gather everything a run folder says about itself into one report dict (-> report.json / report.html).

The report reads only files in the run folder (the contract in `splatforge.rundir`). Any of them may be
missing or broken (a stage not run, failed, or killed half way): every section then carries a `status`
and a plain `note` instead of numbers, and building the report itself never fails because of them.

Section statuses: "ok" (data present), "missing" (the stage has not run), "failed" (the stage failed;
`error` holds its message and advice from run.json), "running" (started, never finished: still running
or killed), "unreadable" (a file is there but could not be parsed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splatforge.rundir import RunDir, atomic_write_json, atomic_write_text, now_iso, read_json

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ReportOptions:
    """Knobs of the report. Thresholds are for the hold-out PSNR (dB) of a typical real capture."""

    psnr_good: float = 25.0  # at or above: "good"
    psnr_poor: float = 20.0  # below: "poor" (between the two: "fair")
    registered_warn_fraction: float = 0.8  # fewer registered images than this fraction: say so
    max_renders: int = 12  # held-out renders embedded in the HTML (the rest are listed)
    render_max_width: int = 1400  # pixels of an embedded render pair (render | photograph)
    render_jpeg_quality: int = 80
    max_embedded_bytes: int = 4_000_000  # JPEG bytes of embedded renders (base64 adds a third)
    max_plot_points: int = 4000  # sparse points drawn in the camera plot


# --------------------------------------------------------------------------------------------------
# small readers


def _read_json_file(path: Path) -> tuple[Any, str | None]:
    """(value, None) or (None, why it could not be read). A missing file is (None, None)."""
    if not path.exists():
        return None, None
    try:
        return read_json(path), None
    except (OSError, ValueError) as exc:
        return None, f"{path.name} could not be read: {exc}"


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """metrics.jsonl -> (log lines, eval lines). Lines that are not JSON (a run killed mid-write) are skipped."""
    logs: list[dict] = []
    evals: list[dict] = []
    if not path.exists():
        return logs, evals
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or "step" not in row:
            continue
        if isinstance(row.get("eval"), dict):
            evals.append(row)
        else:
            logs.append(row)
    logs.sort(key=lambda r: r["step"])
    evals.sort(key=lambda r: r["step"])
    return logs, evals


def ply_vertex_count(path: Path) -> int | None:
    """Number of vertices (Gaussians) from a PLY header, without reading the body."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return None
    for line in head[:end].decode("ascii", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "element" and parts[1] == "vertex":
            return int(parts[2])
    return None


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


# --------------------------------------------------------------------------------------------------
# sections


def _stage_note(stages: dict[str, dict], stage: str, what: str) -> dict[str, Any]:
    """The section for `what` when its file is absent: why, from the stage's entry in run.json."""
    entry = stages.get(stage) or {}
    status = entry.get("status")
    if status in ("failed", "interrupted"):
        error = entry.get("error") or {}
        return {"status": "failed",
                "note": f"The {stage} stage {status}, so there is no {what}.",
                "error": {"type": error.get("type"), "message": error.get("message"),
                          "advice": error.get("advice")}}
    if status == "running":
        return {"status": "running",
                "note": f"The {stage} stage started but has not finished (still running, or killed), "
                        f"so there is no {what} yet."}
    if status == "done":
        return {"status": "missing", "note": f"The {stage} stage finished but wrote no {what}."}
    return {"status": "missing", "note": f"The {stage} stage has not run, so there is no {what}."}


def stages_section(manifest: dict) -> dict[str, Any]:
    stages = manifest.get("stages") or {}
    rows = []
    # The report stage is the one running now (it writes this): it is not part of what it reports.
    # run.json keeps the stages in the order they first ran, which is the pipeline's order.
    names = [s for s in stages if s != "report"]
    for name in names:
        entry = stages[name] or {}
        error = entry.get("error") or None
        rows.append({
            "name": name,
            "status": entry.get("status"),
            "start": entry.get("start"),
            "end": entry.get("end"),
            "seconds": _num(entry.get("seconds")),
            "error": None if not error else {"type": error.get("type"), "message": error.get("message"),
                                             "advice": error.get("advice")},
            # an earlier run of this stage that died without an error (see splatforge.postmortem)
            "previous_death": entry.get("previous_death"),
        })
    total = sum(r["seconds"] or 0.0 for r in rows)
    failed = [r["name"] for r in rows if r["status"] in ("failed", "interrupted")]
    return {"stages": rows, "total_seconds": total if rows else None, "failed": failed,
            "created": manifest.get("created")}


# Keys of quality.json's summary worth showing a person (the rest are options and raw groupings).
_CAPTURE_SUMMARY_KEYS = ("largest_component", "connected_share", "median_sharpness", "flag_counts",
                         "cameras", "resolutions", "penalties")


def capture_section(run: RunDir, stages: dict) -> tuple[dict[str, Any], list[dict] | None]:
    """(section, per-image measures for the plot or None)."""
    data, err = _read_json_file(run.quality_json)
    if err:
        return {"status": "unreadable", "note": err}, None
    if data is None:
        return _stage_note(stages, "check", "capture quality check"), None
    images = [m for m in data.get("images") or [] if isinstance(m, dict)]
    summary = data.get("summary") or {}
    shown = {}
    for key in _CAPTURE_SUMMARY_KEYS:
        value = summary.get(key)
        if isinstance(value, dict):  # flag counts, penalties: only what is not zero
            value = {k: v for k, v in value.items() if v}
        if value not in (None, {}, []):
            shown[key] = value
    flagged = [{"name": m.get("name") or m.get("file"), "flags": list(m.get("flags") or [])}
               for m in images if m.get("flags")]
    contact = run.quality_dir / "index.html"
    section = {
        "status": "ok",
        "score": _num(data.get("score")),
        "verdict": data.get("verdict"),
        "advice": [str(a) for a in data.get("advice") or []],
        "summary": shown,
        "num_images": len(images),
        "flagged": flagged,
        "contact_sheet": contact.relative_to(run.root).as_posix() if contact.exists() else None,
    }
    return section, (images or None)


def _camera_geometry(run: RunDir) -> dict[str, Any] | None:
    """Posed cameras: centers (N,3), forward (N,3) and up (N,3) unit vectors in world coordinates, sparse
    points (M,3) or None, and the file they came from."""
    from splatforge.scene import read_colmap, read_transforms
    from splatforge.scene.conventions import viewing_direction

    scene, source = None, None
    if run.transforms_json.exists():
        try:
            scene, source = read_transforms(run.transforms_json), "transforms.json"
        except Exception as exc:  # broken or images gone: try the COLMAP model next
            log.debug("transforms.json not usable for the report: %s", exc)
    if scene is None and run.sparse.is_dir():
        try:
            scene, source = read_colmap(run.sparse, run.frames), "sparse/0"
        except Exception as exc:
            log.debug("sparse/0 not usable for the report: %s", exc)
    if scene is None or not scene.frames:
        return None
    forward = np.array([viewing_direction(f.w2c) for f in scene.frames]).reshape(-1, 3)
    up = np.array([-f.w2c[1, :3] for f in scene.frames]).reshape(-1, 3)  # OpenCV y points down
    return {"centers": scene.centers, "forward": forward, "up": up, "points": scene.points, "source": source}


def poses_section(run: RunDir, stages: dict) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(section, geometry for the plot or None)."""
    data, err = _read_json_file(run.poses_json)
    if err:
        return {"status": "unreadable", "note": err}, None
    geometry = None
    try:
        geometry = _camera_geometry(run)
    except Exception as exc:
        log.debug("camera positions unavailable: %s", exc)
    if data is None and geometry is None:
        return _stage_note(stages, "poses", "camera pose result"), None
    data = data or {}
    registered, total = data.get("registered"), data.get("total")
    section: dict[str, Any] = {
        "status": "ok",
        "engine": data.get("engine"),
        "registered": registered,
        "total": total,
        "registered_fraction": (registered / total) if registered is not None and total else None,
        "unregistered": list(data.get("unregistered") or []),
        "mean_reprojection_error": _num(data.get("mean_reprojection_error")),
        "points": data.get("points"),
        "seconds": data.get("seconds") or {},
        "model": data.get("model"),
        "matching": data.get("matching"),
        "mapper": data.get("mapper"),
        "unregistered_reasons": data.get("unregistered_reasons") or {},
        "notes": [str(n) for n in data.get("notes") or []],
    }
    if not run.poses_json.exists():
        section["note"] = "poses.json is missing; camera positions come from the scene files."
    plot = None
    if geometry is not None:
        section["camera_source"] = geometry["source"]
        section["num_cameras"] = int(len(geometry["centers"]))
        section["camera_positions"] = np.round(geometry["centers"], 5).tolist()
        plot = geometry
    return section, plot


def training_section(run: RunDir, stages: dict) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(section, curves for the plots or None)."""
    final, err = _read_json_file(run.train_json)
    logs, evals = read_metrics(run.metrics_jsonl)
    if err and not logs:
        return {"status": "unreadable", "note": err}, None
    if final is None and not logs and not evals:
        return _stage_note(stages, "train", "training result"), None
    section: dict[str, Any] = {"status": "ok"}
    if final is None:
        stub = _stage_note(stages, "train", "train.json")
        section.update(status="partial", note=stub["note"].replace("train.json", "final result (train.json)")
                       + " The numbers and curves below are from metrics.jsonl: how far it got.")
        if "error" in stub:
            section["error"] = stub["error"]
        final = {}
    final_eval = final.get("eval") or (evals[-1]["eval"] if evals else {}) or {}
    last = logs[-1] if logs else {}
    section.update({
        "steps": final.get("steps", last.get("step")),
        "seconds": _num(final.get("seconds", last.get("elapsed_s"))),
        "backend": final.get("backend"),
        "device": final.get("device"),
        "preset": final.get("preset"),
        "steps_per_s": _num(final.get("steps_per_s", last.get("steps_per_s"))),
        "peak_gpu_mem_gb": _num(final.get("peak_gpu_mem_gb")) if "peak_gpu_mem_gb" in final
        else max((m for m in (_num(r.get("gpu_mem_gb")) for r in logs) if m is not None), default=None),
        "num_gaussians": final.get("num_gaussians", last.get("num_gaussians")),
        "eval": {"psnr": _num(final_eval.get("psnr")), "ssim": _num(final_eval.get("ssim")),
                 "lpips": _num(final_eval.get("lpips"))},
        "eval_history": [{"step": r["step"], "elapsed_s": _num(r.get("elapsed_s")),
                          **{k: _num(r["eval"].get(k)) for k in ("psnr", "ssim", "lpips")}} for r in evals],
        "eval_on": final.get("eval_on", "held-out" if evals else None),
        "held_out": final.get("held_out"),
        "train_views": final.get("train_views"),
        "resolution": final.get("resolution"),
        "initial_eval": final.get("initial_eval"),
        "lpips_note": final.get("lpips_note"),
        "log_lines": len(logs),
        "final_loss": _num(last.get("loss")),
        "final_train_psnr": _num(last.get("psnr")),
    })
    return section, ({"logs": logs, "evals": evals} if logs or evals else None)


def pair_psnr(path: Path) -> float | None:
    """PSNR (dB, 8-bit) between the two halves of a render | photograph PNG; None if it is not such a pair."""
    from splatforge.capture.imageio import read_image

    pixels = read_image(path).astype(np.float64)
    width = pixels.shape[1]
    if width < 2 or width % 2:
        return None
    mse = float(np.mean((pixels[:, : width // 2] - pixels[:, width // 2:]) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _view_scores(run: RunDir) -> dict[str, float]:
    """Each held-out view's PSNR as training measured it (renders/views.json), by file stem; {} if absent
    (older runs: the report then measures each render|photo PNG itself)."""
    try:
        doc = json.loads(run.render_scores.read_text())
        return {str(v["name"]): float(v["psnr"]) for v in doc["views"] if v.get("psnr") is not None}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def renders_section(run: RunDir, stages: dict) -> dict[str, Any]:
    files = sorted(p for p in run.renders.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")) \
        if run.renders.is_dir() else []
    if not files:
        section = _stage_note(stages, "train", "held-out render")
        if section.pop("error", None):  # the training section shows the error and its advice
            section["note"] += " See the training section for why."
        return section
    views = []
    known = _view_scores(run)
    for path in files:
        try:
            value = known.get(path.stem) if path.stem in known else (
                pair_psnr(path) if path.suffix.lower() == ".png" else None)
        except Exception as exc:  # a truncated PNG: listed, without a score
            log.debug("render %s unreadable: %s", path, exc)
            value = None
        views.append({"file": path.relative_to(run.root).as_posix(), "name": path.stem,
                      "psnr": None if value is None else (round(value, 3) if np.isfinite(value) else 99.0)})
    scored = [v for v in views if v["psnr"] is not None]
    worst = min(scored, key=lambda v: v["psnr"]) if scored else None
    return {"status": "ok", "count": len(files), "files": [v["file"] for v in views], "views": views,
            "worst": worst}


def export_section(run: RunDir, stages: dict) -> dict[str, Any]:
    if not run.ply.exists():
        return _stage_note(stages, "export", "exported PLY")
    section: dict[str, Any] = {"status": "ok", "path": str(run.ply), "bytes": run.ply.stat().st_size}
    try:
        section["num_gaussians"] = ply_vertex_count(run.ply)
    except OSError as exc:
        section["num_gaussians"] = None
        section["note"] = f"the PLY header could not be read: {exc}"
    return section


# --------------------------------------------------------------------------------------------------
# headline and advice


def _headline(report: dict[str, Any], opts: ReportOptions) -> dict[str, Any]:
    stages, capture, poses = report["stages"], report["capture"], report["poses"]
    training, export = report["training"], report["export"]
    ev = training.get("eval") or {}
    psnr = ev.get("psnr")
    held_out = training.get("eval_on") in (None, "held-out")
    which = "hold-out PSNR" if held_out else "PSNR on training views (none held out)"
    if stages["failed"]:
        verdict, reason = "failed", f"the {stages['failed'][0]} stage failed"
    elif psnr is None:
        verdict, reason = "incomplete", "there is no hold-out evaluation yet"
    elif psnr >= opts.psnr_good:
        verdict, reason = "good", f"{which} {psnr:.1f} dB >= {opts.psnr_good:g} dB"
    elif psnr >= opts.psnr_poor:
        verdict, reason = "fair", f"{which} {psnr:.1f} dB is between {opts.psnr_poor:g} and {opts.psnr_good:g} dB"
    else:
        verdict, reason = "poor", f"{which} {psnr:.1f} dB < {opts.psnr_poor:g} dB"
    gaussians = export.get("num_gaussians") if export.get("status") == "ok" else None
    return {
        "verdict": verdict,
        "reason": reason,
        "capture_verdict": capture.get("verdict"),
        "capture_score": capture.get("score"),
        "registered": poses.get("registered"),
        "total_images": poses.get("total"),
        "held_out": held_out,
        "psnr": psnr,
        "ssim": ev.get("ssim"),
        "lpips": ev.get("lpips"),
        "num_gaussians": gaussians if gaussians is not None else training.get("num_gaussians"),
        "total_seconds": stages["total_seconds"],
    }


def _next_steps(report: dict[str, Any], opts: ReportOptions) -> list[str]:
    steps: list[str] = []
    run_path = report["run"]
    for row in report["stages"]["stages"]:
        if row["status"] in ("failed", "interrupted"):
            err = row["error"] or {}
            line = f"The {row['name']} stage {row['status']}: {err.get('message') or 'no message recorded'}."
            if err.get("advice"):
                line += f" What to do: {err['advice']}"
            steps.append(line)
    head = report["headline"]
    capture, poses = report["capture"], report["poses"]
    check_failed = "check" in report["stages"]["failed"]  # its error already carries the same advice
    if capture.get("status") == "ok" and capture.get("verdict") in ("risky", "will-fail") and not check_failed:
        advice = " ".join(a if a.rstrip().endswith((".", "!", "?")) else a.rstrip() + "."
                          for a in capture.get("advice") or [])
        steps.append(f"The capture check rated this capture '{capture['verdict']}'."
                     + (f" {advice}" if advice else ""))
    frac = poses.get("registered_fraction")
    if frac is not None and frac < opts.registered_warn_fraction:
        steps.append(f"Only {poses['registered']} of {poses['total']} images got a camera pose: the others share "
                     "too little with the rest. Take more overlapping photos around those areas.")
    if head["psnr"] is not None and head["psnr"] < opts.psnr_poor:
        steps.append(f"Hold-out PSNR is low ({head['psnr']:.1f} dB): compare the held-out renders with their "
                     "photographs below. Blurry renders everywhere usually mean a blurry or badly covered capture "
                     "(retake with steadier, more overlapping photos); errors in a few views only point at wrong "
                     "poses there; if training stopped early, train longer.")
    elif head["psnr"] is not None and head["psnr"] < opts.psnr_good:
        steps.append("Hold-out PSNR is fair: look at the held-out renders below for the views that differ most "
                     "from their photographs.")
    if head["psnr"] is not None and not head["held_out"]:
        steps.append("No views were held out of training, so the scores above are measured on training views and "
                     "overstate how the scene looks from new viewpoints.")
    renders = report["renders"]
    worst = renders.get("worst")
    if worst and renders.get("count", 0) > 1:
        steps.append(f"Weakest held-out view: {worst['name']} ({worst['psnr']:.1f} dB from its saved PNG); "
                     "compare it with its photograph below.")
    if report["export"].get("status") == "ok":
        steps.append(f"Look at the result: splatforge view {run_path}")
    return steps


# --------------------------------------------------------------------------------------------------
# public API


def _safe(name: str, fn: Callable[[], Any], fallback: Any) -> Any:
    """Run one section builder; a bug or odd file in one section must not lose the whole report."""
    try:
        return fn()
    except Exception as exc:
        log.warning("report: the %s section could not be built: %s", name, exc)
        return fallback({"status": "unreadable", "note": f"this section could not be built: {exc}"})


def collect(run: RunDir, opts: ReportOptions | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report dict, plot data) from the run folder. Writes nothing."""
    opts = opts or ReportOptions()
    manifest, manifest_err = _read_json_file(run.manifest)
    manifest = manifest if isinstance(manifest, dict) else {}
    stages = manifest.get("stages") or {}
    plots: dict[str, Any] = {}
    report: dict[str, Any] = {"schema": SCHEMA_VERSION, "generated": now_iso(), "run": str(run.root)}
    report["stages"] = _safe("stages", lambda: stages_section(manifest),
                             lambda s: {"stages": [], "total_seconds": None, "failed": [], **s})
    if manifest_err:
        report["stages"]["note"] = manifest_err
    report["capture"], plots["capture"] = _safe("capture", lambda: capture_section(run, stages),
                                                lambda s: (s, None))
    report["poses"], plots["cameras"] = _safe("poses", lambda: poses_section(run, stages), lambda s: (s, None))
    report["training"], plots["curves"] = _safe("training", lambda: training_section(run, stages),
                                                lambda s: (s, None))
    report["renders"] = _safe("renders", lambda: renders_section(run, stages), lambda s: s)
    report["export"] = _safe("export", lambda: export_section(run, stages), lambda s: s)
    report["environment"] = {
        "versions": manifest.get("versions") or {},
        "device": report["training"].get("device"),
        "backend": report["training"].get("backend"),
        "peak_gpu_mem_gb": report["training"].get("peak_gpu_mem_gb"),
    }
    report["files"] = {
        "run": str(run.root),
        "report_html": str(run.report_html),
        "report_json": str(run.report_json),
        "ply": str(run.ply) if run.ply.exists() else None,
        "renders": str(run.renders) if report["renders"].get("status") == "ok" else None,
        "transforms": str(run.transforms_json) if run.transforms_json.exists() else None,
        "log": str(run.log) if run.log.exists() else None,
    }
    report["headline"] = _safe("headline", lambda: _headline(report, opts),
                               lambda s: {"verdict": "incomplete", "reason": s["note"], "held_out": True,
                                          **dict.fromkeys(("capture_verdict", "capture_score", "registered",
                                                           "total_images", "psnr", "ssim", "lpips",
                                                           "num_gaussians", "total_seconds"))})
    report["next_steps"] = _safe("next steps", lambda: _next_steps(report, opts), lambda s: [])
    return report, plots


def build_report(run: RunDir, opts: ReportOptions | None = None) -> dict[str, Any]:
    """Write run.report_json and run.report_html (atomically) from the run folder; return the report dict.

    Reads only the run folder. Missing or failed stages become plain notes in their section.
    """
    from splatforge.report.html import render_html

    opts = opts or ReportOptions()
    run = RunDir(run.root) if isinstance(run, RunDir) else RunDir(run)
    report, plots = collect(run, opts)
    html = render_html(report, plots, run, opts)
    atomic_write_json(run.report_json, report)
    atomic_write_text(run.report_html, html)
    return report
