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


def _nearest_word(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each row of x (squared L2 through one matrix product)."""
    return np.argmin((centers**2).sum(1)[None, :] - 2.0 * (x @ centers.T), axis=1)


def _kmeans(x: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Plain Lloyd iterations from k random rows. Written with numpy matrix products because OpenCV's
    k-means (k-means++ seeding, no BLAS) took 8 CPU seconds on fox's descriptors; this takes 0.3."""
    centers = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iterations):
        words = _nearest_word(x, centers)
        counts = np.bincount(words, minlength=k)
        order = np.argsort(words, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        used = counts > 0
        sums = np.add.reduceat(x[order], starts[used], axis=0)
        centers[used] = sums / counts[used, None]
    return centers


def bow_vectors(descriptors: list[np.ndarray], vocabulary_size: int = 256, sample: int = 20_000,
                seed: int = 0, iterations: int = 10) -> np.ndarray:
    """L2-normalised tf-idf histograms of visual words, one row per image.

    descriptors: per image (N_i, 128) uint8/float SIFT descriptors (N_i may be 0).
    The vocabulary: k-means on `sample` descriptors drawn evenly from the images.
    Returns (num_images, vocabulary_size) float32.
    """
    rng = np.random.default_rng(seed)
    per_image = max(1, sample // max(1, len(descriptors)))
    picked = [d[rng.choice(len(d), min(per_image, len(d)), replace=False)] for d in descriptors if len(d)]
    n_img = len(descriptors)
    if not picked:
        return np.zeros((n_img, vocabulary_size), np.float32)
    train = np.concatenate(picked).astype(np.float32)
    k = int(min(vocabulary_size, max(2, len(train) // 20)))
    centers = _kmeans(train, k, iterations, rng)
    hist = np.zeros((n_img, k), np.float32)
    for i, d in enumerate(descriptors):
        if len(d):
            hist[i] = np.bincount(_nearest_word(d.astype(np.float32), centers), minlength=k)
    # Hellinger-normalised word frequencies, centred on the capture's mean: with a few hundred words and
    # thousands of features per photo every word occurs in every photo, so idf weights (log N/df) are all
    # zero; what tells photos apart is how far each one's word mix departs from the average photo.
    vec = np.sqrt(hist / np.maximum(hist.sum(1, keepdims=True), 1.0))
    has = hist.sum(1) > 0
    if has.any():
        vec[has] -= vec[has].mean(0)
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
