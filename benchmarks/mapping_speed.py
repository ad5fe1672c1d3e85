"""Incremental mapping settings, one lever at a time, on the same matches: process CPU seconds of the mapping,
images registered, and the median/max rotation error against REFERENCE (a transforms.json or a COLMAP model, such
as one --save wrote; `none`: against the first variant's model).

    python benchmarks/mapping_speed.py RUN REFERENCE|none OUT [--threads N] [--low-parallax]
                                       [--video] [--variant 'label:key=value,key=value' ...] [--save DIR]

RUN is a run folder the pose stage has been through (frames/ and colmap/database.db). A variant sets PoseOptions
fields (`ba_global_ratio=1.1`) or, with a `pycolmap.` prefix, IncrementalPipelineOptions attributes on top of
what the stage sets (`pycolmap.mapper.ba_local_num_images=4`). The first variant is the baseline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import fields
from pathlib import Path

import pycolmap

from splatforge.poses import PoseOptions, colmap_engine
from splatforge.poses.inputs import list_images
from splatforge.scene import read_scene
from splatforge.scene.align import compare_poses
from splatforge.scene.colmap import reconstruction_to_scene

POSE_FIELDS = {f.name for f in fields(PoseOptions)}


def parse_variant(text: str) -> tuple[str, dict, dict]:
    label, _, rest = text.partition(":")
    pose, raw = {}, {}
    for item in filter(None, rest.split(",")):
        key, value = item.split("=", 1)
        try:
            value = json.loads(value)
        except ValueError:
            pass
        if key.startswith("pycolmap."):
            raw[key[len("pycolmap."):]] = value
        elif key in POSE_FIELDS:
            pose[key] = value
        else:
            raise SystemExit(f"{key}: not a PoseOptions field (prefix pycolmap. for a raw option)")
    return label, pose, raw


def with_raw(raw: dict):
    """colmap_engine.run_incremental with `raw` set on its options just before it runs."""
    original = colmap_engine.run_incremental

    def patched(database, image_dir, out, opts, *args):
        for key, value in raw.items():
            target = opts
            *path, last = key.split(".")
            for part in path:
                target = getattr(target, part)
            if isinstance(getattr(target, last), pycolmap.BundleAdjustmentBackend):
                value = getattr(pycolmap.BundleAdjustmentBackend, value)
            setattr(target, last, value)
        return original(database, image_dir, out, opts, *args)

    return original, patched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("reference")
    ap.add_argument("out", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--low-parallax", action="store_true", help="the 4-degree starting pair (as the stage does "
                    "when most pairs show little parallax)")
    ap.add_argument("--refine-pp", type=int, default=1, help="refine the principal point (the stage: 1 for >= 20 "
                    "photos of one camera)")
    ap.add_argument("--video", action="store_true", help="the images are frames of a video (the stage's video "
                    "mapper settings, as for a run made from a video)")
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--save", type=Path, help="write each variant's model here (SAVE/LABEL, COLMAP binary), to "
                    "serve as another run's REFERENCE")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = pycolmap.logging.WARNING
    frames, database = args.run / "frames", args.run / "colmap" / "database.db"
    names = list_images(frames)
    reference = read_scene(Path(args.reference)) if args.reference != "none" else None
    for text in args.variant or ["default:"]:
        label, pose, raw = parse_variant(text)
        options = PoseOptions(num_threads=args.threads, **pose)
        original, patched = with_raw(raw)
        colmap_engine.run_incremental = patched
        out = args.out / label.replace(" ", "_")
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            models = colmap_engine._map("incremental", database, frames, out, names, options, bool(args.refine_pp),
                                        args.low_parallax, video=args.video)
        finally:
            colmap_engine.run_incremental = original
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        best = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
        row = {"variant": label, "registered": best.num_reg_images() if best else 0, "total": len(names),
               "models": len(models), "cpu_s": round(cpu, 1), "wall_s": round(wall, 1)}
        if best is not None and best.num_reg_images() >= 3:
            scene = reconstruction_to_scene(best, frames)
            reference = reference or scene
            err = compare_poses(scene, reference)
            row.update(rot_median_deg=round(err.median_rotation_deg, 3), rot_max_deg=round(err.max_rotation_deg, 3),
                       points=best.num_points3D(), reproj_px=round(best.compute_mean_reprojection_error(), 3),
                       cameras=[[round(float(v), 4) for v in c.params] for c in best.cameras.values()])
        if best is not None and args.save:
            (args.save / label).mkdir(parents=True, exist_ok=True)
            best.write(args.save / label)
        print(json.dumps(row), flush=True)
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
