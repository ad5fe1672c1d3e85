"""Pose stage: camera poses and intrinsics for the frames of a run folder.

    estimate_poses(run, PoseOptions(...)) -> PoseResult

Writes (any engine): distorted/sparse/0 (the model as estimated, of frames/), sparse/0 + images ->
images_undistorted/ (the PINHOLE dataset other trainers read), colmap/database.db, transforms.json (the
training scene with `ply_file_path`) and poses.json (= PoseResult.to_dict()).
Engines: `auto` (default: the capture's own transforms.json / COLMAP model when it poses its photos, see
`poses.existing`, else `colmap`), `colmap` (pycolmap SfM), `known` (given cameras, optional triangulation), `vggt`.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from splatforge.errors import InputError, PoseError, SplatforgeError
from splatforge.poses.options import PoseOptions, PoseResult
from splatforge.rundir import RunDir, atomic_write_json

log = logging.getLogger("splatforge")
Progress = Callable[[str, float], None]

__all__ = ["PoseOptions", "PoseResult", "estimate_poses"]


def _clear_outputs(run: RunDir) -> None:
    for path in (run.transforms_json, run.poses_json):
        path.unlink(missing_ok=True)
    for folder in (run.sparse, run.images_undistorted):
        if folder.exists():
            shutil.rmtree(folder)


def _run_colmap(run: RunDir, names: list[str], ordered: bool, options: PoseOptions, progress):
    from splatforge.poses import colmap_engine, explain

    out = colmap_engine.reconstruct(run.database, run.frames, names, options, run.colmap_dir / "work",
                                     ordered_hint=ordered, progress=progress)
    keypoints, neighbours = explain.match_graph(run.database, options.min_num_inliers)
    rec = out.reconstruction
    registered = {im.name for im in rec.images.values() if im.has_pose} if rec is not None else set()
    need = max(3, options.min_registered_fraction * len(names))
    if len(registered) < need:
        raise explain.failure(len(names), len(registered), keypoints, neighbours, out.other_models)
    reasons = explain.unregistered_reasons(names, registered, keypoints, neighbours, out.other_models)
    notes = [f"{a['mapper']} mapping: {a['registered']}/{len(names)} in {a['seconds']} s" for a in out.attempts]
    notes += [f"features and matches reused from the database: {out.reused}"] if out.reused != "nothing" else []
    return rec, out.seconds, {"matching": out.matching, "mapper": out.mapper, "unregistered_reasons": reasons,
                              "other_models": out.other_models, "notes": notes, "check": out.check,
                              "evidence": out.evidence, "cpu_seconds": out.cpu_seconds}


def _run_engine(run: RunDir, names: list[str], ordered: bool, options: PoseOptions, say):
    if options.engine == "known":
        from splatforge.poses import known

        return known.from_known_cameras(run, names, options, say)
    if options.engine == "vggt":
        from splatforge.poses import vggt_engine

        return vggt_engine.run_vggt(run, names, options, say)
    return _run_colmap(run, names, ordered, options, say)


def estimate_poses(run: RunDir, options: PoseOptions | None = None,
                   progress: Progress | None = None) -> PoseResult:
    """Estimate camera poses for the images in `run.frames` and write the stage's outputs.

    progress(step, fraction) is called at each step (features, matching, mapping, undistortion).
    Raises PoseError (with advice) when no usable model comes out. Recording the stage in run.json is
    the caller's job (`estimate_poses_for` and the pipeline do it).
    """
    from splatforge.poses import existing, inputs, undistort

    options = options or PoseOptions()
    say = progress or (lambda step, frac: None)
    _quiet_colmap()
    names, ordered = inputs.frame_names(run)
    t_start, c_start = time.perf_counter(), time.process_time()
    _clear_outputs(run)
    if not names:
        raise PoseError("there are no images to place", "give a folder of photos or a video")
    asked, (options, found) = options.engine, existing.resolve_engine(run, options, names)
    if found:
        log.info(found)
    try:
        try:
            rec, seconds, extra = _run_engine(run, names, ordered, options, say)
        except InputError as exc:
            if asked != "auto" or options.engine != "known":
                raise
            log.warning("the poses in %s do not fit these photos (%s): estimating poses anew", options.cameras,
                        exc.message)
            found, options = None, replace(options, engine="colmap", cameras=None)
            rec, seconds, extra = _run_engine(run, names, ordered, options, say)
        if found:
            extra["notes"] = [found] + extra.get("notes", [])
    except SplatforgeError:
        raise
    except Exception as exc:  # never a bare LinAlgError/RuntimeError in front of the user
        log.debug("pose estimation crashed", exc_info=True)
        raise PoseError(f"camera positions could not be worked out ({type(exc).__name__}: {exc})",
                        "run `splatforge check` on the photos; if they look fine, report this with run.log") \
            from exc

    say("undistortion", 0.9)
    t, c = time.perf_counter(), time.process_time()
    colour = options.engine == "colmap"  # its incremental mapper leaves the colours to this step
    if colour and not options.undistort:
        rec.extract_colors_for_all_images(str(run.frames))
    undistort.write_sparse(rec, run)
    if options.undistort:
        scene = undistort.undistort(rec, run, options.undistort_max_image_size, options.num_threads,
                                    colour=colour)
    else:
        from splatforge.scene.colmap import reconstruction_to_scene

        scene = reconstruction_to_scene(rec, run.frames)
    undistort.write_training_scene(scene, run)
    seconds["undistortion"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_start
    cpu = extra.pop("cpu_seconds", None) or {}
    cpu["undistortion"], cpu["total"] = time.process_time() - c, time.process_time() - c_start

    registered = {im.name for im in rec.images.values() if im.has_pose}
    result = PoseResult(
        engine=options.engine, registered=len(registered), total=len(names),
        unregistered=[n for n in names if n not in registered],
        mean_reprojection_error=float(rec.compute_mean_reprojection_error()) if rec.num_points3D() else None,
        points=int(rec.num_points3D()), seconds={k: round(v, 2) for k, v in seconds.items()},
        cpu_seconds={k: round(v, 2) for k, v in cpu.items()},
        model=run.sparse, transforms=run.transforms_json,
        images_undistorted=run.images_undistorted if options.undistort else None, **extra)
    atomic_write_json(run.poses_json, result.to_dict())
    say("done", 1.0)
    return result


def _quiet_colmap() -> None:
    """COLMAP logs every registration step through glog on stderr; keep warnings unless -v was given."""
    import pycolmap

    if not log.isEnabledFor(logging.DEBUG):
        pycolmap.logging.minloglevel = pycolmap.logging.WARNING


def estimate_poses_for(source: Path, out: Path | None = None, options: PoseOptions | None = None,
                       progress: Progress | None = None) -> PoseResult:
    """Convenience for an image folder or a run folder (the `splatforge poses` command)."""
    from splatforge.poses.inputs import prepare_run

    run = prepare_run(Path(source), out)
    options = options or PoseOptions()
    with run.stage("poses", options.to_dict()) as summary:
        result = estimate_poses(run, options, progress)
        summary.update({k: result.to_dict()[k] for k in ("engine", "registered", "total", "points", "seconds")})
    return result
