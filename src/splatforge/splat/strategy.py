"""Densification: gsplat's `DefaultStrategy` (3DGS clone/split/prune + opacity reset) or `MCMCStrategy`.

gsplat's strategies are plain PyTorch with their state passed explicitly, so they run unchanged on
both backends (the reference backend returns the same `info`). Two pieces of MCMC need CUDA:
`compute_relocation` (new opacities and scales when a Gaussian is cloned n times, eq. 9 of the
MCMC paper) and `quat_scale_to_covar_preci` (the covariance that shapes the position noise).
`relocation_torch` ports the first, gsplat's own `_torch_impl` provides the second, and
`install_cpu_fallbacks()` routes both names in `gsplat.strategy.ops` to them for non-CUDA tensors
(CUDA tensors still go to gsplat's kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


def relocation_torch(opacities: torch.Tensor, scales: torch.Tensor, ratios: torch.Tensor,
                     binoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch port of gsplat's relocation kernel. opacities [N], scales [N, 3], ratios [N], binoms [n, n].

    new_o = 1 - (1 - o)^(1/n);  new_s = o / sum_{i=1..n} sum_{k=0..i-1} C(i-1, k) (-1)^k new_o^(k+1) / sqrt(k+1) * s
    """
    n_max = binoms.shape[0]
    n = ratios.clamp(1, n_max).to(torch.int64)
    new_o = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(opacities.dtype))
    i = torch.arange(1, n_max + 1, device=opacities.device)  # [n_max]
    k = torch.arange(0, n_max, device=opacities.device)  # [n_max]
    coeff = binoms.to(opacities)[i - 1][:, k]  # [i, k] = C(i-1, k) (zero for k > i-1)
    sign_sqrt = ((-1.0) ** k.to(opacities.dtype)) / torch.sqrt(k.to(opacities.dtype) + 1.0)  # [k]
    powers = new_o[:, None] ** (k[None, :].to(opacities.dtype) + 1.0)  # [N, k]
    per_i = (powers[:, None, :] * coeff[None] * sign_sqrt).sum(-1)  # [N, i]
    mask = (i[None, :] <= n[:, None]).to(opacities.dtype)
    denom = (per_i * mask).sum(-1)
    new_s = (opacities / denom)[:, None] * scales
    return new_o, new_s


_installed = False


def install_cpu_fallbacks() -> None:
    """Let MCMC run on the CPU (the reference backend). Idempotent; CUDA tensors still use gsplat's kernels."""
    global _installed
    if _installed:
        return
    import gsplat.strategy.ops as ops
    from gsplat import quat_scale_to_covar_preci as cuda_covar
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci as torch_covar
    from gsplat.relocation import compute_relocation as cuda_relocation

    def relocation(opacities, scales, ratios, binoms):
        if opacities.is_cuda:
            return cuda_relocation(opacities, scales, ratios, binoms)
        return relocation_torch(opacities, scales, ratios.clone(), binoms)

    def covar(quats, scales, compute_covar=True, compute_preci=True, triu=False):
        fn = cuda_covar if quats.is_cuda else torch_covar
        return fn(quats, scales, compute_covar=compute_covar, compute_preci=compute_preci, triu=triu)

    ops.compute_relocation = relocation
    ops.quat_scale_to_covar_preci = covar
    _installed = True


@dataclass
class StrategyOptions:
    """Densification knobs in steps of the run (presets scale them to the number of steps)."""

    kind: str = "default"  # "default" (3DGS) or "mcmc"
    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 0.0002
    absgrad: bool = False
    prune_opa: float = 0.005
    cap_max: int = 1_000_000  # MCMC only
    noise_lr: float = 5e5  # MCMC only
    opacity_reg: float = 0.0  # MCMC: 0.01
    scale_reg: float = 0.0  # MCMC: 0.01


def make_strategy(options: StrategyOptions, scene_scale: float) -> tuple[Any, dict]:
    """The gsplat strategy object and its initial state."""
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    if options.kind == "default":
        strategy = DefaultStrategy(
            prune_opa=options.prune_opa, grow_grad2d=options.grow_grad2d, refine_start_iter=options.refine_start,
            refine_stop_iter=options.refine_stop, reset_every=options.reset_every,
            refine_every=options.refine_every, absgrad=options.absgrad, verbose=False,
        )
        return strategy, strategy.initialize_state(scene_scale=scene_scale)
    if options.kind == "mcmc":
        install_cpu_fallbacks()
        strategy = MCMCStrategy(
            cap_max=options.cap_max, noise_lr=options.noise_lr, refine_start_iter=options.refine_start,
            refine_stop_iter=options.refine_stop, refine_every=options.refine_every,
            min_opacity=options.prune_opa, verbose=False,
        )
        return strategy, strategy.initialize_state()
    raise ValueError(f"unknown strategy {options.kind!r}: use 'default' or 'mcmc'")


def strategy_state_dict(state: dict) -> dict:
    """The state as CPU tensors (for a checkpoint)."""
    return {k: (v.detach().cpu() if torch.is_tensor(v) else v) for k, v in state.items()}


def load_strategy_state(state: dict, saved: dict, device: torch.device) -> dict:
    for key, value in saved.items():
        state[key] = value.to(device) if torch.is_tensor(value) else value
    return state


def scaled_step(value: int, factor: float) -> int:
    return max(1, int(math.floor(value * factor + 0.5)))
