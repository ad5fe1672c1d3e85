"""`.splat` (antimatter15) and compressed PLY (SuperSplat / PlayCanvas) through gsplat's own exporter.

`gsplat.exporter.export_splats` filters non-finite Gaussians, orders them along a Morton curve and
quantises them; the compressed PLY also drops Gaussians with opacity below 1/255. Neither layout is
reimplemented here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from splatforge.rundir import atomic_write_bytes

GSPLAT_NAMES = {"splat": "splat", "ply-compressed": "ply_compressed"}


def write_with_gsplat(params: dict[str, torch.Tensor], path: Path, format_name: str) -> Path:
    from gsplat.exporter import export_splats

    p = {k: v.detach().cpu().float() for k, v in params.items()}
    data = export_splats(means=p["means"], scales=p["scales"], quats=p["quats"], opacities=p["opacities"],
                         sh0=p["sh0"], shN=p["shN"], format=GSPLAT_NAMES[format_name])
    atomic_write_bytes(Path(path), data)
    return Path(path)
