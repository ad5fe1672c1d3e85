"""Structure from motion with pycolmap (COLMAP 4): SIFT, a matching scheme chosen from the input, a mapper
chosen from what the matches show, and a model that is checked (poses/validate.py) before it is kept.

The database is reused: features and matches already in `colmap/database.db` are kept when the note beside
it (`features.json`) says they were made with the same settings, so the capture check and the pose stage
(or a resumed run) never compute them twice. COLMAP itself skips images that have features and pairs that
have matches, so reuse is simply not deleting them.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from splatforge.poses import pairs as pairing
from splatforge.poses import validate
from splatforge.poses.options import PoseOptions

log = logging.getLogger("splatforge")
Progress = Callable[[str, float], None]
FEATURES_NOTE = "features.json"  # beside the database: the settings its features and matches were made with


@dataclass
class SfmOutput:
    """The kept reconstruction (pycolmap.Reconstruction or None) and what happened on the way."""

    reconstruction: object | None
    mapper: str | None
    matching: str
    seconds: dict[str, float]
    other_models: list[dict] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)  # per mapper: registered, seconds, its checks
    evidence: dict = field(default_factory=dict)  # what the matches showed, and the mapper order it implied
    check: dict | None = None  # validate.ModelCheck of the kept model
    reused: str = "nothing"  # what the database already held: nothing | features | features and matches
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # process CPU seconds per sub-step (all threads)


def _pycolmap():
    import pycolmap

    return pycolmap


@functools.lru_cache(maxsize=1)
def gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible to this process. Cheap on purpose: importing torch just to ask would
    add seconds to a pose stage that takes five on the GPU (torch's answer is used when it is loaded anyway)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return bool(torch.cuda.is_available())
        except Exception:
            return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


def use_gpu(options: PoseOptions) -> bool:
    """SIFT extraction and matching on the GPU: when pycolmap has CUDA and (use_gpu None) a GPU is visible."""
    pycolmap = _pycolmap()
    if not pycolmap.has_cuda:
        if options.use_gpu:
            log.warning("use_gpu was asked for, but this pycolmap has no CUDA (pip install pycolmap-cuda12): "
                        "features and matching run on the CPU")
        return False
    if options.use_gpu is not None:
        return bool(options.use_gpu)
    return gpu_visible()


def image_sizes(image_dir: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    from splatforge.capture.imageio import image_size

    return {name: image_size(image_dir / name) for name in names}


# --------------------------------------------------------------------------------------------------------
# The database and the note beside it


def note_path(database: Path) -> Path:
    return Path(database).with_name(FEATURES_NOTE)


def extraction_settings(image_dir: Path, names: list[str], options: PoseOptions, video: bool = False) -> dict:
    """Everything the features depend on: decided camera model and SIFT settings, and each image's size.
    `video`: the images are frames of a video (PoseOptions.video_first_octave)."""
    sizes = image_sizes(image_dir, names)
    single = options.single_camera if options.single_camera is not None else len(set(sizes.values())) == 1
    model = options.camera_model
    if model == "auto":
        model = "RADIAL" if single else "SIMPLE_RADIAL"
    longest = max(max(s) for s in sizes.values())
    first_octave = options.first_octave
    if first_octave is None and video:
        first_octave = options.video_first_octave
    if first_octave is None:
        # Decided by the photos' own size, not the size SIFT works at: doubling (-1) is for photos that are
        # small to begin with; a large photo shrunk below `upsample_below` would only cost 4x (PoseOptions).
        first_octave = 0 if longest >= options.upsample_below else -1
    files = {name: [*sizes[name], (image_dir / name).stat().st_size] for name in names}
    prescale = options.prescale and options.max_image_size > 0 and longest > options.max_image_size
    return {"camera_model": model, "single_camera": single, "first_octave": first_octave, "prescale": prescale,
            "max_image_size": options.max_image_size, "max_num_features": options.max_num_features,
            "images": files}


def verification_trials(options: PoseOptions, video: bool = False) -> tuple[int, float]:
    """RANSAC's floor of trials per model and the multiplier of its confidence-based count in geometric
    verification (PoseOptions.verify_min_trials / verify_trials_multiplier; None: by photos or video)."""
    floor = options.verify_min_trials if options.verify_min_trials is not None else (100 if video else 20)
    multiplier = options.verify_trials_multiplier
    if multiplier is None:
        multiplier = 3.0 if video else 1.0
    return min(floor, options.verify_max_trials), multiplier


def matching_settings(options: PoseOptions, video: bool = False) -> dict:
    """Everything the verified matches of a pair depend on (the pairs themselves do not matter: COLMAP
    matches only pairs that are not in the database yet)."""
    floor, multiplier = verification_trials(options, video)
    return {"max_ratio": options.max_ratio, "min_num_inliers": options.min_num_inliers, "seed": options.seed,
            "verify_max_trials": options.verify_max_trials, "verify_min_trials": floor,
            "verify_trials_multiplier": multiplier}


def _read_note(database: Path) -> dict:
    try:
        return json.loads(note_path(database).read_text())
    except (OSError, ValueError):
        return {}


def _write_note(database: Path, note: dict) -> None:
    tmp = note_path(database).with_suffix(".tmp")
    tmp.write_text(json.dumps(note, indent=1))
    tmp.replace(note_path(database))


def _delete_database(database: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    note_path(database).unlink(missing_ok=True)


def prepare_database(database: Path, extraction: dict, matching: dict) -> str:
    """Keep what `database` holds when its note says it was made with these settings; clear the rest.

    Returns what is reused: "nothing", "features" or "features and matches".
    """
    pycolmap = _pycolmap()
    database.parent.mkdir(parents=True, exist_ok=True)
    note = _read_note(database)
    if not database.exists() or note.get("extraction") != extraction:
        _delete_database(database)
        return "nothing"
    if note.get("matching") != matching:
        db = pycolmap.Database.open(database)
        try:
            db.clear_matches()
            db.clear_two_view_geometries()
        finally:
            db.close()
        _write_note(database, {"extraction": extraction})
        return "features"
    return "features and matches"


def extract(database: Path, image_dir: Path, names: list[str], options: PoseOptions,
            settings: dict | None = None) -> dict:
    """SIFT features of `names` into `database` (images that already have features are skipped), and the
    note beside it. Returns what was decided (camera mode and model, first octave)."""
    pycolmap = _pycolmap()
    settings = settings or extraction_settings(image_dir, names, options)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = settings["camera_model"]
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = options.max_image_size
    extraction.num_threads = options.num_threads
    extraction.use_gpu = use_gpu(options)
    extraction.sift.max_num_features = options.max_num_features
    extraction.sift.first_octave = settings["first_octave"]
    mode = pycolmap.CameraMode.SINGLE if settings["single_camera"] else pycolmap.CameraMode.PER_IMAGE
    device = pycolmap.Device.cuda if extraction.use_gpu else pycolmap.Device.cpu
    source, scales = image_dir, {}
    had = _names_with_features(database)
    if not set(names) <= had:  # all there (made by the capture check: capture/sfm_graph.py): nothing to do
        if settings.get("prescale"):
            source = Path(database).parent / "prescaled"
            scales = prescale(image_dir, names, options.max_image_size, source, options.num_threads, had)
        try:
            pycolmap.extract_features(database, source, image_names=names, camera_mode=mode,
                                      reader_options=reader, extraction_options=extraction, device=device)
            if scales:
                restore_scale(database, image_dir, scales, reader, had)
        finally:
            if source != image_dir:
                shutil.rmtree(source, ignore_errors=True)
    note = _read_note(database)
    if note.get("extraction") != settings:
        _write_note(database, {"extraction": settings})
    return {k: settings[k] for k in ("single_camera", "camera_model", "first_octave")}


def prescale(image_dir: Path, names: list[str], max_size: int, out: Path, num_threads: int = -1,
             link_only: set[str] = frozenset()) -> dict:
    """Copies of the photos larger than `max_size` shrunk to it with OpenCV (area averaging) into `out`, the
    others (and those in `link_only`: features already in the database) linked. Returns name -> (x scale,
    y scale) back to the original, for the shrunk ones. The copies are JPEG under the original names (COLMAP
    reads a file by its content).

    Why: COLMAP decodes each full photo and resizes it itself before SIFT; on fox (1920 px photos, SIFT at
    1024 px) that was ~40 % of the feature time on 2 cores (docs/benchmarks.md "Pose stage feature budget").
    """
    import cv2

    from splatforge.poses.undistort import _link_or_copy

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    def one(name: str):
        if name in link_only:
            _link_or_copy(image_dir / name, out / name)
            return name, None
        raw = cv2.imread(str(image_dir / name), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if raw is None or max(raw.shape[:2]) <= max_size:
            _link_or_copy(image_dir / name, out / name)
            return name, None
        h, w = raw.shape[:2]
        scale = max_size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(raw, (nw, nh), interpolation=cv2.INTER_AREA)
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 95])  # content JPEG, name unchanged
        if not ok:
            raise OSError(f"could not encode a shrunk copy of {name}")
        target.write_bytes(data.tobytes())
        return name, (w / nw, h / nh)

    threads = num_threads if num_threads > 0 else (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return {name: scale for name, scale in pool.map(one, names) if scale is not None}


def _names_with_features(database: Path) -> set[str]:
    pycolmap = _pycolmap()
    if not Path(database).exists():
        return set()
    db = pycolmap.Database.open(database)
    try:
        return {im.name for im in db.read_all_images() if db.exists_keypoints(im.image_id)}
    finally:
        db.close()


def restore_scale(database: Path, image_dir: Path, scales: dict, reader, skip: set[str]) -> None:
    """Keypoints of the shrunk copies back into the original photos' pixels (as COLMAP does after its own
    resize: positions and affine shapes scaled about the corner), and each camera made from its original photo
    (size, EXIF focal prior), so the database reads as if COLMAP had been given the originals. Images in
    `skip` had their features before this extraction and are left alone."""
    pycolmap = _pycolmap()
    db = pycolmap.Database.open(database)
    try:
        fixed_cameras = set()
        for image in db.read_all_images():
            scale = scales.get(image.name)
            if scale is None or image.name in skip:
                continue
            if image.camera_id not in fixed_cameras:
                camera = pycolmap.infer_camera_from_image(image_dir / image.name, reader)
                camera.camera_id = image.camera_id
                db.update_camera(camera)
                fixed_cameras.add(image.camera_id)
            keypoints = np.array(db.read_keypoints(image.image_id), dtype=np.float32, copy=True)
            sx, sy = scale
            keypoints[:, 0] *= sx
            keypoints[:, 1] *= sy
            if keypoints.shape[1] >= 6:  # affine shape [a11 a12; a21 a22]: rows scale with x and y
                keypoints[:, 2:4] *= sx
                keypoints[:, 4:6] *= sy
            elif keypoints.shape[1] == 4:  # x, y, scale, orientation
                keypoints[:, 2] *= (sx * sy) ** 0.5
            db.update_keypoints(image.image_id, keypoints)
    finally:
        db.close()


def read_descriptors(db, images) -> list[np.ndarray]:
    out = []
    for image in images:
        d = db.read_descriptors(image.image_id)
        out.append(np.asarray(getattr(d, "data", d)))
    return out


# --------------------------------------------------------------------------------------------------------
# Matching


def frames_are_ordered(options: PoseOptions, ordered_hint: bool) -> bool:
    """Whether the images are frames of a video, in order: `options.ordered`, or when None the stage's hint
    (the frames came from a video: frames.json)."""
    return bool(options.ordered if options.ordered is not None else ordered_hint)


# What a pair plan depends on besides the features (which the database note's extraction settings pin down).
PLAN_FIELDS = ("matching", "ordered", "exhaustive_max_images", "sequential_overlap", "all_pairs_up_to",
               "quadratic_overlap", "loop_closure_neighbors", "retrieval_neighbors", "vocabulary_size", "seed")


def plan_pairs(database: Path, names: list[str], options: PoseOptions, ordered_hint: bool) -> pairing.PairPlan:
    """Choose the matching scheme from the input (see PoseOptions.matching / ordered). The plan is kept in the
    database's note: a stage that finds its matches made (by the capture check) does not build the retrieval
    vocabulary again (fox on the H100: 0.4-0.5 s of a 0.5 s matching step)."""
    key = {"names": list(names), "ordered_hint": bool(ordered_hint), **{f: getattr(options, f) for f in PLAN_FIELDS}}
    note = _read_note(database)
    stored = note.get("plan") or {}
    if stored.get("key") == key:
        pairs = stored["pairs"]
        return pairing.PairPlan(stored["scheme"], stored["reason"], None if pairs is None else [tuple(p) for p in pairs])
    plan = _new_plan(database, names, options, ordered_hint)
    if note:  # a note describes the features: the plan is only valid together with it
        _write_note(database, {**note, "plan": {"key": key, "scheme": plan.scheme, "reason": plan.reason,
                                                "pairs": None if plan.pairs is None else [list(p) for p in plan.pairs]}})
    return plan


def _new_plan(database: Path, names: list[str], options: PoseOptions, ordered_hint: bool) -> pairing.PairPlan:
    pycolmap = _pycolmap()
    n = len(names)
    scheme = options.matching
    ordered = frames_are_ordered(options, ordered_hint)
    all_pairs_up_to = max(options.all_pairs_up_to, 2 * options.sequential_overlap + 1)
    needs_similarity = scheme in ("auto", "sequential", "retrieval") and n > all_pairs_up_to
    sim = None
    if needs_similarity:
        db = pycolmap.Database.open(database)
        try:
            by_name = {im.name: im for im in db.read_all_images()}
            vectors = pairing.bow_vectors(read_descriptors(db, [by_name[m] for m in names]),
                                          options.vocabulary_size, seed=options.seed)
        finally:
            db.close()
        sim = pairing.similarity_matrix(vectors)
    reason = ""
    if scheme == "auto":
        numbered = pairing.numbered_names(names)
        is_seq, score = pairing.looks_ordered(sim) if (sim is not None and numbered) else (False, 0.0)
        if ordered:
            scheme, reason = "sequential", "frames come from a video"
        elif n <= all_pairs_up_to:
            scheme, reason = "exhaustive", f"only {n} images"
        elif is_seq:
            scheme = "sequential"
            reason = f"numbered images whose neighbours look alike (order score {score:.2f})"
        elif n <= options.exhaustive_max_images:
            scheme, reason = "exhaustive", f"unordered set of {n} images (<= {options.exhaustive_max_images})"
        else:
            scheme, reason = "retrieval", f"{n} unordered images: too many for exhaustive matching"
    else:
        reason = "chosen by the user"
    if scheme == "exhaustive" or sim is None:  # sim is None: so few images that all pairs are cheap
        return pairing.PairPlan("exhaustive", reason if scheme == "exhaustive" else f"{reason}; {n} images: all pairs",
                                None)
    if scheme == "sequential":
        chosen = pairing.sequential_pairs(n, options.sequential_overlap, options.quadratic_overlap)
        if options.loop_closure_neighbors > 0 and sim is not None:
            chosen |= pairing.top_k_pairs(sim, options.loop_closure_neighbors,
                                          min_index_distance=options.sequential_overlap)
        return pairing.PairPlan("sequential", reason + "; overlap "
                                f"{options.sequential_overlap}{', quadratic' if options.quadratic_overlap else ''}"
                                f", loop closure by retrieval ({options.loop_closure_neighbors}/frame)",
                                sorted(chosen))
    chosen = pairing.top_k_pairs(sim, options.retrieval_neighbors) | pairing.sequential_pairs(n, 1, False)
    return pairing.PairPlan("retrieval", reason + f"; {options.retrieval_neighbors} most similar images each",
                            sorted(chosen))


def match(database: Path, names: list[str], plan: pairing.PairPlan, options: PoseOptions, work: Path,
          video: bool = False) -> None:
    """Match and verify the planned pairs (pairs already in the database are skipped by COLMAP). `video`: the
    images are frames of a video (`verification_trials`)."""
    pycolmap = _pycolmap()
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    matching.use_gpu = use_gpu(options)
    matching.sift.max_ratio = options.max_ratio
    verification = pycolmap.TwoViewGeometryOptions()
    verification.min_num_inliers = options.min_num_inliers
    verification.ransac.random_seed = options.seed
    verification.ransac.max_num_trials = options.verify_max_trials
    verification.ransac.min_num_trials, verification.ransac.dyn_num_trials_multiplier = \
        verification_trials(options, video)
    device = pycolmap.Device.cuda if matching.use_gpu else pycolmap.Device.cpu
    db = pycolmap.Database.open(database)
    try:
        only_ours = db.num_images() == len(names)
    finally:
        db.close()
    pairs = plan.pairs
    if pairs is None and only_ours:
        pycolmap.match_exhaustive(database, matching_options=matching, verification_options=verification,
                                  device=device)
    else:  # a database shared with the capture check may hold other images: name the pairs
        if pairs is None:
            pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
        work.mkdir(parents=True, exist_ok=True)
        pair_file = work / "pairs.txt"
        pair_file.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in pairs))
        imported = pycolmap.ImportedPairingOptions()
        imported.match_list_path = pair_file
        pycolmap.match_image_pairs(database, matching_options=matching, pairing_options=imported,
                                   verification_options=verification, device=device)
    _write_note(database, {**_read_note(database), "matching": matching_settings(options, video)})


# --------------------------------------------------------------------------------------------------------
# Which mapper: from what the verified matches show


@dataclass
class MatchEvidence:
    """What the verified matches say about the capture, before any mapper runs."""

    images: int
    verified_pairs: int
    median_inliers: float
    # Share of verified pairs a homography explains as well as the epipolar geometry (COLMAP's
    # PLANAR_OR_PANORAMIC): little parallax between the photos (forward-facing, turning on the spot, far away).
    low_parallax_share: float
    largest_group_share: float  # share of the images in the largest connected group of the match graph

    def to_dict(self) -> dict:
        return asdict(self)


def verified_geometries(database: Path, names: list[str], keypoints: bool = False) -> tuple[dict, dict[str, int]]:
    """The two-view geometry of every verified pair among `names` ((name, name) -> pycolmap.TwoViewGeometry, with
    inlier matches), and with `keypoints` the keypoints per image (else an empty dict)."""
    pycolmap = _pycolmap()
    wanted = set(names)
    db = pycolmap.Database.open(database)
    try:
        ids = {im.image_id: im.name for im in db.read_all_images() if im.name in wanted}
        counts = {name: db.num_keypoints_for_image(image_id) for image_id, name in ids.items()} if keypoints else {}
        pair_ids, geometries = db.read_two_view_geometries()
    finally:
        db.close()
    pairs = {}
    for pair_id, geom in zip(pair_ids, geometries):
        a, b = pycolmap.pair_id_to_image_pair(pair_id)
        if a in ids and b in ids and len(geom.inlier_matches):
            pairs[(ids[a], ids[b])] = geom
    return pairs, counts


def verified_pairs(database: Path, names: list[str]) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Inlier matches of every verified pair among `names` ((name, name) -> count), and keypoints per image."""
    geometries, keypoints = verified_geometries(database, names, keypoints=True)
    return {pair: len(geom.inlier_matches) for pair, geom in geometries.items()}, keypoints


def read_evidence(database: Path, names: list[str], min_inliers: int) -> MatchEvidence:
    from splatforge.poses.explain import groups

    low = _pycolmap().TwoViewGeometryConfiguration.PLANAR_OR_PANORAMIC
    inliers, flat, neighbours = [], 0, {}
    for (a, b), geom in verified_geometries(database, names)[0].items():
        n = len(geom.inlier_matches)
        if n < min_inliers:
            continue
        inliers.append(n)
        flat += geom.config == low
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    parts = groups(names, neighbours)
    return MatchEvidence(len(names), len(inliers), float(np.median(inliers)) if inliers else 0.0,
                         flat / len(inliers) if inliers else 0.0,
                         len(parts[0]) / len(names) if parts else 0.0)


def order_of_mappers(options: PoseOptions, evidence: MatchEvidence | None = None) -> tuple[list[str], str]:
    """The mappers to try, first choice first, and why.

    Incremental first, global as the fallback. On low-parallax captures the incremental mapper starts from a
    narrower pair (`low_parallax_init_tri_angle`) instead of searching three times for a wide one that does
    not exist. Measured on the same matches (docs/benchmarks-poses.md, "Which mapper first"): it was the
    fastest or tied on every low-parallax capture (16- and 24-view synthetic: 0.5 and 2.0 CPU s against 2-9
    for global; forward-facing: 36 against 42-60; colosseum: 240 against 245-336) and right on all of them.
    """
    if options.mapper in ("incremental", "global"):
        return [options.mapper], "chosen by the user"
    if evidence is not None and evidence.low_parallax_share >= options.low_parallax_share:
        return ["incremental", "global"], (
            f"{100 * evidence.low_parallax_share:.0f} % of the matched pairs show little parallax (a homography "
            f"explains them): the incremental mapper starts from a pair {options.low_parallax_init_tri_angle:g} "
            "degrees apart instead of searching for a wide one")
    return ["incremental", "global"], "incremental mapping is the most accurate where the photos show parallax"


# --------------------------------------------------------------------------------------------------------
# Mapping


def _calibrate_focal_lengths(database: Path, options: PoseOptions) -> bool:
    """Focal lengths from the fundamental matrices (COLMAP's view-graph calibration), as priors for the
    global mapper, which otherwise starts from a guess of 1.2 x the image size and warns about it."""
    pycolmap = _pycolmap()
    db = pycolmap.Database.open(database)
    try:
        cameras = db.read_all_cameras()
    finally:
        db.close()
    if cameras and all(c.has_prior_focal_length for c in cameras):
        return False
    calib = pycolmap.ViewGraphCalibrationOptions()
    calib.random_seed = options.seed
    try:
        return bool(pycolmap.calibrate_view_graph(database, calib))
    except Exception as exc:  # calibration is a help, not a requirement
        log.info("view-graph calibration failed (%s); the global mapper starts from its own focal guess", exc)
        return False


def prune_weak_pairs(database: Path, min_inliers: int, keep_per_image: int = 3) -> int:
    """Delete the verified pairs with fewer than `min_inliers` inlier matches (capped at the median, so small
    images keep their pairs), except each image's `keep_per_image` strongest. Returns how many were deleted.

    For the global mapper only: its rotation averaging and track building take every verified pair at its
    word, and a few dozen consistent matches between far-apart photos of a symmetric subject are verified as
    readily as true ones. On fox, 93 such pairs (35-98 inliers, all from loop-closure retrieval) put the
    global model 54 degrees off; without the pairs under 100 inliers it is 0.19 degrees from the reference.
    The incremental mapper ignores such pairs by itself and sees the full graph.
    """
    pycolmap = _pycolmap()
    db = pycolmap.Database.open(database)
    try:
        pair_ids, counts = db.read_two_view_geometry_num_inliers()
        counts = [int(c) for c in counts]
        if not counts:
            return 0
        threshold = min(min_inliers, float(np.median(counts)))
        per_image: dict[int, list[int]] = {}
        for pair_id, n in zip(pair_ids, counts):
            for image_id in pycolmap.pair_id_to_image_pair(pair_id):
                per_image.setdefault(image_id, []).append(n)
        strongest = {i: sorted(v, reverse=True)[min(keep_per_image, len(v)) - 1] for i, v in per_image.items()}
        deleted = 0
        for pair_id, n in zip(pair_ids, counts):
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            if n < threshold and n < strongest[a] and n < strongest[b]:
                db.delete_two_view_geometry(a, b)
                deleted += 1
    finally:
        db.close()
    return deleted


def _map(kind: str, database: Path, image_dir: Path, out: Path, names: list[str], options: PoseOptions,
         refine_pp: bool, low_parallax: bool = False, video: bool = False) -> dict:
    pycolmap = _pycolmap()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ba_gpu = use_gpu(options) if options.ba_use_gpu is None else options.ba_use_gpu and use_gpu(options)
    if kind == "incremental":
        opts = pycolmap.IncrementalPipelineOptions()
        opts.min_model_size = options.min_model_size
        opts.ba_use_gpu = ba_gpu
        # No colour pass over every frame per model: the stage colours the model it keeps while undistorting,
        # from the frames it decodes anyway (undistort.colour_points).
        opts.extract_colors = False
        opts.ba_refine_principal_point = refine_pp
        if options.mapping_preset == "fast":
            opts.ba_global_frames_ratio = opts.ba_global_points_ratio = options.ba_global_ratio
            opts.ba_global_max_refinements = options.ba_global_max_refinements
            opts.ba_local_max_refinements = options.ba_local_max_refinements
            opts.ba_global_max_num_iterations = options.ba_global_max_iterations
            opts.ba_local_max_num_iterations = options.ba_local_max_iterations
            opts.mapper.ba_local_num_images = options.ba_local_num_images
            opts.mapper.ba_global_ignore_redundant_points3D = options.ba_skip_redundant_points
            if not video:
                # Photos: global bundle adjustments that creep stop once an iteration gains less than this
                # fraction of the cost (PoseOptions.ba_global_function_tolerance says why).
                opts.ba_global_function_tolerance = options.ba_global_function_tolerance
            if options.ba_threads_always:
                opts.ba_min_num_residuals_for_cpu_multi_threading = 0
        backend = pycolmap.BundleAdjustmentBackend.CASPAR if options.ba_backend == "caspar" else \
            pycolmap.BundleAdjustmentBackend.CERES
        opts.ba_local_backend = opts.ba_global_backend = backend
        if low_parallax:
            # COLMAP looks for a starting pair seen 16 degrees apart, then relaxes twice (8, 4), searching all
            # pairs each time: with little parallax the first searches cannot succeed and cost most of the run.
            opts.mapper.init_min_tri_angle = options.low_parallax_init_tri_angle
        if video and options.video_ba_function_tolerance > 0:
            # Video frames: long tracks over many near-identical views, and global BAs that creep (0.3 % less
            # cost per iteration) to their iteration limit every time; they were ~80 % of colosseum's mapping
            # CPU. Stopping them once an iteration gains < 1e-4 (PoseOptions.video_ba_function_tolerance) cut
            # it by ~40 % at the same registrations and reprojection error (docs/benchmarks.md).
            opts.ba_global_function_tolerance = options.video_ba_function_tolerance
    else:
        opts = pycolmap.GlobalPipelineOptions()
        opts.min_model_size = options.min_model_size
        opts.mapper.global_positioning.use_gpu = use_gpu(options)
        opts.mapper.bundle_adjustment.ceres.use_gpu = ba_gpu
        opts.mapper.bundle_adjustment.refine_principal_point = refine_pp
        # On a copy: pruning and calibration rewrite pairs, cameras and two-view geometries, which the note
        # beside the database does not describe (and the incremental mapper wants the full graph).
        copy = out / "database.db"
        shutil.copy2(database, copy)
        database = copy
        pruned = prune_weak_pairs(copy, options.global_min_inliers)
        log.info("global mapping: %d weak pairs left out", pruned)
        if options.global_calibrate:
            _calibrate_focal_lengths(copy, options)
    opts.num_threads = options.num_threads
    opts.random_seed = options.seed
    opts.min_num_matches = options.min_num_inliers
    opts.image_names = list(names)
    if kind == "incremental":
        opts.ba_refine_extra_params = options.fix_distortion_until <= 0
        # Once every image is placed, the final global refinement gets its own, smaller early stop
        # (PoseOptions.ba_final_function_tolerance).
        final = options.mapping_preset == "fast" and \
            0 <= options.ba_final_function_tolerance < opts.ba_global_function_tolerance
        step = options.video_keyframe_step if video else options.photo_keyframe_step
        keyframes = step > 1 and len(names) >= max(3 * step, options.keyframes_from_images)
        if keyframes and distortion_from(options, len(names)) > 0:
            log.warning("keyframe steps are not combined with fix_distortion_until: mapping all images at once")
            keyframes = False
        keys = None
        if keyframes:
            keys = keyframe_subset(names, verified_pairs(database, names)[0], step, options.min_num_inliers)
            if keys is None:
                log.info("incremental mapping: no every-n-th subset of the %d images is matched well enough "
                         "among itself; all in one go", len(names))
        if keys is not None:
            models = map_keyframes_first(database, image_dir, out, opts, keys, refine_each=not video,
                                         principal_point_max_shift=options.principal_point_max_shift)
        else:
            models = run_incremental(database, image_dir, out, opts, distortion_from(options, len(names)),
                                     len(names) if final else 0, options.ba_final_function_tolerance)
        if options.retry_left_out:
            models = complete_model(database, image_dir, out, opts, dict(models))
        if refine_pp and models:
            recentre_drifted_principal_point(max(models.values(), key=lambda r: r.num_reg_images()), opts,
                                             options.principal_point_max_shift)
    else:
        models = pycolmap.global_mapping(database, image_dir, out, opts)
    return dict(models)


def global_adjustment_options(opts):
    """The incremental mapper's own global bundle-adjustment options for `opts`, on its thread count."""
    ba = opts.get_global_bundle_adjustment()
    ba.ceres.solver_options.num_threads = opts.num_threads
    return ba


def recentre_drifted_principal_point(model, opts, max_shift: float) -> bool:
    """When bundle adjustment moved a camera's principal point further from the image centre than `max_shift`
    (a fraction of the image's width or height), put it back at the centre and adjust `model` once more with
    principal points fixed. True when it did.

    Why: on orbits at one height (a turntable, a drone circling) the vertical principal point trades off against
    every camera's tilt. A synthetic 48-view orbit: cy drifted from 120 to 106.5 of 240 px and the rotations
    came out 2.77 degrees off (0.014 with the principal point fixed); colosseum's drifted to y 84-90 of 360.
    Phone cameras sit within ~1.5 % of the centre (fox: 15 px of 1080), which refinement should keep."""
    if not recentre_principal_points(model, max_shift):
        return False
    ba = global_adjustment_options(opts)
    ba.refine_principal_point = False
    _pycolmap().bundle_adjustment(model, ba)
    return True


def recentre_principal_points(model, max_shift: float) -> bool:
    """The principal points of `model`'s cameras further from the image centre than `max_shift` (a fraction of
    the width or height; 0: none) put back at the centre, with a warning; True when any was. The poses are not
    adjusted to it: `recentre_drifted_principal_point` and `map_keyframes_first` do that."""
    if max_shift <= 0:
        return False
    drifted = [c for c in model.cameras.values() if abs(c.principal_point_x - c.width / 2) > max_shift * c.width
               or abs(c.principal_point_y - c.height / 2) > max_shift * c.height]
    if not drifted:
        return False
    for camera in drifted:
        log.warning("the principal point drifted to (%.1f, %.1f) in a %dx%d image: put back at the centre and the "
                    "model adjusted again", camera.principal_point_x, camera.principal_point_y, camera.width,
                    camera.height)
        camera.principal_point_x, camera.principal_point_y = camera.width / 2, camera.height / 2
    return True


def keyframe_subset(names: list[str], pairs: dict[tuple[str, str], int], step: int,
                    min_inliers: int) -> list[str] | None:
    """Every n-th of `names` and the last, for the largest n from `step` down to 2 whose images are matched well
    among themselves (`pairs`: inlier counts of verified pairs, those with >= `min_inliers` count): all connected,
    each to at least 2 of the others and half of them to at least 4. None when no n qualifies.

    Why: the keyframes are mapped on their own. dtu_scan24's every 3rd photo (the weakest matched to 1 other
    keyframe, the median to 3) placed 2-6 of 17 in every run; every 2nd (2 and 6) maps; fox's and colosseum's
    every 3rd: at least 2 and 3, medians 5."""
    from splatforge.poses.explain import groups

    for n in range(step, 1, -1):
        keys = names[::n] + ([names[-1]] if (len(names) - 1) % n else [])
        wanted = set(keys)
        neighbours: dict[str, set[str]] = {k: set() for k in keys}
        for (a, b), inliers in pairs.items():
            if a in wanted and b in wanted and inliers >= min_inliers:
                neighbours[a].add(b)
                neighbours[b].add(a)
        degrees = sorted(len(v) for v in neighbours.values())
        if degrees[0] >= 2 and degrees[len(degrees) // 2] >= 4 and len(groups(keys, neighbours)) == 1:
            return keys
    return None


def map_keyframes_first(database: Path, image_dir: Path, out: Path, opts, keys: list[str],
                        refine_each: bool = False, principal_point_max_shift: float = 0.0) -> dict:
    """Incremental mapping in two steps (PoseOptions.video_keyframe_step / photo_keyframe_step): `keys` (of
    `opts.image_names`; `keyframe_subset`) first, then the others registered against that model and the model
    refined (`place_remaining`, with `refine_each`).

    Why: video frames' long tracks make the global bundle adjustments of one-go mapping its cost, and every
    frame's local adjustment and track filtering cost ~0.1 s more; a third of the frames carry the geometry.
    Falls back to one go when the first step places fewer than half the keyframes. `run_incremental`'s schedules
    do not apply. (pycolmap's incremental mapping continued from the keyframes' model with its frames held fixed
    was slower: colosseum-150 18.7 s of mapping on the H100 against 7-13 s; docs/benchmarks.md.)"""
    pycolmap = _pycolmap()
    names = list(opts.image_names)
    first_opts = copy.copy(opts)
    first_opts.image_names = keys
    first = dict(pycolmap.incremental_mapping(database, image_dir, out / "keyframes", first_opts))
    seed = max(first, key=lambda i: first[i].num_reg_images(), default=None)
    placed = first[seed].num_reg_images() if seed is not None else 0
    if placed < len(keys) / 2:
        # The synthetic hand-held video's every 2nd frame with GPU features: 5 of 19 (all 36 in one go).
        log.info("incremental mapping: %d of %d keyframes placed, mapping all %d images in one go", placed,
                 len(keys), len(names))
        return dict(pycolmap.incremental_mapping(database, image_dir, out, opts))
    log.info("incremental mapping: %d of %d keyframes placed, now the other images", first[seed].num_reg_images(),
             len(keys))
    if opts.ba_refine_principal_point and recentre_principal_points(first[seed], principal_point_max_shift):
        # Drifted already among the keyframes: held at the centre from here on, and the final refinement of
        # place_remaining is the adjustment to it (recentre_drifted_principal_point's own would be one more
        # global bundle adjustment: 1.5-2 s of colosseum-150's mapping on the H100).
        opts = copy.copy(opts)
        opts.ba_refine_principal_point = False
    model = place_remaining(database, first[seed], opts, refine_each)
    (out / "0").mkdir(parents=True, exist_ok=True)
    model.write(out / "0")  # the model on disk is the one handed on
    return {0: model}


def place_remaining(database: Path, model, opts, refine_each: bool = False):
    """`model` (changed in place and returned) with the images of `opts.image_names` it lacks registered against
    it, in the incremental mapper's order of preference, until a whole pass places none; then the mapper's
    global refinement with its global settings (retriangulation, bundle adjustment of everything, filtering).
    refine_each: each registration followed by the mapper's local refinement, as in its own pipeline. Photos
    need it: on fox (2 cores) every 3rd photo first gave 0.195 degrees median without it (3.7 CPU s), 0.160 with
    it (6.6 CPU s; in one go 0.171, 10.4-11.5 CPU s). Video frames between keyframes do not: on colosseum it
    was 6 of the 8 s of registering 74 frames, at the same agreement with the one-go model.
    With refine_each the model is not adjusted globally as it grows and the final refinement has one round:
    the local refinements already keep each new photo in line. fox (2 cores, 3 runs): 0.154 degrees median at
    4.5-5.5 CPU s of mapping, against 0.160 at 7.5 with both; dtu_scan24 49/49 at 2.8 CPU s against 3.3-3.7.

    Why by hand, from pycolmap's IncrementalMapper steps: its pipeline follows every registration with a local
    bundle adjustment, track completion and filtering (~0.1 s a frame on colosseum's video, 8 of 10 s for 74
    frames on 2 cores), and with a model's frames held fixed, with two global adjustments of them at the end.
    Between keyframes that already carry the geometry, registration and triangulation are enough before the
    global refinement (2 s for the 74)."""
    pycolmap = _pycolmap()
    db = pycolmap.Database.open(database)
    try:
        cache_options = pycolmap.DatabaseCacheOptions()
        cache_options.min_num_matches = opts.min_num_matches
        cache_options.ignore_watermarks = opts.ignore_watermarks
        cache_options.image_names = set(opts.image_names)
        cache = pycolmap.DatabaseCache.create(db, cache_options)
    finally:
        db.close()
    mapper = pycolmap.IncrementalMapper(cache)
    mapper.begin_reconstruction(model)
    mapper_options, triangulation = opts.get_mapper(), opts.get_triangulation()
    ba, local_ba = global_adjustment_options(opts), opts.get_local_bundle_adjustment()

    def adjust():
        mapper.complete_and_merge_tracks(triangulation)
        mapper.adjust_global_bundle(mapper_options, ba)
        mapper.filter_points(mapper_options)

    growth_ratio = math.inf if refine_each else opts.ba_global_frames_ratio
    final_rounds = 1 if refine_each else opts.ba_global_max_refinements
    before = adjusted = model.num_reg_images()
    while True:
        placed = 0
        for image_id in mapper.find_next_images(mapper_options, False):
            if mapper.register_next_image(mapper_options, image_id):
                mapper.triangulate_image(triangulation, image_id)
                if refine_each:
                    mapper.iterative_local_refinement(
                        opts.ba_local_max_refinements, opts.ba_local_max_refinement_change, mapper_options,
                        local_ba, triangulation, image_id)
                placed += 1
                # Video frames beyond the keyframes (a first step that placed only part of them) build on the
                # last: adjust everything as the mapper does once the model has grown by its global ratio.
                if model.num_reg_images() >= adjusted * growth_ratio:
                    adjust()
                    adjusted = model.num_reg_images()
        if not placed:
            break
    # The mapper's own end of a model: retriangulation, global adjustment and filtering until little changes
    # (one global adjustment alone left fox at 0.235 degrees median, against 0.196 with this and 0.171 in one go).
    mapper.iterative_global_refinement(final_rounds, opts.ba_global_max_refinement_change, mapper_options, ba,
                                      triangulation, False)
    mapper.end_reconstruction(False)
    log.info("incremental mapping: %d more images registered against the keyframes' model",
             model.num_reg_images() - before)
    return model


def complete_model(database: Path, image_dir: Path, out: Path, opts, models: dict) -> dict:
    """`models` with its largest model replaced by that model continued over all of `opts.image_names`, when it
    left some out and the continued one places more (PoseOptions.retry_left_out).

    Why: the incremental mapper gives an image a few tries while the model grows (COLMAP's max_reg_trials) and
    then leaves it out; the finished model has more points and better poses to register it against. The
    continuation is pycolmap's own incremental mapping from the model (`input_path`), which tries only the
    images the model lacks."""
    if not models:
        return models
    key = max(models, key=lambda i: models[i].num_reg_images())
    placed, total = models[key].num_reg_images(), len(opts.image_names)
    if placed >= total or placed < opts.min_model_size:
        return models
    seed = out / "left_out" / "seed"
    seed.mkdir(parents=True, exist_ok=True)
    models[key].write(seed)
    again = copy.copy(opts)
    again.multiple_models = False  # the images still left out do not start models of their own
    try:
        continued = dict(_pycolmap().incremental_mapping(database, image_dir, out / "left_out", again,
                                                         input_path=seed))
    except Exception as exc:  # the model already made stays; a failed retry is not a failed mapping
        log.warning("trying the left-out images again failed: %s", exc)
        return models
    best = max(continued.values(), key=lambda r: r.num_reg_images(), default=None)
    now = best.num_reg_images() if best is not None else 0
    log.info("incremental mapping: %d of %d placed; the left-out images tried again from that model: %d placed",
             placed, total, now)
    if now > placed:
        models[key] = best
    return models


def distortion_from(options: PoseOptions, images: int) -> int:
    """Registered images from which the incremental mapper refines the distortion (0: from the start)."""
    if options.fix_distortion_until <= 0:
        return 0
    return max(3, min(options.fix_distortion_until, images // 2))


def run_incremental(database: Path, image_dir: Path, out: Path, opts, distortion_from_images: int = 0,
                    final_from_images: int = 0, final_tolerance: float = 0.0) -> dict:
    """pycolmap's incremental mapping with two schedules over the model being built (0: off, as COLMAP does,
    `pycolmap.incremental_mapping` itself):

    - distortion_from_images: the camera's distortion (extra parameters) is kept fixed until the model has this
      many registered images; every bundle adjustment after that (local and global, the final global one
      included) refines it. Why: a two-view bundle adjustment of a starting pair a few degrees apart can fit any
      distortion. On the colosseum video it fitted k2 1.28 (over COLMAP's max_extra_param 1.0), after which the
      mapper refused every next frame and spent minutes in failed starts (docs/benchmarks-poses.md,
      "Distortion schedule").
    - final_from_images: from this many registered images on, global bundle adjustments stop at
      `final_tolerance` instead of `opts.ba_global_function_tolerance` (0: to convergence, as COLMAP's do), the
      final refinement included.
    """
    pycolmap = _pycolmap()
    if distortion_from_images <= 0 and final_from_images <= 0:
        return dict(pycolmap.incremental_mapping(database, image_dir, out, opts))
    opts.image_path = str(image_dir)
    refine_from_start = opts.ba_refine_extra_params and distortion_from_images <= 0
    tolerance = opts.ba_global_function_tolerance
    opts.ba_refine_extra_params = refine_from_start
    manager = pycolmap.ReconstructionManager()
    db = pycolmap.Database.open(database)
    try:
        pipeline = pycolmap.IncrementalPipeline(opts, db, manager)
        live = pipeline.options  # the pipeline's own options object: read anew by each bundle adjustment
        registered = [0]

        def started():  # a new model from its starting pair (also after a discarded one)
            registered[0] = 2
            live.ba_refine_extra_params = refine_from_start
            live.ba_global_function_tolerance = tolerance

        def grew():
            registered[0] += 1
            if (distortion_from_images > 0 and registered[0] >= distortion_from_images
                    and not live.ba_refine_extra_params):
                log.info("incremental mapping: %d images registered, distortion refined from now on",
                         registered[0])
                live.ba_refine_extra_params = True
            if final_from_images > 0 and registered[0] == final_from_images:
                log.info("incremental mapping: %d images registered, global bundle adjustments stop at %g",
                         registered[0], final_tolerance)
                live.ba_global_function_tolerance = final_tolerance

        callbacks = pycolmap.IncrementalPipelineCallback
        pipeline.add_callback(callbacks.INITIAL_IMAGE_PAIR_REG_CALLBACK, started)
        pipeline.add_callback(callbacks.NEXT_IMAGE_REG_CALLBACK, grew)
        pipeline.run()
    finally:
        db.close()
    models = {i: manager.get(i) for i in range(manager.size())}
    for i, model in models.items():
        (out / str(i)).mkdir(parents=True, exist_ok=True)
        model.write(out / str(i))
    return models


@dataclass
class MappingChoice:
    """The model kept by `map_with_fallback` and everything tried on the way."""

    best: object | None
    mapper: str | None
    models: dict
    attempts: list[dict]
    check: validate.ModelCheck | None


def map_with_fallback(database: Path, image_dir: Path, names: list[str], options: PoseOptions, work: Path,
                      refine_pp: bool, evidence: MatchEvidence | None = None, video: bool = False) -> MappingChoice:
    """Run the mappers in the evidence's order until one gives a model that registers enough images and
    passes its checks; keep the best model seen (a trustworthy one before a larger one). `video`: the images
    are frames of a video (mapper settings for videos, see `_map`)."""
    order, _ = order_of_mappers(options, evidence)
    low_parallax = evidence is not None and evidence.low_parallax_share >= options.low_parallax_share
    need = options.fallback_min_registered * len(names)
    tried: list[tuple[str, object, dict, validate.ModelCheck]] = []
    attempts: list[dict] = []
    for kind in order:
        t_map = time.perf_counter()
        try:
            models = _map(kind, database, image_dir, work / f"sparse_{kind}", names, options, refine_pp,
                          low_parallax, video=video)
        except Exception as exc:  # a mapper crash is a failed attempt, not the end of the stage
            log.warning("%s mapping failed: %s", kind, exc)
            models = {}
        largest = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
        got = largest.num_reg_images() if largest is not None else 0
        if largest is None:
            check = validate.ModelCheck(0, len(names), None, problems=["no model came out"])
        elif options.validate:
            check = validate.check_model(largest, len(names), database, options.min_num_inliers,
                                         min_registered_fraction=options.min_registered_fraction)
        else:
            check = validate.ModelCheck(got, len(names), None)
        attempt = {"mapper": kind, "registered": got, "models": len(models),
                   "seconds": round(time.perf_counter() - t_map, 2), "check": check.to_dict()}
        if options.validate and tried and largest is not None and tried[-1][1] is not None:
            attempt["disagreement_deg"] = validate.rotation_disagreement_deg(largest, tried[-1][1])
        attempts.append(attempt)
        tried.append((kind, largest, models, check))
        if largest is not None and got >= need and (not options.validate or (check.ok and not check.doubtful)):
            break
        log.info("%s mapping registered %d of %d images%s; trying the next mapper", kind, got, len(names),
                 f" ({'; '.join(check.problems)})" if not check.ok else
                 f" but explains only {100 * check.pair_agreement:.0f} % of the matched pairs" if check.doubtful
                 else "")
    usable = [t for t in tried if t[1] is not None]
    if not usable:
        return MappingChoice(None, None, {}, attempts, None)

    def preference(t):  # trustworthy, then enough photos placed, then the matches best explained, then size
        registered, agreement = t[1].num_reg_images(), t[3].pair_agreement
        return (t[3].ok or not options.validate, registered >= need, agreement or 0.0, registered)

    kind, best, models, check = max(usable, key=preference)
    return MappingChoice(best, kind, models, attempts, check)


def refuse_untrustworthy(choice: MappingChoice, total: int, options: PoseOptions) -> None:
    """Raise PoseError when the kept model places enough photos to be used but failed its checks.
    (Too few placed photos is the caller's failure to explain: poses/explain.py.)"""
    if not options.validate or choice.best is None or choice.check is None or choice.check.ok:
        return
    if choice.best.num_reg_images() >= max(3, options.min_registered_fraction * total):
        validate.require_trustworthy(choice.check, choice.mapper)


def reconstruct(database: Path, image_dir: Path, names: list[str], options: PoseOptions, work: Path,
                ordered_hint: bool = False, progress: Progress | None = None) -> SfmOutput:
    """Features, matching and mapping; features and matches already in the database are reused when they
    were made with the same settings. Where the features at `max_image_size` leave photos out, they are
    extracted again at `retry_image_size` and the capture mapped again; the pass placing more photos is
    kept, and the seconds of both are counted. Raises PoseError when the kept model places enough photos
    but fails its checks (validate.py): a wrong model is never handed on."""
    out, choice = _reconstruct_once(database, image_dir, names, options, work, ordered_hint, progress)
    size, retry = options.max_image_size, options.retry_image_size
    if _placed(out) < len(names) and 0 < size < retry and _longest_side(image_dir, names) > size:
        log.info("%d of %d photos placed with features at %d px: extracting them again at %d px",
                 _placed(out), len(names), size, retry)
        again, again_choice = _reconstruct_once(database, image_dir, names, replace(options, max_image_size=retry),
                                                work / f"at_{retry}px", ordered_hint, progress)
        passes = [{"max_image_size": size, "registered": _placed(out)},
                  {"max_image_size": retry, "registered": _placed(again)}]
        # The database keeps the second pass's features either way: the match graph that explains left-out
        # photos is read by image name, and a re-run with the first size extracts again (its note differs).
        if _placed(again) > _placed(out):
            first, out, choice = out, again, again_choice
        else:
            first = again
        for total, extra in ((out.seconds, first.seconds), (out.cpu_seconds, first.cpu_seconds)):
            for k, v in extra.items():
                total[k] = total.get(k, 0.0) + v
        out.evidence = {**out.evidence, "feature_passes": passes}
        out.matching += (f"; features extracted again at {retry} px after {passes[0]['registered']}/{len(names)}"
                         f" at {size} px ({passes[1]['registered']}/{len(names)} then)")
    refuse_untrustworthy(choice, len(names), options)
    return out


def _longest_side(image_dir: Path, names: list[str]) -> int:
    """The longest side of the largest photo: a second pass at a larger size changes nothing for photos
    the first did not shrink."""
    return max((max(wh) for wh in image_sizes(image_dir, names).values()), default=0)


def _placed(out: SfmOutput) -> int:
    return out.reconstruction.num_reg_images() if out.reconstruction is not None else 0


@dataclass
class Matched:
    """What `features_and_matches` left in the database, and how."""

    video: bool  # the images are frames of a video (settings for videos)
    decided: dict  # single_camera, camera_model, first_octave
    plan: pairing.PairPlan
    reused: str  # what the database already held: nothing | features | features and matches
    seconds: dict[str, float]  # wall seconds: features, matching
    cpu: dict[str, float]  # process CPU seconds: features, matching


def features_and_matches(database: Path, image_dir: Path, names: list[str], options: PoseOptions, work: Path,
                         ordered_hint: bool, progress: Progress | None = None) -> Matched:
    """SIFT features and verified matches of `names` into `database`, as the pose stage makes them; what the
    database holds with the same settings is kept (the capture check may have made it: capture/sfm_graph.py)."""
    say = progress or (lambda step, frac: None)
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}

    say("features", 0.0)
    t, c = time.perf_counter(), time.process_time()
    video = frames_are_ordered(options, ordered_hint)
    settings = extraction_settings(image_dir, names, options, video=video)
    reused = prepare_database(database, settings, matching_settings(options, video))
    decided = extract(database, image_dir, names, options, settings)
    seconds["features"], cpu["features"] = time.perf_counter() - t, time.process_time() - c
    log.info("features: %.1f s (%s; reused from the database: %s)", seconds["features"], decided, reused)

    say("matching", 0.25)
    t, c = time.perf_counter(), time.process_time()
    plan = plan_pairs(database, names, options, ordered_hint)
    log.info("matching: %s (%s)", plan.scheme, plan.reason)
    match(database, names, plan, options, work, video=video)
    seconds["matching"], cpu["matching"] = time.perf_counter() - t, time.process_time() - c
    return Matched(video, decided, plan, reused, seconds, cpu)


def _reconstruct_once(database: Path, image_dir: Path, names: list[str], options: PoseOptions, work: Path,
                      ordered_hint: bool, progress: Progress | None) -> tuple[SfmOutput, MappingChoice]:
    """One pass of features, matching and mapping at the options' image size (`reconstruct`)."""
    say = progress or (lambda step, frac: None)
    matched = features_and_matches(database, image_dir, names, options, work, ordered_hint, progress)
    video, decided, plan, reused = matched.video, matched.decided, matched.plan, matched.reused
    seconds, cpu = dict(matched.seconds), dict(matched.cpu)
    matching_desc = f"{plan.scheme}: {plan.reason}" + ("" if plan.pairs is None else f"; {len(plan.pairs)} pairs")

    say("mapping", 0.5)
    refine_pp = options.refine_principal_point
    if refine_pp is None:
        refine_pp = decided["single_camera"] and len(names) >= 20
    t, c = time.perf_counter(), time.process_time()
    evidence = read_evidence(database, names, options.min_num_inliers)
    order, why = order_of_mappers(options, evidence)
    log.info("mappers: %s (%s)", " then ".join(order), why)
    choice = map_with_fallback(database, image_dir, names, options, work, refine_pp, evidence, video=video)
    seconds["mapping"], cpu["mapping"] = time.perf_counter() - t, time.process_time() - c
    best = choice.best
    others = [{"images": r.num_reg_images(), "names": sorted(im.name for im in r.images.values() if im.has_pose)}
              for r in choice.models.values() if r is not best]
    others.sort(key=lambda m: -m["images"])
    return SfmOutput(best, choice.mapper, matching_desc, seconds, others, choice.attempts,
                     {**evidence.to_dict(), "mapper_order": order, "why": why},
                     choice.check.to_dict() if choice.check is not None else None, reused, cpu), choice
