"""Mapping a video's frames keyframes first (PoseOptions.video_keyframe_step: every STEP-th frame, then the others
placed into that model with its frames held fixed; 0: all in one go). Measures process CPU seconds and how far
the result is from a reference model of the same frames (the stage's own, e.g. RUN/distorted/sparse/0).

    python benchmarks/video_keyframes.py RUN REFERENCE OUT [--steps 0 2 3] [--threads 2]

RUN is a run folder the pose stage has been through (frames/ and colmap/database.db, from a video); mapping is
the stage's incremental mapping of video frames (colmap_engine._map, its starting pair chosen as the stage
chooses it).

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

from splatforge.poses import PoseOptions, colmap_engine, validate
from splatforge.poses.inputs import list_images
from splatforge.scene.conventions import rotation_angle_deg


def relative_rotation_errors(model, reference, gaps=(1, 5, 20)) -> dict:
    """Median and max angle (degrees) between the rotations from frame i to frame i+k in both models, per gap k,
    and over random pairs (`validate.rotation_disagreement_deg`, the stage's own comparison)."""
    def rotations(rec):
        return {im.name: im.cam_from_world().rotation.matrix() for im in rec.images.values() if im.has_pose}

    a, b = rotations(model), rotations(reference)
    names = sorted(set(a) & set(b))
    out = {}
    for k in gaps:
        angles = [rotation_angle_deg(a[second] @ a[first].T, b[second] @ b[first].T)
                  for first, second in zip(names, names[k:])]
        if angles:
            out[f"gap{k}"] = [round(float(np.median(angles)), 3), round(float(np.max(angles)), 3)]
    any_pair = validate.rotation_disagreement_deg(model, reference)
    out["random_pairs_median"] = None if any_pair is None else round(any_pair, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("reference", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, nargs="+", default=[2])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    pycolmap.logging.minloglevel = pycolmap.logging.WARNING
    database, frames = args.run / "colmap" / "database.db", args.run / "frames"
    names = list_images(frames)
    reference = pycolmap.Reconstruction(args.reference)
    # the stage's choice of the starting pair (colmap_engine.map_with_fallback)
    evidence = colmap_engine.read_evidence(database, names, PoseOptions().min_num_inliers)
    low_parallax = evidence.low_parallax_share >= PoseOptions().low_parallax_share
    print(f"{100 * evidence.low_parallax_share:.0f} % of the pairs show little parallax: low_parallax={low_parallax}")
    for step in args.steps:
        out = args.out / f"step{step}"
        shutil.rmtree(out, ignore_errors=True)
        options = PoseOptions(num_threads=args.threads, video_keyframe_step=step)
        cpu, wall = time.process_time(), time.perf_counter()
        models = colmap_engine._map("incremental", database, frames, out, names, options, True,
                                    low_parallax=low_parallax, video=True)
        model = max(models.values(), key=lambda r: r.num_reg_images())
        row = {"step": step, "placed": model.num_reg_images(), "total": len(names),
               "cpu_s": round(time.process_time() - cpu, 1), "wall_s": round(time.perf_counter() - wall, 1),
               "focal": [round(float(c.params[0]), 1) for c in model.cameras.values()],
               "reference_focal": [round(float(c.params[0]), 1) for c in reference.cameras.values()],
               "relative_rotation_deg": relative_rotation_errors(model, reference)}
        print(json.dumps(row), flush=True)

if __name__ == "__main__":
    main()
