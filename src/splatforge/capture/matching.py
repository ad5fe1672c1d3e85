"""Fast feature matching to predict whether images will register together.

Not SfM: capped features on downscaled grey images, a ratio test, then the fundamental matrix by
RANSAC. A pair is *connected* when enough matches agree with one epipolar geometry; the connected
components of that graph predict which images COLMAP can put into one model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class MatchOptions:
    detector: str = "orb"  # "orb" (8x cheaper to detect, 5x to match) or "sift"
    max_features: int = 1500  # per image, strongest first (matching cost grows with its square)
    ratio: float = 0.8  # Lowe ratio test
    ransac_threshold_px: float = 2.0  # epipolar distance in px of the analysis image
    ransac_confidence: float = 0.999
    min_inliers: int = 30  # fundamental-matrix inliers for a pair to count as connected
    min_inlier_ratio: float = 0.25  # inliers / ratio-test matches, second guard against chance fits


@dataclass
class Features:
    xy: np.ndarray = field(repr=False)  # (N, 2) float32 pixel positions in the analysis image
    descriptors: np.ndarray | None = field(repr=False)  # (N, D) uint8 (ORB) or float32 (SIFT)
    size: tuple[int, int] = (0, 0)  # (width, height) of the analysis image

    def __len__(self) -> int:
        return len(self.xy)


@dataclass
class PairMatch:
    i: int
    j: int
    matches: int  # after the ratio test
    inliers: int  # consistent with one fundamental matrix
    overlap: float  # inliers / min(features of i, features of j): share of features matched
    connected: bool


def make_detector(options: MatchOptions):
    if options.detector == "orb":
        return cv2.ORB_create(nfeatures=options.max_features, fastThreshold=10)
    if options.detector == "sift":
        return cv2.SIFT_create(nfeatures=options.max_features)
    raise ValueError(f"unknown detector {options.detector!r} (use 'sift' or 'orb')")


def detect(gray: np.ndarray, detector) -> Features:
    """Keypoints and descriptors of a grey (H, W) uint8 image, strongest first."""
    keypoints, descriptors = detector.detectAndCompute(gray, None)
    order = np.argsort([-k.response for k in keypoints], kind="stable")
    xy = np.array([keypoints[k].pt for k in order], np.float32).reshape(-1, 2)
    if descriptors is not None:
        descriptors = descriptors[order]
    return Features(xy, descriptors, (gray.shape[1], gray.shape[0]))


def match_pair(a: Features, b: Features, i: int, j: int, options: MatchOptions) -> PairMatch:
    """Ratio-test matches of a -> b, verified by a RANSAC fundamental matrix."""
    if len(a) < 8 or len(b) < 8 or a.descriptors is None or b.descriptors is None:
        return PairMatch(i, j, 0, 0, 0.0, False)
    norm = cv2.NORM_HAMMING if a.descriptors.dtype == np.uint8 else cv2.NORM_L2
    knn = cv2.BFMatcher(norm).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < options.ratio * m[1].distance]
    inliers = 0
    if len(good) >= 8:
        pa = a.xy[[m.queryIdx for m in good]]
        pb = b.xy[[m.trainIdx for m in good]]
        # USAC (LO-RANSAC) is ~7x faster than classic RANSAC here and finds more of the true inliers.
        try:
            _, mask = cv2.findFundamentalMat(
                pa, pb, cv2.USAC_FAST, options.ransac_threshold_px, options.ransac_confidence, 2000
            )
        except cv2.error:  # USAC asserts on degenerate sets (e.g. one image a shifted copy of the other)
            mask = None
        inliers = int(mask.sum()) if mask is not None else 0
    overlap = inliers / max(1, min(len(a), len(b)))
    connected = inliers >= options.min_inliers and inliers >= options.min_inlier_ratio * max(1, len(good))
    return PairMatch(i, j, len(good), inliers, round(overlap, 4), connected)


def retrieve(
    query: Features, pool: list[tuple[int, Features]], per_image: int = 200, top: int = 3, ratio: float = 0.8
) -> list[int]:
    """Images of `pool` (index, features) most likely to overlap `query`, best first.

    Cheap retrieval without a vocabulary: the strongest `per_image` descriptors of every pool image
    are stacked into one set; each ratio-test match of the query's strongest descriptors votes for
    the image it lands in. Costs about one pair match for a pool of 5 images.
    """
    if query.descriptors is None or not pool:
        return []
    stacks, owners = [], []
    for index, f in pool:
        if f.descriptors is not None and len(f):
            stacks.append(f.descriptors[:per_image])
            owners.append(np.full(min(per_image, len(f)), index))
    if not stacks:
        return []
    train, owner = np.vstack(stacks), np.concatenate(owners)
    norm = cv2.NORM_HAMMING if train.dtype == np.uint8 else cv2.NORM_L2
    knn = cv2.BFMatcher(norm).knnMatch(query.descriptors[:per_image], train, k=2)
    votes: dict[int, int] = {}
    for m in knn:
        if len(m) == 2 and m[0].distance < ratio * m[1].distance:
            k = int(owner[m[0].trainIdx])
            votes[k] = votes.get(k, 0) + 1
    return [k for k, _ in sorted(votes.items(), key=lambda kv: -kv[1])[:top]]


def components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components of an n-node graph, largest first, each sorted."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in edges:
        parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for k in range(n):
        groups.setdefault(find(k), []).append(k)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))
