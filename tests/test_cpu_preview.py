"""The CPU preview configuration: what `run` trains without a GPU so that it finishes in minutes."""

from __future__ import annotations

import os

import pytest

from splatforge.errors import InputError
from splatforge.splat import cpu_preview as cp
from splatforge.splat.cpu_preview import choose_cpu_preview, predict_seconds

CAPTURES = {  # name: (images, width, height)
    "synthetic demo": (24, 320, 240),
    "llff_fern": (20, 706, 529),
    "colosseum frames": (67, 640, 360),
    "dtu_scan24": (49, 1554, 1162),
    "fox": (50, 1080, 1920),
    "phone photos": (150, 4032, 3024),
}


def test_fern_gets_the_measured_preview():
    """llff_fern (the issue's case: 2.3 h at full size on 2 cores) -> the configuration verified end to end."""
    p = choose_cpu_preview(20, 706, 529, cores=2)
    assert (p.downscale, p.max_gaussians, p.steps) == (4, 10_000, 800)
    assert (p.width, p.height) == (176, 132)
    assert p.predicted_s <= cp.DEFAULT_BUDGET_S
    assert "176x132" in p.explanation and "GPU gives the real result" in p.explanation
    assert "800 steps" in p.explanation and "10,000 Gaussians" in p.explanation and "(2 here)" in p.explanation


@pytest.mark.parametrize("name", list(CAPTURES))
def test_every_capture_fits_the_budget_at_the_largest_size_that_does(name):
    n, w, h = CAPTURES[name]
    p = choose_cpu_preview(n, w, h, cores=2)
    assert p.predicted_s <= cp.DEFAULT_BUDGET_S, (name, p)
    assert max(p.width, p.height) >= cp.MIN_LONG_SIDE
    if p.downscale > 1:  # one step larger would not fit
        assert predict_seconds(n, w, h, p.downscale - 1, p.max_gaussians, p.steps) > cp.DEFAULT_BUDGET_S
    assert p.steps == cp.STEPS


def test_a_huge_capture_trains_fewer_steps_but_still_a_preview():
    p = choose_cpu_preview(3000, 4032, 3024, cores=2)
    assert max(p.width, p.height) < 2 * cp.MIN_LONG_SIDE
    assert cp.MIN_STEPS <= p.steps < cp.STEPS and f"{p.steps} steps" in p.explanation
    assert f"{round(p.predicted_s / 60)} min" in p.explanation  # over budget: it says so, it does not pretend


def test_a_tighter_budget_gives_a_smaller_image():
    roomy = choose_cpu_preview(20, 706, 529, budget_s=1200)
    tight = choose_cpu_preview(20, 706, 529, budget_s=150)
    assert roomy.downscale < 4 < tight.downscale
    assert roomy.predicted_s <= 1200 and tight.predicted_s <= 150


# Measured on llff_fern posed at 696x521 (docs/benchmarks.md, "CPU preview"): whole `train` call, CPU seconds
# on one core: (downscale, max Gaussians, steps) -> seconds.
FERN_RUNS = {(4, 10_000, 800): 431.0, (4, 6_000, 1_200): 508.2, (5, 8_000, 800): 340.4}


@pytest.mark.parametrize("config", list(FERN_RUNS))
def test_cost_model_matches_the_fern_measurements(config):
    assert predict_seconds(20, 696, 521, *config) == pytest.approx(FERN_RUNS[config], rel=0.12)


def test_options_are_valid_training_options():
    from splatforge.splat.trainer import TrainOptions

    p = choose_cpu_preview(20, 706, 529)
    options = TrainOptions(**p.train_options())
    options.validate()
    config = options.config()
    assert options.downscale == 4 and config.steps == 800 and config.strategy.cap_max == 10_000
    assert config.sh_degree == 1 and config.strategy.reset_every == 0  # no opacity reset in a short run
    assert [phase[:2] for phase in config.resolution_schedule] == [(0.3, 4), (0.6, 2)]  # one view per step
    assert config.strategy.refine_start_iter == 80 and config.strategy.refine_stop_iter == 667
    assert p.to_dict()["explanation"] == p.explanation


@pytest.mark.parametrize("args", [(0, 706, 529), (20, 0, 529), (20, 706, -1)])
def test_bad_inputs_are_clear_errors(args):
    with pytest.raises(InputError):
        choose_cpu_preview(*args)
    with pytest.raises(InputError):
        choose_cpu_preview(20, 706, 529, budget_s=0)


def test_preview_for_a_posed_scene_reads_its_images(tmp_path):
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    make_synthetic_capture(tmp_path, SyntheticOptions(n_views=6, width=320, height=240, seed=0, n_points=50))
    p = cp.preview_for_scene(tmp_path / "transforms.json", cores=2)
    assert p == choose_cpu_preview(6, 320, 240, cores=2)


def test_the_train_stage_trains_the_preview_without_a_gpu_unless_the_user_sized_the_run(tmp_path, monkeypatch):
    import torch

    from splatforge.rundir import RunDir
    from splatforge.splat import stages
    from splatforge.splat.config import TrainOptions
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    make_synthetic_capture(tmp_path, SyntheticOptions(n_views=6, width=320, height=240, seed=0, n_points=50))
    run = RunDir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    chosen = stages.cpu_preview_for(run, TrainOptions(preset="quality"))
    assert chosen == choose_cpu_preview(6, 320, 240, cores=os.cpu_count())
    for sized in (TrainOptions(downscale=2), TrainOptions(overrides={"steps": 10}),
                  TrainOptions(overrides={"strategy.cap_max": 500}), TrainOptions(cpu_preview=False)):
        assert stages.cpu_preview_for(run, sized) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert stages.cpu_preview_for(run, TrainOptions()) is None  # a GPU trains the real thing

    # what the stage then trains: the preview's size and recipe, the user's other changes kept
    seen = {}

    def fake_train(run, options, events):
        seen["o"] = options
        raise RuntimeError("stop here")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("splatforge.splat.trainer.train", fake_train)
    with pytest.raises(RuntimeError, match="stop here"):
        stages._run_train(run, TrainOptions(preset="quality", overrides={"l1_weight": 0.8}), None)
    trained = seen["o"]
    assert trained.downscale == chosen.downscale and trained.overrides["l1_weight"] == 0.8
    assert trained.config().steps == chosen.steps and trained.config().strategy.cap_max == chosen.max_gaussians
