"""One line of numbers per posed capture, for benchmarks: seconds per sub-step, photos placed, mapper, and the
accuracy against a reference when the capture has one (fox's transforms.json)."""

from __future__ import annotations

from pathlib import Path

from splatforge.rundir import RunDir, read_json

STEPS = ("features", "matching", "mapping", "undistortion", "total")


def accuracy(run: RunDir, reference: Path) -> dict:
    """Median/max rotation error (degrees) and median centre error (% of the scene) of the run's sparse/0 model
    against `reference` (a transforms.json or COLMAP model), after a similarity alignment."""
    from splatforge.scene import read_colmap, read_scene
    from splatforge.scene.align import compare_poses

    err = compare_poses(read_colmap(run.sparse, run.frames), read_scene(reference))
    return {"matched": err.matched, "rotation_median_deg": round(err.median_rotation_deg, 3),
            "rotation_max_deg": round(err.max_rotation_deg, 3),
            "centre_median_pct": round(100 * err.median_center_error, 3)}


def summarize_poses(run_dir: Path, reference: Path | None = None) -> dict:
    """What a run folder's pose stage did (from poses.json), plus the accuracy against `reference` if given."""
    run = RunDir(Path(run_dir))
    info = read_json(run.poses_json, default=None) or {}
    seconds = info.get("seconds") or {}
    cpu = info.get("cpu_seconds") or {}
    out = {"registered": info.get("registered"), "total": info.get("total"), "engine": info.get("engine"),
           "mapper": info.get("mapper"), "matching": (info.get("matching") or "").split(":")[0] or None,
           "points": info.get("points"), "reprojection_px": info.get("mean_reprojection_error"),
           "seconds": {k: seconds.get(k) for k in STEPS}, "cpu_seconds": {k: cpu.get(k) for k in STEPS},
           "check": info.get("check"), "accuracy": None}
    if reference is not None and Path(reference).exists() and run.sparse.exists() and info.get("registered"):
        try:
            out["accuracy"] = accuracy(run, Path(reference))
        except (ValueError, OSError) as exc:  # e.g. fewer than 3 frames in common
            out["accuracy"] = {"error": str(exc)}
    return out


def table(rows: list[dict], key: str = "seconds") -> str:
    """A short fixed-width table of `summarize_poses` rows (each with a "capture" key): the sub-steps' wall
    seconds, or with key="cpu_seconds" their process CPU seconds."""
    head = ["capture", "reg", "mapper", "match", *(s[:6] for s in STEPS), "rot° med", "rot° max"]
    lines = [" | ".join(head)]
    for r in rows:
        acc = r.get("accuracy") or {}
        sec = r.get(key) or {}
        cells = [r.get("capture", "?"), f"{r.get('registered')}/{r.get('total')}", str(r.get("mapper")),
                 str(r.get("matching")), *(_num(sec.get(s), ".1f") for s in STEPS),
                 _num(acc.get("rotation_median_deg"), ".2f"), _num(acc.get("rotation_max_deg"), ".2f")]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)
