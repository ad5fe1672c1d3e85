"""The training loop: scene in the run folder -> Gaussians, checkpoints, metrics, held-out renders.

    train(run, TrainOptions(preset="fast"), events) -> TrainResult

Speed on the GPU: images live on the device as uint8 and are converted per batch; nothing waits for
the GPU (`.item()`, `.cpu()`) except at logging, checkpoint and evaluation steps, and inside gsplat's
densification (every `refine_every` steps). Learning rates are set from the step number, not from a
scheduler object, so that a resumed run continues on exactly the same schedule. The strategy (3DGS
densification or MCMC, `splat/strategy.py`) is called the same way whichever it is.

Nothing is lost: a checkpoint every `checkpoint_every` steps or `checkpoint_every_s` seconds, whichever
comes first, and at the end (atomic, the newest `keep_checkpoints` kept). A cancel (`events.cancel`:
Ctrl-C, SIGTERM, a cancelled job) lets the step in flight finish, writes a checkpoint and raises
`TrainingInterrupted`. A checkpoint is resumed only when it was made with the same recipe and scene.
Out of GPU memory stops with the last checkpoint kept and advice naming what to change. Each metrics
line records host and GPU memory, so a run that dies without a word can be explained afterwards.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from splatforge.console import console, log
from splatforge.errors import InputError, TrainingError
from splatforge.options import to_dict
from splatforge.rundir import RENDER_SCORES, RunDir, atomic_path, atomic_write_json, atomic_write_text
from splatforge.splat import checkpoint as ckpt
from splatforge.splat.adam import FusedAdam, step_all
from splatforge.splat.config import TrainConfig, TrainOptions
from splatforge.splat.data import DataOptions, TrainData, Views, load_data
from splatforge.splat.device import memory_snapshot, resolve_device
from splatforge.splat.distributed import (
    PER_GAUSSIAN_STRATEGY_STATE,
    World,
    even_shards,
    gather_state,
    parse_gpus,
    shard_bounds,
    shard_optimizer_state,
    take_rows,
)
from splatforge.splat.gaussians import InitOptions, empty_like_state, init_gaussians, sh_degree_at
from splatforge.splat.losses import photometric_loss, psnr
from splatforge.splat.metrics import holdout_psnr, holdout_ssim, make_lpips
from splatforge.splat.render import render, resolve_backend
from splatforge.splat.strategy import build_strategy, initial_state, load_strategy_state
from splatforge.stage import Cancelled, Events, TrainMetrics, train_stats

__all__ = ["TrainOptions", "TrainResult", "TrainingInterrupted", "train"]

LR_KEYS = {"means": "lr_means", "scales": "lr_scales", "quats": "lr_quats", "opacities": "lr_opacities",
           "sh0": "lr_sh0", "shN": "lr_shN"}


class TrainingInterrupted(Cancelled):
    """Training was asked to stop; a checkpoint was written; running again continues from it."""

    def __init__(self, step: int):
        super().__init__("train", f"stopped at step {step}; a checkpoint was written")
        self.message = f"training stopped on request at step {step}; a checkpoint was written"
        self.step = step


@dataclass
class TrainResult:
    steps: int
    seconds: float
    eval: dict[str, float | None]
    num_gaussians: int
    backend: str
    device: str
    preset: str
    steps_per_s: float
    peak_gpu_mem_gb: float | None
    checkpoint: Path | None = None
    initial_eval: dict[str, float | None] | None = None
    lpips_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- pieces -------------------------------------------------------------------------------------------

def make_optimizers(params: torch.nn.ParameterDict, config: TrainConfig, scene_scale: float,
                    world_size: int = 1) -> dict[str, FusedAdam]:
    """One Adam per parameter (what gsplat's strategies expect); batch-size scaling as gsplat's simple_trainer.

    Plain Adam rather than gsplat's SelectiveAdam: with the images at 1080p nearly every Gaussian is visible
    in every view, so skipping invisible ones saves little, and plain Adam runs on the CPU backend too. Torch's
    fused kernel, driven without torch.optim's per-step Python (splat/adam.py: the step is launch-bound).
    On several GPUs the batch is every process's views.
    """
    bs = config.batch_size * world_size
    out = {}
    for name, p in params.items():
        lr = getattr(config, LR_KEYS[name]) * (scene_scale if name == "means" else 1.0) * math.sqrt(bs)
        out[name] = FusedAdam(p, lr=lr, eps=1e-15 / math.sqrt(bs), betas=(1 - bs * (1 - 0.9), 1 - bs * (1 - 0.999)),
                              name=name)
    return out


def means_lr(config: TrainConfig, scene_scale: float, step: int, world_size: int = 1) -> float:
    """Exponential decay of the means' learning rate to `lr_means_final_factor` over the run."""
    t = min(step / max(config.steps, 1), 1.0)
    bs = config.batch_size * world_size
    return config.lr_means * scene_scale * math.sqrt(bs) * config.lr_means_final_factor ** t


class BatchSampler:
    """Which training views each step uses: shuffled epochs, drawn for the whole run up front from `seed`.

    Step s takes the next `counts[s]` indices of one stream of epochs (a coarse phase may take several
    views per step). The stream is a pure function of (n, counts, seed), so a resumed run needs no sampler
    state, and it is moved to the device once: picking a batch never waits for the GPU. With W processes
    every one draws the same stream and takes its own W-th of each step's views.
    """

    def __init__(self, n: int, counts: list[int], seed: int, device: torch.device, world: World = World()):
        generator = torch.Generator().manual_seed(seed)
        self.rank, self.size = world.rank, world.size
        counts = [min(c, n // world.size) * world.size for c in counts]
        self.offsets = [0, *itertools.accumulate(counts)]
        epochs = -(-self.offsets[-1] // n)
        self.stream = torch.cat([torch.randperm(n, generator=generator) for _ in range(epochs)]).to(device)

    def at(self, step: int) -> torch.Tensor:
        start, end = self.offsets[step], self.offsets[step + 1]
        per_rank = (end - start) // self.size
        return self.stream[start + self.rank * per_rank: start + (self.rank + 1) * per_rank]


@torch.no_grad()
def evaluate(params, views: Views, sh_degree: int, backend: str, device: torch.device, rasterize_mode: str,
             lpips_fn=None, render_dir: Path | None = None) -> dict[str, float | None]:
    """Mean PSNR / SSIM (/ LPIPS) over `views`, one view at a time, as gsplat's simple_trainer computes them
    (metrics.py); optionally writes render|photo PNGs and each view's scores (`views.json`, which the report
    reads instead of decoding every PNG again: 125 3840x1080 pairs took it 30 s)."""
    psnrs, ssims, lpipss = [], [], []
    # PNG encoding of a 1080p render|photo pair takes ~0.25 CPU s: in threads, beside the rendering (125
    # held-out views of a 1000-image capture: ~31 CPU s that the GPU used to wait for one after another).
    writers = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) if render_dir is not None else None
    pending = []
    try:
        for i in range(len(views)):
            idx = torch.tensor([i])
            gt, vm, k = views.batch(idx, device)
            out = render(params, vm, k, gt.shape[2], gt.shape[1], sh_degree, backend=backend,
                         rasterize_mode=rasterize_mode)
            img = out.image.clamp(0, 1)
            psnrs.append(float(holdout_psnr(img, gt)))
            ssims.append(float(holdout_ssim(img, gt)))
            lp = lpips_fn(img, gt) if lpips_fn is not None else None
            if lp is not None:
                lpipss.append(float(lp))
            if writers is not None:
                pair = torch.cat([img[0], gt[0]], dim=1).mul(255).round().byte().cpu().numpy()
                render_dir.mkdir(parents=True, exist_ok=True)
                pending.append(writers.submit(_write_render, render_dir / (Path(views.names[i]).stem + ".png"), pair))
        for f in pending:
            f.result()
        if render_dir is not None:
            scores = [{"name": Path(views.names[i]).stem, "psnr": psnrs[i], "ssim": ssims[i],
                       "lpips": lpipss[i] if lpipss else None} for i in range(len(views))]
            atomic_write_json(render_dir / RENDER_SCORES, {"views": scores})
    finally:
        if writers is not None:
            writers.shutdown(wait=True)
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
            "lpips": float(np.mean(lpipss)) if lpipss else None}


def _write_render(path: Path, rgb: np.ndarray) -> None:
    import cv2

    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def oom_error(step: int, n_gaussians: int, data: TrainData, config: TrainConfig, have_ckpt: bool) -> TrainingError:
    w, h = data.train.size(0)
    advice = [f"train at lower resolution (--downscale 2 gives {w // 2}x{h // 2})",
              f"cap the Gaussians (--max-gaussians {max(10_000, int(n_gaussians * 0.6))})"]
    if config.sh_degree > 1:
        advice.append(f"use fewer SH degrees (--set train.sh_degree={config.sh_degree - 1})")
    if config.batch_size > 1:
        advice.append("use --set train.batch_size=1")
    kept = "the last checkpoint is kept, --resume continues from it" if have_ckpt else "no checkpoint yet"
    return TrainingError(f"out of GPU memory at step {step} with {n_gaussians:,} Gaussians at {w}x{h} ({kept})",
                         "; or ".join(advice))


# --- the loop -----------------------------------------------------------------------------------------

def scene_fingerprint(run: RunDir, options: TrainOptions) -> str:
    """What a checkpoint's parameters depend on besides the recipe: the scene and how its images are used."""
    digest = hashlib.sha1(run.transforms_json.read_bytes())
    digest.update(json.dumps([options.downscale, options.test_every, options.seed]).encode())
    return digest.hexdigest()[:16]


def _resumable(saved: dict[str, Any] | None, config: TrainConfig, scene: str, path: Path | None,
               world_size: int = 1) -> bool:
    if saved is None:
        return False
    saved_world = int(saved.get("world_size", 1))
    if saved.get("config") == to_dict(config) and saved.get("scene") == scene and saved_world == world_size:
        return True
    what = ("recipe" if saved.get("config") != to_dict(config) else "scene or image settings"
            if saved.get("scene") != scene else f"number of GPUs ({saved_world})")
    log.warning("the checkpoint %s was made with another %s: training starts over", path.name if path else "", what)
    return False


def recipe_for_world(config: TrainConfig, world_size: int) -> TrainConfig:
    """The recipe one of `world_size` processes runs: each step sees `world_size` times the views, so the
    schedule is shortened to steps / world_size (the same views seen in all; gsplat's `steps_scaler`), and
    the Gaussian cap is shared among the shards."""
    if world_size == 1:
        return config
    config = config.scaled_to(max(1, round(config.steps / world_size)))
    if config.strategy.cap_max is not None:
        config = replace(config, strategy=replace(config.strategy,
                                                  cap_max=max(1, config.strategy.cap_max // world_size)))
    return config


def train(run: RunDir | Path | str, options: TrainOptions | None = None, events: Events | None = None) -> TrainResult:
    """Train on `run.transforms_json`; write checkpoints/, metrics.jsonl, train.json and renders/.

    `events` receives a `Progress` with `TrainMetrics` at each logging step (every `log_every` steps or
    `log_every_s` seconds); setting `events.cancel` stops cleanly at the next step (checkpoint, then
    `TrainingInterrupted`). Recording the stage in run.json is the caller's (`run_stage`). With
    `options.gpus` naming several GPUs, one process per GPU trains the scene (`splat/distributed.py`).
    """
    options = options or TrainOptions()
    events = events or Events()
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    if not run.transforms_json.exists():
        raise InputError(f"{run.transforms_json} does not exist",
                         "run the pose stage first, or give a transforms.json / COLMAP folder to `splatforge train`")
    devices = parse_gpus(options.gpus)
    if len(devices) > 1:
        from splatforge.splat.distributed import train_on_devices

        return train_on_devices(run.root, options, events, devices)
    device = resolve_device(devices[0] if devices else options.device)
    return train_process(run, options, events, World(device=device), device)


def train_process(run: RunDir | Path | str, options: TrainOptions, events: Events, world: World,
                  device: torch.device) -> TrainResult | None:
    """The training loop of one process: the whole run, or rank `world.rank` of several (which trains its
    shard of the Gaussians on its share of the views; rank 0 alone writes and returns the result)."""
    from splatforge.scene import read_scene
    from splatforge.splat.warmup import preload_training_imports

    preload_training_imports()  # gsplat's CUDA module, while the images decode
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    config = recipe_for_world(options.config(), world.size)
    backend = resolve_backend(options.backend, device)
    strategy, absgrad = build_strategy(config.strategy, config.steps,
                                       absgrad_available=backend == "gsplat" and not world.distributed)
    if getattr(config.strategy, "absgrad", False) and not absgrad and world.main:
        log.info("absgrad needs the gsplat backend on one GPU: densifying on plain gradients")

    torch.manual_seed(options.seed + world.rank)
    init_gen = torch.Generator().manual_seed(options.seed)  # the same initial Gaussians on every rank
    marks = {"start": time.perf_counter()}  # where the stage's time goes, outside the loop too
    data = load_data(read_scene(run.transforms_json), DataOptions(test_every=options.test_every,
                                                                  downscale=options.downscale), device)
    scene_scale = 1.1 * data.scene_radius
    train_views, eval_views = data.train, data.test
    if world.distributed:
        if not train_views.same_size:
            raise InputError("the images differ in size, which training on several GPUs does not support",
                             "train on one GPU (leave out --gpus), or resize the images to one size")
        if len(train_views) < world.size:
            raise InputError(f"{len(train_views)} training views for {world.size} GPUs", "use fewer GPUs")
        if world.main:
            log.info("%d processes: %d views per step, %d steps (the schedule shortened %dx)", world.size,
                     config.batch_size * world.size, config.steps, world.size)
    if not train_views.same_size and any(config.phase_at(s)[1] > 1 for s in (0, config.steps - 1)):
        log.info("the images differ in size: one camera per step")
        config = replace(config, batch_size=1, resolution_schedule=tuple(p[:2] for p in config.resolution_schedule))
    scene = scene_fingerprint(run, options)
    marks["data"] = time.perf_counter()

    # --- state: fresh or from the newest checkpoint ---------------------------------------------------
    newest = ckpt.newest_checkpoint(run.checkpoints) if options.resume else None
    saved = ckpt.load_checkpoint(newest) if newest is not None else None
    if not _resumable(saved, config, scene, newest, world.size):
        saved = None
    if saved is not None:
        shards = saved.get("shards") or [len(saved["params"]["means"])]
        start, end = shard_bounds(shards, world.rank)
        params = empty_like_state({k: (end - start, *v.shape[1:]) for k, v in saved["params"].items()}, device)
        with torch.no_grad():
            for k, v in saved["params"].items():
                params[k].copy_(v[start:end].to(device))
    else:
        params = init_gaussians(data.points, data.colors, data.scene_center, data.scene_radius,
                                InitOptions(sh_degree=config.sh_degree, init_opacity=config.init_opacity,
                                            init_scale=config.init_scale, random_points=config.random_points,
                                            max_points=options.config().strategy.cap_max), init_gen, device)
        if world.distributed:
            start, end = shard_bounds(even_shards(len(params["means"]), world.size), world.rank)
            params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach()[start:end].clone())
                                             for k, v in params.items()})
        world.barrier()  # every rank has read the old checkpoints before rank 0 clears them
        if world.main:
            ckpt.clear_checkpoints(run.checkpoints)
    marks["gaussians"] = time.perf_counter()
    optimizers = make_optimizers(params, config, scene_scale, world.size)
    sstate = initial_state(strategy, scene_scale)
    strategy.check_sanity(params, optimizers)
    sampler = BatchSampler(len(train_views), [config.phase_at(s)[1] for s in range(config.steps)], options.seed,
                           train_views.index_device, world)
    start_step, elapsed_before, initial_eval = 0, 0.0, None
    if saved is not None:
        for k, opt in optimizers.items():
            opt.load_state_dict(shard_optimizer_state(saved["optimizers"][k], start, end))
        load_strategy_state(sstate, take_rows(saved["strategy"], start, end, PER_GAUSSIAN_STRATEGY_STATE), device)
        if not world.distributed:  # several ranks' random streams are not kept: a resume is not bit-exact there
            torch.set_rng_state(saved["rng"]["torch"])
            if device.type == "cuda" and saved["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(saved["rng"]["cuda"], device)
        start_step, elapsed_before = int(saved["step"]), float(saved.get("elapsed_s", 0.0))
        initial_eval = saved.get("initial_eval")
        if world.main:
            log.info("resuming from %s (step %d)", newest.name, start_step)

    lpips_fn, lpips_note = make_lpips(device) if world.main else (None, None)
    if world.main:
        _prepare_metrics(run.metrics_jsonl, start_step)
    marks["optimizer_metrics"] = time.perf_counter()

    def evaluate_all(sh_degree: int, lpips=None, render_dir: Path | None = None) -> dict | None:
        """Held-out metrics of the whole model, on rank 0 (every rank takes part in gathering it)."""
        whole = params
        if world.distributed:
            state = gather_state(params, {}, {}, world)
            whole = {k: v.to(device) for k, v in state["params"].items()} if state else None
        result = None
        if world.main:
            result = evaluate(whole, eval_views if eval_views is not None else train_views, sh_degree, backend,
                              device, config.rasterize_mode, lpips, render_dir)
        world.barrier()
        return result

    if saved is None and eval_views is not None:
        initial_eval = evaluate_all(0)
    marks["initial_eval"] = time.perf_counter()

    def checkpoint(step: int) -> Path | None:
        whole = gather_state(params, optimizers, sstate, world)  # one process: its own state, on the CPU
        if not world.main:
            return None
        payload = {"step": step, "elapsed_s": elapsed_before + time.perf_counter() - t0, "backend": backend,
                   "config": to_dict(config), "scene": scene, "preset": options.preset, **whole,
                   "world_size": world.size,
                   "rng": {"torch": torch.get_rng_state(),
                           "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                   "initial_eval": initial_eval, "scene_scale": scene_scale}
        return ckpt.save_checkpoint(run.checkpoints, step, payload, options.keep_checkpoints)

    total = config.steps
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    last_log_t, last_log_step, last_ckpt_t = t0, start_step, t0
    step = start_step
    last_ckpt: Path | None = newest if saved is not None else None
    bar = _progress_bar(options.show_progress and start_step < total and world.main)
    task = bar.add_task("train", total=total, completed=start_step, stats=train_stats(None), mem="")
    try:
        with bar:
            for step in range(start_step, total):
                try:
                    loss, last_images = _train_step(step, params, optimizers, strategy, sstate, sampler,
                                                    train_views, config, backend, device, absgrad, scene_scale,
                                                    world)
                except (torch.OutOfMemoryError, RuntimeError) as exc:
                    if not isinstance(exc, torch.OutOfMemoryError) and "out of memory" not in str(exc):
                        raise
                    n = len(params["means"])
                    del params, optimizers, sstate
                    torch.cuda.empty_cache()
                    raise oom_error(step, n, data, config, last_ckpt is not None) from None
                done = step + 1
                now = time.perf_counter()
                want_log = want_ckpt = stop = False
                if world.decides_at(done, total):  # on several GPUs the ranks agree, at fixed steps
                    want_log, want_ckpt, stop = world.agree(
                        done % options.log_every == 0 or done == total or now - last_log_t >= options.log_every_s,
                        done != total and (done % options.checkpoint_every == 0
                                           or now - last_ckpt_t >= options.checkpoint_every_s),
                        events.cancelled)
                if want_log or stop:
                    n_gaussians = world.sum(len(params["means"]))
                    sps = (done - last_log_step) / max(now - last_log_t, 1e-9)
                    last_log_t, last_log_step = now, done
                    if world.main:
                        metrics = TrainMetrics(
                            step=done, total=total, loss=float(loss),
                            psnr=float(psnr(*[t.detach().clamp(0, 1) for t in last_images])),
                            num_gaussians=n_gaussians, steps_per_s=round(sps, 3),
                            elapsed_s=round(elapsed_before + now - t0, 3),
                            eta_s=round((total - done) / max(sps, 1e-9), 1), **memory_snapshot(device))
                        _append_metrics(run.metrics_jsonl, {k: v for k, v in asdict(metrics).items()
                                                            if k not in ("total", "eta_s")})
                        bar.update(task, completed=done, stats=train_stats(metrics),
                                   mem=f"{metrics.gpu_mem_gb:.1f} GB" if metrics.gpu_mem_gb is not None else "")
                        events.progress("train", done / total, f"step {done}/{total}", train=metrics)
                if not world.distributed:  # one process: a cancel asked during this step's report stops here
                    stop = stop or events.cancelled
                if options.eval_every and done % options.eval_every == 0 and done != total and eval_views:
                    ev = evaluate_all(sh_degree_at(step, config.sh_degree, config.sh_interval), lpips_fn)
                    if world.main:
                        _append_metrics(run.metrics_jsonl, {"step": done, "elapsed_s": round(
                            elapsed_before + time.perf_counter() - t0, 3), "eval": ev})
                if stop:  # also when asked during this step's progress report
                    last_ckpt = checkpoint(done)
                    raise TrainingInterrupted(done)
                if want_ckpt:
                    last_ckpt, last_ckpt_t = checkpoint(done), time.perf_counter()
    except torch.OutOfMemoryError:  # outside a step (evaluation, checkpoint)
        raise oom_error(step, -1, data, config, last_ckpt is not None) from None

    seconds = elapsed_before + time.perf_counter() - t0
    marks["loop"] = time.perf_counter()
    if total > start_step or last_ckpt is None:
        last_ckpt = checkpoint(total)
    marks["checkpoint"] = time.perf_counter()
    final_sh = sh_degree_at(total - 1, config.sh_degree, config.sh_interval)
    n_gaussians = world.sum(len(params["means"]))
    final = evaluate_all(final_sh, lpips_fn, run.renders if options.save_renders else None)
    if not world.main:
        return None
    _append_metrics(run.metrics_jsonl, {"step": total, "elapsed_s": round(seconds, 3), "eval": final,
                                        **memory_snapshot(device)})
    marks["final_eval"] = time.perf_counter()
    names = list(marks)
    phases = {f"{b}_s": round(marks[b] - marks[a], 3) for a, b in zip(names, names[1:])}
    trained_steps = total - start_step
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    result = TrainResult(steps=total, seconds=round(seconds, 3), eval=final, num_gaussians=n_gaussians,
                         backend=backend, device=str(device) if not world.distributed else f"{world.size} x {device.type}",
                         preset=options.preset,
                         steps_per_s=round(trained_steps / max(time.perf_counter() - t0, 1e-9), 3),
                         peak_gpu_mem_gb=peak, checkpoint=last_ckpt, initial_eval=initial_eval,
                         lpips_note=lpips_note)
    train_json = {k: v for k, v in result.to_dict().items() if k != "checkpoint"}
    train_json.update(eval_on="held-out" if eval_views is not None else "training views (no hold-out)",
                      held_out=len(eval_views) if eval_views is not None else 0, train_views=len(train_views),
                      resolution=list(train_views.size(0)), undistorted=data.undistorted,
                      checkpoint=last_ckpt.name if last_ckpt else None, config=to_dict(config), phases=phases,
                      processes=world.size)
    atomic_write_json(run.train_json, train_json)
    return result


def _train_step(step, params, optimizers, strategy, sstate, sampler, views: Views, config: TrainConfig, backend,
                device, absgrad, scene_scale, world: World):
    idx = sampler.at(step)
    gt, vm, k = views.batch(idx, device)
    factor = config.phase_at(step)[0]
    if factor > 1:  # coarse-to-fine: box-filtered target, intrinsics scaled (corner-origin pixels)
        h, w = gt.shape[1] // factor, gt.shape[2] // factor
        gt = F.avg_pool2d(gt[:, : h * factor, : w * factor].permute(0, 3, 1, 2), factor).permute(0, 2, 3, 1)
        k = k.clone()
        k[:, :2, :] /= factor
    sh = sh_degree_at(step, config.sh_degree, config.sh_interval)
    bg = torch.rand(len(idx), 3, device=device) if config.random_background else None
    out = render(params, vm, k, gt.shape[2], gt.shape[1], sh, backend=backend, backgrounds=bg,
                 rasterize_mode=config.rasterize_mode, absgrad=absgrad, distributed=world.distributed)
    strategy.step_pre_backward(params, optimizers, sstate, step, out.info)
    loss = photometric_loss(out.image, gt, config.ssim_weight, config.l1_weight) + strategy.regularization(params)
    loss.backward()
    lr = means_lr(config, scene_scale, step, world.size)
    for g in optimizers["means"].param_groups:
        g["lr"] = lr
    step_all(optimizers.values())
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    # Densification after the optimizer step, as gsplat's simple_trainer does.
    strategy.step_post_backward(params, optimizers, sstate, step, out.info, lr=lr)
    return loss.detach(), (out.image.detach(), gt)


def _prepare_metrics(path: Path, start_step: int) -> None:
    """Fresh run: empty file. Resumed run: keep the lines up to the checkpoint's step."""
    if start_step == 0 or not path.exists():
        atomic_write_text(path, "")
        return
    def kept(rec: dict) -> bool:  # the final evaluation at start_step is written again at the end
        step = rec.get("step", 0)
        return step < start_step or (step == start_step and "eval" not in rec)

    keep = [line for line in path.read_text().splitlines() if line.strip() and kept(json.loads(line))]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _append_metrics(path: Path, record: dict) -> None:
    from splatforge.console import to_jsonable

    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(to_jsonable(record)) + "\n")


def _progress_bar(enabled: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]train[/] {task.completed}/{task.total}"), BarColumn(),
        TextColumn("{task.fields[stats]}"),
        TextColumn("{task.fields[mem]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=not enabled, transient=False,
    )
