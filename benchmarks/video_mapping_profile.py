"""Incremental mapping of RUN's database (low-parallax start, as for colosseum) with pycolmap's INFO log on stderr;
VLOG=1 adds each bundle adjustment's Ceres report, PP=0 fixes the principal point. Prints one RESULT json per
variant (mapping_speed.py's variant syntax). Sum the reports with video_mapping_bareport.py LOG.

    VLOG=1 python benchmarks/video_mapping_profile.py RUN OUT 'before:' 'after:pycolmap.ba_global_function_tolerance=1e-4' 2> LOG
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pycolmap

from splatforge.poses import PoseOptions, colmap_engine
from splatforge.poses.inputs import list_images

sys.path.insert(0, str(Path(__file__).parent))
from mapping_speed import parse_variant, with_raw  # noqa: E402 - a sibling script


def main() -> None:
    run, out, variants = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:] or ["default:"]
    pycolmap.logging.minloglevel = 0
    pycolmap.logging.verbose_level = int(os.environ.get("VLOG", "0"))
    pycolmap.logging.alsologtostderr = True
    frames, db = run / "frames", run / "colmap" / "database.db"
    names = list_images(frames)
    for text in variants:
        label, pose, raw = parse_variant(text)
        opts = PoseOptions(num_threads=2, **pose)
        original, patched = with_raw(raw)
        colmap_engine.run_incremental = patched
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            models = colmap_engine._map("incremental", db, frames, out / label, names, opts,
                                        os.environ.get("PP", "1") == "1", True)
        finally:
            colmap_engine.run_incremental = original
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        best = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
        print("RESULT", json.dumps({
            "variant": label, "n": len(names), "cpu_s": round(cpu, 1), "wall_s": round(wall, 1), "models": len(models),
            "registered": best.num_reg_images() if best else 0, "points": best.num_points3D() if best else 0,
            "obs": sum(p.track.length() for p in best.points3D.values()) if best else 0,
            "reproj": round(best.compute_mean_reprojection_error(), 3) if best else None}), flush=True)


if __name__ == "__main__":
    main()
