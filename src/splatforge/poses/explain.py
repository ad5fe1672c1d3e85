"""Why images stayed out of the model, and failures in words a photographer understands."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from splatforge.errors import PoseError

CHECK_ADVICE = "run `splatforge check` on the photos to see which ones are the problem"
FEW_FEATURES = 100  # fewer SIFT keypoints than this: blurry, dark, over-exposed or featureless


def match_graph(database: Path, min_inliers: int) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Keypoints per image name and, per name, the images it has >= min_inliers verified matches with."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        images = {im.image_id: im.name for im in db.read_all_images()}
        keypoints = {name: db.num_keypoints_for_image(iid) for iid, name in images.items()}
        neighbours: dict[str, set[str]] = defaultdict(set)
        pair_ids, inliers = db.read_two_view_geometry_num_inliers()
        for pair_id, count in zip(pair_ids, inliers):
            if count < min_inliers:
                continue
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            if a in images and b in images:
                neighbours[images[a]].add(images[b])
                neighbours[images[b]].add(images[a])
    finally:
        db.close()
    return keypoints, dict(neighbours)


def unregistered_reasons(names: list[str], registered: set[str], keypoints: dict[str, int],
                         neighbours: dict[str, set[str]], other_models: list[dict]) -> dict[str, str]:
    """A short reason per unregistered image name."""
    in_other = {}
    for i, model in enumerate(other_models, start=2):
        for name in model["names"]:
            in_other.setdefault(name, (i, model["images"]))
    reasons = {}
    for name in names:
        if name in registered:
            continue
        kp = keypoints.get(name, 0)
        linked = neighbours.get(name, set())
        if kp < FEW_FEATURES:
            reasons[name] = f"few features ({kp}): blurry, too dark or too plain"
        elif not linked:
            reasons[name] = "no verified matches: it shares no recognisable detail with any other photo"
        elif name in in_other:
            idx, size = in_other[name]
            reasons[name] = f"belongs to a separate group of {size} photos (model {idx}) that does not connect"
        elif not (linked & registered):
            reasons[name] = (f"matches only {len(linked)} other unplaced photo(s), none of the placed ones")
        else:
            reasons[name] = (f"matched {len(linked & registered)} placed photo(s) but too weakly to be placed "
                             "(little overlap or a view from too far away)")
    return reasons


def groups(names: list[str], neighbours: dict[str, set[str]]) -> list[list[str]]:
    """Connected groups of the verified-match graph, largest first."""
    seen, out = set(), []
    for name in names:
        if name in seen:
            continue
        stack, group = [name], []
        seen.add(name)
        while stack:
            cur = stack.pop()
            group.append(cur)
            for nxt in neighbours.get(cur, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        out.append(sorted(group))
    return sorted(out, key=len, reverse=True)


def failure(total: int, registered: int, keypoints: dict[str, int], neighbours: dict[str, set[str]],
            other_models: list[dict]) -> PoseError:
    """The error to raise when no usable model came out."""
    few = [n for n, k in keypoints.items() if k < FEW_FEATURES]
    lonely = [n for n in keypoints if not neighbours.get(n)]
    if total < 3:
        return PoseError(f"only {total} photo(s): at least 3 overlapping photos are needed to place cameras",
                         "take more photos of the subject, each overlapping the previous one by about two thirds")
    if len(few) > total / 2:
        what = "most photos show almost no detail (blurry, dark, over-exposed or a plain surface)"
    elif len(lonely) > total / 2:
        what = "most photos share no recognisable detail with any other photo: they barely overlap"
    elif len(parts := groups(sorted(keypoints), neighbours)) > 1 and len(parts[0]) < total * 0.8:
        sizes = ", ".join(str(len(g)) for g in parts[:6])
        what = (f"the photos fall into {len(parts)} groups that share no detail with each other ({sizes} photos), "
                "and even within a group they overlap too little")
    elif other_models:
        sizes = ", ".join(str(m["images"]) for m in other_models[:4])
        what = (f"the photos fall into separate groups that do not connect (largest group {registered}, "
                f"others {sizes})")
    else:
        what = "the photos overlap too little or look at the subject from too few directions to be placed"
    return PoseError(
        f"camera positions could not be worked out: only {registered} of {total} photos could be placed; {what}",
        "retake the capture walking slowly around the subject so each photo overlaps the previous one by about "
        f"two thirds, keep it sharp and well lit; {CHECK_ADVICE}")
