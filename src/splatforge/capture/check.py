"""Predict in seconds whether a capture can become a splat, and say what to do about it.

`check_capture(input)` measures every image (blur, exposure, features, size, camera), matches images
to find which of them will register together (see `matching`), and turns that into a score 0-100, a
verdict (good / risky / will-fail) and advice tied to image numbers. The pipeline's gate calls it
before pose estimation and stops on `will-fail` unless forced.

Thresholds were set on the shared real captures (see docs/benchmarks-capture.md for the numbers):
ORB at 800 px finds at most ~15 fundamental-matrix inliers between unrelated photos, while truly
overlapping pairs give 60-300, hence `MatchOptions.min_inliers = 30`. ORB misses overlaps that SIFT (what
the pose stage matches) finds, so before the check reports a capture as split, or a step of an ordered one
as broken, SIFT is asked too (`CheckOptions.second_opinion`); captures ORB finds whole pay nothing extra.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from splatforge.capture.frames import FrameOptions, sample_video
from splatforge.capture.imageio import ImageInfo, MissingDecoder, list_images, read_for_analysis, read_info
from splatforge.capture.matching import (
    MatchOptions,
    PairMatch,
    components,
    detect,
    make_detector,
    match_pair,
    retrieve,
)
from splatforge.capture.measures import downscale, exposure, normalise_thumbs, sharpness, thumbnail, to_gray
from splatforge.console import log
from splatforge.errors import CaptureRejected, InputError
from splatforge.rundir import atomic_write_json

VERDICTS = ("good", "risky", "will-fail")


@dataclass
class CheckOptions:
    """Every knob of the capture check. Defaults were tuned on the shared captures."""

    analysis_size: int = 800  # long side (px) of the grey copy features are found on
    match: MatchOptions = field(default_factory=MatchOptions)
    # Matcher asked again when the first one splits the capture into groups or breaks a step of an ordered
    # one (None: never). SIFT, as the pose stage uses, at ~7x ORB's cost (docs/benchmarks-capture.md).
    second_opinion: MatchOptions | None = field(default_factory=lambda: MatchOptions(detector="sift"))
    frames: FrameOptions = field(default_factory=FrameOptions)  # how a video is sampled
    ordered: bool | None = None  # None: a video is ordered; a folder is if its neighbours match
    ordered_min_share: float = 0.7  # share of connected name-neighbours that makes a folder "ordered"
    window: int = 4  # ordered captures: pairs tried across a broken step; large unordered: sliding window
    all_pairs_max: int = 25  # unordered, up to this many images (300 pairs): match every pair
    bridge_candidates: int = 3  # large captures split in groups: pairs tried per image outside the largest
    retrieve_features: int = 200  # descriptors per image used to find those candidates
    bridge_max_pairs: int = 300  # budget of extra pairs to join components
    bridge_rounds: int = 2
    blur_relative: float = 0.3  # blurred: sharpness below this x the capture's median ...
    blur_absolute: float = 60.0  # ... or below this absolute Laplacian variance (at 640 px)
    clip_low: int = 5  # grey levels <= clip_low count as clipped shadows
    clip_high: int = 250  # grey levels >= clip_high count as clipped highlights
    # Exposure: a white or black background clips many pixels without the image being badly exposed
    # (DTU: up to 51% clipped, mean 65-177), so clipping counts only together with the mean level.
    clipped_max: float = 0.3  # over-exposed: more than this share clipped high and mean > bright_mean ...
    bright_mean: float = 185.0
    mean_high: float = 215.0  # ... or mean grey level above this, whatever the clipping
    dark_mean: float = 60.0  # under-exposed: more than clipped_max clipped low and mean < dark_mean ...
    mean_low: float = 45.0  # ... or mean grey level below this
    min_features: int = 300  # fewer ORB features than this = texture-less image
    duplicate_all_pairs_max: int = 400  # compare every pair of thumbnails up to this many images
    duplicate_distance: float = (
        0.025  # thumbnail distance below which two images are the same view (as frames)
    )
    ideal_min_images: int = 50  # splat training wants 50-150 images
    ideal_max_images: int = 150
    min_images: int = 3  # fewer than this cannot be posed at all
    min_connected_share: float = 0.67  # largest matched group below this share of images = will-fail
    risky_below: float = 65.0  # score under which the verdict is at best risky
    workers: int = 2  # threads for decoding, detecting and matching (OpenCV releases the GIL)
    thumbnails: bool = False  # keep small colour thumbnails (for the contact sheet)
    thumbnail_size: int = 200


@dataclass
class ImageMeasures:
    index: int  # 1-based position in the capture (what advice refers to)
    name: str
    width: int
    height: int
    orientation: int = 1
    make: str | None = None
    model: str | None = None
    focal_mm: float | None = None
    focal_35mm: float | None = None
    time: float | None = None  # seconds into the video (video input)
    sharpness: float = 0.0
    dark_fraction: float = 0.0
    bright_fraction: float = 0.0
    brightness: float = 0.0
    features: int = 0
    next_inliers: int | None = None  # fundamental inliers with the next image (ordered captures)
    next_overlap: float | None = None  # share of features matched with the next image
    degree: int = 0  # number of images it is connected to
    component: int = 0  # 1 = the largest matched group
    duplicate_of: str | None = None
    flags: list[str] = field(default_factory=list)  # blurred, overexposed, underexposed, ...


@dataclass
class QualityReport:
    score: int
    verdict: str
    advice: list[str]
    images: list[ImageMeasures]
    summary: dict
    thumbnails: list[np.ndarray] | None = field(default=None, repr=False)  # (h, w, 3) BGR each

    @property
    def flagged(self) -> list[ImageMeasures]:
        return [m for m in self.images if m.flags]

    def to_dict(self) -> dict:
        """The quality.json document (contract: score, verdict, advice, images, summary)."""
        return {
            "score": self.score,
            "verdict": self.verdict,
            "advice": self.advice,
            "images": [asdict(m) for m in self.images],
            "summary": self.summary,
        }


def write_quality(report: QualityReport, path: Path) -> None:
    """Write `report.to_dict()` atomically (the run folder's quality.json)."""
    atomic_write_json(path, report.to_dict())


def gate(report: QualityReport, force: bool = False, details: str = "quality.json") -> None:
    """The pipeline's stop sign: raise `CaptureRejected` (with the advice) on `will-fail` unless forced."""
    if report.verdict != "will-fail":
        return
    if force:
        log.warning("the capture check says will-fail; continuing because the gate was forced")
        return
    raise CaptureRejected(
        f"the capture check predicts that this capture cannot be reconstructed (score {report.score}/100)",
        " ".join(report.advice[:4] + [f"Details: {details}. To try anyway, re-run with --force."]))


# ---------------------------------------------------------------------------------------------------
# Loading


@dataclass
class _Loaded:
    name: str
    info: ImageInfo
    image: np.ndarray | None  # (H, W, 3) BGR analysis copy
    time: float | None = None


def _load_folder(folder: Path, options: CheckOptions, pool: ThreadPoolExecutor) -> list[_Loaded]:
    paths = list_images(folder)
    if not paths:
        raise InputError(
            f"{folder} contains no images ({', '.join(s for s in ('.jpg', '.png', '.tif'))} ...).",
            "Point at the folder that holds the photos, or at a video file.",
        )

    def load(path: Path) -> _Loaded:
        try:
            info = read_info(path)
        except MissingDecoder:
            raise  # HEIC without its decoder: say how to convert, not "unreadable"
        except Exception:
            return _Loaded(path.name, ImageInfo(0, 0, 1), None)
        return _Loaded(path.name, info, read_for_analysis(path, info, options.analysis_size))

    return list(pool.map(load, paths))


def _load_video(video: Path, options: CheckOptions) -> list[_Loaded]:
    records, images, _ = sample_video(video, options.frames)
    loaded = []
    for rec, image in zip(records, images):
        info = ImageInfo(image.shape[1], image.shape[0], 1)
        loaded.append(_Loaded(rec.file, info, downscale(image, options.analysis_size), rec.time))
    return loaded


# ---------------------------------------------------------------------------------------------------
# Measuring


def _measure_one(item: _Loaded, index: int, options: CheckOptions):
    m = ImageMeasures(
        index=index,
        name=item.name,
        width=item.info.width,
        height=item.info.height,
        orientation=item.info.orientation,
        make=item.info.make,
        model=item.info.model,
        focal_mm=item.info.focal_mm,
        focal_35mm=item.info.focal_35mm,
        time=item.time,
    )
    if item.image is None:
        m.flags.append("unreadable")
        return m, None, None, None
    gray = to_gray(item.image)
    m.sharpness = round(sharpness(gray), 1)
    dark, bright, mean = exposure(gray, options.clip_low, options.clip_high)
    m.dark_fraction, m.bright_fraction, m.brightness = round(dark, 4), round(bright, 4), round(mean, 1)
    features = detect(gray, make_detector(options.match))
    m.features = len(features)
    thumb = downscale(item.image, options.thumbnail_size) if options.thumbnails else None
    return m, features, thumbnail(gray), thumb


def _pairs_to_match(
    n: int, ordered: bool, neighbours: dict[tuple[int, int], PairMatch], options: CheckOptions
) -> list[tuple[int, int]]:
    """Pairs to match after the name/time neighbours (already in `neighbours`).

    Ordered: neighbours already chain the capture; only where a step is broken, try the pairs that
    span it within `window` (a blurred frame, a quick turn). Unordered: every pair for small sets,
    a sliding window for large ones (components are then joined by retrieval, `_bridge_pairs`).
    """
    if ordered:
        pairs: set[tuple[int, int]] = set()
        for k in range(n - 1):
            if not neighbours[(k, k + 1)].connected:
                for i in range(max(0, k + 1 - options.window), k + 1):
                    for j in range(k + 1, min(n, k + 1 + options.window)):
                        pairs.add((i, j))
        return sorted(pairs)
    if n <= options.all_pairs_max:
        return list(itertools.combinations(range(n), 2))
    return [(i, j) for i in range(n) for j in range(i + 1, min(n, i + 1 + options.window))]


def _bridge_pairs(
    features: list, groups: list[list[int]], done: set[tuple[int, int]], options: CheckOptions
) -> list[tuple[int, int]]:
    """Candidate pairs between components: each image outside the largest component retrieves its
    most similar images among all other components (`matching.retrieve`); budget-limited."""
    comp = {k: c for c, g in enumerate(groups) for k in g}
    pairs: list[tuple[int, int]] = []
    for q in (k for g in groups[1:] for k in g):
        if features[q] is None:
            continue
        pool = [
            (k, features[k]) for k in range(len(features)) if comp[k] != comp[q] and features[k] is not None
        ]
        for k in retrieve(features[q], pool, options.retrieve_features, options.bridge_candidates):
            pair = (min(q, k), max(q, k))
            if pair not in done and pair not in pairs:
                pairs.append(pair)
        if len(pairs) >= options.bridge_max_pairs:
            break
    return pairs[: options.bridge_max_pairs]


# ---------------------------------------------------------------------------------------------------
# Advice helpers


def _ranges(indices: list[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> '1-3, 7, 9-10'."""
    indices = sorted(indices)
    parts: list[str] = []
    start = prev = None
    for k in indices + [None]:
        if start is None:
            start = prev = k
        elif k is not None and k == prev + 1:
            prev = k
        else:
            parts.append(f"{start}" if start == prev else f"{start}\u2013{prev}")
            start = prev = k
    return ", ".join(parts)


def _which(images: list[ImageMeasures], noun: str) -> str:
    idx = [m.index for m in images]
    label = f"{noun} {_ranges(idx)}" if len(idx) > 1 else f"{noun[:-1]} {idx[0]}"
    if len(idx) <= 4:
        label += " (" + ", ".join(m.name for m in images) + ")"
    return label


def _verb(images: list) -> str:
    return "are" if len(images) > 1 else "is"


# ---------------------------------------------------------------------------------------------------


def check_capture(
    input: Path, options: CheckOptions = CheckOptions(), report_dir: Path | None = None,
    view_graph: Callable[[list[str]], ViewGraph | None] | None = None,
) -> QualityReport:
    """Score a capture (a folder of images or a video) before spending time on poses and training.

    Args:
        input: folder of images (or a folder with `images/` inside), or a video file.
        options: thresholds and budgets; see `CheckOptions`.
        report_dir: when given, also write a contact sheet (`contact_sheet.png`, `index.html`) there.
        view_graph: which images share features, given the image names in the check's order (the pose
            stage's own matches: `capture/sfm_graph.py`); None, or when it returns None: the check's quick
            ORB/SIFT matching.

    Raises `InputError` when the input is missing, empty or not a readable video.
    """
    t0 = time.perf_counter()
    input = Path(input)
    if not input.exists():
        raise InputError(f"{input} does not exist.", "Give a folder of photos or a video file.")
    # Any file is treated as a video: PyAV decides, and a non-video gives a clear InputError.
    is_video = input.is_file()
    if report_dir is not None and not options.thumbnails:
        options = _replace(options, thumbnails=True)

    workers = max(1, options.workers)
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # parallelism comes from our thread pool; nested OpenCV threads would oversubscribe
    try:
        with ThreadPoolExecutor(workers) as pool:
            loaded = _load_video(input, options) if is_video else _load_folder(input, options, pool)
            t_load = time.perf_counter()
            results = list(pool.map(lambda a: _measure_one(a[1], a[0] + 1, options), enumerate(loaded)))
            t_measure = time.perf_counter()
            measures = [r[0] for r in results]
            features = [r[1] for r in results]
            thumbs = [r[2] for r in results]
            graph = view_graph([item.name for item in loaded]) if view_graph is not None else None
            if graph is None:
                graph = _connectivity(loaded, features, is_video, options, pool)
            matches, groups, ordered, bridged = graph.matches, graph.groups, graph.ordered, graph.bridged
            t_match = time.perf_counter()
    finally:
        cv2.setNumThreads(previous_threads)

    report = _assess(
        measures, thumbs, matches, groups, ordered, options, noun="frames" if is_video else "images"
    )
    report.summary.update(
        input=str(input),
        kind="video" if is_video else "images",
        ordered=ordered,
        pairs_matched=len(matches),
        bridge_pairs=bridged,
        matched_with=graph.matched_with,
        first_matcher_groups=graph.first_groups,
        seconds={
            "load": round(t_load - t0, 3),
            "measure": round(t_measure - t_load, 3),
            "match": round(t_match - t_measure, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
    )
    if options.thumbnails:
        report.thumbnails = [r[3] for r in results]
    if report_dir is not None:
        from splatforge.capture.contact_sheet import write_contact_sheet

        report.summary["report"] = str(write_contact_sheet(report, Path(report_dir)))
    return report


def _replace(options: CheckOptions, **changes) -> CheckOptions:
    from dataclasses import replace

    return replace(options, **changes)


@dataclass
class ViewGraph:
    matches: dict[tuple[int, int], PairMatch]
    groups: list[list[int]]  # connected components, largest first
    ordered: bool
    bridged: int  # pairs added to join components
    matched_with: str = ""  # which detector(s) the graph rests on
    first_groups: int = 0  # groups the first matcher found


def _connectivity(loaded: list, features: list, is_video: bool, options: CheckOptions,
                  pool: ThreadPoolExecutor) -> ViewGraph:
    """The view graph from the first matcher, with the second opinion where the first one says no."""
    first, second = options.match, options.second_opinion
    graph = _view_graph(features, is_video, options, first, pool)
    graph.matched_with, graph.first_groups = first.detector, len(graph.groups)
    if second is None or second.detector == first.detector:
        return graph
    if len(graph.groups) > 1:
        # The capture would be reported as split: ask the second matcher before telling the user to re-shoot
        # (ORB saw 6 groups in the demo capture that SIFT and COLMAP see as one; docs/benchmarks-capture.md).
        others = list(pool.map(lambda it: None if it.image is None else detect(to_gray(it.image),
                                                                                 make_detector(second)), loaded))
        again = _view_graph(others, is_video, options, second, pool)
        again.matched_with = f"{first.detector}, then {second.detector} (the first split the capture)"
        again.first_groups = graph.first_groups
        return again
    if graph.ordered:
        rechecked = _recheck_steps(loaded, graph, second, pool)
        if rechecked:
            graph.matched_with += f" ({rechecked} broken steps matched again with {second.detector})"
    return graph


def _view_graph(
    features: list, is_video: bool, options: CheckOptions, match: MatchOptions, pool: ThreadPoolExecutor
) -> ViewGraph:
    """Which images share enough features: neighbours first, then the pairs `_pairs_to_match` picks,
    then retrieval between components (`_bridge_pairs`)."""
    n = len(features)
    # Order: a video is ordered; a folder is when most name-neighbours overlap.
    neighbour = {}
    if n > 1:
        neighbour = {(m.i, m.j): m for m in pool.map(lambda k: _match(features, k, k + 1, match), range(n - 1))}
    ordered = options.ordered
    if ordered is None:
        share = np.mean([p.connected for p in neighbour.values()]) if neighbour else 0.0
        ordered = is_video or bool(share >= options.ordered_min_share)
    todo = [p for p in _pairs_to_match(n, ordered, neighbour, options) if p not in neighbour]
    matches: dict[tuple[int, int], PairMatch] = dict(neighbour)
    for m in pool.map(lambda p: _match(features, p[0], p[1], match), todo):
        matches[(m.i, m.j)] = m
    groups = components(n, [k for k, m in matches.items() if m.connected])
    bridged = 0
    for _ in range(options.bridge_rounds):
        if len(groups) == 1 or (n <= options.all_pairs_max and not ordered):
            break
        extra = _bridge_pairs(features, groups, set(matches), options)
        for m in pool.map(lambda p: _match(features, p[0], p[1], match), extra):
            matches[(m.i, m.j)] = m
        bridged += len(extra)
        groups = components(n, [k for k, m in matches.items() if m.connected])
    return ViewGraph(matches, groups, ordered, bridged)


def _recheck_steps(loaded: list, graph: ViewGraph, match: MatchOptions, pool: ThreadPoolExecutor) -> int:
    """Match the broken steps of an ordered capture again with `match` (its own detector) and keep the
    pairs that connect: the advice "add views between k and k+1" must not rest on one detector's miss.
    Returns how many steps were re-checked."""
    gaps = [k for k in range(len(loaded) - 1) if not graph.matches[(k, k + 1)].connected]
    involved = sorted({k for g in gaps for k in (g, g + 1)} - {k for k, it in enumerate(loaded) if it.image is None})
    features: list = [None] * len(loaded)
    for k, f in zip(involved, pool.map(lambda k: detect(to_gray(loaded[k].image), make_detector(match)), involved)):
        features[k] = f
    for m in pool.map(lambda k: _match(features, k, k + 1, match), gaps):
        if m.connected:
            graph.matches[(m.i, m.j)] = m
    return len(gaps)


def _match(features: list, i: int, j: int, options: MatchOptions) -> PairMatch:
    if features[i] is None or features[j] is None:
        return PairMatch(i, j, 0, 0, 0.0, False)
    return match_pair(features[i], features[j], i, j, options)


def _assess(
    measures: list[ImageMeasures],
    thumbs: list[np.ndarray | None],
    matches: dict[tuple[int, int], PairMatch],
    groups: list[list[int]],
    ordered: bool,
    options: CheckOptions,
    noun: str = "images",
) -> QualityReport:
    """Flags per image, then score, verdict and advice for the whole capture."""
    n = len(measures)
    advice: list[str] = []
    penalties: dict[str, float] = {}
    fatal: list[str] = []
    readable = [m for m in measures if "unreadable" not in m.flags]

    # --- per image -------------------------------------------------------------------------------
    median_sharp = float(np.median([m.sharpness for m in readable])) if readable else 0.0
    for m in readable:
        if m.sharpness < options.blur_relative * median_sharp or m.sharpness < options.blur_absolute:
            m.flags.append("blurred")
        if (m.bright_fraction > options.clipped_max and m.brightness > options.bright_mean) or (
            m.brightness > options.mean_high
        ):
            m.flags.append("overexposed")
        if (m.dark_fraction > options.clipped_max and m.brightness < options.dark_mean) or (
            m.brightness < options.mean_low
        ):
            m.flags.append("underexposed")
        if m.features < options.min_features:
            m.flags.append("few-features")

    for (i, j), p in matches.items():
        if p.connected:
            measures[i].degree += 1
            measures[j].degree += 1
        if j == i + 1:
            measures[i].next_inliers, measures[i].next_overlap = p.inliers, p.overlap
    for c, group in enumerate(groups, start=1):
        for k in group:
            measures[k].component = c

    # Near-duplicates: the same view twice (tiny thumbnails almost equal, after contrast normalisation).
    # Compared over all pairs (n^2 * 4096 floats is cheap up to a few hundred images), then a window.
    valid = [k for k in range(n) if thumbs[k] is not None]
    if valid:
        stack = normalise_thumbs(np.stack([thumbs[k] for k in valid])).reshape(len(valid), -1)
        reach = len(valid) if len(valid) <= options.duplicate_all_pairs_max else options.window * 4
        for a, k in enumerate(valid[:-1]):
            if measures[k].duplicate_of is not None:
                continue  # a duplicate's own copies are reported against the first image
            d = np.abs(stack[a + 1 : a + 1 + reach] - stack[a]).mean(axis=1)
            for b in np.flatnonzero(d < options.duplicate_distance):
                other = measures[valid[a + 1 + int(b)]]
                if other.duplicate_of is None:
                    other.duplicate_of = measures[k].name
                    other.flags.append("duplicate")

    # --- the whole capture -----------------------------------------------------------------------
    if n < options.min_images:
        fatal.append("count")
        advice.append(
            f"only {n} image{'s' if n != 1 else ''}: camera poses need at least {options.min_images}; "
            f"take {options.ideal_min_images}\u2013{options.ideal_max_images} overlapping photos."
        )
    elif n < options.ideal_min_images:
        penalties["count"] = (
            35.0 * (options.ideal_min_images - n) / (options.ideal_min_images - options.min_images)
        )
    if options.min_images <= n < 0.9 * options.ideal_min_images:  # no sermon for 49 images
        advice.append(
            f"only {n} images: take {options.ideal_min_images}\u2013{options.ideal_max_images}, "
            "each overlapping the previous one by about two thirds, for a good splat."
        )
    elif n > 2 * options.ideal_max_images:
        penalties["count"] = 5.0
        advice.append(
            f"{n} images: more than the {options.ideal_max_images} a splat needs; posing will be slow. "
            "Consider fewer frames (e.g. --count 150)."
        )

    largest = len(groups[0]) if groups else 0
    if n >= options.min_images:
        lost = 1.0 - largest / n
        if len(groups) > 1:
            penalties["connectivity"] = 60.0 * lost
            big = [g for g in groups if len(g) > 1]
            alone = [g[0] for g in groups if len(g) == 1]
            if largest < options.min_images or largest / n < options.min_connected_share:
                fatal.append("connectivity")
            text = f"the capture splits into {len(groups)} groups that share no features"
            if largest / n < options.min_connected_share or largest < options.min_images:
                text += f" (at most {largest} of {n} images can end up in one model)"
            parts = [_ranges([k + 1 for k in g]) for g in big[:6]]
            if parts:
                text += f": {noun} " + parts[0] + " form one group"
                if len(parts) > 1:
                    text += ", " + ", ".join(parts[1:]) + (" another" if len(parts) == 2 else " others")
            if alone:
                text += "; " if parts else ": "
                text += f"{noun if len(alone) > 1 else noun[:-1]} {_ranges([k + 1 for k in alone])} "
                text += f"match no other {noun[:-1]}" if len(alone) > 1 else f"matches no other {noun[:-1]}"
            text += (
                ". Take photos in between so that every view overlaps the next by about two thirds, "
                "and walk around the subject in one continuous loop."
            )
            advice.append(text)

    def share(flag: str) -> list[ImageMeasures]:
        return [m for m in measures if flag in m.flags]

    # Per-image flags: (flag, penalty name, penalty at 100 % of the images, advice).
    flag_rules = (
        ("blurred", "blur", 40.0, "{which} {verb} blurred: move slower, hold still while shooting "
                                  "or fix the focus (more light allows a faster shutter)."),
        ("overexposed", "overexposed", 30.0, "{which} {verb} over-exposed (washed-out highlights): lower the "
                                             "exposure or avoid shooting into the light."),
        ("underexposed", "underexposed", 30.0, "{which} {verb} too dark: add light or raise the exposure."),
        ("few-features", "features", 30.0, "{which} {show} little texture: pose estimation needs detail; "
                                           "include textured surroundings or add texture (a newspaper, a "
                                           "patterned cloth)."),
        ("unreadable", "unreadable", 20.0, "{which} could not be read: remove or re-export them."),
    )
    for flag, penalty, weight, text in flag_rules:
        hit = share(flag)
        if hit:
            penalties[penalty] = weight * len(hit) / n
            advice.append(text.format(which=_which(hit, noun), verb=_verb(hit),
                                      show="shows" if len(hit) == 1 else "show"))
    if ordered and n > 1:
        gaps = [k for k in range(n - 1) if not matches[(k, k + 1)].connected]
        if gaps:
            penalties["gaps"] = 20.0 * len(gaps) / (n - 1)
            listed = ", ".join(f"{k + 1}\u2192{k + 2}" for k in gaps[:8]) + (" ..." if len(gaps) > 8 else "")
            advice.append(
                f"{len(gaps)} step{'s' if len(gaps) > 1 else ''} between consecutive {noun} "
                f"share{'' if len(gaps) > 1 else 's'} too few features "
                f"({listed}): the camera moved too far or too fast there; add views in between."
            )
    dups = share("duplicate")
    if dups:
        penalties["duplicates"] = 10.0 * len(dups) / n
        advice.append(
            f"{_which(dups, noun)} {_verb(dups)} near-duplicate{'s' if len(dups) > 1 else ''} of another image "
            "(the camera did not move): they add time, not information; move between shots."
        )

    cameras = sorted({f"{m.make or '?'} {m.model or '?'}" for m in readable if m.make or m.model})
    resolutions = sorted({(m.width, m.height) for m in readable}, key=lambda s: -s[0] * s[1])
    sizes = sorted({tuple(sorted(r)) for r in resolutions})
    if len(cameras) > 1:
        penalties["cameras"] = 5.0
        advice.append(
            f"{len(cameras)} different cameras ({', '.join(cameras[:4])}): fine for poses, but one camera with "
            "fixed zoom and exposure gives a more consistent splat."
        )
    if len(sizes) > 1:
        penalties["resolutions"] = 5.0
        advice.append(
            f"{len(sizes)} different image sizes (e.g. {', '.join(f'{w}x{h}' for w, h in resolutions[:3])}): "
            "mixed zoom or cropping; use one camera setting if you can."
        )

    score = 100.0 - sum(penalties.values())
    if fatal:
        score = min(score, 20.0)
    score = int(round(min(100.0, max(0.0, score))))
    verdict = "will-fail" if fatal else ("risky" if score < options.risky_below else "good")
    if not advice:
        advice.append("no problems found: go ahead.")
    summary = {
        "count": n,
        "components": [[measures[k].name for k in g] for g in groups],
        "largest_component": largest,
        "connected_share": round(largest / n, 3) if n else 0.0,
        "median_sharpness": round(median_sharp, 1),
        "flag_counts": {
            f: len(share(f))
            for f in ("blurred", "overexposed", "underexposed", "few-features", "duplicate", "unreadable")
        },
        "cameras": cameras,
        "resolutions": [f"{w}x{h}" for w, h in resolutions],
        "penalties": {k: round(v, 1) for k, v in penalties.items()},
        "fatal": fatal,
        "options": {
            k: v for k, v in asdict(options).items() if not isinstance(v, dict) and k not in ("thumbnails",)
        },
        "match_options": asdict(options.match),
        "workers": options.workers,
        "cpu_count": os.cpu_count(),
    }
    return QualityReport(score, verdict, advice, measures, summary)
