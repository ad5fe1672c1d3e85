"""Jobs as Ray tasks. A task opens its own `Store` on the database URL and reports progress there, so
progress and results survive the server; the server only submits, cancels, and notices crashed workers.

Each task asks Ray for one GPU when the cluster has GPUs (Ray sets the visible device), CPUs otherwise.
A task carries its attempt number: every write it makes is a compare-and-set on (state, attempt), so a
job that was cancelled, retried or re-queued after a restart cannot be overwritten by an old worker.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splatforge.errors import SplatforgeError
from splatforge.service.store import ACTIVE, Store, utcnow
from splatforge.stage import Events, Progress

log = logging.getLogger(__name__)

METRIC_KEYS = ("step", "total", "loss", "psnr", "num_gaussians", "steps_per_s", "gpu_mem_gb", "elapsed_s",
               "host_rss_gb", "host_available_gb")
INTERNAL_ADVICE = ("retry the job (POST /v1/jobs/{id}/retry, it resumes from the last checkpoint); if it fails "
                   "again, send the job log (GET /v1/jobs/{id}/log) to the maintainers")


@dataclass(frozen=True)
class TaskSpec:
    """Everything a worker needs; plain data, so it travels to any Ray host."""

    job_id: str
    attempt: int
    db_url: str
    job_dir: str
    runner: Any  # "module:function" or a picklable callable
    progress_interval_s: float = 0.5


def job_paths(job_dir: Path) -> dict[str, Path]:
    return {"upload": job_dir / "upload", "run": job_dir / "run", "log": job_dir / "job.log"}


def resolve_runner(runner: Any) -> Callable[..., Any]:
    if callable(runner):
        return runner
    module, _, name = str(runner).partition(":")
    return getattr(importlib.import_module(module), name)


def overall_progress(stage: str | None, fraction: float) -> float:
    """One number for the whole job from the stage's own fraction, weighting stages by `Stage.weight`."""
    from splatforge.pipeline import stages

    weights = {s.name: s.weight for s in stages()}
    if stage not in weights:
        return 0.0
    total, done = sum(weights.values()), 0.0
    for name, weight in weights.items():
        if name == stage:
            return min(1.0, (done + weight * max(0.0, min(1.0, fraction))) / total)
        done += weight
    return done / total


def pipeline_options(options: dict[str, Any]) -> Any:
    """A job's options (as stored) as the pipeline's; anything unknown is an InputError."""
    from splatforge.pipeline import RunOptions

    return RunOptions.from_dict(options)


class _Reporter:
    """Receives the pipeline's progress: throttled writes to the store, a line in job.log per change. When
    the store says this attempt no longer owns the job (cancelled, retried, deleted), it sets the cancel
    event: the running stage stops cleanly (training writes a checkpoint first)."""

    def __init__(self, spec: TaskSpec, store: Store, log_file: Any, events: Events):
        self.spec, self.store, self.log_file, self.events = spec, store, log_file, events
        self.metrics: dict[str, Any] = {}
        self.stage: str | None = None
        self.last_write = 0.0
        self.last_log = 0.0

    @property
    def asked_stop(self) -> bool:
        return self.events.cancelled

    def __call__(self, event: Progress) -> None:
        stage, fraction = event.stage, event.fraction
        if event.train is not None:
            for key in METRIC_KEYS:
                value = getattr(event.train, key, None)
                if isinstance(value, (int, float)):
                    self.metrics[key] = value
        now = time.monotonic()
        changed = stage != self.stage or fraction >= 1.0
        message = event.message
        if event.train is not None and event.train.loss is not None:
            message = f"step {event.train.step}/{event.train.total}, loss {event.train.loss:.4f}"
        if changed or now - self.last_log >= 5.0:
            self.log_file.write(f"{utcnow().isoformat(timespec='seconds')} [{stage}] {fraction:.0%} {message}\n")
            self.log_file.flush()
            self.last_log = now
        if not changed and now - self.last_write < self.spec.progress_interval_s:
            return
        self.stage, self.last_write = stage, now
        ok = self.store.update_where(
            self.spec.job_id, states=("running",), attempt=self.spec.attempt, stage=stage,
            stage_fraction=fraction, progress=overall_progress(stage, fraction), message=message[:500],
            metrics=dict(self.metrics))
        if not ok:
            self.events.cancel.set()


def run_job(spec: TaskSpec) -> str:
    """Run one attempt of a job (in a Ray worker, or any process). Returns the state it left the job in."""
    from splatforge.rundir import RunDir

    store = Store(spec.db_url, pooled=False, create=False)
    try:
        job = store.get(spec.job_id)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        if job is None or not store.update_where(spec.job_id, states=("queued",), attempt=spec.attempt,
                                                 state="running", started_at=utcnow(), worker=worker,
                                                 message="started"):
            return "superseded"
        paths = job_paths(Path(spec.job_dir))
        source = Path(spec.job_dir) / job.inputs["source"]
        splat_log = logging.getLogger("splatforge")
        with open(paths["log"], "a", encoding="utf-8") as log_file:
            handler = logging.StreamHandler(log_file)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            splat_log.addHandler(handler)
            if splat_log.level == logging.NOTSET or splat_log.level > logging.INFO:
                splat_log.setLevel(logging.INFO)
            log_file.write(f"{utcnow().isoformat(timespec='seconds')} attempt {spec.attempt} on {worker}\n")
            log_file.flush()
            events = Events()
            reporter = _Reporter(spec, store, log_file, events)
            events.on_progress = reporter
            # Native libraries (COLMAP's glog, CUDA) write to fd 2: send it to the job's log meanwhile. A Ray
            # worker runs one task at a time, so nothing else is writing there.
            sys.stderr.flush()
            saved_stderr = os.dup(2)
            os.dup2(log_file.fileno(), 2)
            try:
                resolve_runner(spec.runner)(source, RunDir(paths["run"]), pipeline_options(job.options), events)
            except SplatforgeError as exc:
                if reporter.asked_stop:  # the stage's clean stop after we asked for it
                    log_file.write(f"{utcnow().isoformat(timespec='seconds')} stopped: {exc.message}\n")
                    return "stopped"
                log_file.write(f"{utcnow().isoformat(timespec='seconds')} failed: {exc.message}\n  -> {exc.advice}\n")
                store.update_where(spec.job_id, states=("running",), attempt=spec.attempt, state="failed",
                                   error=exc.message, advice=exc.advice, finished_at=utcnow(),
                                   metrics=reporter.metrics or None, message="failed")
                return "failed"
            except Exception as exc:  # noqa: BLE001 - any crash of a stage becomes a failed job with advice
                log_file.write(traceback.format_exc())
                store.update_where(spec.job_id, states=("running",), attempt=spec.attempt, state="failed",
                                   error=f"internal error: {type(exc).__name__}: {exc}"[:2000],
                                   advice=INTERNAL_ADVICE.replace("{id}", spec.job_id), finished_at=utcnow(),
                                   metrics=reporter.metrics or None, message="failed")
                return "failed"
            finally:
                splat_log.removeHandler(handler)
                sys.stderr.flush()
                os.dup2(saved_stderr, 2)
                os.close(saved_stderr)
            metrics = dict(reporter.metrics)
            final = _final_metrics(RunDir(paths["run"]))
            if final:
                metrics["final"] = final
            log_file.write(f"{utcnow().isoformat(timespec='seconds')} succeeded\n")
            ok = store.update_where(spec.job_id, states=("running",), attempt=spec.attempt, state="succeeded",
                                    progress=1.0, stage_fraction=1.0, message="done", finished_at=utcnow(),
                                    metrics=metrics)
            return "succeeded" if ok else "stopped"
    finally:
        store.close()


def _final_metrics(run: Any) -> dict[str, Any]:
    from splatforge.rundir import read_json

    try:
        train = read_json(run.train_json) or {}
    except ValueError:
        return {}
    return {k: train[k] for k in ("steps", "seconds", "eval", "num_gaussians", "device", "preset") if k in train}


class RayExecutor:
    """Submits jobs to Ray and watches for tasks that died without reporting (crashed workers)."""

    def __init__(self, store: Store, *, db_url: str, jobs_dir: Path, runner: Any, address: str | None = None,
                 num_cpus: int | None = None, job_num_cpus: float = 1.0, progress_interval_s: float = 0.5):
        self.store, self.db_url, self.jobs_dir, self.runner = store, db_url, Path(jobs_dir), runner
        self.address, self.num_cpus, self.job_num_cpus = address, num_cpus, job_num_cpus
        self.progress_interval_s = progress_interval_s
        self.use_gpu = False
        self._tasks: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owns_ray = False
        self._remote: Any = None

    def start(self) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.num_cpus, **kwargs)
            self._owns_ray = True
        self.use_gpu = ray.cluster_resources().get("GPU", 0) > 0
        self._remote = ray.remote(max_retries=0)(run_job)
        self._thread = threading.Thread(target=self._watch, name="splatforge-ray-watch", daemon=True)
        self._thread.start()
        log.info("Ray ready (%s); jobs ask for %s", self.address or "local instance",
                 "1 GPU" if self.use_gpu else f"{self.job_num_cpus} CPU")

    def submit(self, job_id: str, attempt: int) -> None:
        import ray

        try:  # GPU hosts may have joined (or left) the cluster since the start
            self.use_gpu = ray.cluster_resources().get("GPU", 0) > 0
        except Exception as exc:  # noqa: BLE001 - keep the last answer
            log.debug("cluster resources: %s", exc)
        spec = TaskSpec(job_id=job_id, attempt=attempt, db_url=self.db_url, job_dir=str(self.jobs_dir / job_id),
                        runner=self.runner, progress_interval_s=self.progress_interval_s)
        options: dict[str, Any] = {"name": f"splatforge-job-{job_id[:8]}", "num_cpus": self.job_num_cpus}
        if self.use_gpu:
            options["num_gpus"] = 1
        ref = self._remote.options(**options).remote(spec)
        with self._lock:
            self._tasks[job_id] = (attempt, ref)

    def cancel(self, job_id: str) -> None:
        """Stop the job's task now (its worker process is killed; files written so far stay)."""
        import ray

        with self._lock:
            entry = self._tasks.pop(job_id, None)
        if entry is not None:
            try:
                ray.cancel(entry[1], force=True)
            except Exception as exc:  # noqa: BLE001 - already finished, or its node is gone
                log.debug("cancel %s: %s", job_id, exc)

    def running(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    def _watch(self) -> None:
        import ray

        while not self._stop.is_set():
            with self._lock:
                refs = {ref: (job_id, attempt) for job_id, (attempt, ref) in self._tasks.items()}
            if not refs:
                self._stop.wait(0.2)
                continue
            try:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            except Exception:  # noqa: BLE001 - Ray shutting down
                self._stop.wait(0.5)
                continue
            for ref in ready:
                job_id, attempt = refs[ref]
                with self._lock:
                    if self._tasks.get(job_id, (None, None))[1] is ref:
                        del self._tasks[job_id]
                try:
                    ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - cancelled (state already set) or the worker died
                    if isinstance(exc, ray.exceptions.TaskCancelledError):
                        continue
                    self.store.update_where(
                        job_id, states=ACTIVE, attempt=attempt, state="failed", finished_at=utcnow(),
                        error=f"the worker running this job stopped unexpectedly ({type(exc).__name__})",
                        advice=INTERNAL_ADVICE.replace("{id}", job_id), message="failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._owns_ray:
            import ray

            ray.shutdown()
