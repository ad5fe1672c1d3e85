"""Structure from motion with pycolmap (COLMAP 4): SIFT, a matching scheme chosen from the input,
incremental mapping with global mapping (GLOMAP) as the fallback, and the largest model kept."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from splatforge.poses import pairs as pairing
from splatforge.poses.options import PoseOptions

log = logging.getLogger("splatforge")
Progress = Callable[[str, float], None]


@dataclass
class SfmOutput:
    """The kept reconstruction (pycolmap.Reconstruction or None) and what happened on the way."""

    reconstruction: object | None
    mapper: str | None
    matching: str
    seconds: dict[str, float]
    other_models: list[dict] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)  # per mapper: registered, seconds


def _pycolmap():
    import pycolmap

    return pycolmap


def use_gpu(options: PoseOptions) -> bool:
    pycolmap = _pycolmap()
    if options.use_gpu is not None:
        return bool(options.use_gpu) and pycolmap.has_cuda
    if not pycolmap.has_cuda:
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return True


def image_sizes(image_dir: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    from splatforge.capture.imageio import image_size

    return {name: image_size(image_dir / name) for name in names}


def extract(database: Path, image_dir: Path, names: list[str], options: PoseOptions) -> dict:
    """SIFT features of `names` into `database`. Returns what was decided (camera mode, octave)."""
    pycolmap = _pycolmap()
    sizes = image_sizes(image_dir, names)
    single = options.single_camera if options.single_camera is not None else len(set(sizes.values())) == 1
    model = options.camera_model
    if model == "auto":
        model = "RADIAL" if single else "SIMPLE_RADIAL"
    longest = max(max(s) for s in sizes.values())
    effective = min(longest, options.max_image_size) if options.max_image_size > 0 else longest
    first_octave = options.first_octave
    if first_octave is None:
        first_octave = 0 if effective >= options.upsample_below else -1
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = options.max_image_size
    extraction.num_threads = options.num_threads
    extraction.use_gpu = use_gpu(options)
    extraction.sift.max_num_features = options.max_num_features
    extraction.sift.first_octave = first_octave
    mode = pycolmap.CameraMode.SINGLE if single else pycolmap.CameraMode.PER_IMAGE
    device = pycolmap.Device.cuda if extraction.use_gpu else pycolmap.Device.cpu
    pycolmap.extract_features(database, image_dir, image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=device)
    return {"single_camera": single, "camera_model": model, "first_octave": first_octave}


def read_descriptors(db, images) -> list[np.ndarray]:
    out = []
    for image in images:
        d = db.read_descriptors(image.image_id)
        out.append(np.asarray(getattr(d, "data", d)))
    return out


def plan_pairs(database: Path, names: list[str], options: PoseOptions, ordered_hint: bool) -> pairing.PairPlan:
    """Choose the matching scheme from the input (see PoseOptions.matching / ordered)."""
    pycolmap = _pycolmap()
    n = len(names)
    scheme = options.matching
    ordered = options.ordered if options.ordered is not None else ordered_hint
    needs_similarity = scheme in ("auto", "sequential", "retrieval") and n > 2 * options.sequential_overlap + 1
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
        elif n <= 2 * options.sequential_overlap + 1:
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


def match(database: Path, names: list[str], plan: pairing.PairPlan, options: PoseOptions, work: Path) -> None:
    pycolmap = _pycolmap()
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    matching.use_gpu = use_gpu(options)
    matching.sift.max_ratio = options.max_ratio
    verification = pycolmap.TwoViewGeometryOptions()
    verification.min_num_inliers = options.min_num_inliers
    verification.ransac.random_seed = options.seed
    device = pycolmap.Device.cuda if matching.use_gpu else pycolmap.Device.cpu
    if plan.pairs is None:
        pycolmap.match_exhaustive(database, matching_options=matching, verification_options=verification,
                                  device=device)
        return
    pair_file = work / "pairs.txt"
    pair_file.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in plan.pairs))
    imported = pycolmap.ImportedPairingOptions()
    imported.match_list_path = pair_file
    pycolmap.match_image_pairs(database, matching_options=matching, pairing_options=imported,
                               verification_options=verification, device=device)


def _map(kind: str, database: Path, image_dir: Path, out: Path, names: list[str], options: PoseOptions,
         refine_pp: bool) -> dict:
    pycolmap = _pycolmap()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if kind == "incremental":
        opts = pycolmap.IncrementalPipelineOptions()
        opts.min_model_size = options.min_model_size
        opts.ba_use_gpu = use_gpu(options)
        opts.ba_refine_principal_point = refine_pp
        opts.ba_global_frames_ratio = opts.ba_global_points_ratio = options.ba_global_ratio
        opts.ba_global_max_refinements = options.ba_global_max_refinements
        opts.ba_local_max_refinements = options.ba_local_max_refinements
    else:
        opts = pycolmap.GlobalPipelineOptions()
        opts.min_model_size = options.min_model_size
        opts.mapper.global_positioning.use_gpu = use_gpu(options)
        opts.mapper.bundle_adjustment.ceres.use_gpu = use_gpu(options)
        opts.mapper.bundle_adjustment.refine_principal_point = refine_pp
    opts.num_threads = options.num_threads
    opts.random_seed = options.seed
    opts.min_num_matches = options.min_num_inliers
    opts.image_names = list(names)
    fn = pycolmap.incremental_mapping if kind == "incremental" else pycolmap.global_mapping
    models = fn(database, image_dir, out, opts)
    return dict(models)


def order_of_mappers(options: PoseOptions) -> list[str]:
    if options.mapper == "incremental":
        return ["incremental"]
    if options.mapper == "global":
        return ["global"]
    return ["incremental", "global"]  # auto: see docs/benchmarks-poses.md for why incremental leads


def map_with_fallback(database: Path, image_dir: Path, names: list[str], options: PoseOptions, work: Path,
                      refine_pp: bool) -> tuple[object | None, str | None, dict, list[dict]]:
    """Run the mappers in order until one registers enough images; keep the largest model seen.

    Returns (largest model, its mapper, all models of that mapper, one attempt record per mapper run).
    """
    best, best_kind, best_models, attempts = None, None, {}, []
    need = options.fallback_min_registered * len(names)
    for kind in order_of_mappers(options):
        t_map = time.perf_counter()
        try:
            models = _map(kind, database, image_dir, work / f"sparse_{kind}", names, options, refine_pp)
        except Exception as exc:  # a mapper crash is a failed attempt, not the end of the stage
            log.warning("%s mapping failed: %s", kind, exc)
            models = {}
        largest = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
        got = largest.num_reg_images() if largest is not None else 0
        attempts.append({"mapper": kind, "registered": got, "models": len(models),
                         "seconds": round(time.perf_counter() - t_map, 2)})
        if largest is not None and (best is None or got > best.num_reg_images()):
            best, best_kind, best_models = largest, kind, models
        if best is not None and best.num_reg_images() >= need:
            break
        log.info("%s mapping registered %d of %d images; trying the next mapper", kind, got, len(names))
    return best, best_kind, best_models, attempts


def reconstruct(database: Path, image_dir: Path, names: list[str], options: PoseOptions, work: Path,
                ordered_hint: bool = False, progress: Progress | None = None) -> SfmOutput:
    """Features, matching and mapping. The database is rebuilt from scratch."""
    say = progress or (lambda step, frac: None)
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    say("features", 0.0)
    t = time.perf_counter()
    decided = extract(database, image_dir, names, options)
    seconds["features"] = time.perf_counter() - t
    log.info("features: %.1f s (%s)", seconds["features"], decided)

    say("matching", 0.25)
    t = time.perf_counter()
    plan = plan_pairs(database, names, options, ordered_hint)
    log.info("matching: %s (%s)", plan.scheme, plan.reason)
    match(database, names, plan, options, work)
    seconds["matching"] = time.perf_counter() - t
    matching_desc = f"{plan.scheme}: {plan.reason}" + ("" if plan.pairs is None else f"; {len(plan.pairs)} pairs")

    say("mapping", 0.5)
    refine_pp = options.refine_principal_point
    if refine_pp is None:
        refine_pp = decided["single_camera"] and len(names) >= 20
    t = time.perf_counter()
    best, best_kind, best_models, attempts = map_with_fallback(database, image_dir, names, options, work, refine_pp)
    seconds["mapping"] = time.perf_counter() - t
    others = [{"images": r.num_reg_images(), "names": sorted(im.name for im in r.images.values() if im.has_pose)}
              for r in best_models.values() if r is not best]
    others.sort(key=lambda m: -m["images"])
    return SfmOutput(best, best_kind, matching_desc, seconds, others, attempts)
