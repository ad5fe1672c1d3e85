"""Training without a GPU: a preview configuration that finishes in minutes, chosen from a measured cost model.

The reference rasteriser (pure PyTorch) costs seconds per step at full size on a 2-core CPU: llff_fern's
20 images at 706x529 ran at 0.05 steps/s, 2.3 hours for the `default` preset. Without a GPU, `run` trains a
preview instead: images downscaled, Gaussians capped, fewer steps, the `fast` preset's coarse-to-fine
schedule (early steps at 1/4 and 1/2 size), SH degree 1 and no opacity reset (which a few hundred steps do
not recover from). `choose_cpu_preview` picks the largest image size whose predicted training time fits the
budget; the explanation says what was chosen and that a GPU gives the real result.

Cost model (CPU seconds per step on ONE core, fitted to `benchmarks/cpu_preview_calibrate.py` runs on llff_fern,
see docs/benchmarks.md): a step costs a + b N + c P + d N P with N Gaussians and P rendered pixels. More cores
are NOT assumed to help (the rasteriser's sorts and scatters barely use a second thread, and the machine may
be shared): the budget is met on one core, so two cores leave headroom.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from splatforge.errors import InputError

# --- measured (see the module docstring; data in docs/benchmarks.md) ------------------------------------
# Fitted to the per-phase mean step cost of three llff_fern runs on one core (the recipe below: 1/4 size with
# 10,000 Gaussians x 800 steps and 6,000 x 1,200 steps, 1/5 size with 8,000 x 800; 3 image sizes each, 9
# points): every point within 11 %.
STEP_BASE_S = 0.0732
STEP_PER_GAUSSIAN_S = 1.519e-5
STEP_PER_PIXEL_S = 1.593e-5
STEP_PER_GAUSSIAN_PIXEL_S = 1.420e-9  # footprints: more Gaussians and more pixels mean more (pixel, Gaussian) pairs
EVAL_STEP_FRACTION = 0.35  # rendering a held-out view without gradients, as a share of a training step
# Outside the loop fern's runs spent 11.2 CPU s, of which ~4.5 s were its first steps and evaluations (counted
# above); the rest is imports, initialisation and decoding. Only that total was measured: decoding is given
# a generous 0.05 s per source megapixel (about 5x a JPEG decode) and the remainder is fixed.
LOAD_PER_MEGAPIXEL_S = 0.05
FIXED_S = 6.3

# --- the recipe -------------------------------------------------------------------------------------------
# The one measured: the `fast` preset of 2026-11-22 (3000 steps, one view per step) stretched to 800 steps,
# spelled out so that later changes to `fast` do not move it: coarse-to-fine one view per step, densifying
# from step 80 to 667 every 27 steps, SH degree 1 raised every 133 steps, no opacity reset.
PRESET = "fast"
SH_DEGREE = 1
STEPS = 800
MAX_GAUSSIANS = 10_000
PHASES = ((0.3, 4), (0.6, 2), (1.0, 1))  # (until fraction of the steps, downscale factor)
RECIPE: dict[str, Any] = {"sh_degree": SH_DEGREE, "sh_interval": 133, "resolution_schedule": PHASES[:2],
                          "strategy.refine_start_iter": 80, "strategy.refine_stop_iter": 667,
                          "strategy.refine_every": 27, "strategy.reset_every": 0}
MIN_STEPS = 300  # below this a preview shows little; spend a smaller image instead
MIN_LONG_SIDE = 96  # px: smaller images are not worth looking at
# 8 minutes of training on one core: with frames, check and poses (~1 min of CPU for 20 photos) and export and
# report (seconds), a whole `run` within 10 minutes. A caller that knows how long the earlier stages took
# should pass what is left of its own budget instead.
DEFAULT_BUDGET_S = 480.0


@dataclass(frozen=True)
class CpuPreview:
    downscale: int
    max_gaussians: int
    steps: int
    width: int  # training image size after downscaling
    height: int
    predicted_s: float  # predicted training stage seconds (one core)
    explanation: str
    preset: str = PRESET

    def train_options(self) -> dict[str, Any]:
        """Keyword arguments for `TrainOptions`: preset, downscale and the recipe's overrides (steps, cap, ...)."""
        return {"preset": self.preset, "downscale": self.downscale,
                "overrides": {**RECIPE, "steps": self.steps, "strategy.cap_max": self.max_gaussians}}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def step_seconds(gaussians: int, pixels: int) -> float:
    """Predicted CPU seconds of one training step on one core."""
    return (STEP_BASE_S + STEP_PER_GAUSSIAN_S * gaussians + STEP_PER_PIXEL_S * pixels
            + STEP_PER_GAUSSIAN_PIXEL_S * gaussians * pixels)


def predict_seconds(n_images: int, width: int, height: int, downscale: int, max_gaussians: int,
                    steps: int, test_every: int = 8) -> float:
    """Predicted training stage seconds on one core: loading, the coarse-to-fine steps, two evaluations."""
    w, h = width // downscale, height // downscale
    loop, start = 0.0, 0.0
    for until, factor in PHASES:
        loop += (until - start) * steps * step_seconds(max_gaussians, (w // factor) * (h // factor))
        start = until
    held_out = math.ceil(n_images / test_every) if test_every else n_images
    evals = 2 * held_out * EVAL_STEP_FRACTION * step_seconds(max_gaussians, w * h)
    load = LOAD_PER_MEGAPIXEL_S * n_images * width * height / 1e6
    return FIXED_S + load + loop + evals


def choose_cpu_preview(n_images: int, width: int, height: int, cores: int | None = None,
                       budget_s: float = DEFAULT_BUDGET_S) -> CpuPreview:
    """The preview for `n_images` photos of `width` x `height` that trains within `budget_s` on `cores` CPUs.

    Largest image first: the smallest integer downscale whose prediction fits with STEPS steps and
    MAX_GAUSSIANS Gaussians; if even MIN_LONG_SIDE pixels do not fit (very many photos), fewer steps.
    """
    if n_images < 1 or width < 1 or height < 1:
        raise InputError(f"a preview needs images; got {n_images} of {width}x{height}",
                         "check that the pose stage registered the photos")
    if budget_s <= 0:
        raise InputError(f"the time budget must be positive, got {budget_s}", "give a budget in seconds")
    cores = max(1, int(cores or 1))
    long_side = max(width, height)
    largest_downscale = max(1, long_side // MIN_LONG_SIDE)
    steps, downscale = STEPS, largest_downscale
    for d in range(1, largest_downscale + 1):
        if predict_seconds(n_images, width, height, d, MAX_GAUSSIANS, STEPS) <= budget_s:
            downscale = d
            break
    else:  # the smallest image is still too slow: fewer steps, down to MIN_STEPS
        fixed = predict_seconds(n_images, width, height, downscale, MAX_GAUSSIANS, 0)
        per_step = (predict_seconds(n_images, width, height, downscale, MAX_GAUSSIANS, STEPS) - fixed) / STEPS
        steps = max(MIN_STEPS, int((budget_s - fixed) / max(per_step, 1e-9)))
    predicted = predict_seconds(n_images, width, height, downscale, MAX_GAUSSIANS, steps)
    w, h = width // downscale, height // downscale
    explanation = (f"no GPU: training a CPU preview at {w}x{h} (1/{downscale} size), at most {MAX_GAUSSIANS:,} "
                   f"Gaussians, {steps} steps, about {_minutes(predicted)} on one core ({cores} here); "
                   f"a GPU gives the real result (full size, the chosen preset)")
    return CpuPreview(downscale=downscale, max_gaussians=MAX_GAUSSIANS, steps=steps, width=w, height=h,
                      predicted_s=round(predicted, 1), explanation=explanation)


def _minutes(seconds: float) -> str:
    return f"{max(1, round(seconds / 60))} min"


def preview_for_scene(transforms_json, cores: int | None = None, budget_s: float = DEFAULT_BUDGET_S) -> CpuPreview:
    """`choose_cpu_preview` for a posed scene (run.transforms_json): its image count and largest image size;
    `cores` defaults to this machine's."""
    import os

    from splatforge.scene import read_scene

    frames = read_scene(transforms_json).frames
    if not frames:
        raise InputError(f"{transforms_json} lists no posed images", "run the pose stage again")
    width = max(f.camera.width for f in frames)
    height = max(f.camera.height for f in frames)
    return choose_cpu_preview(len(frames), width, height, cores=cores or os.cpu_count(), budget_s=budget_s)
