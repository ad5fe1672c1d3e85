"""Photos whose names say nothing of the capture order: a synthetic orbit's images renamed in a random order, posed
with the stage's defaults (keyframes first: every n-th by name, here a random subset) and in one go
(`photo_keyframe_step=0`). Prints registered photos, the median rotation error against the synthetic poses
(similarity-aligned), process CPU seconds of the stage and wall seconds of its mapping.

    python benchmarks/shuffled_photos.py OUT [--views 48] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from splatforge.poses import PoseOptions, estimate_poses_for
from splatforge.scene import read_scene
from splatforge.scene.align import compare_poses
from splatforge.synthetic import SyntheticOptions, make_synthetic_capture


def shuffled_capture(out: Path, views: int, seed: int) -> Path:
    """A synthetic orbit under `out/capture`, and its images renamed in a random order under `out/shuffled`
    (transforms.json renamed to match)."""
    make_synthetic_capture(out / "capture", SyntheticOptions(n_views=views, seed=seed))
    reference = json.loads((out / "capture" / "transforms.json").read_text())
    order = np.random.default_rng(seed).permutation(len(reference["frames"]))
    images = out / "shuffled" / "images"
    images.mkdir(parents=True)
    for number, frame in zip(order, reference["frames"]):
        source = out / "capture" / frame["file_path"]
        name = f"{number:04d}{source.suffix}"
        shutil.copy(source, images / name)
        frame["file_path"] = f"images/{name}"
    (out / "shuffled" / "transforms.json").write_text(json.dumps(reference))
    return out / "shuffled"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--views", type=int, default=48)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(format="%(name)s %(message)s")
    logging.getLogger("splatforge").setLevel(logging.INFO)
    shutil.rmtree(args.out, ignore_errors=True)
    capture = shuffled_capture(args.out, args.views, args.seed)
    rows = []
    for label, settings in (("default", {}), ("one go", {"photo_keyframe_step": 0})):
        cpu = time.process_time()
        result = estimate_poses_for(capture / "images", args.out / label.replace(" ", "_"),
                                    PoseOptions(engine="colmap", **settings))
        err = compare_poses(read_scene(args.out / label.replace(" ", "_") / "transforms.json"),
                            read_scene(capture / "transforms.json"))
        rows.append((label, f"{result.registered}/{result.total}", f"{err.median_rotation_deg:.3f}",
                     f"{time.process_time() - cpu:.1f}", f"{result.seconds.get('mapping', 0):.2f}"))
    print("variant | registered | rotation error median (deg) | CPU s | mapping s")
    for row in rows:
        print(" | ".join(row))


if __name__ == "__main__":
    main()
