"""Densification: gsplat's `DefaultStrategy` (3DGS clone/split/prune + opacity reset) or `MCMCStrategy`,
each behind the same three calls, so the training loop never asks which one it has:

    strategy.step_pre_backward(params, optimizers, state, step, info)
    loss = loss + strategy.regularization(params)          # MCMC's opacity/scale terms, else 0
    strategy.step_post_backward(params, optimizers, state, step, info, lr=means_lr)

`Densify3DGS` mends gsplat 1.5.3's `DefaultStrategy`, which never resets opacities
(`step % n == 0 & step > 0` parses as a chained comparison that is always False), and adds a cap;
`MCMC` takes the regularisers that gsplat's trainer keeps outside the strategy.

gsplat's strategies are plain PyTorch with their state passed explicitly, so they run unchanged on
both backends (the reference backend returns the same `info`). Two pieces of MCMC need CUDA:
`compute_relocation` (new opacities and scales when a Gaussian is cloned n times, eq. 9 of the
MCMC paper) and `quat_scale_to_covar_preci` (the covariance that shapes the position noise).
`relocation_torch` ports the first, gsplat's own `_torch_impl` provides the second, and
`install_cpu_fallbacks()` routes both names in `gsplat.strategy.ops` to them for non-CUDA tensors
(CUDA tensors still go to gsplat's kernels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from gsplat.strategy import DefaultStrategy, MCMCStrategy
from gsplat.strategy.ops import remove, reset_opa

from splatforge.splat.config import DefaultStrategyConfig, MCMCStrategyConfig, StrategyConfig


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
class Densify3DGS(DefaultStrategy):
    """gsplat's DefaultStrategy with the 3DGS opacity reset applied and an optional cap on the count."""

    cap_max: int | None = None  # keep at most this many Gaussians (the faintest are removed)
    reset_opacities: bool = True  # False: never reset (gsplat needs a positive `reset_every` regardless)

    def step_post_backward(self, params, optimizers, state, step, info, packed: bool = False,
                           lr: float | None = None) -> None:
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        if self.reset_opacities and 0 < step < self.refine_stop_iter and step % self.reset_every == 0:
            reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)
        if self.cap_max is not None and step % self.refine_every == 0:
            enforce_cap(params, optimizers, state, self.cap_max)

    def regularization(self, params) -> torch.Tensor | float:
        return 0.0

    @torch.no_grad()
    def _update_state(self, params, state, info, packed: bool = False) -> None:
        """gsplat's statistics for densification (the visible Gaussians' summed screen-space gradient norms,
        visit counts, largest screen radius), summed over the cameras with dense masks instead of gsplat's
        `torch.where(visible)` and boolean indexing (same sums, tests/test_splat_strategy.py): those ask the GPU
        how many Gaussians are visible, which stops the host until the step's backward pass has finished,
        every step of the densification window, where it could be queueing the next step's work."""
        if packed:
            return super()._update_state(params, state, info, packed=packed)
        grad_of = info[self.key_for_gradient]
        grads = (grad_of.absgrad if self.absgrad else grad_of.grad).clone()  # [C, N, 2]
        grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        n = len(next(iter(params.values())))
        for key in ("grad2d", "count") + (("radii",) if self.refine_scale2d_stop_iter > 0 else ()):
            if state[key] is None:
                state[key] = torch.zeros(n, device=grads.device)
        visible = (info["radii"] > 0.0).all(dim=-1)  # [C, N]
        state["grad2d"] += (grads.norm(dim=-1) * visible).sum(dim=0)
        state["count"] += visible.sum(dim=0, dtype=state["count"].dtype)
        if self.refine_scale2d_stop_iter > 0:
            radii = info["radii"].max(dim=-1).values * visible / float(max(info["width"], info["height"]))
            state["radii"] = torch.maximum(state["radii"], radii.max(dim=0).values.to(state["radii"].dtype))


@dataclass
class MCMC(MCMCStrategy):
    """gsplat's MCMCStrategy with the MCMC paper's opacity and scale regularisers."""

    opacity_reg: float = 0.01
    scale_reg: float = 0.01

    def step_pre_backward(self, params, optimizers, state, step, info) -> None:
        pass  # MCMC needs no gradient of the 2D means

    def step_post_backward(self, params, optimizers, state, step, info, packed: bool = False,
                           lr: float | None = None) -> None:
        super().step_post_backward(params, optimizers, state, step, info, lr=lr)

    def regularization(self, params) -> torch.Tensor | float:
        term = 0.0
        if self.opacity_reg > 0:
            term = term + self.opacity_reg * torch.sigmoid(params["opacities"]).mean()
        if self.scale_reg > 0:
            term = term + self.scale_reg * torch.exp(params["scales"]).mean()
        return term


def build_strategy(config: StrategyConfig, steps: int, absgrad_available: bool) -> tuple[Any, bool]:
    """The gsplat strategy object for `config` and whether it densifies on absolute gradients (AbsGS,
    only where the backend provides them)."""
    if isinstance(config, MCMCStrategyConfig):
        install_cpu_fallbacks()
        return MCMC(cap_max=config.cap_max, noise_lr=config.noise_lr, refine_start_iter=config.refine_start_iter,
                    refine_stop_iter=config.refine_stop_iter, refine_every=config.refine_every,
                    min_opacity=config.min_opacity, opacity_reg=config.opacity_reg, scale_reg=config.scale_reg,
                    verbose=False), False
    assert isinstance(config, DefaultStrategyConfig)
    absgrad = config.absgrad and absgrad_available
    return Densify3DGS(prune_opa=config.prune_opa,
                       grow_grad2d=config.grow_grad2d_absgrad if absgrad else config.grow_grad2d,
                       grow_scale3d=config.grow_scale3d, prune_scale3d=config.prune_scale3d,
                       refine_start_iter=config.refine_start_iter, refine_stop_iter=config.refine_stop_iter,
                       reset_every=config.reset_every or steps + 1, reset_opacities=config.reset_every > 0,
                       refine_every=config.refine_every, absgrad=absgrad, cap_max=config.cap_max,
                       verbose=False), absgrad


def initial_state(strategy: Any, scene_scale: float) -> dict:
    if isinstance(strategy, MCMC):
        return strategy.initialize_state()
    return strategy.initialize_state(scene_scale=scene_scale)


def enforce_cap(params, optimizers, state, cap: int) -> None:
    """Drop the faintest Gaussians above `cap` (gsplat's own `remove` keeps optimizer and strategy state
    consistent)."""
    n = len(params["means"])
    if n <= cap:
        return
    order = torch.argsort(params["opacities"].detach())
    mask = torch.zeros(n, dtype=torch.bool, device=params["means"].device)
    mask[order[: n - cap]] = True
    remove(params=params, optimizers=optimizers, state=state, mask=mask)


def load_strategy_state(state: dict, saved: dict, device: torch.device) -> dict:
    for key, value in saved.items():
        state[key] = value.to(device) if torch.is_tensor(value) else value
    return state
