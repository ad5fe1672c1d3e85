"""Each mapper variant on the same matches: features and matching once, then incremental (COLMAP's starting
angle, and the 4-degree low-parallax start), global with and without view-graph calibration. Prints registered
images, median/max rotation error against REFERENCE (a transforms.json; `none`: against the first model),
focal length and process CPU seconds.

    python benchmarks/mapper_compare.py IMAGES REFERENCE|none OUT [THREADS]
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from splatforge.poses import PoseOptions, colmap_engine, estimate_poses_for
from splatforge.scene import read_colmap, read_scene
from splatforge.scene.align import compare_poses

VARIANTS = [("incremental", "incremental", {}, False), ("incremental lowpar", "incremental", {}, True),
            ("global calib", "global", {"global_calibrate": True}, False),
            ("global nocalib", "global", {"global_calibrate": False}, False)]


def main(images: Path, reference_path: Path, out: Path, threads: int = -1) -> None:
    run = out / "run"
    database = run / "colmap" / "database.db"
    if not database.exists():
        estimate_poses_for(images, run, PoseOptions(engine="colmap", mapper="incremental", num_threads=threads))
    names = sorted(p.name for p in (run / "frames").iterdir())
    evidence = colmap_engine.read_evidence(database, names, PoseOptions().min_num_inliers)
    print("evidence", evidence.to_dict(), flush=True)
    reference = read_scene(reference_path) if reference_path.name != "none" else None
    for label, kind, changes, low_parallax in VARIANTS:
        slug = label.replace(" ", "_")
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            models = colmap_engine._map(kind, database, run / "frames", out / slug, names,
                                        PoseOptions(num_threads=threads, **changes), False, low_parallax)
        except Exception as exc:  # a failed mapper is a row of the table
            print(f"{label:20s} failed: {exc}")
            models = {}
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        best = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
        if best is None:
            print(f"{label:20s} 0 registered, cpu {cpu:.1f}", flush=True)
            continue
        model_dir = out / f"{slug}_model"
        shutil.rmtree(model_dir, ignore_errors=True)
        model_dir.mkdir()
        best.write(str(model_dir))
        scene = read_colmap(model_dir, run / "frames")
        reference = reference or scene
        err = compare_poses(scene, reference)
        focal = best.cameras[next(iter(best.cameras))].params[0]
        print(f"{label:20s} {best.num_reg_images()}/{len(names)} rot {err.median_rotation_deg:.3f} "
              f"max {err.max_rotation_deg:.2f} f {focal:.1f} cpu {cpu:.1f} wall {wall:.1f}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else -1)
