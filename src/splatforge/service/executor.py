"""Jobs as Ray tasks. A task opens its own `Store` on the database URL and reports progress there, so
progress and results survive the server; the server only submits, cancels, and notices crashed workers.

Each task asks Ray for one GPU when the cluster has GPUs (Ray sets the visible device), CPUs otherwise;
a job whose training names several GPUs (`train.gpus`) asks for that many, all on one host. A job no
host of the cluster can hold is refused when it is submitted (`RayExecutor.check_fits`), and a queued
one that no host can hold any more (its host left) says so in its message while it waits.
The worker records the GPU it was given (index, UUID, name) in the job's `worker` field and its log.
A task carries its attempt number: every write it makes is a compare-and-set on (state, attempt), so a
job that was cancelled, retried or re-queued after a restart cannot be overwritten by an old worker.
A worker that dies mid-job (killed, the OOM killer) is retried automatically under a new attempt, at
most `worker_retries` times: finished stages are kept and training resumes from its last checkpoint.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splatforge.errors import SplatforgeError
from splatforge.service.diskspace import (
    DiskFullTolerantFile,
    disk_full_explanation,
    is_disk_full,
    newest_checkpoint_step,
)
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


def job_gpu_request(options: dict[str, Any]) -> tuple[int, bool]:
    """(how many GPUs, all on one host, a job asks for where the cluster has GPUs; whether it needs them
    even where it has none). `train.gpus` "0,1" is two, needed (Ray picks which, and the trainer sees them
    as 0 and 1); unset, one, needed only when `train.device` names a CUDA device (else the job trains on
    the CPU of a cluster without GPUs); "cpu,cpu" (the multi-process path on the CPU) none. "all" means
    nothing on a shared cluster: refused."""
    from splatforge.errors import InputError

    train = pipeline_options(options).stages["train"]
    gpus = train.gpus.replace(" ", "")
    if gpus == "all":
        raise InputError("a job cannot ask for all GPUs", 'give a list as long as the GPUs it needs, e.g. "0,1" for two')
    named = [g for g in gpus.split(",") if g]
    if named:
        count = len([g for g in named if g.isdigit()])
        return count, count > 0
    return 1, str(train.device).strip().lower().startswith("cuda")


def job_gpu_count(options: dict[str, Any]) -> int:
    """How many GPUs a job asks Ray for on a cluster with GPUs (`job_gpu_request`)."""
    return job_gpu_request(options)[0]


def largest_gpu_host(nodes: list[dict[str, Any]]) -> int:
    """The most GPUs any one live Ray node has (`ray.nodes()`); a job's GPUs must all be on one host."""
    return max((int((n.get("Resources") or {}).get("GPU", 0)) for n in nodes if n.get("Alive")), default=0)


def _gpus(n: int) -> str:
    return f"{n} GPU{'' if n == 1 else 's'}"


def gpu_shortfall(need: int, largest: int) -> tuple[str, str] | None:
    """(error, advice) for a job asking `need` GPUs on one host of a cluster whose largest host has
    `largest`; None when it fits."""
    if need <= largest:
        return None
    asked = f"this job asks for {_gpus(need)} on one host"
    if largest == 0:
        return (f"{asked}; the cluster has no GPU",
                "leave out train.gpus and train.device to train on the CPU, or add a host with "
                f"{_gpus(need)} to the cluster (ray start --address HEAD:6379 on it)")
    example = ",".join(str(i) for i in range(largest))
    return (f"{asked}; the largest host in the cluster has {largest}",
            f'ask for at most {largest} (train.gpus "{example}"), or add a host with {_gpus(need)} to the cluster')


def waiting_note(need: int, largest: int) -> str:
    """The message of a queued job that no host can hold now (the host that could left)."""
    has = "no host has a GPU" if largest == 0 else f"the largest host has {largest}"
    return (f"waiting for a host with {_gpus(need)}: {has} now; the job starts when such a host joins the "
            "cluster (or cancel it and ask for fewer)")


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


def gpu_assignment() -> str:
    """The GPU Ray gave this worker, in words for the job's record: "gpu 0 GPU-<uuid> (NVIDIA H100 ...)".
    Ray's choice is CUDA_VISIBLE_DEVICES; the UUID and name come from nvidia-smi where there is one (they
    match `nvidia-smi --query-compute-apps` samples). Empty for a job without a GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not visible or visible in ("-1", "NoDevFiles"):
        return ""
    words = f"gpu {visible}"
    try:
        found = subprocess.run(["nvidia-smi", f"--id={visible.split(',')[0]}", "--query-gpu=uuid,name",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return words  # fake GPU resources (tests), or no driver tools: the index is all there is
    line = found.stdout.strip().splitlines()[0] if found.returncode == 0 and found.stdout.strip() else ""
    uuid, _, name = (part.strip() for part in line.partition(","))
    return f"{words} {uuid} ({name})" if uuid else words


def run_job(spec: TaskSpec) -> str:
    """Run one attempt of a job (in a Ray worker, or any process). Returns the state it left the job in."""
    from splatforge.rundir import RunDir

    store = Store(spec.db_url, pooled=False, create=False)
    try:
        job = store.get(spec.job_id)
        gpu = gpu_assignment()
        worker = f"{socket.gethostname()}:{os.getpid()}" + (f" {gpu}" if gpu else "")
        if job is None or not store.update_where(spec.job_id, states=("queued",), attempt=spec.attempt,
                                                 state="running", started_at=utcnow(), worker=worker,
                                                 message="started"):
            return "superseded"
        paths = job_paths(Path(spec.job_dir))
        source = Path(spec.job_dir) / job.inputs["source"]
        splat_log = logging.getLogger("splatforge")
        with open(paths["log"], "a", encoding="utf-8") as raw_log:
            log_file = DiskFullTolerantFile(raw_log)
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
                error, advice = explain_failure(exc, spec)
                log_file.write(f"{utcnow().isoformat(timespec='seconds')} failed: {error}\n  -> {advice}\n")
                store.update_where(spec.job_id, states=("running",), attempt=spec.attempt, state="failed",
                                   error=error, advice=advice, finished_at=utcnow(),
                                   metrics=reporter.metrics or None, message="failed")
                return "failed"
            except Exception as exc:  # noqa: BLE001 - any crash of a stage becomes a failed job with advice
                log_file.write(traceback.format_exc())
                error, advice = explain_failure(exc, spec)
                store.update_where(spec.job_id, states=("running",), attempt=spec.attempt, state="failed",
                                   error=error, advice=advice, finished_at=utcnow(),
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


def _postmortem(job_dir: Path):
    """What the job's run folder recorded before its worker died (see `splatforge.postmortem`)."""
    from splatforge import postmortem
    from splatforge.rundir import RunDir

    try:
        run = RunDir(job_paths(job_dir)["run"])
        stage = postmortem.running_stage(run)
        return postmortem.diagnose(run, stage, known_dead=True) if stage else None
    except Exception as exc:  # noqa: BLE001 - a diagnosis must never hide the failure itself
        log.debug("post-mortem of %s: %s", job_dir, exc)
        return None


def explain_failure(exc: BaseException, spec: TaskSpec) -> tuple[str, str]:
    """(error, advice) to record for a job whose pipeline raised `exc`: a full disk is named as such
    (whatever the stage made of it), an input error keeps its own words, anything else is internal."""
    job_dir = Path(spec.job_dir)
    if is_disk_full(exc, job_dir):
        return disk_full_explanation(spec.job_id, job_dir)
    if isinstance(exc, SplatforgeError):
        return exc.message, exc.advice
    return f"internal error: {type(exc).__name__}: {exc}"[:2000], INTERNAL_ADVICE.replace("{id}", spec.job_id)


def _final_metrics(run: Any) -> dict[str, Any]:
    from splatforge.rundir import read_json

    try:
        train = read_json(run.train_json) or {}
    except ValueError:
        return {}
    return {k: train[k] for k in ("steps", "seconds", "eval", "num_gaussians", "device", "preset") if k in train}


def _worker_deaths() -> tuple[type, ...]:
    """Ray's errors for a task whose process died under it (not an error of the job's own code)."""
    import ray.exceptions as rex

    return tuple(getattr(rex, name) for name in ("WorkerCrashedError", "OutOfMemoryError") if hasattr(rex, name))


@dataclass
class RayHealth:
    """What /healthz says about Ray: `ok` only while the server can still run jobs."""

    ok: bool
    detail: str
    nodes: int = 0
    checked_at: float = 0.0  # time.monotonic() of the answer

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "nodes": self.nodes}


@dataclass
class _Task:
    attempt: int
    ref: Any
    stop_by: float | None = None  # set by cancel: time.monotonic() after which the task is stopped by force
    forced: bool = False
    auto_retries: int = 0  # automatic retries after worker deaths that led to this attempt
    gpus: int = 0  # GPUs asked of Ray, on one host
    waiting: str | None = None  # the message set while no host can hold the task (`waiting_note`)
    message_before: str | None = None  # the job's message before that, given back when a host can again


@dataclass
class _PendingRecord:
    """A store write the watcher could not make (a full disk under SQLite, a database away); retried."""

    job_id: str
    attempt: int
    states: tuple[str, ...]
    values: dict[str, Any]


class RayExecutor:
    """Submits jobs to Ray, stops them (cleanly first), and watches for tasks that died without reporting.

    Ray is joined at `address`, or is the server's own local instance (`local_ray`), started by a keeper
    process that ties it to the server's life rather than to the thread that started it.
    """

    def __init__(self, store: Store, *, db_url: str, jobs_dir: Path, runner: Any, address: str | None = None,
                 num_cpus: int | None = None, job_num_cpus: float = 1.0, progress_interval_s: float = 0.5,
                 cancel_grace_s: float = 30.0, health_interval_s: float = 2.0, log_dir: Path | None = None,
                 num_gpus: int | None = None, worker_retries: int = 2):
        self.store, self.db_url, self.jobs_dir, self.runner = store, db_url, Path(jobs_dir), runner
        self.address, self.num_cpus, self.job_num_cpus = address, num_cpus, job_num_cpus
        self.progress_interval_s, self.cancel_grace_s = progress_interval_s, cancel_grace_s
        self.health_interval_s, self.log_dir, self.num_gpus = health_interval_s, log_dir, num_gpus
        self.worker_retries = worker_retries
        self.use_gpu = False
        self._tasks: dict[str, _Task] = {}
        self._pending: list[_PendingRecord] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._owns_ray = False
        self._local: Any = None  # local_ray.LocalRay when this server started its own Ray
        self._remote: Any = None
        self._health = RayHealth(False, "Ray is starting")
        self._largest_gpu_host: int | None = None  # from the last health probe
        self._next_refill = 0.0

    def start(self) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        already = "ray" in sys.modules and sys.modules["ray"].is_initialized()
        if not already and not self.address:
            from splatforge.service.local_ray import start_local_ray

            log_path = Path(self.log_dir) / "ray.log" if self.log_dir is not None else None
            self._local = start_local_ray(self.num_cpus, log_path=log_path, num_gpus=self.num_gpus)  # sets the env Ray reads at import
        import ray

        if not already:
            ray.init(address=self._local.address if self._local else self.address, log_to_driver=False,
                     logging_level=logging.WARNING)
            self._owns_ray = True
        self.use_gpu = ray.cluster_resources().get("GPU", 0) > 0
        self._remote = ray.remote(max_retries=0)(run_job)
        self._health = self._probe()
        for name, target in (("watch", self._watch), ("health", self._watch_health)):
            thread = threading.Thread(target=target, name=f"splatforge-ray-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("Ray ready (%s); jobs ask for %s", self.address or f"own instance at {self._local.address}"
                 if self._local else "joined", "1 GPU" if self.use_gpu else f"{self.job_num_cpus} CPU")

    def submit(self, job_id: str, attempt: int, auto_retries: int = 0) -> None:
        with self._lock:
            old = self._tasks.get(job_id)
        if old is not None:  # an earlier attempt still stopping (a retry during a cancel's grace period)
            self.kill(job_id)
        self._refresh_use_gpu()
        spec = TaskSpec(job_id=job_id, attempt=attempt, db_url=self.db_url, job_dir=str(self.jobs_dir / job_id),
                        runner=self.runner, progress_interval_s=self.progress_interval_s)
        options: dict[str, Any] = {"name": f"splatforge-job-{job_id[:8]}", "num_cpus": self.job_num_cpus}
        try:
            job = self.store.get(job_id)
            gpus = self.job_gpus(job.options) if job is not None else int(self.use_gpu)
        except Exception as exc:  # noqa: BLE001 - the store away, or options no longer valid: the default ask
            log.warning("job %s: could not read its GPU request (%s); it asks for the default", job_id, exc)
            gpus = int(self.use_gpu)
        if gpus:  # one GPU per job unless its training asks for several (train.gpus)
            options["num_gpus"] = gpus
        ref = self._remote.options(**options).remote(spec)
        with self._lock:
            self._tasks[job_id] = _Task(attempt, ref, auto_retries=auto_retries, gpus=gpus)

    def _refresh_use_gpu(self) -> None:
        import ray

        try:  # GPU hosts may have joined (or left) the cluster since the start
            self.use_gpu = ray.cluster_resources().get("GPU", 0) > 0
        except Exception as exc:  # noqa: BLE001 - keep the last answer
            log.debug("cluster resources: %s", exc)

    def job_gpus(self, options: dict[str, Any]) -> int:
        """The GPUs a job's task asks Ray for: on a cluster with GPUs one, or as many as `train.gpus`
        names; on a cluster without, none, unless the job needs them (`job_gpu_request`)."""
        count, needed = job_gpu_request(options)
        return count if self.use_gpu or needed else 0

    def check_fits(self, options: dict[str, Any]) -> None:
        """Raise InputError (error and advice) when no live host of the cluster has the GPUs the job would
        ask for: Ray would keep such a task waiting for ever. A multi-GPU job runs on one host (a process
        per GPU), so the bound is the largest host, not the cluster's total. When Ray cannot tell, the job
        is let through (the watcher notes a job that waits for a host nobody has)."""
        import ray

        from splatforge.errors import InputError

        self._refresh_use_gpu()
        need = self.job_gpus(options)
        if not need:
            return
        try:
            largest = largest_gpu_host(ray.nodes())
        except Exception as exc:  # noqa: BLE001 - Ray not answering: health says so; do not refuse for it
            log.debug("ray.nodes: %s", exc)
            return
        problem = gpu_shortfall(need, largest)
        if problem is not None:
            raise InputError(*problem)

    def cancel(self, job_id: str, grace_s: float | None = None) -> None:
        """Ask the job's worker to stop cleanly; stop it by force if it is still running `grace_s` later
        (default `cancel_grace_s`). The caller has already moved the job out of the active states."""
        grace = self.cancel_grace_s if grace_s is None else grace_s
        with self._lock:
            task = self._tasks.get(job_id)
            if task is None:
                return
            deadline = time.monotonic() + max(0.0, grace)
            task.stop_by = deadline if task.stop_by is None else min(task.stop_by, deadline)
        self._ask_to_stop(job_id, task)
        if grace <= 0:
            self._force(job_id, task)

    def _ask_to_stop(self, job_id: str, task: _Task) -> None:
        """The polite half of cancel. Today the ask travels through the store: the worker reads its job's
        state at every progress report (at most `progress_interval_s` apart) and, once the job is no longer
        its to run, the trainer writes a checkpoint and stops at the next step (`_Reporter`); other stages
        stop at their next report. A worker-side stop event would be set from that same report, so
        nothing is sent from here; a transport that needs the server to send (a Ray actor method, a
        file) goes in this method."""

    def _force(self, job_id: str, task: _Task) -> None:
        import ray

        task.forced = True
        try:
            ray.cancel(task.ref, force=True)
        except Exception as exc:  # noqa: BLE001 - already finished, or its node is gone
            log.debug("cancel %s: %s", job_id, exc)

    def kill(self, job_id: str, wait_s: float = 10.0) -> bool:
        """Stop the job's task by force now and wait (up to `wait_s`) until it is gone, so that its files
        can be removed or a new attempt started. Returns whether no task of the job is left running."""
        import ray

        with self._lock:
            task = self._tasks.get(job_id)
        if task is None:
            return True
        if task.stop_by is None:
            task.stop_by = time.monotonic()
        self._force(job_id, task)
        try:
            ready, _ = ray.wait([task.ref], num_returns=1, timeout=wait_s)
        except Exception as exc:  # noqa: BLE001 - Ray going away: nothing left to run the task either
            log.debug("wait for %s: %s", job_id, exc)
            ready = [task.ref]
        return bool(ready)

    def running(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    def health(self) -> RayHealth:
        if self._local is not None:
            problem = self._local.problem()
            if problem:
                return RayHealth(False, problem, checked_at=time.monotonic())
        health = self._health
        age = time.monotonic() - health.checked_at
        if age > max(10.0, 5 * self.health_interval_s):
            return RayHealth(False, f"Ray has not answered for {age:.0f} s", checked_at=health.checked_at)
        return health

    def _probe(self) -> RayHealth:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        nodes = ray.nodes()
        alive = [n for n in nodes if n.get("Alive")]
        self._largest_gpu_host = largest_gpu_host(alive)
        if not any(n.get("NodeID") == node_id for n in alive):
            return RayHealth(False, "the Ray node this server submits through is dead", len(alive), time.monotonic())
        return RayHealth(True, f"{len(alive)} Ray node(s) alive", len(alive), time.monotonic())

    def _watch_health(self) -> None:
        while not self._stop.wait(self.health_interval_s):
            try:
                self._health = self._probe()
            except Exception as exc:  # noqa: BLE001 - any failure to answer is an unhealthy Ray
                self._health = RayHealth(False, f"Ray does not answer ({type(exc).__name__}: {exc})"[:300],
                                         checked_at=time.monotonic())
                continue
            try:
                self._note_waiting()
            except Exception:  # noqa: BLE001 - a note is not worth the health watcher
                log.exception("could not note the jobs waiting for GPUs")

    def _note_waiting(self) -> None:
        """Say in a queued job's message when no live host has the GPUs its task asks for (Ray keeps such
        a task waiting, silently, until one joins), and give the old message back once one has. The job
        stays queued: a host that left (restarted, was drained) may come back; the user may cancel."""
        largest = self._largest_gpu_host
        if largest is None:
            return
        with self._lock:
            tasks = [(job_id, task) for job_id, task in self._tasks.items() if task.gpus and task.stop_by is None]
        for job_id, task in tasks:
            note = waiting_note(task.gpus, largest) if task.gpus > largest else None
            if note is not None and note != task.waiting:
                job = self.store.get(job_id)
                if job is None or job.state != "queued" or job.attempt != task.attempt:
                    continue
                if self.store.update_where(job_id, states=("queued",), attempt=task.attempt, message=note[:500]):
                    if task.waiting is None:
                        task.message_before = job.message
                    task.waiting = note
                    log.warning("job %s: %s", job_id, note)
            elif note is None and task.waiting is not None:
                self.store.update_where(job_id, states=("queued",), attempt=task.attempt,
                                        message=(task.message_before or "queued")[:500])
                task.waiting = None

    def _watch(self) -> None:
        """Notice finished and crashed tasks, force-stop cancelled ones past their grace, retry store
        writes that failed. Nothing may end this loop but `stop()`: every error is logged and waited out."""
        while not self._stop.is_set():
            try:
                self._watch_once()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
                log.exception("the job watcher hit an error; it goes on")
                self._stop.wait(1.0)

    def _watch_once(self) -> None:
        import ray

        now = time.monotonic()
        if now >= self._next_refill:  # the store's disk reserve, given up on a full disk, comes back with room
            self._next_refill = now + 10.0
            self.store.refill_reserve()
        self._retry_pending()
        with self._lock:
            tasks = dict(self._tasks)
        for job_id, task in tasks.items():
            if task.stop_by is not None and not task.forced and now >= task.stop_by:
                log.warning("job %s did not stop within %.0f s of its cancel; stopping it by force",
                            job_id, self.cancel_grace_s)
                self._force(job_id, task)
        if not tasks:
            self._stop.wait(0.2)
            return
        by_ref = {task.ref: job_id for job_id, task in tasks.items()}
        try:
            ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0.5)
        except Exception as exc:  # noqa: BLE001 - Ray shutting down or unreachable; health says so
            log.debug("ray.wait: %s", exc)
            self._stop.wait(0.5)
            return
        for ref in ready:
            job_id = by_ref[ref]
            with self._lock:
                if job_id in self._tasks and self._tasks[job_id].ref is ref:
                    del self._tasks[job_id]
            self._finished(job_id, tasks[job_id])

    def _finished(self, job_id: str, task: _Task) -> None:
        import ray

        try:
            result, error = ray.get(task.ref, timeout=30), None
        except Exception as exc:  # noqa: BLE001 - cancelled, or the worker died, or run_job raised
            result, error = None, exc
        if task.stop_by is not None:  # we asked it to stop: say how it went
            self._record(job_id, task.attempt, ("cancelled",), message=self._cancel_message(job_id, task, result))
            return
        if error is None or isinstance(error, ray.exceptions.TaskCancelledError):
            return  # the worker recorded its own outcome
        cause = getattr(error, "cause", None) or error  # a RayTaskError carries the worker's exception
        job_dir = self.jobs_dir / job_id
        if is_disk_full(cause, job_dir):
            message, advice = disk_full_explanation(job_id, job_dir)
        else:
            message = f"the worker running this job stopped unexpectedly ({type(cause).__name__})"
            advice = INTERNAL_ADVICE.replace("{id}", job_id)
            death = _postmortem(job_dir)
            if death is not None:
                message, advice = f"{message}: {death.message}", f"{death.advice}; then {advice}"
            if isinstance(error, _worker_deaths()) and task.auto_retries < self.worker_retries:
                if self._retry_after_death(job_id, task, message):
                    return
            if task.auto_retries:
                message += f" (after {task.auto_retries} automatic retr{'y' if task.auto_retries == 1 else 'ies'})"
        self._record(job_id, task.attempt, ACTIVE, state="failed", finished_at=utcnow(), error=message,
                     advice=advice, message="failed")

    def _retry_after_death(self, job_id: str, task: _Task, why: str) -> bool:
        """Queue a job whose worker died again under a new attempt; False when that cannot be recorded (the
        caller records the failure instead). A job moved on meanwhile (cancelled, retried) is left alone."""
        number = task.auto_retries + 1
        step = newest_checkpoint_step(self.jobs_dir / job_id / "run")
        resume = f"training resumes from its checkpoint at step {step}" if step is not None else "finished stages are kept"
        note = f"queued again: {why}; automatic retry {number} of {self.worker_retries}, {resume}"
        try:
            job = self.store.get(job_id)
            if job is None or job.attempt != task.attempt or job.state not in ACTIVE:
                return True
            attempt = self.store.claim_attempt(job_id, job.owner or "", ACTIVE, attempt=task.attempt,
                                               message=note[:500])
        except Exception as exc:  # noqa: BLE001 - e.g. the store's disk is full: record the failure instead
            log.warning("could not queue job %s again after its worker died (%s)", job_id, exc)
            return False
        if attempt is None:
            return True
        log.warning("job %s: %s", job_id, note)
        try:
            with open(job_paths(self.jobs_dir / job_id)["log"], "a", encoding="utf-8") as f:
                f.write(f"{utcnow().isoformat(timespec='seconds')} {note}\n")
        except OSError as exc:
            log.debug("job log of %s: %s", job_id, exc)
        self.submit(job_id, attempt, auto_retries=number)
        return True

    def _cancel_message(self, job_id: str, task: _Task, result: str | None) -> str:
        step = newest_checkpoint_step(self.jobs_dir / job_id / "run")
        kept = f"; its checkpoint at training step {step} is kept" if step is not None else ""
        if result == "superseded":
            return "cancelled before it started"
        if task.forced or result is None:
            return (f"cancelled: the worker did not stop within {self.cancel_grace_s:.0f} s and was stopped by "
                    f"force{kept}")
        return f"cancelled: the worker stopped cleanly{kept}"

    def _record(self, job_id: str, attempt: int, states: tuple[str, ...], **values: Any) -> None:
        try:
            self.store.update_where(job_id, states=states, attempt=attempt, **values)
        except Exception as exc:  # noqa: BLE001 - e.g. SQLite on a full disk: try again later
            log.warning("could not record job %s (%s); will retry", job_id, exc)
            with self._lock:
                self._pending.append(_PendingRecord(job_id, attempt, tuple(states), values))
                del self._pending[:-1000]

    def _retry_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for i, record in enumerate(pending):
            try:
                self.store.update_where(record.job_id, states=record.states, attempt=record.attempt, **record.values)
            except Exception:  # noqa: BLE001 - still failing: keep it and the rest for the next round
                with self._lock:
                    self._pending[:0] = pending[i:]
                self._stop.wait(1.0)
                return

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._owns_ray:
            import ray

            ray.shutdown()
        if self._local is not None:
            self._local.stop()
