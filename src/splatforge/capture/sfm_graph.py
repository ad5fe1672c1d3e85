"""The capture check's view graph from the pose stage's own features and verified matches.

The check's quick matcher (ORB, then SIFT where ORB splits the capture) predicts what COLMAP will connect; where
pycolmap extracts and matches SIFT on a GPU (fox: ~2 s for 50 photos on an H100) the prediction can be the thing
itself: the pose stage's features and verified matches, made with its settings into the run's database
(`colmap/database.db`). The check's verdict on connectivity is then what the mapper will see, and the pose stage
finds its features and matches already there (`colmap_engine.prepare_database` keeps them when the settings
agree; with other settings it redoes them, so nothing wrong is ever reused).
"""

from __future__ import annotations

import logging

from splatforge.capture.check import ViewGraph
from splatforge.capture.matching import PairMatch, components
from splatforge.rundir import RunDir

log = logging.getLogger(__name__)
DESCRIPTION = "the pose stage's SIFT features and verified matches (kept in colmap/database.db for it)"


def sfm_available() -> bool:
    """Whether pycolmap here extracts and matches SIFT on a GPU: only then is the SfM graph cheap enough
    for the check (on 2 CPU cores fox's features and matches take ~15 s against the quick matcher's few)."""
    try:
        from splatforge.poses import PoseOptions, colmap_engine

        return colmap_engine.use_gpu(PoseOptions())
    except ImportError:
        return False


def sfm_view_graph(run: RunDir, check_names: list[str]) -> ViewGraph | None:
    """The view graph of run.frames from SIFT features and verified matches made as the pose stage makes them
    (default PoseOptions), indexed like `check_names`. None when they cannot be made (the check then matches
    on its own)."""
    from splatforge.poses import PoseOptions, colmap_engine
    from splatforge.poses.inputs import frame_names

    try:
        names, ordered_hint = frame_names(run)
        options = PoseOptions()
        matched = colmap_engine.features_and_matches(run.database, run.frames, names, options,
                                                     run.colmap_dir / "work", ordered_hint)
        inliers, keypoints = colmap_engine.verified_pairs(run.database, names)
    except Exception as exc:  # the quick matcher still gives a verdict; the pose stage will say what is wrong
        log.warning("the pose stage's features could not be made for the check (%s): quick matching instead", exc)
        return None
    index = {name: k for k, name in enumerate(check_names)}
    matches = {}
    for (a, b), count in inliers.items():
        if a not in index or b not in index:
            continue
        i, j = sorted((index[a], index[b]))
        fewest = min(keypoints.get(a, 0), keypoints.get(b, 0))
        matches[(i, j)] = PairMatch(i, j, count, count, count / fewest if fewest else 0.0,
                                    count >= options.min_num_inliers)
    for k in range(len(check_names) - 1):  # the check reads every step of an ordered capture
        matches.setdefault((k, k + 1), PairMatch(k, k + 1, 0, 0, 0.0, False))
    groups = components(len(check_names), [k for k, m in matches.items() if m.connected])
    return ViewGraph(matches, groups, ordered=matched.video or matched.plan.scheme == "sequential", bridged=0,
                     matched_with=DESCRIPTION, first_groups=len(groups))
