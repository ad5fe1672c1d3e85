"""The splat stages: `train` (Gaussians from the posed scene) and `export` (files viewers open)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from splatforge.rundir import RunDir
from splatforge.splat.config import TrainOptions
from splatforge.stage import Events, Stage


def _run_train(run: RunDir, options: TrainOptions, events: Events) -> dict[str, Any]:
    from splatforge.splat.trainer import train

    result = train(run, options, events)
    return {"steps": result.steps, "seconds": result.seconds, "eval": result.eval,
            "num_gaussians": result.num_gaussians, "device": result.device, "preset": result.preset}


@dataclass
class ExportOptions:
    """What the export stage writes into export/."""


def _run_export(run: RunDir, options: ExportOptions, events: Events) -> dict[str, Any]:
    from splatforge.splat.export import export_ply

    path = export_ply(run)
    return {"ply": path.name, "bytes": path.stat().st_size}


TRAIN = Stage(
    name="train", options=TrainOptions, run=_run_train, done=lambda run: run.train_json.exists(),
    reads=("transforms.json", "images_undistorted/"),
    writes=("checkpoints/", "metrics.jsonl", "train.json", "renders/"),
    weight=0.6, help="training the Gaussians (gsplat on CUDA, the PyTorch reference elsewhere); resumes from checkpoints")

EXPORT = Stage(
    name="export", options=ExportOptions, run=_run_export, done=lambda run: run.ply.exists(),
    reads=("checkpoints/",), writes=("export/",), weight=0.02, help="the splat as files viewers open")
