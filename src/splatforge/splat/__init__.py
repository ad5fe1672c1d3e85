"""Training a 3D Gaussian Splat from a posed scene, and exporting it as a standard 3DGS PLY.

Public API (used by the pipeline and the job service):

    train(run, TrainOptions(...), events) -> TrainResult
    export_ply(run, out=None) -> Path

Modules: `gaussians` (parameters and their initialisation), `render` (one `render()` with the
`gsplat` CUDA backend and the pure-PyTorch `reference` backend), `strategy` (3DGS densification or
MCMC), `data` (images decoded once, kept on the device as uint8), `losses`/`metrics`, `checkpoint`,
`presets`, `trainer`, `export`, `cli`.
"""

from __future__ import annotations

__all__ = ["TrainOptions", "TrainResult", "train", "export_ply"]


def __getattr__(name: str):  # lazy: `import splatforge.splat.reference` must not pull in the trainer
    if name == "export_ply":
        from splatforge.splat.export import export_ply

        return export_ply
    if name in ("TrainOptions", "TrainResult", "train"):
        from splatforge.splat import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
