"""Mapping a video's frames in two steps: every STEP-th frame first, then the others registered into that model
with its frames held fixed. Measures process CPU seconds and how far the result is from a reference model of
the same frames (the stage's own, e.g. RUN/distorted/sparse/0).

    python benchmarks/video_keyframes.py RUN REFERENCE OUT [--steps 2 3] [--threads 2] [--no-fix]

RUN is a run folder the pose stage has been through (frames/ and colmap/database.db, from a video). The first
step is the stage's own incremental mapping of video frames (colmap_engine._map, low-parallax start); the second
is `pycolmap.incremental_mapping` continuing from its model (`input_path`, `fix_existing_frames`).

The comparison is free of any alignment: the rotation between frames k apart (k = 1, 5, 20) in one model
against the other. Centre-based similarity alignment (scene/align.py) is not used here: on a low-parallax orbit
the centres hardly constrain a rotation about the orbit's axis, and it reported ~4-5 degrees for models whose
relative rotations agreed within 0.05 degrees.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pycolmap

from splatforge.poses import PoseOptions, colmap_engine
from splatforge.poses.inputs import list_images


def relative_rotation_errors(model, reference, gaps=(1, 5, 20)) -> dict:
    """Median and max angle (degrees) between the rotations from frame i to frame i+k in both models."""
    def rotations(rec):
        return {im.name: im.cam_from_world().rotation.matrix() for im in rec.images.values() if im.has_pose}

    a, b = rotations(model), rotations(reference)
    names = sorted(set(a) & set(b))
    out = {}
    for k in gaps:
        angles = []
        for first, second in zip(names, names[k:]):
            d = (a[second] @ a[first].T) @ (b[second] @ b[first].T).T
            angles.append(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1))))
        if angles:
            out[f"gap{k}"] = [round(float(np.median(angles)), 3), round(float(np.max(angles)), 3)]
    return out


def continue_options(options: PoseOptions, names: list[str], fix: bool):
    """IncrementalPipelineOptions for the second step: the stage's video settings, the first model's frames
    held fixed (`fix`)."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = options.num_threads
    opts.extract_colors = False
    opts.min_num_matches = options.min_num_inliers
    opts.image_names = names
    opts.mapper.init_min_tri_angle = options.low_parallax_init_tri_angle
    opts.ba_global_function_tolerance = options.video_ba_function_tolerance
    opts.ba_global_frames_ratio = opts.ba_global_points_ratio = options.ba_global_ratio
    opts.ba_global_max_refinements = options.ba_global_max_refinements
    opts.ba_local_max_refinements = options.ba_local_max_refinements
    opts.ba_global_max_num_iterations = options.ba_global_max_iterations
    opts.ba_local_max_num_iterations = options.ba_local_max_iterations
    opts.ba_refine_principal_point = True
    opts.fix_existing_frames = fix
    return opts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("reference", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, nargs="+", default=[2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-fix", action="store_true", help="let the second step move the first model's frames")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = pycolmap.logging.WARNING
    database, frames = args.run / "colmap" / "database.db", args.run / "frames"
    names = list_images(frames)
    reference = pycolmap.Reconstruction(args.reference)
    options = PoseOptions(num_threads=args.threads)
    for step in args.steps:
        out = args.out / f"step{step}"
        shutil.rmtree(out, ignore_errors=True)
        keys = names[::step] + ([names[-1]] if (len(names) - 1) % step else [])
        cpu, wall = time.process_time(), time.perf_counter()
        first = colmap_engine._map("incremental", database, frames, out / "keys", keys, options, True,
                                   low_parallax=True, video=True)
        best = max(first.values(), key=lambda r: r.num_reg_images())
        key_cpu = time.process_time() - cpu
        (out / "keys_best").mkdir(parents=True)
        best.write(out / "keys_best")
        models = pycolmap.incremental_mapping(database, frames, out / "all",
                                              continue_options(options, names, not args.no_fix),
                                              input_path=out / "keys_best")
        model = max(models.values(), key=lambda r: r.num_reg_images())
        row = {"step": step, "fixed": not args.no_fix, "keyframes": len(keys), "keyframes_placed": best.num_reg_images(),
               "placed": model.num_reg_images(), "total": len(names), "cpu_s": round(time.process_time() - cpu, 1),
               "keyframes_cpu_s": round(key_cpu, 1), "wall_s": round(time.perf_counter() - wall, 1),
               "focal": [round(float(c.params[0]), 1) for c in model.cameras.values()],
               "reference_focal": [round(float(c.params[0]), 1) for c in reference.cameras.values()],
               "relative_rotation_deg": relative_rotation_errors(model, reference)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
