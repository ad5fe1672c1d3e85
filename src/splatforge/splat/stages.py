"""The splat stages: `train` (Gaussians from the posed scene) and `export` (files viewers open)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from splatforge.console import log
from splatforge.rundir import RunDir
from splatforge.splat.config import TrainOptions
from splatforge.splat.export_options import ExportOptions
from splatforge.stage import Events, Stage


def _run_train(run: RunDir, options: TrainOptions, events: Events) -> dict[str, Any]:
    from splatforge.splat.trainer import train

    preview = cpu_preview_for(run, options)
    if preview is not None:
        log.warning("no GPU: training a preview instead of the %s preset (%s). A GPU gives the real result.",
                    options.preset, preview.explanation)
        chosen = preview.train_options()
        options = replace(options, preset=chosen["preset"], downscale=chosen["downscale"],
                          overrides={**chosen["overrides"], **options.overrides})
    result = train(run, options, events)
    summary = {"steps": result.steps, "seconds": result.seconds, "eval": result.eval,
               "num_gaussians": result.num_gaussians, "device": result.device, "backend": result.backend,
               "preset": result.preset}
    if preview is not None:
        summary["cpu_preview"] = preview.to_dict()
    return summary


def cpu_preview_for(run: RunDir, options: TrainOptions):
    """The CPU preview to train instead, or None: a GPU is there, the user sized the run, or it is off."""
    import torch

    on_cpu = options.device == "cpu" or (options.device == "auto" and not torch.cuda.is_available())
    sized = options.downscale != 1.0 or {"steps", "strategy.cap_max"} & set(options.overrides)
    if not (options.cpu_preview and on_cpu) or sized:
        return None
    from splatforge.splat.cpu_preview import preview_for_scene

    return preview_for_scene(run.transforms_json, cores=os.cpu_count())


def _run_export(run: RunDir, options: ExportOptions, events: Events) -> dict[str, Any]:
    from splatforge.splat.export import export_splat

    return export_splat(run, options)


def _export_done(run: RunDir) -> bool:
    from splatforge.splat.export import export_done

    return export_done(run)


TRAIN = Stage(
    name="train", options=TrainOptions, run=_run_train, done=lambda run: run.train_json.exists(),
    reads=("transforms.json", "images_undistorted/"),
    writes=("checkpoints/", "metrics.jsonl", "train.json", "renders/"),
    weight=0.6, help="training the Gaussians (gsplat on CUDA, the PyTorch reference elsewhere); resumes from checkpoints")

EXPORT = Stage(
    name="export", options=ExportOptions, run=_run_export, done=_export_done,
    reads=("checkpoints/",), writes=("export/",), weight=0.02, help="the splat as files viewers open")
