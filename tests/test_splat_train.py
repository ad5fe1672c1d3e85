"""Training, resume, interruption, out-of-memory handling, export and the CLI on tiny synthetic captures (CPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from splatforge.rundir import RunDir
from splatforge.splat.checkpoint import list_checkpoints, load_checkpoint
from splatforge.splat.trainer import TrainingInterrupted, TrainOptions, train
from splatforge.stage import Events, cancel_on_signals

# A short schedule: densify at steps 100 and 150, SH degree +1 every 60 steps, no opacity reset.
SHORT = {"strategy.refine_start_iter": 50, "strategy.refine_stop_iter": 200, "strategy.refine_every": 50,
         "strategy.reset_every": 0, "sh_interval": 60}
NO_REFINE = {"strategy.refine_start_iter": 1000}
# Deterministic logging and checkpoints: by step count only (time-based ones depend on the machine).
BY_STEPS = {"log_every_s": 1e9, "checkpoint_every_s": 1e9}


def options(steps: int | None = None, preset: str = "default", overrides: dict | None = None, **kw) -> TrainOptions:
    over = dict(overrides or {})
    if steps is not None:
        over["steps"] = steps
    return TrainOptions(preset=preset, overrides=over, show_progress=False, **{**BY_STEPS, **kw})


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and much faster on a shared, loaded machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_capture(folder: Path, n_views: int, size: int, n_points: int, seed: int = 0) -> Path:
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    make_synthetic_capture(folder, SyntheticOptions(n_views=n_views, width=size, height=size, seed=seed,
                                                    n_points=n_points))
    return folder


@pytest.fixture(scope="module")
def capture64(tmp_path_factory) -> Path:
    return make_capture(tmp_path_factory.mktemp("cap64"), n_views=16, size=64, n_points=800)


@pytest.fixture(scope="module")
def capture32(tmp_path_factory) -> Path:
    return make_capture(tmp_path_factory.mktemp("cap32"), n_views=8, size=32, n_points=300, seed=1)


def fresh_run(capture: Path, tmp_path: Path, name: str = "run") -> RunDir:
    dst = tmp_path / name
    shutil.copytree(capture, dst)
    return RunDir(dst)


def test_training_raises_held_out_psnr(capture64, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no LPIPS weights, whatever this machine has
    run = fresh_run(capture64, tmp_path)
    events = []
    t0 = time.perf_counter()
    result = train(run, options(250, log_every=25, overrides={**SHORT, "strategy.cap_max": 4000}),
                   Events(on_progress=events.append))
    seconds = time.perf_counter() - t0
    assert result.backend == "reference" and result.device == "cpu"
    gain = result.eval["psnr"] - result.initial_eval["psnr"]
    print(f"held-out PSNR {result.initial_eval['psnr']:.2f} -> {result.eval['psnr']:.2f} dB, "
          f"SSIM {result.initial_eval['ssim']:.3f} -> {result.eval['ssim']:.3f}, {result.num_gaussians} Gaussians, "
          f"{seconds:.1f} s")
    assert gain > 3.0, f"hold-out PSNR rose only {gain:.2f} dB"  # seen: 14.6 -> 18.3 dB
    assert result.eval["ssim"] > result.initial_eval["ssim"] + 0.1
    assert result.num_gaussians > 800  # densification grew the model
    # progress events, metrics.jsonl, train.json, renders
    assert [e.train.step for e in events] == list(range(25, 251, 25))
    assert events[0].stage == "train" and events[0].fraction == pytest.approx(0.1)
    first = events[0].train
    assert first.total == 250 and first.loss > 0 and first.psnr > 0 and first.num_gaussians > 0 and first.eta_s >= 0
    assert first.host_rss_gb > 0 and first.host_available_gb > 0
    lines = [json.loads(x) for x in run.metrics_jsonl.read_text().splitlines()]
    steps = [x for x in lines if "loss" in x]
    assert len(steps) == 10 and {"step", "elapsed_s", "loss", "psnr", "num_gaussians", "gpu_mem_gb",
                                 "steps_per_s", "host_rss_gb", "host_available_gb"} <= set(steps[0])
    assert lines[-1]["eval"]["psnr"] == pytest.approx(result.eval["psnr"])
    info = json.loads(run.train_json.read_text())
    assert {"steps", "seconds", "eval", "num_gaussians", "backend", "device", "preset", "steps_per_s",
            "peak_gpu_mem_gb"} <= set(info)
    assert info["eval"]["lpips"] is None and info["held_out"] == 2
    assert "curl -L -o" in info["lpips_note"] and str(tmp_path / "torch") in info["lpips_note"]
    renders = sorted(p.name for p in run.renders.glob("*.png"))
    assert renders == ["0001.png", "0009.png"]  # every 8th image, from the first
    scores = json.loads(run.render_scores.read_text())["views"]  # what the report reads instead of the PNGs
    assert [v["name"] for v in scores] == ["0001", "0009"]
    assert np.mean([v["psnr"] for v in scores]) == pytest.approx(result.eval["psnr"])
    import cv2

    assert cv2.imread(str(run.renders / renders[0])).shape == (64, 128, 3)  # render | photograph


def _params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["params"]


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_interrupt_and_resume_equals_straight_run(capture32, tmp_path, strategy):
    """k steps, SIGTERM (checkpoint + clean stop), resume to n == n steps straight through, bit for bit."""
    n, k = 60, 33
    over = {"strategy": strategy, "strategy.refine_start_iter": 10, "strategy.refine_stop_iter": 50,
            "strategy.refine_every": 10, "sh_interval": 20}
    over["strategy.cap_max" if strategy == "mcmc" else "strategy.reset_every"] = 400 if strategy == "mcmc" else 30
    opts = options(n, log_every=1, checkpoint_every=1000, save_renders=False, overrides=over, seed=3)
    straight = fresh_run(capture32, tmp_path, "straight")
    res_straight = train(straight, opts)

    resumed = fresh_run(capture32, tmp_path, "resumed")

    def stop_at_k(event):
        if event.train.step == k:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as exc, cancel_on_signals(Events(on_progress=stop_at_k)) as events:
        train(resumed, opts, events)
    assert exc.value.step == k and exc.value.exit_code == 130 and "again" in exc.value.advice
    assert [s for s, _ in list_checkpoints(resumed.checkpoints)] == [k]
    assert not resumed.train_json.exists()
    res_resumed = train(resumed, opts)

    a, b = _params(res_straight.checkpoint), _params(res_resumed.checkpoint)
    assert a["means"].shape == b["means"].shape
    if strategy == "default":
        assert len(a["means"]) != 300  # densification really ran
    else:
        assert 300 < len(a["means"]) <= 400  # MCMC added Gaussians, up to its cap
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    steps = [json.loads(x)["step"] for x in resumed.metrics_jsonl.read_text().splitlines() if "loss" in x]
    assert steps == list(range(1, n + 1))  # no duplicate or missing lines across the stop


def test_cancel_event_requests_a_clean_stop(capture32, tmp_path):
    run = fresh_run(capture32, tmp_path)
    opts = options(20, log_every=5, save_renders=False)
    events = Events()
    events.on_progress = lambda e: events.cancel.set() if e.train.step == 10 else None
    with pytest.raises(TrainingInterrupted) as exc:
        train(run, opts, events)
    assert exc.value.step == 10 and [s for s, _ in list_checkpoints(run.checkpoints)] == [10]
    assert train(run, opts).steps == 20


def test_lpips_is_reported_when_its_weights_are_local(capture32, tmp_path, monkeypatch):
    """Plumbing only: a RANDOM AlexNet saved where the real ImageNet file goes (see test_metrics.py)."""
    from test_metrics import random_alexnet_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    random_alexnet_file(tmp_path / "torch" / "hub" / "checkpoints")
    run = fresh_run(capture32, tmp_path)
    result = train(run, options(10, log_every=5, save_renders=False))
    assert result.lpips_note is None
    assert result.eval["lpips"] > 0 and result.initial_eval["lpips"] is None  # (initial: PSNR and SSIM only)
    assert json.loads(run.train_json.read_text())["eval"]["lpips"] == pytest.approx(result.eval["lpips"])


def test_training_steps_like_torch_adam_without_importing_torch_dynamo(capture32, tmp_path):
    """splat/adam.py: torch.optim's per-step Python and its import of torch._dynamo (3 s of every train stage)
    are gone; the update is torch's own Adam. In a fresh interpreter, as sys.modules is shared by the tests."""
    import subprocess
    import sys

    from splatforge.splat.adam import FusedAdam, step_all

    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(50, 3))
    b = torch.nn.Parameter(a.detach().clone())
    ref = torch.optim.Adam([a], lr=1e-2, eps=1e-15, betas=(0.8, 0.99))
    ours = FusedAdam(b, lr=1e-2, eps=1e-15, betas=(0.8, 0.99))
    for _ in range(20):
        g = torch.randn(50, 3)
        a.grad, b.grad = g.clone(), g.clone()
        ref.step()
        step_all([ours])
    assert torch.allclose(a, b, atol=1e-6)
    ref.load_state_dict(ours.state_dict())  # checkpoints read either way
    ours.load_state_dict(ref.state_dict())
    assert ours.state[b]["step"].item() == 20 and ours.state[b]["exp_avg"].shape == (50, 3)

    run = fresh_run(capture32, tmp_path)
    code = ("import sys; from splatforge.splat import warmup; warmup.preload_training_imports = lambda: None; "
            "from splatforge.splat.trainer import TrainOptions, train; "
            f"train({str(run.root)!r}, TrainOptions(preset='demo', overrides={{'steps': 20}}, device='cpu', "
            "show_progress=False)); print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "no dynamo"


def test_presets_stretch_their_schedule():
    from splatforge.splat.config import PRESETS, MCMCStrategyConfig

    default = PRESETS["default"]
    short = default.scaled_to(3500).strategy
    assert short.refine_start_iter == 250 and short.refine_stop_iter == 7500
    assert default.scaled_to(3500).sh_interval == 500 and short.reset_every == 1500 and short.refine_every == 50
    assert default.scaled_to(20).strategy.refine_every == 10  # never refines on a handful of steps' gradients
    assert isinstance(PRESETS["mcmc"].strategy, MCMCStrategyConfig) and PRESETS["default"].steps == 7000
    # --steps through the options: the same stretch, and a change the user asked for is kept
    config = TrainOptions(preset="default", overrides={"steps": "3500", "strategy.refine_every": 7}).config()
    assert config.steps == 3500 and config.strategy.refine_stop_iter == 7500 and config.strategy.refine_every == 7
    # nothing the user did not ask for replaces the preset's own value (the demo's SH degree stays 1)
    assert TrainOptions(preset="demo").config().sh_degree == 1


def test_checkpoints_rotate_and_no_resume_starts_over(capture32, tmp_path):
    run = fresh_run(capture32, tmp_path)
    opts = options(20, checkpoint_every=4, keep_checkpoints=2, log_every=10, save_renders=False,
                   overrides=NO_REFINE)
    train(run, opts)
    assert [s for s, _ in list_checkpoints(run.checkpoints)] == [16, 20]
    assert not list(run.checkpoints.glob(".*"))  # no temporary files left behind
    # resuming a finished run trains nothing more and gives the same result
    again = train(run, opts)
    assert again.steps == 20 and torch.equal(_params(again.checkpoint)["means"],
                                             _params(run.checkpoints / "ckpt_0000020.pt")["means"])
    train(run, options(8, checkpoint_every=4, log_every=4, save_renders=False, resume=False, overrides=NO_REFINE))
    assert [s for s, _ in list_checkpoints(run.checkpoints)] == [4, 8]


def test_out_of_memory_keeps_checkpoint_and_says_what_to_change(capture32, tmp_path, monkeypatch):
    from splatforge.errors import TrainingError
    from splatforge.splat import trainer

    run = fresh_run(capture32, tmp_path)
    real_render = trainer.render
    calls = {"n": 0}

    def flaky_render(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 13:  # 1 initial evaluation + 12 steps, then the GPU "runs out"
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(trainer, "render", flaky_render)
    with pytest.raises(TrainingError) as exc:
        train(run, options(30, checkpoint_every=5, log_every=5, overrides=NO_REFINE))
    message = str(exc.value)
    assert "out of GPU memory at step 12" in message
    assert "--downscale 2" in exc.value.advice and "--max-gaussians" in exc.value.advice
    assert "sh_degree=2" in exc.value.advice
    assert [s for s, _ in list_checkpoints(run.checkpoints)] == [5, 10]


def test_export_round_trip(capture32, tmp_path):
    from plyfile import PlyData

    from splatforge.splat.export import export_ply, read_ply

    run = fresh_run(capture32, tmp_path)
    result = train(run, options(10, log_every=5, save_renders=False))
    path = export_ply(run)
    assert path == run.ply
    ply = PlyData.read(str(path))
    names = [p.name for p in ply["vertex"].properties]
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert names == expected
    data = ply["vertex"].data
    assert all(data.dtype[name] == np.float32 for name in names) and len(data) == len(_params(result.checkpoint)["means"])
    saved = _params(result.checkpoint)
    back = read_ply(path)
    for key in saved:
        torch.testing.assert_close(back[key], saved[key].float(), rtol=0, atol=0)
    # 3DGS's channel-major f_rest: f_rest_0..14 are red's 15 higher-order coefficients
    v = ply["vertex"].data
    np.testing.assert_array_equal(v["f_rest_1"], saved["shN"][:, 1, 0].numpy())
    np.testing.assert_array_equal(v["f_rest_15"], saved["shN"][:, 0, 1].numpy())
    np.testing.assert_array_equal(v["opacity"], saved["opacities"].numpy())  # a logit, as 3DGS writes it


def test_cli_train_scene_into_run_then_export(capture32, tmp_path):
    from typer.testing import CliRunner

    from splatforge.cli import app

    scene = fresh_run(capture32, tmp_path, "scene").root / "transforms.json"
    run = tmp_path / "newrun"
    cli = CliRunner()
    res = cli.invoke(app, ["train", str(scene), "-o", str(run), "--steps", "6", "--json", "--preset", "fast",
                           "--backend", "reference"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["steps"] == 6 and doc["backend"] == "reference" and doc["preset"] == "fast"
    assert (run / "transforms.json").exists() and (run / "train.json").exists()
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["stages"]["train"]["status"] == "done"
    out = tmp_path / "out.ply"
    res = cli.invoke(app, ["export", str(run), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ply"] == str(out) and out.stat().st_size > 1000
    # gsplat on a machine without CUDA: a clear error, not a crash
    if not torch.cuda.is_available():
        res = cli.invoke(app, ["train", str(run), "--steps", "2", "--backend", "gsplat", "--json"])
        assert res.exit_code == 1 and "CUDA" in json.loads(res.stdout)["error"]


def test_opencv_distortion_is_undistorted_at_load(capture32, tmp_path):
    import cv2

    from splatforge.scene import Camera
    from splatforge.splat.data import prepare_image

    src = next((capture32 / "images").glob("*.png"))
    cam = Camera("OPENCV", 32, 32, 30.0, 30.0, 16.0, 16.0, (-0.2, 0.05, 0.001, -0.001))
    img, out_cam = prepare_image(src, cam, 1)
    assert out_cam.model == "PINHOLE" and not out_cam.has_distortion
    assert img.shape == (32, 32, 3) and (out_cam.width, out_cam.height) == (32, 32)
    # the new pinhole camera sees each undistorted pixel where the distorted camera saw it
    pts = np.array([[[10.0, 12.0]], [[25.0, 7.0]]])
    und = cv2.undistortPoints(pts, cam.K, np.array(cam.distortion), P=out_cam.K)
    assert np.isfinite(und).all()
    half, cam_half = prepare_image(src, cam, 2)
    assert half.shape == (16, 16, 3) and cam_half.fx == pytest.approx(out_cam.fx / 2)


# --- GPU -------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_gpu_synthetic_training_smoke(tmp_path, strategy):
    """gsplat backend end to end on a small synthetic capture: PSNR rises, GPU fields are filled."""
    capture = make_capture(tmp_path / "cap", n_views=24, size=128, n_points=3000)
    run = RunDir(capture)
    result = train(run, options(600, preset="fast", overrides={"strategy": strategy}, log_every=100))
    assert result.backend == "gsplat" and result.device.startswith("cuda")
    # Seen on the H100: default 14.1 -> 20+ dB; mcmc (with fast's init, 600 steps) 14.1 -> 19.0 dB.
    assert result.eval["psnr"] > result.initial_eval["psnr"] + 3.0
    assert result.peak_gpu_mem_gb is not None and result.peak_gpu_mem_gb > 0
    line = json.loads(run.metrics_jsonl.read_text().splitlines()[0])
    assert line["gpu_mem_gb"] is not None and line["gpu_mem_gb"] > 0


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_fox_fast_preset(copy_capture, tmp_path):
    """fox (OPENCV distortion, undistorted at load; no SfM points: random init), fast preset, 1000 steps."""
    from splatforge.scene import read_scene, write_transforms
    from splatforge.splat.export import export_ply, read_ply

    fox = copy_capture("fox")
    run = RunDir(tmp_path / "run").create()
    write_transforms(read_scene(fox / "transforms.json"), run.transforms_json)
    result = train(run, options(1000, preset="fast", log_every=100))
    info = json.loads(run.train_json.read_text())
    print(f"fox fast@1000: PSNR {result.eval['psnr']:.2f} dB, SSIM {result.eval['ssim']:.3f}, "
          f"{result.num_gaussians} Gaussians, {result.seconds:.1f} s, {result.steps_per_s:.1f} steps/s")
    assert info["undistorted"] and info["held_out"] == 7 and info["resolution"] == [1080, 1920]
    assert result.eval["psnr"] > 22.0
    back = read_ply(export_ply(run))
    assert len(back["means"]) == result.num_gaussians and torch.isfinite(back["means"]).all()


def test_cameras_of_different_sizes_train_one_image_per_step(capture32, tmp_path):
    """Internet photos have several cameras and sizes: those images are kept as a list, one per batch."""
    import cv2

    from splatforge.scene import read_scene, write_transforms

    run = fresh_run(capture32, tmp_path)
    scene = read_scene(run.transforms_json)
    for frame in scene.frames[::2]:  # every other photo at 2x size, its camera scaled to match
        img = cv2.imread(str(frame.image))
        cv2.imwrite(str(frame.image), cv2.resize(img, (64, 64), interpolation=cv2.INTER_CUBIC))
        frame.camera = frame.camera.scaled(2.0)
    write_transforms(scene, run.transforms_json, ply_file="points.ply")
    result = train(run, options(12, overrides={"batch_size": 2}, log_every=4))
    assert result.steps == 12 and np.isfinite(result.eval["psnr"])
    sizes = {cv2.imread(str(p)).shape for p in run.renders.glob("*.png")}
    assert sizes == {(64, 128, 3)}  # held-out 0001 (index 0) is one of the enlarged ones


def test_coarse_to_fine_schedule_renders_smaller_images_early(capture32, tmp_path):
    from splatforge.options import apply_overrides
    from splatforge.splat.config import PRESETS

    preset = apply_overrides(PRESETS["fast"], {"steps": 3000, "resolution_schedule": [[0.3, 4], [0.6, 2]]})
    assert [preset.resolution_factor(s) for s in (0, 899, 900, 1799, 1800, 2999)] == [4, 4, 2, 2, 1, 1]
    assert preset.scaled_to(300).resolution_factor(100) == 2  # fractions survive --steps
    several = apply_overrides(preset, {"resolution_schedule": [[0.3, 4, 4], [0.6, 2]], "batch_size": 2})
    assert [several.phase_at(s) for s in (0, 899, 900, 2999)] == [(4, 8), (4, 8), (2, 2), (1, 2)]
    from splatforge.splat.trainer import BatchSampler

    sampler = BatchSampler(5, [3, 3, 1, 1], seed=0, device=torch.device("cpu"))
    drawn = [sampler.at(s).tolist() for s in range(4)]
    assert [len(d) for d in drawn] == [3, 3, 1, 1] and sorted(drawn[0] + drawn[1][:2]) == [0, 1, 2, 3, 4]
    run = fresh_run(capture32, tmp_path)
    result = train(run, options(40, log_every=10, overrides={**SHORT, "resolution_schedule": [[0.5, 2, 3]]}))
    assert result.steps == 40 and result.eval["psnr"] > result.initial_eval["psnr"]
