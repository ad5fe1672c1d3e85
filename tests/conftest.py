"""Shared fixtures: real captures from ../shared/data (read-only; copy before writing), GPU skips, the
expensive results several test modules read (one `splatforge demo` run, one capture check per real capture)
and commands started in the background."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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


def pytest_collection_modifyitems(config, items):
    # Tests that read a background command's result run last: by then it has finished (see BackgroundCommand).
    items.sort(key=lambda item: bool(_background_specs([item])))  # stable: the order is otherwise kept
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# --- Commands started in the background ---------------------------------------------------------------------
# A test module may name long commands its tests need the result of, with no bound on their wall time, in a
# module-level dict BACKGROUND_COMMANDS = {fixture name: make_args(folder) -> argv}. When a selected test uses that
# fixture, the command starts as the session starts, at the lowest CPU priority: it runs on the core the
# (mostly single-threaded) tests leave idle, hardly slowing them; those tests run last and read its result.


class BackgroundCommand:
    def __init__(self, args: list[str], folder: Path):
        self.args, self.folder = args, folder
        self._out = open(folder / "stdout.txt", "w+")  # closed by stop()
        self._err = open(folder / "stderr.txt", "w+")
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=self._err, text=True, preexec_fn=_lowest_priority)

    def result(self, timeout: float) -> subprocess.CompletedProcess:
        """Wait for the command; its exit code, stdout and stderr."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        return subprocess.CompletedProcess(self.args, code, (self.folder / "stdout.txt").read_text(),
                                           (self.folder / "stderr.txt").read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:  # nobody waited for it: the session stopped early (-x, a failed setup)
            try:
                os.killpg(self.proc.pid, 9)  # its own process group: the command and the processes it started
            except ProcessLookupError:
                pass
            self.proc.wait()
        self._out.close()
        self._err.close()


def _lowest_priority() -> None:
    # Its own process group (to stop it with what it started) but not its own session: Linux's autogroups
    # would then share the CPU between the session's tests and it evenly, whatever its nice value.
    os.setpgid(0, 0)
    os.nice(19)


def _background_specs(items) -> dict:
    specs = {}
    for item in items:
        table = getattr(getattr(item, "module", None), "BACKGROUND_COMMANDS", None) or {}
        specs.update({name: make for name, make in table.items() if name in getattr(item, "fixturenames", ())})
    return specs


@pytest.fixture(scope="session", autouse=True)
def background(request, tmp_path_factory):
    """Starts the background commands of the selected tests; background(name, make_args) -> BackgroundCommand
    (started now if it was not)."""
    jobs: dict[str, BackgroundCommand] = {}

    def get(name: str, make_args) -> BackgroundCommand:
        if name not in jobs:
            folder = tmp_path_factory.mktemp(name)
            jobs[name] = BackgroundCommand(make_args(folder), folder)
        return jobs[name]

    for name, make_args in _background_specs(request.session.items).items():
        get(name, make_args)
    yield get
    for job in jobs.values():
        job.stop()


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
