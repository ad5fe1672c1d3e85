"""Pose-stage benchmark: features and matching once per capture, then each mapper on the same matches.

    python benchmarks/poses_bench.py [--captures fox llff_fern ...] [--mappers incremental global]
                                     [--threads N] [--max-image-size 1600] [--json out.json]

Prints a table: capture, mapper, registered/total, median rotation and centre error against the
capture's reference transforms.json (after a similarity alignment; '-' without a reference), and the
wall seconds per step (features, matching, mapping) plus the process CPU seconds of the mapping.
Data: ../shared/data (or $SPLATFORGE_TEST_DATA). Never writes there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    env = os.environ.get("SPLATFORGE_TEST_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def bench_capture(name: str, mappers: list[str], options, work: Path) -> list[dict]:
    from splatforge.poses import colmap_engine
    from splatforge.poses.inputs import list_images
    from splatforge.scene import read_scene
    from splatforge.scene.align import compare_poses
    from splatforge.scene.colmap import reconstruction_to_scene

    src = data_dir() / name / "images"
    names = list_images(src)
    db = work / name / "database.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    t, c = time.perf_counter(), time.process_time()
    decided = colmap_engine.extract(db, src, names, options)
    t_feat, c_feat = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    plan = colmap_engine.plan_pairs(db, names, options, ordered_hint=False)
    colmap_engine.match(db, names, plan, options, db.parent)
    t_match, c_match = time.perf_counter() - t, time.process_time() - c
    ref_path = data_dir() / name / "transforms.json"
    ref = read_scene(ref_path) if ref_path.exists() else None
    refine_pp = options.refine_principal_point
    if refine_pp is None:
        refine_pp = decided["single_camera"] and len(names) >= 20
    rows = []
    for mapper in mappers:
        t, c = time.perf_counter(), time.process_time()
        try:
            models = colmap_engine._map(mapper, db, src, db.parent / f"sparse_{mapper}", names, options, refine_pp)
        except Exception as exc:  # report, keep benchmarking
            models, err = {}, f"{type(exc).__name__}: {exc}"
        else:
            err = ""
        t_map, c_map = time.perf_counter() - t, time.process_time() - c
        best = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
        row = {"capture": name, "mapper": mapper, "registered": best.num_reg_images() if best else 0,
               "total": len(names), "models": len(models), "matching": plan.scheme,
               "pairs": len(plan.pairs) if plan.pairs is not None else len(names) * (len(names) - 1) // 2,
               "features_s": t_feat, "matching_s": t_match, "mapping_s": t_map,
               "cpu_s": {"features": c_feat, "matching": c_match, "mapping": c_map},
               "reproj_px": best.compute_mean_reprojection_error() if best and best.num_points3D() else None,
               "rot_deg": None, "rot_max_deg": None, "centre_pct": None, "error": err}
        if best is not None and ref is not None and best.num_reg_images() >= 3:
            e = compare_poses(reconstruction_to_scene(best, src), ref)
            row.update(rot_deg=e.median_rotation_deg, rot_max_deg=e.max_rotation_deg,
                       centre_pct=100 * e.median_center_error)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def end_to_end(name: str, options, work: Path) -> None:
    """The stage as users run it: copy the images, estimate_poses with `options`, print its seconds."""
    from splatforge.errors import SplatforgeError
    from splatforge.poses import estimate_poses_for

    src = work / f"{name}_copy"
    shutil.copytree(data_dir() / name / "images", src / "images")
    t = time.perf_counter()
    try:
        result = estimate_poses_for(src / "images", work / f"{name}_run", options)
    except SplatforgeError as exc:
        print(f"end-to-end {name}: failed as a user sees it: {exc.message}")
        return
    print(f"end-to-end {name}: {result.registered}/{result.total} {result.mapper} {result.matching}; "
          f"seconds {result.seconds}; wall {time.perf_counter() - t:.1f}")


def fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    from splatforge.poses import PoseOptions

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", nargs="+",
                    default=["fox", "llff_fern", "dtu_scan24", "sacre_coeur", "room_no_overlap"])
    ap.add_argument("--mappers", nargs="+", default=["incremental", "global"])
    ap.add_argument("--threads", type=int, default=-1)
    ap.add_argument("--max-image-size", type=int, default=1600)
    ap.add_argument("--matching", default="auto")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--end-to-end", action="store_true",
                    help="also run the whole stage (estimate_poses with defaults, undistortion included) per capture")
    args = ap.parse_args()
    options = PoseOptions(engine="colmap", num_threads=args.threads, max_image_size=args.max_image_size, matching=args.matching)
    work = Path(tempfile.mkdtemp(prefix="poses_bench_"))
    rows = []
    try:
        for name in args.captures:
            if not (data_dir() / name / "images").is_dir():
                print(f"skip {name}: not in {data_dir()}")
                continue
            rows += bench_capture(name, args.mappers, options, work)
            if args.end_to_end:
                end_to_end(name, options, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import pycolmap

    print(f"\npycolmap {pycolmap.__version__} cuda={pycolmap.has_cuda} threads={args.threads} "
          f"cpus={os.cpu_count()} max_image_size={args.max_image_size}")
    head = ("capture", "mapper", "reg", "match", "rot° med", "rot° max", "ctr % med", "reproj px",
            "feat s", "match s", "map s", "total s")
    print(" | ".join(head))
    for r in rows:
        total = r["features_s"] + r["matching_s"] + r["mapping_s"]
        print(" | ".join([r["capture"], r["mapper"], f"{r['registered']}/{r['total']}", f"{r['matching']}",
                          fmt(r["rot_deg"]), fmt(r["rot_max_deg"]), fmt(r["centre_pct"]), fmt(r["reproj_px"]),
                          fmt(r["features_s"], ".1f"), fmt(r["matching_s"], ".1f"), fmt(r["mapping_s"], ".1f"),
                          fmt(total, ".1f")]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
