"""Shared fixtures: real captures from ../shared/data (read-only; copy before writing), GPU skips, the
expensive results several test modules read (one `splatforge demo` run, one capture check per real capture)
and commands started in the background."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("SPLATFORGE_TEST_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "background(name): the test reads the result of its module's "
                            "BACKGROUND_COMMANDS[name], a command run in the background (conftest.py)")


def pytest_collection_modifyitems(config, items):
    # Tests that read a background command's result run last: by then it has usually finished.
    items.sort(key=lambda item: bool(_background_names(item)))  # stable: the order is otherwise kept
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# --- Commands run in the background -------------------------------------------------------------------------
# Long commands whose wall time no test bounds (the tiny bench, pose estimation on the real captures) run in
# the background while the other tests run: one at a time, at the lowest CPU priority, so they take the core
# the (mostly single-threaded) tests leave idle and hardly slow them. A test module names them in a dict
# BACKGROUND_COMMANDS = {name: make_args(folder) -> argv}; a test marked @pytest.mark.background(name) reads
# the result through the `background` fixture. Marked tests run last; the commands of the selected tests
# are queued in that order as the session starts. Each command's output is in its folder.

_BACKGROUND: list[BackgroundCommand] = []


class BackgroundCommand:
    def __init__(self, name: str, args: list[str], folder: Path):
        self.name, self.args, self.folder = name, args, folder
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.seconds = self.waited = 0.0
        self.finished = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        try:
            with open(self.folder / "stdout.txt", "w") as out, open(self.folder / "stderr.txt", "w") as err:
                self.proc = subprocess.Popen(self.args, stdout=out, stderr=err, preexec_fn=_lowest_priority)
                self.returncode = self.proc.wait()
        finally:
            self.seconds = time.perf_counter() - t0
            self.finished.set()

    def result(self, timeout: float = 540) -> subprocess.CompletedProcess:
        """Wait for the command (queued ones before it run first); its exit code, stdout and stderr."""
        t0 = time.perf_counter()
        finished = self.finished.wait(timeout)
        self.waited += time.perf_counter() - t0
        if not finished:
            pytest.fail(f"background command {self.name} did not finish within {timeout} s: {self.args}")
        return subprocess.CompletedProcess(self.args, self.returncode, (self.folder / "stdout.txt").read_text(),
                                           (self.folder / "stderr.txt").read_text())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its process group: the command and what it started
            except ProcessLookupError:
                pass


def _lowest_priority() -> None:
    # Its own process group (to stop it with what it started) but not its own session: Linux's autogroups
    # would then share the CPU between the session's tests and it evenly, whatever its nice value.
    os.setpgid(0, 0)
    os.nice(19)
    if hasattr(os, "SCHED_IDLE"):  # Linux: run only when a core has nothing else to do
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _background_names(item) -> list[str]:
    return [mark.args[0] for mark in item.iter_markers("background")]


@pytest.fixture(scope="session", autouse=True)
def background(request, tmp_path_factory):
    """Queues the background commands of the selected tests; background(name) -> its BackgroundCommand."""
    jobs: dict[str, BackgroundCommand] = {}
    for item in request.session.items:
        for name in _background_names(item):
            if name not in jobs:
                make_args = item.module.BACKGROUND_COMMANDS[name]
                folder = tmp_path_factory.mktemp(name.replace(":", "-"))
                jobs[name] = BackgroundCommand(name, make_args(folder), folder)
    _BACKGROUND[:] = jobs.values()
    stop = threading.Event()

    def run_all() -> None:
        for job in jobs.values():
            if not stop.is_set():
                job.run()

    runner = threading.Thread(target=run_all, name="background-commands", daemon=True)
    runner.start()

    def get(name: str) -> BackgroundCommand:
        if name not in jobs:
            raise KeyError(f"{name} is not queued: mark the test @pytest.mark.background({name!r})")
        return jobs[name]

    yield get
    stop.set()
    for job in jobs.values():
        job.kill()  # a session that ended early (-x, a failed setup) does not wait for what nobody read
    runner.join(timeout=60)


def pytest_terminal_summary(terminalreporter):
    if _BACKGROUND:
        terminalreporter.write_sep("-", "commands run in the background")
        for job in _BACKGROUND:
            state = "not run" if not job.finished.is_set() else f"exit {job.returncode} after {job.seconds:.1f} s"
            terminalreporter.write_line(f"{job.name}: {state}; tests waited {job.waited:.1f} s for it")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real captures; tests needing it are skipped with a reason when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real test captures not found at {path} (set SPLATFORGE_TEST_DATA)")
    return path


@pytest.fixture
def copy_capture(data_dir, tmp_path):
    """copy_capture("fox") -> a private copy of ../shared/data/fox in tmp_path (never write to shared)."""

    def _copy(name: str) -> Path:
        src = data_dir / name
        if not src.exists():
            pytest.skip(f"test capture {name} not found in {data_dir}")
        dst = tmp_path / name
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
        return dst

    return _copy


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`splatforge demo` exactly as a newcomer runs it (a fresh process), timed: (RunDir, its --json result,
    seconds). One run for the session: test_pipeline.py checks the demo itself, test_check_connectivity.py
    reads its capture check. Tests may re-run stages of it (test_pipeline: --from export) but not remove it."""
    from splatforge.rundir import RunDir

    out = tmp_path_factory.mktemp("demo") / "run"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "splatforge", "demo", "-o", str(out), "--json"],
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    return RunDir(out), json.loads(proc.stdout), seconds


@pytest.fixture(scope="session")
def checked_capture(data_dir, tmp_path_factory):
    """checked_capture("fox") -> (report, wall seconds, sheet folder or None): `check_capture` with default options
    on a copy of a real capture, computed once per session (test_capture_check.py and test_check_connectivity.py
    read the same reports). sheet=True also writes the contact sheet (which makes thumbnails: not timed alike)."""
    from splatforge.capture import check_capture

    done: dict[tuple[str, bool], tuple] = {}

    def _check(name: str, sheet: bool = False):
        if (name, sheet) not in done:
            src = data_dir / name
            if not src.exists():
                pytest.skip(f"test capture {name} not found in {data_dir}")
            root = tmp_path_factory.mktemp(f"checked-{name}")
            shutil.copytree(src, root / name)
            folder = root / "sheet" if sheet else None
            t0 = time.perf_counter()
            report = check_capture(root / name, report_dir=folder)
            done[name, sheet] = (report, time.perf_counter() - t0, folder)
        return done[name, sheet]

    return _check
