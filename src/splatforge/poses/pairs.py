"""Which image pairs to match: sequential windows, exhaustive, or a small retrieval of our own.

No vocabulary-tree file is needed: `retrieval_similarity` builds a tiny visual vocabulary from the
capture's own SIFT descriptors (k-means on a sample), describes each image by its tf-idf weighted
word histogram, and compares images by cosine similarity. That is enough to find the few far-apart
frames that close a loop in a video, or the likely neighbours in a large unordered set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass
class PairPlan:
    """The pairs to match (indices into the sorted image list) and why this scheme was chosen."""

    scheme: str  # sequential | exhaustive | retrieval
    reason: str
    pairs: list[tuple[int, int]] | None  # None: all pairs (exhaustive)


def bow_vectors(descriptors: list[np.ndarray], vocabulary_size: int = 256, sample: int = 60_000,
                seed: int = 0) -> np.ndarray:
    """L2-normalised tf-idf histograms of visual words, one row per image.

    descriptors: per image (N_i, 128) uint8/float SIFT descriptors (N_i may be 0).
    Returns (num_images, vocabulary_size) float32.
    """
    import cv2

    rng = np.random.default_rng(seed)
    per_image = max(1, sample // max(1, len(descriptors)))
    picked = [d[rng.choice(len(d), min(per_image, len(d)), replace=False)] for d in descriptors if len(d)]
    n_img = len(descriptors)
    if not picked:
        return np.zeros((n_img, vocabulary_size), np.float32)
    train = np.concatenate(picked).astype(np.float32)
    k = int(min(vocabulary_size, max(2, len(train) // 20)))
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 12, 1.0)
    _, _, centers = cv2.kmeans(train, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    hist = np.zeros((n_img, k), np.float32)
    for i, d in enumerate(descriptors):
        if len(d) == 0:
            continue
        words = np.array([m.trainIdx for m in matcher.match(d.astype(np.float32), centers)])
        hist[i] = np.bincount(words, minlength=k)
    df = (hist > 0).sum(0)
    idf = np.log((n_img + 1) / (df + 1)).astype(np.float32)
    vec = np.sqrt(hist) * idf  # sqrt damps bursty words (repeated texture)
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    return vec / np.maximum(norm, 1e-12)


def similarity_matrix(vectors: np.ndarray) -> np.ndarray:
    """(N, N) cosine similarity with -1 on the diagonal."""
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -1.0)
    return sim


def top_k_pairs(sim: np.ndarray, k: int, min_index_distance: int = 0) -> set[tuple[int, int]]:
    """For each image, its k most similar images (optionally at least `min_index_distance` apart)."""
    n = len(sim)
    pairs: set[tuple[int, int]] = set()
    for i in range(n):
        order = np.argsort(-sim[i])
        taken = 0
        for j in order:
            if taken >= k:
                break
            if abs(int(j) - i) <= min_index_distance or j == i:
                continue
            pairs.add((min(i, int(j)), max(i, int(j))))
            taken += 1
    return pairs


def sequential_pairs(n: int, overlap: int, quadratic: bool) -> set[tuple[int, int]]:
    """Each frame with its `overlap` successors, and (quadratic) frames 2^k apart beyond that."""
    pairs = set()
    for i in range(n):
        for d in range(1, overlap + 1):
            if i + d < n:
                pairs.add((i, i + d))
        if quadratic:
            d = 1
            while d < n:
                if d > overlap and i + d < n:
                    pairs.add((i, i + d))
                d *= 2
    return pairs


_NUMBER = re.compile(r"(\d+)")


def numbered_names(names: list[str]) -> bool:
    """True when every name carries a number and the names sort by it (frame dumps, camera roll)."""
    nums = []
    for name in names:
        found = _NUMBER.findall(name)
        if not found:
            return False
        nums.append(int(found[-1]))
    return len(set(nums)) == len(nums)


def looks_ordered(sim: np.ndarray, threshold: float = 0.5) -> tuple[bool, float]:
    """Whether consecutive images are, as a rule, among each other's most similar images.

    Returns (ordered, score): score is the mean percentile rank (1 = most similar) of image i+1 among
    the candidates of image i. A shuffled set scores about 0.5; a video close to 1.
    """
    n = len(sim)
    if n < 4:
        return False, 0.0
    ranks = []
    for i in range(n - 1):
        row = sim[i]
        better = (row > row[i + 1]).sum()
        ranks.append(1.0 - better / (n - 2))
    score = float(np.mean(ranks))
    return score >= 0.5 + threshold / 2, score
