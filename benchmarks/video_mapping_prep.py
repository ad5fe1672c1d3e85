"""Features and matching of RUN/frames as the pose stage makes them for video frames (ordered), no mapping: a
database for mapping_speed.py and video_mapping_profile.py.

    python benchmarks/video_mapping_prep.py RUN
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from splatforge.poses import PoseOptions, colmap_engine
from splatforge.poses.inputs import list_images


def main() -> None:
    run = Path(sys.argv[1])
    frames, db = run / "frames", run / "colmap" / "database.db"
    names, opts = list_images(frames), PoseOptions(num_threads=2)
    cpu = time.process_time()
    settings = colmap_engine.extraction_settings(frames, names, opts)
    colmap_engine.prepare_database(db, settings, colmap_engine.matching_settings(opts))
    colmap_engine.extract(db, frames, names, opts, settings)
    plan = colmap_engine.plan_pairs(db, names, opts, True)
    colmap_engine.match(db, names, plan, opts, run / "colmap" / "work")
    evidence = colmap_engine.read_evidence(db, names, opts.min_num_inliers)
    print(run, len(names), plan.scheme, len(plan.pairs or []), evidence, "cpu", round(time.process_time() - cpu, 1))


if __name__ == "__main__":
    main()
