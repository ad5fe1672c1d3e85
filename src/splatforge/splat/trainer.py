"""The training loop: scene in the run folder -> Gaussians, checkpoints, metrics, held-out renders.

Speed on the GPU: images live on the device as uint8 and are converted per batch; nothing waits for
the GPU (`.item()`, `.cpu()`) except at logging, checkpoint and evaluation steps, and inside gsplat's
densification (every `refine_every` steps). Learning rates are set from the step number, not from a
scheduler object, so that a resumed run continues on exactly the same schedule.

Nothing is lost: checkpoints every `checkpoint_every` steps and at the end (atomic, newest
`keep_checkpoints` kept). SIGINT/SIGTERM set a flag; the step in flight finishes, a checkpoint is
written, and `TrainingInterrupted` is raised (the CLI exits 130). Out of GPU memory stops with the
last checkpoint kept and advice naming what to change.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from splatforge.console import console, log
from splatforge.errors import InputError, TrainingError
from splatforge.rundir import RunDir, atomic_path, atomic_write_json, atomic_write_text
from splatforge.splat import checkpoint as ckpt
from splatforge.splat.data import DataOptions, TrainData, Views, load_data
from splatforge.splat.gaussians import InitOptions, empty_like_state, init_gaussians, sh_degree_at
from splatforge.splat.losses import photometric_loss, psnr
from splatforge.splat.metrics import holdout_psnr, holdout_ssim, make_lpips
from splatforge.splat.presets import Preset, get_preset
from splatforge.splat.progress import LogClock, train_progress_bar
from splatforge.splat.render import render, resolve_backend
from splatforge.splat.strategy import StrategyOptions, load_strategy_state, make_strategy, strategy_state_dict

LR_KEYS = {"means": "lr_means", "scales": "lr_scales", "quats": "lr_quats", "opacities": "lr_opacities",
           "sh0": "lr_sh0", "shN": "lr_shN"}


class TrainingInterrupted(TrainingError):
    """SIGINT/SIGTERM: a checkpoint was written; running again (with resume) continues from it."""

    def __init__(self, step: int, signame: str):
        by = "request" if signame == "request" else signame
        super().__init__(f"training stopped by {by} at step {step}; a checkpoint was written",
                         "run the same command again to continue from it (--resume is the default)",
                         exit_code=130)
        self.step = step


@dataclass
class TrainOptions:
    """What to train and how. Fields left None come from the preset."""

    preset: str = "default"  # fast | default | quality | mcmc
    steps: int | None = None
    backend: str = "auto"  # gsplat on CUDA, reference otherwise
    device: str | None = None  # None: cuda when available
    resume: bool = True  # continue from the newest checkpoint when there is one
    test_every: int = 8  # every n-th image is held out for evaluation; 0 = none
    downscale: float | int = 1  # divide image sizes by this
    sh_degree: int = 3
    seed: int = 0
    checkpoint_every: int = 2000
    keep_checkpoints: int = 3
    max_gaussians: int | None = None  # cap (MCMC's cap_max; for the default strategy, prunes the faintest)
    strategy: str | None = None  # default | mcmc (None: the preset's)
    batch_size: int | None = None  # cameras per step (None: the preset's)
    log_every: int = 100
    log_every_s: float = 5.0  # also log when this many seconds passed since the last log (0: steps only)
    eval_every: int = 0  # also evaluate every n steps (0: only before and after training)
    save_renders: bool = True
    show_progress: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)  # any `Preset` field, e.g. {"refine_every": 50}


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

def resolve_preset(options: TrainOptions) -> Preset:
    preset = get_preset(options.preset)
    if options.steps is not None:
        if options.steps < 1:
            raise InputError(f"--steps must be positive, got {options.steps}", "give a number of steps >= 1")
        preset = preset.scaled_to(options.steps)
    over = dict(options.overrides)
    if options.strategy is not None:
        over["strategy"] = options.strategy
    if options.batch_size is not None:
        over["batch_size"] = options.batch_size
    over["sh_degree"] = options.sh_degree
    if options.max_gaussians is not None:
        over["cap_max"] = options.max_gaussians
    preset = preset.with_overrides(over)
    if preset.strategy not in ("default", "mcmc"):
        raise InputError(f"unknown strategy {preset.strategy!r}", "use default or mcmc")
    if not 0 <= preset.sh_degree <= 3:
        raise InputError(f"sh_degree must be 0..3, got {preset.sh_degree}", "use --sh-degree 0, 1, 2 or 3")
    return preset


def make_optimizers(params: torch.nn.ParameterDict, preset: Preset, scene_scale: float,
                    device: torch.device) -> dict[str, torch.optim.Optimizer]:
    """One Adam per parameter (what gsplat's strategies expect); batch-size scaling as gsplat's simple_trainer.

    Plain (foreach) Adam rather than gsplat's SelectiveAdam: with the images at 1080p nearly every Gaussian is
    visible in every view, so skipping invisible ones saves little, and plain Adam runs on the CPU backend too.
    """
    bs = preset.batch_size
    out = {}
    for name, p in params.items():
        lr = getattr(preset, LR_KEYS[name]) * (scene_scale if name == "means" else 1.0) * math.sqrt(bs)
        out[name] = torch.optim.Adam([{"params": p, "lr": lr, "name": name}], eps=1e-15 / math.sqrt(bs),
                                     betas=(1 - bs * (1 - 0.9), 1 - bs * (1 - 0.999)))
    return out


def means_lr(preset: Preset, scene_scale: float, step: int) -> float:
    """Exponential decay of the means' learning rate to `lr_means_final_factor` over the run."""
    t = min(step / max(preset.steps, 1), 1.0)
    return preset.lr_means * scene_scale * math.sqrt(preset.batch_size) * preset.lr_means_final_factor ** t


class BatchSampler:
    """Which training views each step uses: shuffled epochs, drawn for the whole run up front from `seed`.

    The schedule [steps, B] is a pure function of (n, batch_size, steps, seed), so a resumed run needs no
    sampler state, and it is moved to the device once: picking a batch never waits for the GPU.
    """

    def __init__(self, n: int, batch_size: int, steps: int, seed: int, device: torch.device):
        self.batch_size = min(batch_size, n)
        generator = torch.Generator().manual_seed(seed)
        per_epoch = n // self.batch_size
        epochs = -(-steps // per_epoch)
        perms = [torch.randperm(n, generator=generator)[: per_epoch * self.batch_size] for _ in range(epochs)]
        self.schedule = torch.cat(perms).reshape(-1, self.batch_size)[:steps].to(device)

    def at(self, step: int) -> torch.Tensor:
        return self.schedule[step]


def enforce_cap(params, optimizers, state, cap: int) -> None:
    """Default strategy with a cap: drop the faintest Gaussians above `cap` (gsplat's own `remove` keeps
    optimizer and strategy state consistent)."""
    n = len(params["means"])
    if n <= cap:
        return
    from gsplat.strategy.ops import remove

    order = torch.argsort(params["opacities"].detach())
    mask = torch.zeros(n, dtype=torch.bool, device=params["means"].device)
    mask[order[: n - cap]] = True
    remove(params=params, optimizers=optimizers, state=state, mask=mask)


def gpu_mem_gb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.memory_allocated(device) / 1e9


@torch.no_grad()
def evaluate(params, views: Views, sh_degree: int, backend: str, device: torch.device, preset: Preset,
             lpips_fn=None, render_dir: Path | None = None) -> dict[str, float | None]:
    """Mean PSNR / SSIM (/ LPIPS) over `views`, one view at a time, as gsplat's simple_trainer computes them
    (metrics.py); optionally writes render|photo PNGs."""
    psnrs, ssims, lpipss = [], [], []
    for i in range(len(views)):
        idx = torch.tensor([i])
        gt, vm, k = views.batch(idx, device)
        out = render(params, vm, k, gt.shape[2], gt.shape[1], sh_degree, backend=backend,
                     rasterize_mode=preset.rasterize_mode)
        img = out.image.clamp(0, 1)
        psnrs.append(float(holdout_psnr(img, gt)))
        ssims.append(float(holdout_ssim(img, gt)))
        lp = lpips_fn(img, gt) if lpips_fn is not None else None
        if lp is not None:
            lpipss.append(float(lp))
        if render_dir is not None:
            import cv2

            pair = torch.cat([img[0], gt[0]], dim=1).mul(255).round().byte().cpu().numpy()
            name = Path(views.names[i]).stem + ".png"
            render_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(render_dir / name) as tmp:
                cv2.imwrite(str(tmp), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
            "lpips": float(np.mean(lpipss)) if lpipss else None}


class _StopFlag:
    """SIGINT/SIGTERM -> a flag the loop checks after each step (handlers only in the main thread)."""

    def __init__(self):
        self.signame: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.signame is not None and signum == signal.SIGINT:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signame = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def oom_error(step: int, n_gaussians: int, data: TrainData, preset: Preset, have_ckpt: bool) -> TrainingError:
    w, h = data.train.size(0)
    advice = [f"train at lower resolution (--downscale 2 gives {w // 2}x{h // 2})",
              f"cap the Gaussians (--max-gaussians {max(10_000, int(n_gaussians * 0.6))})"]
    if preset.sh_degree > 1:
        advice.append(f"use fewer SH degrees (--sh-degree {preset.sh_degree - 1})")
    if preset.batch_size > 1:
        advice.append("use --batch-size 1")
    kept = "the last checkpoint is kept, --resume continues from it" if have_ckpt else "no checkpoint yet"
    return TrainingError(f"out of GPU memory at step {step} with {n_gaussians:,} Gaussians at {w}x{h} ({kept})",
                         "; or ".join(advice))


# --- the loop -----------------------------------------------------------------------------------------

def train(run: RunDir | Path | str, options: TrainOptions | None = None,
          progress: Callable[[dict], None] | None = None) -> TrainResult:
    """Train on `run.transforms_json`; write checkpoints/, metrics.jsonl, train.json and renders/.

    `progress` receives one dict per logging step: step, total, loss, psnr, num_gaussians, eta_s,
    elapsed_s, steps_per_s, gpu_mem_gb. If it returns "stop", training stops as on SIGTERM: a checkpoint
    is written and `TrainingInterrupted` raised (for callers in a thread, where signals do not reach).
    """
    options = options or TrainOptions()
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    return _train(run, options, progress)  # the caller (CLI, pipeline) records the stage in run.json


def _train(run: RunDir, options: TrainOptions, progress: Callable[[dict], None] | None) -> TrainResult:
    from splatforge.scene import read_scene

    if not run.transforms_json.exists():
        raise InputError(f"{run.transforms_json} does not exist",
                         "run the pose stage first, or give a transforms.json / COLMAP folder to `splatforge train`")
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backend = resolve_backend(options.backend, device)
    preset = resolve_preset(options)
    absgrad = preset.absgrad and backend == "gsplat"
    if preset.absgrad and not absgrad:
        log.info("absgrad needs the gsplat backend: densifying on plain gradients")
    grow_grad2d = preset.grow_grad2d_absgrad if absgrad else preset.grow_grad2d

    torch.manual_seed(options.seed)
    init_gen = torch.Generator().manual_seed(options.seed)
    scene = read_scene(run.transforms_json)
    data = load_data(scene, DataOptions(test_every=options.test_every, downscale=options.downscale), device)
    scene_scale = 1.1 * data.scene_radius
    train_views = data.train
    eval_views = data.test
    if not train_views.same_size and preset.batch_size > 1:
        log.info("images differ in size: one camera per step")
        preset = replace(preset, batch_size=1)

    # --- state: fresh or from the newest checkpoint ---------------------------------------------------
    newest = ckpt.newest_checkpoint(run.checkpoints) if options.resume else None
    saved = ckpt.load_checkpoint(newest) if newest is not None else None
    if saved is not None:
        params = empty_like_state({k: tuple(v.shape) for k, v in saved["params"].items()}, device)
        with torch.no_grad():
            for k, v in saved["params"].items():
                params[k].copy_(v.to(device))
        if saved["params"]["shN"].shape[1] != (preset.sh_degree + 1) ** 2 - 1:
            raise InputError("the checkpoint was trained with another SH degree",
                             "use the same --sh-degree, or --no-resume to start over")
    else:
        cap = preset.cap_max if (preset.strategy == "mcmc" or options.max_gaussians) else None
        params = init_gaussians(data.points, data.colors, data.scene_center, data.scene_radius,
                                InitOptions(sh_degree=preset.sh_degree, init_opacity=preset.init_opacity,
                                            init_scale=preset.init_scale, random_points=preset.random_points,
                                            max_points=cap), init_gen, device)
        ckpt.clear_checkpoints(run.checkpoints)
    optimizers = make_optimizers(params, preset, scene_scale, device)
    strategy_opts = StrategyOptions(
        kind=preset.strategy, refine_start=preset.refine_start, refine_stop=preset.refine_stop,
        refine_every=preset.refine_every, reset_every=preset.reset_every or (preset.steps + 1),
        grow_grad2d=grow_grad2d, absgrad=absgrad, prune_opa=preset.prune_opa, cap_max=preset.cap_max,
        noise_lr=preset.noise_lr)
    strategy, sstate = make_strategy(strategy_opts, scene_scale)
    strategy.check_sanity(params, optimizers)
    sampler = BatchSampler(len(train_views), preset.batch_size, preset.steps, options.seed,
                           train_views.index_device)
    start_step, elapsed_before, initial_eval = 0, 0.0, None
    if saved is not None:
        for k, opt in optimizers.items():
            opt.load_state_dict(saved["optimizers"][k])
        load_strategy_state(sstate, saved["strategy"], device)
        torch.set_rng_state(saved["rng"]["torch"])
        if device.type == "cuda" and saved["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(saved["rng"]["cuda"], device)
        start_step, elapsed_before = int(saved["step"]), float(saved.get("elapsed_s", 0.0))
        initial_eval = saved.get("initial_eval")
        log.info("resuming from %s (step %d)", newest.name, start_step)

    lpips_fn, lpips_note = make_lpips(device)
    _prepare_metrics(run.metrics_jsonl, start_step)
    if saved is None and eval_views is not None:
        initial_eval = evaluate(params, eval_views, 0, backend, device, preset)

    def payload(step: int, elapsed: float) -> dict:
        return {"step": step, "elapsed_s": elapsed, "preset": asdict(preset), "backend": backend,
                "params": {k: v.detach().cpu() for k, v in params.items()},
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "strategy": strategy_state_dict(sstate),
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                "initial_eval": initial_eval, "scene_scale": scene_scale}

    total = preset.steps
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    last_log_t, last_log_step = t0, start_step
    log_clock = LogClock(options.log_every, options.log_every_s)
    step = start_step
    last_ckpt: Path | None = newest
    bar = _progress_bar(options.show_progress and start_step < total)
    task = bar.add_task("train", total=total, completed=start_step, loss=float("nan"), psnr=float("nan"),
                        ng=len(params["means"]), mem="")
    try:
        with _StopFlag() as stop, bar:
            for step in range(start_step, total):
                try:
                    loss, last_images = _train_step(step, params, optimizers, strategy, sstate, sampler,
                                                         train_views, preset, backend, device, absgrad,
                                                         scene_scale, options.max_gaussians)
                except (torch.OutOfMemoryError, RuntimeError) as exc:
                    if not isinstance(exc, torch.OutOfMemoryError) and "out of memory" not in str(exc):
                        raise
                    n = len(params["means"])
                    del params, optimizers, sstate
                    torch.cuda.empty_cache()
                    raise oom_error(step, n, data, preset, last_ckpt is not None) from None
                done = step + 1
                if log_clock.due(done) or done == total or stop.signame:
                    batch_psnr = psnr(*[t.detach().clamp(0, 1) for t in last_images])
                    now = time.perf_counter()
                    sps = (done - last_log_step) / max(now - last_log_t, 1e-9)
                    last_log_t, last_log_step = now, done
                    rec = {"step": done, "elapsed_s": round(elapsed_before + now - t0, 3),
                           "loss": float(loss), "psnr": float(batch_psnr), "num_gaussians": len(params["means"]),
                           "gpu_mem_gb": gpu_mem_gb(device), "steps_per_s": round(sps, 3)}
                    _append_metrics(run.metrics_jsonl, rec)
                    mem = f"{rec['gpu_mem_gb']:.1f} GB" if rec["gpu_mem_gb"] is not None else ""
                    bar.update(task, completed=done, loss=rec["loss"], psnr=rec["psnr"],
                               ng=rec["num_gaussians"], mem=mem)
                    if progress is not None:
                        answer = progress({**rec, "total": total, "eta_s": (total - done) / max(sps, 1e-9)})
                        if answer == "stop" and not stop.signame:  # a caller without signals (job service)
                            stop.signame = "request"
                if options.eval_every and done % options.eval_every == 0 and done != total and eval_views:
                    ev = evaluate(params, eval_views, sh_degree_at(step, preset.sh_degree, preset.sh_interval),
                                  backend, device, preset, lpips_fn)
                    _append_metrics(run.metrics_jsonl, {"step": done, "elapsed_s": round(
                        elapsed_before + time.perf_counter() - t0, 3), "eval": ev})
                if stop.signame:
                    last_ckpt = ckpt.save_checkpoint(run.checkpoints, done,
                                                     payload(done, elapsed_before + time.perf_counter() - t0),
                                                     options.keep_checkpoints)
                    raise TrainingInterrupted(done, stop.signame)
                if done % options.checkpoint_every == 0 and done != total:
                    last_ckpt = ckpt.save_checkpoint(run.checkpoints, done,
                                                     payload(done, elapsed_before + time.perf_counter() - t0),
                                                     options.keep_checkpoints)
    except torch.OutOfMemoryError:  # outside a step (evaluation, checkpoint)
        raise oom_error(step, -1, data, preset, last_ckpt is not None) from None

    seconds = elapsed_before + time.perf_counter() - t0
    if total > start_step or last_ckpt is None:
        last_ckpt = ckpt.save_checkpoint(run.checkpoints, total, payload(total, seconds), options.keep_checkpoints)
    final_sh = sh_degree_at(total - 1, preset.sh_degree, preset.sh_interval)
    views = eval_views if eval_views is not None else train_views
    final = evaluate(params, views, final_sh, backend, device, preset, lpips_fn,
                     run.renders if options.save_renders else None)
    _append_metrics(run.metrics_jsonl, {"step": total, "elapsed_s": round(seconds, 3), "eval": final})
    trained_steps = total - start_step
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    result = TrainResult(steps=total, seconds=round(seconds, 3), eval=final, num_gaussians=len(params["means"]),
                         backend=backend, device=str(device), preset=preset.name,
                         steps_per_s=round(trained_steps / max(time.perf_counter() - t0, 1e-9), 3),
                         peak_gpu_mem_gb=peak, checkpoint=last_ckpt, initial_eval=initial_eval,
                         lpips_note=lpips_note)
    train_json = {k: v for k, v in result.to_dict().items() if k != "checkpoint"}
    train_json.update(eval_on="held-out" if eval_views is not None else "training views (no hold-out)",
                      held_out=len(eval_views) if eval_views is not None else 0, train_views=len(train_views),
                      resolution=list(train_views.size(0)), undistorted=data.undistorted,
                      checkpoint=last_ckpt.name if last_ckpt else None)
    atomic_write_json(run.train_json, train_json)
    return result


def _train_step(step, params, optimizers, strategy, sstate, sampler, views: Views, preset: Preset, backend,
                device, absgrad, scene_scale, cap):
    idx = sampler.at(step)
    gt, vm, k = views.batch(idx, device)
    factor = preset.resolution_factor(step)
    if factor > 1:  # coarse-to-fine: box-filtered target, intrinsics scaled (corner-origin pixels)
        h, w = gt.shape[1] // factor, gt.shape[2] // factor
        gt = F.avg_pool2d(gt[:, : h * factor, : w * factor].permute(0, 3, 1, 2), factor).permute(0, 2, 3, 1)
        k = k.clone()
        k[:, :2, :] /= factor
    sh = sh_degree_at(step, preset.sh_degree, preset.sh_interval)
    bg = None
    if preset.random_background:
        bg = torch.rand(len(idx), 3, device=device)
    out = render(params, vm, k, gt.shape[2], gt.shape[1], sh, backend=backend, backgrounds=bg,
                 rasterize_mode=preset.rasterize_mode, absgrad=absgrad)
    if preset.strategy == "default":
        strategy.step_pre_backward(params, optimizers, sstate, step, out.info)
    loss = photometric_loss(out.image, gt, preset.ssim_weight)
    if preset.opacity_reg > 0:
        loss = loss + preset.opacity_reg * torch.sigmoid(params["opacities"]).mean()
    if preset.scale_reg > 0:
        loss = loss + preset.scale_reg * torch.exp(params["scales"]).mean()
    loss.backward()
    lr = means_lr(preset, scene_scale, step)
    for g in optimizers["means"].param_groups:
        g["lr"] = lr
    for opt in optimizers.values():
        opt.step()
        opt.zero_grad(set_to_none=True)
    # Densification after the optimizer step, as gsplat's simple_trainer does.
    if preset.strategy == "default":
        strategy.step_post_backward(params, optimizers, sstate, step, out.info, packed=False)
        # gsplat 1.5.3's DefaultStrategy never resets opacities (`step % n == 0 & step > 0` parses as a
        # chained comparison that is always False), so the 3DGS reset is applied here.
        if preset.reset_every and 0 < step < preset.refine_stop and step % preset.reset_every == 0:
            from gsplat.strategy.ops import reset_opa

            reset_opa(params=params, optimizers=optimizers, state=sstate, value=preset.prune_opa * 2.0)
        if cap is not None and step % preset.refine_every == 0:
            enforce_cap(params, optimizers, sstate, cap)
    else:
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
    return train_progress_bar(enabled, console)
