"""One rendering entry point with two backends: `gsplat` (CUDA) and `reference` (pure PyTorch, any device)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from splatforge.errors import TrainingError
from splatforge.splat.gaussians import activated

BACKENDS = ("gsplat", "reference")


@dataclass
class RenderOutput:
    """image [C, H, W, 3] (linear RGB, background composited), alpha [C, H, W, 1], info (gsplat's meta)."""

    image: torch.Tensor
    alpha: torch.Tensor
    info: dict


def resolve_backend(backend: str, device: torch.device) -> str:
    """'auto' -> gsplat on CUDA, reference otherwise. gsplat on a non-CUDA device is an error."""
    if backend == "auto":
        return "gsplat" if device.type == "cuda" else "reference"
    if backend not in BACKENDS:
        raise TrainingError(f"unknown rendering backend {backend!r}", f"use one of: auto, {', '.join(BACKENDS)}")
    if backend == "gsplat" and device.type != "cuda":
        raise TrainingError("the gsplat backend needs a CUDA GPU",
                            "use --backend reference (slow, tiny scenes only) or run on a machine with a GPU")
    return backend


def render(
    params: Mapping[str, torch.Tensor],
    viewmats: torch.Tensor,  # [C, 4, 4] world-to-camera, OpenCV axes
    Ks: torch.Tensor,  # [C, 3, 3]  # noqa: N803
    width: int,
    height: int,
    sh_degree: int,
    backend: str = "gsplat",
    backgrounds: torch.Tensor | None = None,  # [C, 3]
    rasterize_mode: str = "classic",
    absgrad: bool = False,
    packed: bool = False,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> RenderOutput:
    """Render the Gaussians `params` (raw parameters, see `gaussians.py`) from C cameras of one size.

    `info` holds what gsplat's densification strategies read (means2d [C, N, 2] with its gradient
    retained by the strategy, radii [C, N, 2], width, height, n_cameras, gaussian_ids) on both backends.
    """
    g = activated(params)
    if backend == "gsplat":
        from gsplat import rasterization

        image, alpha, info = rasterization(
            means=g["means"], quats=g["quats"], scales=g["scales"], opacities=g["opacities"],
            colors=g["colors"], viewmats=viewmats, Ks=Ks, width=width, height=height, sh_degree=sh_degree,
            near_plane=near_plane, far_plane=far_plane, backgrounds=backgrounds, packed=packed,
            absgrad=absgrad, rasterize_mode=rasterize_mode, render_mode="RGB",
        )
    elif backend == "reference":
        from splatforge.splat.reference import rasterize_reference

        if absgrad or packed:
            raise TrainingError("the reference backend supports neither absgrad nor packed mode",
                                "use a preset without absgrad, or the gsplat backend on a GPU")
        image, alpha, info = rasterize_reference(
            g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], viewmats, Ks, width, height,
            sh_degree=sh_degree, near_plane=near_plane, far_plane=far_plane, backgrounds=backgrounds,
            rasterize_mode=rasterize_mode,
        )
    else:
        raise TrainingError(f"unknown rendering backend {backend!r}", f"use one of: {', '.join(BACKENDS)}")
    return RenderOutput(image=image, alpha=alpha, info=info)
