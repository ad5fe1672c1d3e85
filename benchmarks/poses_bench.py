"""Pose-stage benchmark: the stage as users run it, per capture, and (optionally) each mapper on the same matches.

    python benchmarks/poses_bench.py [--captures fox llff_fern ...] [--threads N] [--set key=value ...]
                                     [--compare-mappers] [--json out.json] [--data DIR]

Per capture (`estimate_poses` with PoseOptions(engine="colmap", ...), undistortion included): wall seconds and
process CPU seconds per sub-step (features, matching, mapping, undistortion, total; poses.json's `seconds` and
`cpu_seconds`), the process CPU seconds of the whole call, photos placed,
the mapper kept and why, and the accuracy against the capture's reference transforms.json (fox) after a
similarity alignment. A capture is a folder with `images/` (or a folder of images) under the data folder, or a
video there (`videos/colosseum.mp4`): its frames are extracted first as the pipeline does (capture/frames.py,
default FrameOptions; not counted in the stage's seconds) and posed as an ordered sequence.
--compare-mappers also runs each mapper on the stage's own database (features and matches reused).
Data: ../shared/data, $SPLATFORGE_TEST_DATA or --data. Never writes there. Prints a table last.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    env = os.environ.get("SPLATFORGE_TEST_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def parse_settings(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")


def images_of(folder: Path) -> Path:
    return folder / "images" if (folder / "images").is_dir() else folder


def is_capture(source: Path) -> bool:
    return source.suffix.lower() in VIDEO_SUFFIXES and source.is_file() or images_of(source).is_dir()


def run_capture(name: str, source: Path, options, work: Path) -> dict:
    """The whole stage on a copy of the capture's images; its numbers and accuracy."""
    from splatforge.errors import SplatforgeError
    from splatforge.poses import estimate_poses_for
    from splatforge.poses.summary import summarize_poses

    run_dir = work / name / "run"
    if source.suffix.lower() in VIDEO_SUFFIXES:  # frames as the pipeline's frames stage writes them
        from splatforge.capture.frames import extract_frames

        extract_frames(source, run_dir)
        images, out = run_dir, None
    else:
        images, out = work / name / "images", run_dir
        shutil.copytree(images_of(source), images)
    t, c = time.perf_counter(), time.process_time()
    try:
        estimate_poses_for(images, out, options)
        error = None
    except SplatforgeError as exc:
        error = exc.message
    row = summarize_poses(run_dir, reference=source / "transforms.json")
    row.update(capture=name, wall_s=round(time.perf_counter() - t, 2), cpu_s=round(time.process_time() - c, 2),
               error=error)
    poses = json.loads((run_dir / "poses.json").read_text()) if (run_dir / "poses.json").exists() else {}
    row["why"] = {"matching": poses.get("matching"), "mapper": (poses.get("evidence") or {}).get("why"),
                  "notes": poses.get("notes")}
    return row


def compare_mappers(name: str, source: Path, options, work: Path) -> list[dict]:
    """Each mapper on the database the stage left (same features and matches), with its checks and accuracy."""
    from dataclasses import replace

    from splatforge.poses import colmap_engine
    from splatforge.poses.inputs import list_images
    from splatforge.scene import read_scene
    from splatforge.scene.align import compare_poses
    from splatforge.scene.colmap import reconstruction_to_scene

    run_dir = work / name / "run"
    db = run_dir / "colmap" / "database.db"
    frames = run_dir / "frames"
    if not db.exists():
        return []
    names = list_images(frames)
    ref = source / "transforms.json"
    reference = read_scene(ref) if ref.exists() else None
    rows = []
    for mapper in ("incremental", "global"):
        opts = replace(options, mapper=mapper)
        t, c = time.perf_counter(), time.process_time()
        choice = colmap_engine.map_with_fallback(db, frames, names, opts, work / name / f"cmp_{mapper}", True,
                                                 colmap_engine.read_evidence(db, names, opts.min_num_inliers))
        row = {"capture": name, "mapper": mapper, "wall_s": round(time.perf_counter() - t, 2),
               "cpu_s": round(time.process_time() - c, 2),
               "registered": choice.best.num_reg_images() if choice.best else 0, "total": len(names),
               "check": choice.check.to_dict() if choice.check else None, "accuracy": None}
        if choice.best is not None and reference is not None and choice.best.num_reg_images() >= 3:
            err = compare_poses(reconstruction_to_scene(choice.best, frames), reference)
            row["accuracy"] = {"rotation_median_deg": round(err.median_rotation_deg, 3),
                               "rotation_max_deg": round(err.max_rotation_deg, 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    from splatforge.poses import PoseOptions
    from splatforge.poses.summary import table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", nargs="+", default=["fox", "llff_fern", "dtu_scan24", "sacre_coeur"])
    ap.add_argument("--data", type=Path, default=None, help="folder holding the captures (default ../shared/data)")
    ap.add_argument("--threads", type=int, default=-1)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="PoseOptions fields, JSON values")
    ap.add_argument("--compare-mappers", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the run folders here instead of a temporary folder")
    args = ap.parse_args()
    # The stage's own account (mapper retries, keyframe steps) on stderr, beside the table on stdout.
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("splatforge").setLevel(logging.INFO)
    data = args.data or data_dir()
    options = PoseOptions(**{"engine": "colmap", "num_threads": args.threads, **parse_settings(args.set)})
    work = args.keep or Path(tempfile.mkdtemp(prefix="poses_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    rows, mapper_rows = [], []
    try:
        for name in args.captures:
            source = data / name
            if not is_capture(source):
                print(f"skip {name}: not in {data}")
                continue
            row = run_capture(name, source, options, work)
            print(json.dumps(row), flush=True)
            rows.append(row)
            if args.compare_mappers:
                mapper_rows += compare_mappers(name, source, options, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    import pycolmap

    print(f"\npycolmap {pycolmap.__version__} cuda={pycolmap.has_cuda} threads={args.threads} cpus={os.cpu_count()} "
          f"set={args.set}")
    print("wall seconds")
    print(table(rows))
    print("process CPU seconds (all threads)")
    print(table(rows, "cpu_seconds"))
    for r in rows:
        if r.get("error"):
            print(f"{r['capture']}: {r['error']}")
    if args.json:
        args.json.write_text(json.dumps({"captures": rows, "mappers": mapper_rows}, indent=2))


if __name__ == "__main__":
    main()
