"""One rendering entry point with two backends: `gsplat` (CUDA) and `reference` (pure PyTorch, any device)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

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
    distributed: bool = False,
) -> RenderOutput:
    """Render the Gaussians `params` (raw parameters, see `gaussians.py`) from C cameras of one size.

    `info` holds what gsplat's densification strategies read (means2d [C, N, 2] with its gradient
    retained by the strategy, radii [C, N, 2], width, height, n_cameras, gaussian_ids) on both backends.

    `distributed`: `params` is this process's shard of the Gaussians and the cameras are this process's
    (torch.distributed is initialised; every process calls with the same number of cameras). gsplat
    projects every shard into every process's cameras and exchanges the projections (its `info` then holds
    the shard's projections into all cameras); the reference backend gathers all shards (differentiably)
    and slices `info` back to this shard, which sees only this process's cameras: enough to test the
    multi-process path on a CPU, not a way to train on several.
    """
    g = activated(params)
    shard = None
    if distributed and backend == "reference":
        g, shard = _gather_shards(g)
    if backend == "gsplat":
        from gsplat import rasterization

        image, alpha, info = rasterization(
            means=g["means"], quats=g["quats"], scales=g["scales"], opacities=g["opacities"],
            colors=g["colors"], viewmats=viewmats, Ks=Ks, width=width, height=height, sh_degree=sh_degree,
            near_plane=near_plane, far_plane=far_plane, backgrounds=backgrounds, packed=packed,
            absgrad=absgrad, rasterize_mode=rasterize_mode, render_mode="RGB", distributed=distributed,
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
    if shard is not None:
        start, end = shard
        means2d = info["means2d"]
        info = {k: (v[:, start:end] if torch.is_tensor(v) and v.dim() >= 2 else v) for k, v in info.items()}
        info["means2d"] = _ShardGradient(means2d, start, end)
    return RenderOutput(image=image, alpha=alpha, info=info)


class _ShardGradient:
    """This shard's columns of the gathered means2d's gradient, behind the two things gsplat's strategy uses
    (`retain_grad()` before backward, `.grad` after): a slice taken after rendering is off the loss's path
    and would get no gradient itself."""

    def __init__(self, means2d: torch.Tensor, start: int, end: int):
        self._full, self._start, self._end = means2d, start, end

    def retain_grad(self) -> None:
        self._full.retain_grad()

    @property
    def grad(self) -> torch.Tensor | None:
        g = self._full.grad
        return None if g is None else g[:, self._start: self._end]


def _gather_shards(g: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
    """Every process's Gaussians (gradients flow back to each shard) and where this one's rows are."""
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_fn

    world, rank = dist.get_world_size(), dist.get_rank()
    n = torch.tensor([len(g["means"])])
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    longest = max(sizes)
    out = {}
    for key, value in g.items():
        padded = F.pad(value, (0, 0) * (value.dim() - 1) + (0, longest - len(value)))
        parts = dist_fn.all_gather(padded)
        out[key] = torch.cat([p[:s] for p, s in zip(parts, sizes)])
    start = sum(sizes[:rank])
    return out, (start, start + sizes[rank])
