"""Adam for the training loop: torch's fused Adam kernel, driven directly, one parameter per optimizer.

Why by hand (a thin driver, not a new algorithm): creating a torch.optim optimizer imports torch._dynamo,
which cost fox's `fast` train stage 4-6 s on the H100 (docs/benchmarks.md, "Adam without torch.optim"). Its
Python around every `step()` also cost 1.9 ms a step for the six parameters (one optimizer each, as gsplat's
strategies expect) on the 2-core CPU machine, against 0.05 ms for the kernel calls; on the H100 that did not
shorten the loop. The update itself is torch's (`torch._fused_adam_`, the kernel behind
`torch.optim.Adam(fused=True)`, on CUDA and CPU); `param_groups`, `state` and `state_dict()` keep
torch.optim.Adam's layout, so gsplat's densification (which swaps parameters and their state) and checkpoints
written with torch.optim.Adam work unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch

_GROUP_DEFAULTS = {"weight_decay": 0.0, "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                   "differentiable": False, "fused": True, "decoupled_weight_decay": False}


class FusedAdam:
    """Adam over one parameter tensor (torch.optim.Adam's update with `fused=True`).

    param: the tensor to optimise (any shape); lr, betas, eps as torch.optim.Adam; extra keys (e.g. `name`)
    are kept in the parameter group, as torch.optim does.
    """

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, **extra: Any):
        self.param_groups: list[dict[str, Any]] = [
            {"params": [param], "lr": lr, "betas": tuple(betas), "eps": eps, **_GROUP_DEFAULTS, **extra}]
        self.state: defaultdict[torch.Tensor, dict[str, torch.Tensor]] = defaultdict(dict)

    def step(self) -> None:
        step_all([self])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: parameters numbered in group order."""
        state, groups, index = {}, [], 0
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                if self.state.get(p):
                    state[index] = dict(self.state[p])
                ids.append(index)
                index += 1
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """A `state_dict()` of this class or of torch.optim.Adam (same parameter count): hyper-parameters and
        moments, the moments moved to each parameter's device and dtype (the step count as float32 there, as
        the fused kernel reads it)."""
        params = [p for group in self.param_groups for p in group["params"]]
        saved_groups = saved["param_groups"]
        if len(saved_groups) != len(self.param_groups) or \
                sum(len(g["params"]) for g in saved_groups) != len(params):
            raise ValueError("the saved optimizer state has a different number of parameters")
        for group, old in zip(self.param_groups, saved_groups):
            group.update({k: v for k, v in old.items() if k != "params"})
            group["betas"] = tuple(group["betas"])
        self.state = defaultdict(dict)
        ids = [i for g in saved_groups for i in g["params"]]
        for index, p in zip(ids, params):
            old = saved["state"].get(index)
            if not old:
                continue
            self.state[p] = {k: (v.to(p.device, torch.float32).reshape(()) if k == "step"
                                 else v.to(p.device, p.dtype)) for k, v in old.items()}


def step_all(optimizers: Iterable[FusedAdam]) -> None:
    """One Adam step of every parameter that has a gradient: the step counts in one call, then one fused
    kernel per parameter (each has its own learning rate)."""
    work = []
    for opt in optimizers:
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = opt.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                work.append((p, state, group))
    if not work:
        return
    with torch.no_grad():
        torch._foreach_add_([state["step"] for _, state, _ in work], 1.0)
        for p, state, group in work:
            beta1, beta2 = group["betas"]
            torch._fused_adam_([p], [p.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
                               lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                               eps=group["eps"], amsgrad=False, maximize=group["maximize"])
