"""The check stage and then the pose stage on one run folder, per connectivity mode: what the check costs, what
the pose stage then costs, whether it reused the check's features and matches, and what both found.

    python benchmarks/check_poses_bench.py [--data DIR] [--captures fox ...] [--modes quick sfm] [--json OUT]

Per capture and mode: a copy of the capture's images ingested into a fresh run folder (not timed), the check
stage (`run_stage(CHECK, ..., CheckStageOptions(connectivity=MODE, force=True))`, contact sheet included),
then `estimate_poses` with default PoseOptions (engine colmap). Prints a table last.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def one(name: str, source: Path, mode: str, work: Path, label: str) -> dict:
    from splatforge.capture.ingest import ingest
    from splatforge.capture.stages import CHECK, CheckStageOptions
    from splatforge.poses import PoseOptions, estimate_poses
    from splatforge.rundir import RunDir, read_json
    from splatforge.stage import run_stage

    images = source / "images" if (source / "images").is_dir() else source
    photos = work / f"{name}-{label}-photos"
    shutil.copytree(images, photos)  # without the capture's own poses: SfM must place them
    run = RunDir(work / f"{name}-{label}")
    ingest(photos, run)
    t = time.perf_counter()
    run_stage(CHECK, run, CheckStageOptions(connectivity=mode, force=True))
    check_s = time.perf_counter() - t
    quality = read_json(run.quality_json)
    t = time.perf_counter()
    result = estimate_poses(run, PoseOptions(engine="colmap"))
    poses_s = time.perf_counter() - t
    return {"capture": name, "mode": mode, "check_s": round(check_s, 2), "poses_s": round(poses_s, 2),
            "total_s": round(check_s + poses_s, 2), "poses_steps": result.seconds,
            "registered": f"{result.registered}/{result.total}", "verdict": quality["verdict"],
            "groups": len(quality["summary"]["components"]), "matched_with": quality["summary"]["matched_with"],
            "reused": next((n for n in result.notes if "reused" in n), "nothing")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--captures", nargs="+", default=["fox"])
    ap.add_argument("--modes", nargs="+", default=["quick", "sfm"])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.captures:
            for k, mode in enumerate(args.modes):
                row = one(name, args.data / name, mode, Path(tmp), f"{mode}{k}")
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print("capture | mode | check s | poses s | total s | features | matching | mapping | registered | groups | "
          "verdict | reused")
    for r in rows:
        s = r["poses_steps"]
        print(f"{r['capture']} | {r['mode']} | {r['check_s']} | {r['poses_s']} | {r['total_s']} | "
              f"{s.get('features')} | {s.get('matching')} | {s.get('mapping')} | {r['registered']} | {r['groups']} | "
              f"{r['verdict']} | {r['reused']}")


if __name__ == "__main__":
    main()
