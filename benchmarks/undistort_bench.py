"""Where the pose stage's undistortion step spends its time, on a run folder the stage has been through.

    python benchmarks/undistort_bench.py RUN [--threads N] [--repeat K]

Copies RUN's distorted model into a scratch folder (frames/ linked, never written) and runs the step as
`estimate_poses` does (write_sparse, undistort with colours, write_training_scene), K times. Prints wall seconds
per part and, for the work done per image on the thread pool, the seconds summed over threads.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import pycolmap

from splatforge.poses import undistort
from splatforge.rundir import RunDir

SPENT: dict[str, float] = defaultdict(float)
LOCK = threading.Lock()


def timed(name, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with LOCK:
                SPENT[name] += time.perf_counter() - t
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--threads", type=int, default=-1)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    for name in ("read_image", "write_image", "observed_colours", "write_undistorted_model", "move_keypoints", "undistortion_map",
                 "colour_points", "_write_model"):
        setattr(undistort, name, timed(name, getattr(undistort, name)))
    source = args.run.resolve()
    for i in range(args.repeat):
        SPENT.clear()
        scratch = Path(tempfile.mkdtemp(prefix="undistort_bench_"))
        try:
            (scratch / "frames").symlink_to(source / "frames")
            shutil.copytree(source / "distorted" / "sparse", scratch / "distorted" / "sparse")
            run = RunDir(scratch)
            rec = pycolmap.Reconstruction(str(run.distorted_sparse))
            parts = {}
            t0 = t = time.perf_counter()
            undistort.write_sparse(rec, run)
            parts["write_sparse"], t = time.perf_counter() - t, time.perf_counter()
            scene = undistort.undistort(rec, run, -1, args.threads, colour=True)
            parts["undistort"], t = time.perf_counter() - t, time.perf_counter()
            undistort.write_training_scene(scene, run)
            parts["write_training_scene"] = time.perf_counter() - t
            parts["total"] = time.perf_counter() - t0
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"repeat {i + 1}, {rec.num_reg_images()} images, threads {args.threads}")
        print("  wall s: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
        print("  summed over threads s: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(SPENT.items())))


if __name__ == "__main__":
    main()
