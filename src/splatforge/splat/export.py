"""Export: the newest checkpoint of a run as splat files (formats in `splat/formats`).

    export_splat(run, ExportOptions()) -> summary     the export stage: RUN/export/scene.<format> per format
    export_done(run, ExportOptions()) -> bool         the stage's outputs are there and not older than the checkpoint
    export_to(run, out_path, format=None, sh_degree=None) -> summary     one file anywhere (`export -o FILE`)

The stage writes the standard PLY (exact, what every tool reads) and the compact format that the viewer
and the service's download page use (`formats.DEFAULT_COMPACT`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from splatforge.console import log
from splatforge.errors import InputError
from splatforge.rundir import RunDir
from splatforge.splat.checkpoint import load_checkpoint, newest_checkpoint
from splatforge.splat.export_options import ExportOptions
from splatforge.splat.formats import FORMATS, format_named, sh_degree_of, splat_transform, write_splat

# Kept importable from here: the PLY layout and its reader/writer (tests, the trainer's round trips).
from splatforge.splat.formats.ply import (  # noqa: F401
    params_to_vertices,
    ply_dtype,
    read_ply,
    vertices_to_params,
    write_ply,
)


def load_newest(run: RunDir) -> tuple[Path, dict[str, torch.Tensor], int | None]:
    """(checkpoint path, raw parameters, step) of the run's newest checkpoint."""
    newest = newest_checkpoint(run.checkpoints)
    if newest is None:
        raise InputError(f"no checkpoint in {run.checkpoints}", "train first: splatforge train RUN")
    saved = load_checkpoint(newest)
    return newest, saved["params"], saved.get("step")


def _write_one(params: dict[str, torch.Tensor], path: Path, format_name: str, sh_degree: int | None) -> dict:
    fmt = FORMATS[format_name]
    t0 = time.perf_counter()
    write_splat(params, path, fmt, sh_degree)
    kept = min(sh_degree_of(params) if sh_degree is None else sh_degree, fmt.max_sh_degree)
    return {"format": fmt.name, "path": str(path), "bytes": path.stat().st_size,
            "seconds": round(time.perf_counter() - t0, 3), "lossy": fmt.lossy, "sh_degree": kept}


def export_splat(run: RunDir | Path | str, options: ExportOptions | None = None) -> dict[str, Any]:
    """Write the newest checkpoint of `run` as RUN/export/scene.<format> for each format of `options`.

    Files of other formats left in export/ from an older checkpoint are removed: they would show a
    splat that no longer exists. Returns the summary: {"checkpoint", "step", "num_gaussians",
    "files": {format: {path, bytes, seconds, lossy, sh_degree}}, "removed": [...], "ply", "bytes"}.
    """
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    options = options or ExportOptions()
    checkpoint, params, step = load_newest(run)
    skipped = {}
    lacking = splat_transform.missing("the export stage")
    if lacking is not None:  # the PLY always; a web format that needs Node is left out, said aloud
        for name in [n for n in options.formats if FORMATS[n].needs_node]:
            skipped[name] = f"{lacking.message}: {lacking.advice}"
            log.warning("export: %s skipped: %s", name, skipped[name])
    files = {name: _write_one(params, run.export_file(name), name, options.sh_degree)
             for name in options.formats if name not in skipped}
    removed = []
    for name in FORMATS:
        stale = run.export_file(name)
        if name not in files and stale.is_file() and stale.stat().st_mtime < checkpoint.stat().st_mtime:
            stale.unlink()
            removed.append(str(stale))
    summary: dict[str, Any] = {"checkpoint": str(checkpoint), "step": step, "num_gaussians": len(params["means"]),
                               "files": files, "removed": removed, "skipped": skipped}
    if "ply" in files:  # the keys earlier summaries had
        summary.update(ply=files["ply"]["path"], bytes=files["ply"]["bytes"])
    return summary


def export_done(run: RunDir | Path | str, options: ExportOptions | None = None) -> bool:
    """Whether every file of `options` (default: the formats the last export recorded in run.json, else
    the default ones) is in export/ and none is older than the newest checkpoint (the stage's `done`)."""
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    if options is None:
        recorded = run.read_manifest()["stages"].get("export", {}).get("summary", {}).get("files")
        options = ExportOptions(formats=tuple(recorded)) if recorded else ExportOptions()
    newest = newest_checkpoint(run.checkpoints)
    files = [run.export_file(name) for name in options.formats]
    if not all(f.is_file() for f in files):
        return False
    return newest is None or all(f.stat().st_mtime >= newest.stat().st_mtime for f in files)


def export_to(run: RunDir | Path | str, out_path: Path, format: str | None = None,  # noqa: A002
              sh_degree: int | None = None) -> dict[str, Any]:
    """Write the newest checkpoint of `run` to `out_path` in `format` (default: from the file name;
    an ending that names no format is refused with the list). Returns that file's summary."""
    from splatforge.splat.formats import format_for_path

    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    out_path = Path(out_path)
    fmt = format_named(format) if format is not None else format_for_path(out_path)
    if format is not None and not out_path.name.lower().endswith(fmt.suffix):
        raise InputError(f"{out_path.name} does not end with {fmt.suffix}, the ending of the {fmt.name} format",
                         f"name the file *{fmt.suffix} (viewers pick the format by the ending)")
    ExportOptions(formats=(fmt.name,), sh_degree=sh_degree)  # the same checks as the stage's
    _checkpoint, params, _step = load_newest(run)
    return _write_one(params, out_path, fmt.name, sh_degree)


def export_ply(run: RunDir | Path | str, out: Path | None = None) -> Path:
    """Newest checkpoint of `run` -> `out` (default: run/export/scene.ply) as a standard 3DGS PLY."""
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    _checkpoint, params, _step = load_newest(run)
    return write_ply(params, Path(out) if out is not None else run.ply)
