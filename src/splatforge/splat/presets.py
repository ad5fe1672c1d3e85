"""Named training recipes. A preset fills every knob; `TrainOptions` overrides single ones.

When `--steps` differs from a preset's `steps`, the schedule (densification window, opacity resets,
SH degree interval) is stretched by the same factor, so a shorter run still densifies, resets and
raises the SH degree at the same fractions of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from splatforge.errors import InputError


@dataclass(frozen=True)
class Preset:
    name: str
    steps: int
    strategy: str = "default"  # "default" (3DGS densification) or "mcmc"
    batch_size: int = 1  # cameras per step
    sh_degree: int = 3
    sh_interval: int = 1000  # one more SH degree every this many steps
    # densification (see gsplat.strategy.DefaultStrategy / MCMCStrategy)
    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000  # opacity reset (default strategy); 0 = never
    grow_grad2d: float = 0.0002
    absgrad: bool = False  # AbsGS gradients (gsplat backend only; the reference falls back to plain ones)
    grow_grad2d_absgrad: float = 0.0008
    prune_opa: float = 0.005
    cap_max: int = 1_000_000
    noise_lr: float = 5e5
    opacity_reg: float = 0.0
    scale_reg: float = 0.0
    # initialisation
    init_opacity: float = 0.1
    init_scale: float = 1.0
    random_points: int = 100_000
    # optimisation (learning rates as gsplat's simple_trainer; means scaled by the scene size)
    lr_means: float = 1.6e-4
    lr_means_final_factor: float = 0.01
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20  # noqa: N815
    ssim_weight: float = 0.2
    rasterize_mode: str = "classic"
    random_background: bool = False
    # Coarse-to-fine: ((fraction_of_run, factor), ...) renders and compares at 1/factor resolution until
    # that fraction of the steps, e.g. ((0.3, 4), (0.6, 2)): 1/4 size for the first 30 %, then 1/2 until
    # 60 %, then full size. Early steps fix colours and coarse geometry, which low resolution does as
    # well at a fraction of the cost; fine detail is learnt at full size at the end.
    resolution_schedule: tuple[tuple[float, int], ...] = ()

    def scaled_to(self, steps: int) -> Preset:
        """The same recipe stretched to `steps`."""
        if steps == self.steps:
            return self
        f = steps / self.steps
        s = lambda v: max(1, round(v * f))  # noqa: E731
        return replace(self, steps=steps, sh_interval=s(self.sh_interval), refine_start=s(self.refine_start),
                       refine_stop=s(self.refine_stop), reset_every=s(self.reset_every) if self.reset_every else 0,
                       # at least 10 steps of gradient statistics between refinements, however short the run
                       refine_every=max(min(10, self.refine_every), min(self.refine_every, s(self.refine_every))))

    def with_overrides(self, overrides: dict[str, Any]) -> Preset:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InputError(f"unknown training setting(s): {', '.join(unknown)}",
                             f"known settings: {', '.join(sorted(known))}")
        if "resolution_schedule" in overrides:  # JSON gives lists; keep the preset hashable
            overrides = {**overrides, "resolution_schedule": tuple(
                (float(f), int(k)) for f, k in overrides["resolution_schedule"])}
        return replace(self, **overrides)

    def resolution_factor(self, step: int) -> int:
        """Downscale factor of the rendered and target images at `step` (1 = full size)."""
        for fraction, factor in self.resolution_schedule:
            if step < fraction * self.steps:
                return max(1, int(factor))
        return 1


PRESETS: dict[str, Preset] = {
    # Short run for a quick look (and the ~30 s GPU target): AbsGS densification, compressed schedule.
    # Measured on fox (H100): coarse-to-fine 3000 steps 31.05 dB in 33 s vs 30.66 dB in 51 s without.
    "fast": Preset(name="fast", steps=3000, sh_interval=500, refine_start=300, refine_stop=2500,
                   refine_every=100, reset_every=1500, absgrad=True, rasterize_mode="classic",
                   resolution_schedule=((0.3, 4), (0.6, 2))),
    # gsplat simple_trainer's 7k-step setting, with the opacity reset actually applied (see trainer.py).
    "default": Preset(name="default", steps=7000, resolution_schedule=((0.3, 4), (0.6, 2))),
    # 3DGS's full 30k schedule.
    "quality": Preset(name="quality", steps=30_000),
    # A CPU-sized run for `splatforge demo` and tests: small images (the pipeline downscales), degree-1 SH,
    # a short densification window. Pair it with a Gaussian cap (--max-gaussians) on the reference backend.
    "demo": Preset(name="demo", steps=400, sh_degree=1, sh_interval=150, refine_start=100, refine_stop=300,
                   refine_every=50, reset_every=0, random_points=5000),
    # 3DGS as MCMC (gsplat's mcmc config): no clone/split heuristics, a hard cap on the count.
    "mcmc": Preset(name="mcmc", steps=30_000, strategy="mcmc", refine_start=500, refine_stop=25_000,
                   refine_every=100, reset_every=0, init_opacity=0.5, init_scale=0.1, opacity_reg=0.01,
                   scale_reg=0.01, cap_max=1_000_000),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}", f"use one of: {', '.join(PRESETS)}") from None
