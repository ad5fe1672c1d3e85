"""One scene on several processes (`--gpus`): the recipe, the view split, the shards, and the whole path
run as two CPU processes (gloo, reference backend); on a host with two GPUs, with gsplat and NCCL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from splatforge.rundir import RunDir
from splatforge.splat.checkpoint import list_checkpoints, load_checkpoint
from splatforge.splat.config import TrainOptions
from splatforge.splat.distributed import (
    World,
    even_shards,
    gather_state,
    parse_gpus,
    shard_bounds,
    shard_optimizer_state,
    take_rows,
)
from splatforge.splat.trainer import (
    BatchSampler,
    TrainingInterrupted,
    make_optimizers,
    recipe_for_world,
    train,
)
from splatforge.stage import Events

SHORT = {"strategy.refine_start_iter": 10, "strategy.refine_stop_iter": 50, "strategy.refine_every": 10,
         "strategy.reset_every": 0, "sh_interval": 20}


def options(steps: int, **kw) -> TrainOptions:
    over = {"steps": steps, **SHORT, **kw.pop("overrides", {})}
    return TrainOptions(preset="default", overrides=over, show_progress=False, log_every_s=1e9,
                        checkpoint_every_s=1e9, save_renders=False, **kw)


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    folder = tmp_path_factory.mktemp("cap")
    make_synthetic_capture(folder, SyntheticOptions(n_views=10, width=32, height=32, seed=1, n_points=300))
    return folder


def test_gpus_are_parsed_and_checked_before_anything_runs():
    assert parse_gpus("") == [] and parse_gpus("0,2") == ["cuda:0", "cuda:2"] and parse_gpus("cpu,cpu") == ["cpu"] * 2
    for bad in ("0,0", "a,b", "cpu,1"):
        with pytest.raises(ValueError):
            parse_gpus(bad)
    with pytest.raises(ValueError, match="GPU indices"):
        TrainOptions(gpus="zero,one").validate()
    TrainOptions(gpus="0, 1").validate()


def test_the_recipe_for_w_processes_sees_the_same_views():
    one = TrainOptions(preset="fast", overrides={"strategy.cap_max": 100_000}).config()
    four = recipe_for_world(one, 4)
    assert four.steps == one.steps // 4 and four.strategy.refine_stop_iter == round(one.strategy.refine_stop_iter / 4)
    assert four.strategy.cap_max == 25_000  # shared among the shards
    assert recipe_for_world(one, 1) is one


def test_each_rank_takes_its_share_of_every_steps_views():
    counts = [4] * 5 + [1] * 20
    whole = BatchSampler(9, [c * 2 for c in counts], seed=5, device=torch.device("cpu"))
    ranks = [BatchSampler(9, counts, seed=5, device=torch.device("cpu"), world=World(rank=r, size=2))
             for r in range(2)]
    for step in range(len(counts)):
        parts = [r.at(step) for r in ranks]
        assert len(parts[0]) == len(parts[1]) == counts[step]  # every rank renders as many cameras
        assert torch.equal(torch.cat(parts), whole.at(step))  # together: the one stream's views


def test_shards_and_their_optimizer_state_split_and_join():
    params = torch.nn.ParameterDict({"means": torch.nn.Parameter(torch.randn(10, 3)),
                                     "opacities": torch.nn.Parameter(torch.randn(10))})
    from splatforge.splat.config import TrainConfig

    optimizers = make_optimizers(params, TrainConfig(), 1.0)
    (params["means"].sum() + params["opacities"].sum()).backward()
    for opt in optimizers.values():
        opt.step()
    whole = gather_state(params, optimizers, {"grad2d": torch.arange(10.0), "scene_scale": 1.0}, World())
    assert whole["shards"] == [10] and torch.equal(whole["params"]["means"], params["means"].detach())
    sizes = even_shards(10, 3)
    assert sizes == [4, 3, 3]
    start, end = shard_bounds(sizes, 1)
    part = shard_optimizer_state(whole["optimizers"]["means"], start, end)
    assert part["state"][0]["exp_avg"].shape == (3, 3) and part["state"][0]["step"] == whole["optimizers"]["means"]["state"][0]["step"]
    assert torch.equal(part["state"][0]["exp_avg_sq"], whole["optimizers"]["means"]["state"][0]["exp_avg_sq"][4:7])
    strategy = take_rows(whole["strategy"], start, end, ("grad2d",))
    assert strategy["grad2d"].tolist() == [4.0, 5.0, 6.0] and strategy["scene_scale"] == 1.0


def test_two_processes_train_one_scene_stop_together_and_resume(capture, tmp_path):
    """The multi-process path on the CPU: two ranks (gloo, reference backend), a cancel that both obey with
    one checkpoint of the whole model, a resume that takes each shard back, and a run folder that export
    reads as if one process had trained it."""
    from splatforge.splat.export import export_ply, read_ply

    run = RunDir(tmp_path / "run")
    shutil.copytree(capture, run.root)
    opts = options(120, gpus="cpu,cpu", log_every=20)
    seen = []

    def cancel_after_first(progress):
        seen.append(progress.train.step)
        events.cancel.set()

    events = Events(on_progress=cancel_after_first)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(run, opts, events)
    # 60 steps for 2 ranks; both stop at one of the next points where they agree (every 20 steps, and the end)
    assert seen[0] == 20 and stopped.value.step in (40, 60)
    saved = load_checkpoint(list_checkpoints(run.checkpoints)[-1][1])
    assert saved["world_size"] == 2 and len(saved["shards"]) == 2
    assert sum(saved["shards"]) == len(saved["params"]["means"]) == len(saved["optimizers"]["means"]["state"][0]["exp_avg"])

    result = train(run, opts)
    info = json.loads(run.train_json.read_text())
    assert result.steps == 60 and info["processes"] == 2 and result.device == "2 x cpu"
    assert result.eval["psnr"] > result.initial_eval["psnr"] + 1.0, (result.initial_eval, result.eval)
    final = load_checkpoint(result.checkpoint)
    assert sum(final["shards"]) == result.num_gaussians == len(final["params"]["means"])
    assert len(read_ply(export_ply(run))["means"]) == result.num_gaussians
    steps = [json.loads(x)["step"] for x in run.metrics_jsonl.read_text().splitlines() if "loss" in x]
    assert steps == [20, 40, 60]  # rank 0 alone writes, no line twice across the stop

    # another number of processes cannot take these shards back: it starts over, and says so
    single = train(run, options(40, log_every=40))
    assert single.steps == 40 and json.loads(run.train_json.read_text())["processes"] == 1


def test_a_gpu_that_is_not_there_is_refused_before_training(capture, tmp_path):
    from splatforge.errors import InputError

    run = RunDir(tmp_path / "run")
    shutil.copytree(capture, run.root)
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(InputError, match="GPU"):
        train(run, options(10, gpus=f"{visible},{visible + 1}"))
    assert not run.checkpoints.exists() or not list_checkpoints(run.checkpoints)


@pytest.mark.gpu
def test_gpu_two_gpus_train_a_scene_as_well_as_one(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    capture = tmp_path / "cap"
    make_synthetic_capture(capture, SyntheticOptions(n_views=24, width=128, height=128, n_points=3000))
    results = {}
    for gpus in ("0", "0,1"):
        run = RunDir(tmp_path / f"run{gpus}")
        shutil.copytree(capture, run.root)
        results[gpus] = train(run, TrainOptions(preset="fast", overrides={"steps": 600}, gpus=gpus,
                                                show_progress=False))
    one, two = results["0"], results["0,1"]
    assert two.steps == 300 and two.backend == "gsplat"
    assert two.eval["psnr"] > two.initial_eval["psnr"] + 3.0
    assert two.eval["psnr"] > one.eval["psnr"] - 1.5, (one.eval, two.eval)
