"""What a training run does: the recipe (`TrainConfig`, with its densification strategy), the named
recipes (`PRESETS`), and the train stage's options (`TrainOptions`: a preset, changes to it, and how to run).

Every default is written once, here. A preset is a `TrainConfig`; a run's recipe is its preset with the
user's changes applied (`TrainOptions.config()`), so nothing the user did not ask for is replaced. The
recipe holds its strategy the way gsplat's `simple_trainer.Config` holds `DefaultStrategy | MCMCStrategy`.
Light on purpose (no torch): options are validated when a command is parsed, before anything runs; the
gsplat strategy objects are built from these configs by `splat.strategy.build_strategy`.

When `steps` differs from a preset's, the schedule (densification window, opacity resets, SH degree
interval) is stretched by the same factor, so a shorter run still densifies, resets and raises the SH
degree at the same fractions of the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal

from splatforge.options import apply_overrides, runtime


def _scaled(value: int, factor: float) -> int:
    return max(1, round(value * factor))


@dataclass(frozen=True)
class DefaultStrategyConfig:
    """3DGS densification (clone, split, prune, opacity reset): gsplat `DefaultStrategy`'s arguments under
    their gsplat names, plus `grow_grad2d_absgrad` and `cap_max`, which are ours."""

    kind: ClassVar[str] = "default"
    prune_opa: float = 0.005
    grow_grad2d: float = 0.0002
    grow_grad2d_absgrad: float = 0.0008  # threshold used instead when absgrad (AbsGS gradients are larger)
    grow_scale3d: float = 0.01
    prune_scale3d: float = 0.1
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000  # opacity reset; 0 = never
    absgrad: bool = False  # AbsGS (gsplat backend only; the reference backend densifies on plain gradients)
    cap_max: int | None = None  # keep at most this many Gaussians (the faintest go first); None = no cap

    def scaled(self, factor: float) -> DefaultStrategyConfig:
        return replace(self, refine_start_iter=_scaled(self.refine_start_iter, factor),
                       refine_stop_iter=_scaled(self.refine_stop_iter, factor),
                       reset_every=_scaled(self.reset_every, factor) if self.reset_every else 0,
                       # at least 10 steps of gradient statistics between refinements, however short the run
                       refine_every=max(min(10, self.refine_every), min(self.refine_every,
                                                                        _scaled(self.refine_every, factor))))


@dataclass(frozen=True)
class MCMCStrategyConfig:
    """3DGS as Markov chain Monte Carlo: gsplat `MCMCStrategy`'s arguments under their gsplat names, plus
    the paper's two regularisers (gsplat's trainer keeps those in its own Config)."""

    kind: ClassVar[str] = "mcmc"
    cap_max: int = 1_000_000
    noise_lr: float = 5e5
    refine_start_iter: int = 500
    refine_stop_iter: int = 25_000
    refine_every: int = 100
    min_opacity: float = 0.005
    opacity_reg: float = 0.01
    scale_reg: float = 0.01

    def scaled(self, factor: float) -> MCMCStrategyConfig:
        return replace(self, refine_start_iter=_scaled(self.refine_start_iter, factor),
                       refine_stop_iter=_scaled(self.refine_stop_iter, factor),
                       refine_every=max(min(10, self.refine_every), min(self.refine_every,
                                                                        _scaled(self.refine_every, factor))))


StrategyConfig = DefaultStrategyConfig | MCMCStrategyConfig


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe. Learning rates as gsplat's simple_trainer (means scaled by the scene size)."""

    steps: int = 7000
    batch_size: int = 1  # cameras per step
    sh_degree: int = 3
    sh_interval: int = 1000  # one more SH degree every this many steps
    strategy: StrategyConfig = DefaultStrategyConfig()
    # initialisation
    init_opacity: float = 0.1
    init_scale: float = 1.0
    random_points: int = 100_000  # when the scene has no sparse points
    # optimisation
    lr_means: float = 1.6e-4
    lr_means_final_factor: float = 0.01
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20  # noqa: N815
    l1_weight: float = 1.0
    ssim_weight: float = 0.2
    rasterize_mode: Literal["classic", "antialiased"] = "classic"
    random_background: bool = False
    # Coarse-to-fine: ((fraction_of_run, factor[, views]), ...) renders and compares at 1/factor resolution
    # until that fraction of the steps, e.g. ((0.3, 4), (0.6, 2)): 1/4 size for the first 30 %, then 1/2
    # until 60 %, then full size. Early steps fix colours and coarse geometry, which low resolution does as
    # well at a fraction of the cost; fine detail is learnt at full size at the end. `views` (default 1)
    # cameras per step in that phase, times batch_size: small images leave the GPU idle, and a step's
    # fixed cost (kernel launches, Python) is then shared by several views.
    resolution_schedule: tuple[tuple[float, ...], ...] = ()

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        if not 0 <= self.sh_degree <= 3:
            raise ValueError(f"sh_degree must be 0..3, not {self.sh_degree}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.strategy.cap_max is not None and self.strategy.cap_max < 1:
            raise ValueError("the Gaussian cap must be at least 1")
        for phase in self.resolution_schedule:
            if not 2 <= len(phase) <= 3 or not 0 < phase[0] <= 1 or phase[1] < 1 or (len(phase) == 3 and phase[2] < 1):
                raise ValueError(f"resolution_schedule entries are (fraction 0..1, factor >= 1[, views >= 1]), not {phase}")

    def scaled_to(self, steps: int) -> TrainConfig:
        """The same recipe stretched to `steps`."""
        if steps == self.steps or steps < 1:
            return replace(self, steps=steps)
        f = steps / self.steps
        return replace(self, steps=steps, sh_interval=_scaled(self.sh_interval, f), strategy=self.strategy.scaled(f))

    def phase_at(self, step: int) -> tuple[int, int]:
        """(downscale factor, cameras per step) at `step`: (1, batch_size) after the coarse phases."""
        for fraction, factor, *views in self.resolution_schedule:
            if step < fraction * self.steps:
                return max(1, int(factor)), self.batch_size * max(1, int(views[0]) if views else 1)
        return 1, self.batch_size

    def resolution_factor(self, step: int) -> int:
        return self.phase_at(step)[0]


_COARSE_TO_FINE = ((0.3, 4), (0.6, 2))

PRESETS: dict[str, TrainConfig] = {
    # Short run for a quick look: AbsGS densification, compressed schedule, coarse-to-fine with several
    # small views per step. fox on the H200 (docs/benchmarks.md): 30.86 dB in an 11.3 s loop, where the
    # 3000-step one-view recipe took 17.2 s for 30.84 dB.
    "fast": TrainConfig(steps=2000, sh_interval=333, resolution_schedule=((0.3, 4, 4), (0.6, 2, 2)),
                        strategy=DefaultStrategyConfig(refine_start_iter=200, refine_stop_iter=1667,
                                                       reset_every=1000, refine_every=67, absgrad=True)),
    # gsplat simple_trainer's 7k-step setting, with the opacity reset actually applied (see strategy.py).
    "default": TrainConfig(resolution_schedule=_COARSE_TO_FINE),
    # The long schedule, at half 3DGS's 30k steps with fast's coarse-to-fine views. On fox (H100, GPU round 12,
    # docs/benchmarks.md) 15k steps so gave 31.15 dB in a 94 s loop, where 30k steps at full size gave 30.60 dB
    # in 183 s (and gsplat's own trainer 30.93 dB in 613 s): the longer run only fitted the training views
    # closer. `--steps 30000` stretches this schedule to 3DGS's length.
    "quality": TrainConfig(steps=15_000, resolution_schedule=((0.3, 4, 4), (0.6, 2, 2))),
    # 3DGS as MCMC (gsplat's mcmc config: no clone/split heuristics, a hard cap on the count), at 7k steps with
    # the coarse-to-fine views: 31.22 dB on fox in a 90 s loop, where gsplat's 30k-step mcmc schedule gave
    # 30.47 dB in 362 s (GPU round 12).
    "mcmc": TrainConfig(steps=7_000, init_opacity=0.5, init_scale=0.1,
                        resolution_schedule=((0.3, 4, 4), (0.6, 2, 2)), strategy=MCMCStrategyConfig()),
    # CPU-sized, for `splatforge demo` and tests: degree-1 SH, a short densification window; pair it with
    # small images (downscale) and a Gaussian cap.
    "demo": TrainConfig(steps=400, sh_degree=1, sh_interval=150, random_points=5000,
                        strategy=DefaultStrategyConfig(refine_start_iter=100, refine_stop_iter=300,
                                                       refine_every=50, reset_every=0)),
}


@dataclass
class TrainOptions:
    """The train stage's options: which recipe, the changes to it, and how to run it."""

    preset: str = "default"
    # Changes to the preset's TrainConfig, e.g. {"steps": 3000, "strategy.cap_max": 200000}: set with
    # `--set train.steps=3000` (the keys of TrainConfig are accepted directly under `train.`).
    overrides: dict[str, Any] = field(default_factory=dict, metadata={"overrides": TrainConfig})
    downscale: float = 1.0  # divide image sizes by this
    test_every: int = 8  # every n-th image is held out for evaluation; 0 = none
    seed: int = 0
    backend: Literal["auto", "gsplat", "reference"] = "auto"  # auto: gsplat on CUDA, reference elsewhere
    # Several GPUs for one scene, e.g. "0,1,2,3" or "all": the Gaussians are sharded over one process per
    # GPU and each step renders one view per GPU, so the schedule is shortened by the GPU count
    # (splat/distributed.py). "" trains on `device`.
    gpus: str = ""
    device: str = runtime("auto")  # auto (the GPU with the most free memory, else cpu) | cpu | cuda | cuda:N
    resume: bool = runtime(True)  # continue from the newest checkpoint when there is one
    checkpoint_every: int = runtime(1000)  # a checkpoint every this many steps ...
    checkpoint_every_s: float = runtime(60.0)  # ... or this many seconds, whichever comes first
    keep_checkpoints: int = runtime(3)
    log_every: int = runtime(100)  # a metrics line every this many steps ...
    log_every_s: float = runtime(5.0)  # ... or this many seconds, whichever comes first
    eval_every: int = 0  # also evaluate the held-out views every n steps (0: only before and after)
    # Without a GPU, and when neither downscale, steps nor a Gaussian cap was given: train a preview that
    # finishes in minutes (`splat.cpu_preview`) instead of the preset's hours, and say so.
    cpu_preview: bool = True
    save_renders: bool = runtime(True)
    show_progress: bool = runtime(True)

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}: use one of {', '.join(PRESETS)}")
        if self.downscale <= 0:
            raise ValueError(f"downscale must be positive, not {self.downscale}")
        if not re.fullmatch(r"(all|cpu(,cpu)*|\d+(,\d+)*)?", self.gpus.replace(" ", "")):
            raise ValueError(f"gpus takes GPU indices like 0,1,2 or 'all', not {self.gpus!r}")
        if self.checkpoint_every < 1 or self.checkpoint_every_s <= 0:
            raise ValueError("checkpoint intervals must be positive")
        self.config()

    def config(self) -> TrainConfig:
        """The recipe this run trains with: the preset, stretched to `steps` if given, with the changes."""
        changes = dict(self.overrides)
        steps = changes.pop("steps", None)
        recipe = apply_overrides(PRESETS[self.preset], changes, "train")
        if steps is None:
            return recipe
        # Stretch the schedule of the changed recipe, then apply the changes again: what the user set
        # explicitly is kept as given, everything else follows the new length.
        stretched = recipe.scaled_to(apply_overrides(recipe, {"steps": steps}, "train").steps)
        return apply_overrides(stretched, changes, "train")


def preset_names() -> list[str]:
    return list(PRESETS)


def config_keys() -> list[str]:
    return [f.name for f in fields(TrainConfig)]
