"""A stage, and the one way to run it.

A stage is one object: its name, its options dataclass, `run(run_dir, options, events) -> summary`,
`done(run_dir)`, and the run-folder entries it reads and writes. `run_stage` is the only caller of
`Stage.run`: the command line, `splatforge run`, the job service and the bench all go through it, so a
stage's record in run.json, its start/end events and its summary exist once.

Progress is typed (`Progress`, with `TrainMetrics` for training steps) and cancellation is a
`threading.Event` in `Events`: a stage checks it between units of work and stops cleanly (training
writes a checkpoint first), raising `Cancelled`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from splatforge.errors import SplatforgeError
from splatforge.options import comparable
from splatforge.rundir import RunDir

log = logging.getLogger("splatforge")


@dataclass(frozen=True)
class TrainMetrics:
    """One logging step of training."""

    step: int
    total: int
    loss: float | None = None
    psnr: float | None = None  # of the training batch
    num_gaussians: int | None = None
    steps_per_s: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    # memory in GiB: what torch allocated and reserved on the GPU, this process's resident size, what the
    # machine has available
    gpu_mem_gb: float | None = None
    gpu_reserved_gb: float | None = None
    host_rss_gb: float | None = None
    host_available_gb: float | None = None
    host_total_gb: float | None = None


@dataclass(frozen=True)
class Progress:
    """What a running stage reports: how far it is (0..1 of the stage) and what it is doing."""

    stage: str
    fraction: float
    message: str = ""
    train: TrainMetrics | None = None
    seconds: float | None = None  # set on the event that ends a stage


def train_stats(metrics: TrainMetrics | None) -> str:
    """"loss 0.0412  PSNR 27.31  #G 152,004"; dashes before the first measurement (not "nan"). Here, not in
    the trainer, so a progress display does not import torch and gsplat for a run that does not train."""
    if metrics is None or metrics.loss is None:
        return "loss —  PSNR —"
    return f"loss {metrics.loss:.4f}  PSNR {metrics.psnr:.2f}  #G {metrics.num_gaussians or 0:,}"


@dataclass
class Events:
    """The channel between a running stage and its caller: progress out, cancellation in."""

    on_progress: Callable[[Progress], None] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def progress(self, stage: str, fraction: float, message: str = "", **kwargs: Any) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(stage, max(0.0, min(1.0, fraction)), message, **kwargs))

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def check(self, stage: str) -> None:
        """Raise `Cancelled` when cancellation was asked for (between units of work)."""
        if self.cancel.is_set():
            raise Cancelled(stage)


class Cancelled(SplatforgeError):
    """The caller asked the stage to stop (Ctrl-C, SIGTERM, a cancelled job); what was done is kept."""

    def __init__(self, stage: str, detail: str = ""):
        super().__init__(f"{stage} was stopped on request{': ' + detail if detail else ''}",
                         "run the same command again to continue from where it stopped", exit_code=130)
        self.stage = stage


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline. `run` returns the short summary stored in run.json."""

    name: str
    options: type  # the options dataclass; `options()` gives the defaults
    run: Callable[[RunDir, Any, Events], dict[str, Any]]
    done: Callable[[RunDir], bool]  # its outputs are on disk
    reads: tuple[str, ...] = ()  # run-folder entries it needs (documentation and checks)
    writes: tuple[str, ...] = ()
    help: str = ""
    after: str | None = None  # for added stages: run after this one (default: at the end)
    weight: float = 0.05  # its usual share of a whole run's time (one progress number for a job)


def is_complete(stage: Stage, run: RunDir, options: Any) -> bool:
    """Finished, outputs on disk, and with the same options (those that change the result)."""
    entry = run.read_manifest()["stages"].get(stage.name, {})
    if entry.get("status") != "done" or not stage.done(run):
        return False
    recorded = entry.get("result_options")
    return recorded is None or recorded == comparable(options)


def changed_options(stage: Stage, run: RunDir, options: Any) -> dict[str, tuple[Any, Any]]:
    """Options (that change the result) which differ from the ones the stage last ran with: {key: (old, new)}."""
    recorded = run.read_manifest()["stages"].get(stage.name, {}).get("result_options")
    if recorded is None:
        return {}
    now = comparable(options)
    return {k: (recorded.get(k), now.get(k)) for k in sorted(set(recorded) | set(now)) if recorded.get(k) != now.get(k)}


def run_stage(stage: Stage, run: RunDir, options: Any = None, events: Events | None = None) -> dict[str, Any]:
    """Run `stage` in `run` and record it in run.json (running -> done | failed | cancelled | interrupted)."""
    options = options if options is not None else stage.options()
    events = events or Events()
    events.check(stage.name)
    _take_over(stage, run)
    events.progress(stage.name, 0.0, "started")
    t0 = time.perf_counter()
    with run.stage(stage.name, options) as summary:
        summary.update(stage.run(run, options, events) or {})
    seconds = round(time.perf_counter() - t0, 2)
    events.progress(stage.name, 1.0, "done", seconds=seconds)
    return summary


def _take_over(stage: Stage, run: RunDir) -> None:
    """A stage left "running": refuse while its process lives; if it died without a word, say what its last
    records show (and keep it in run.json) before running it again."""
    from splatforge import postmortem
    from splatforge.errors import InputError

    entry = run.read_manifest()["stages"].get(stage.name) or {}
    if entry.get("status") != "running":
        return
    if postmortem.process_alive(entry.get("pid"), entry.get("host")) and entry.get("pid") != os.getpid():
        raise InputError(f"{stage.name} in {run.root} is being run by process {entry['pid']} right now",
                         "wait for it to finish, or stop it (Ctrl-C or kill) and run this again")
    death = postmortem.diagnose(run, stage.name)
    if death is not None:
        log.warning("%s: %s. Running it again (%s).", stage.name, death.message, death.advice)
        run.set_stage(stage.name, previous_death=death.to_dict())


@contextmanager
def cancel_on_signals(events: Events) -> Iterator[Events]:
    """In the main thread: the first Ctrl-C or SIGTERM asks the running stage to stop cleanly (training
    writes a checkpoint); a second Ctrl-C stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield events
        return

    def handle(signum: int, _frame: Any) -> None:
        if events.cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("stopping cleanly after the current step (Ctrl-C again to stop at once)")
        events.cancel.set()

    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield events
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
