"""Shared fixtures: real captures from ../shared/data (read-only; copy before writing), GPU skips, the
expensive results several test modules read (one `splatforge demo` run, one capture check per real capture)
and commands started in the background.

Several test processes (pytest-xdist: scripts/test.sh runs `-n 2 --dist loadgroup`): the tests that read one
session fixture's result run in one process (an xdist_group per such fixture), a background command runs
once for all processes, and what a test or fixture times against a budget of the whole machine runs alone
(`alone()`: the other processes finish the test they are in and wait). Without xdist all of this is a no-op.
"""

from __future__ import annotations

import contextlib
import fcntl
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
WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... in an xdist worker; None otherwise


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
    config.addinivalue_line("markers", "alone: the test bounds its wall time on the whole machine: under "
                            "xdist the other test processes wait while it runs (conftest.py)")
    if not config.pluginmanager.hasplugin("xdist"):  # so that the marker is known without pytest-xdist
        config.addinivalue_line("markers", "xdist_group(name): tests of one group run in one xdist worker")


# Session fixtures computed once and read by tests of several modules: under xdist their tests share a worker.
SHARED_RESULTS = ("demo_run", "checked_capture")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    # Under xdist (--dist loadgroup) tests that read one expensive result run in one worker: those of a
    # session fixture of SHARED_RESULTS, and those of one module that use a module-scoped fixture (a server
    # with its Ray, a trained scene), which would otherwise be made again in each worker.
    for item in items:
        names = getattr(item, "fixturenames", ())
        shared = [f for f in SHARED_RESULTS if f in names]
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))
            continue
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(defs.get(name) and defs[name][-1].scope == "module" for name in names):
            item.add_marker(pytest.mark.xdist_group(f"module:{item.module.__name__}"))
    if WORKER is not None:  # for the controller's scheduler (pytest_xdist_make_scheduler below)
        groups = {item.nodeid: mark.args[0] for item in items
                  for mark in [item.get_closest_marker("xdist_group")] if mark is not None and mark.args}
        tmp = shared_dir(config) / f"xdist-groups.{WORKER}.tmp"
        tmp.write_text(json.dumps(groups))
        tmp.replace(shared_dir(config) / "xdist-groups.json")  # every worker writes the same
    # Tests that read a background command's result run last: by then it has usually finished. The demo's
    # tests run first: while it runs alone (its wall time is bounded) the background commands have the
    # other core.
    items.sort(key=lambda item: (bool(_background_names(item)), "demo_run" not in getattr(item, "fixturenames", ())))
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup that reads the groups from the workers' xdist-groups.json: pytest-xdist 3.8 marks a
    group by renaming the item's node id, which pytest 9.2 no longer lets it do (node ids are read-only),
    so its own loadgroup would run the tests of one group in several workers."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class FileGroupScheduling(LoadGroupScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # written in collection, before the workers report it
                path = shared_dir(config) / "xdist-groups.json"
                self.groups = json.loads(path.read_text()) if path.exists() else {}
            group = self.groups.get(nodeid)
            return f"group:{group}" if group else super()._split_scope(nodeid)

    return FileGroupScheduling(config, log)


# --- Tests that run alone ------------------------------------------------------------------------------------
# Under xdist each test holds a shared lock on a file of the session's shared folder; alone() takes it
# exclusively, so the other processes first finish their current test, then wait. A file "alone-wanted-<worker>"
# stops them taking it again meanwhile (Linux's flock would let shared holders starve an exclusive waiter).

class _Machine:
    def __init__(self, folder: Path):
        self.folder = folder
        self.lock = open(folder / "machine.lock", "a")  # noqa: SIM115 (held for the session)
        self.queue = open(folder / "alone-queue.lock", "a")  # noqa: SIM115 one alone() at a time
        self.mine = folder / f"alone-wanted-{WORKER}"
        self.shared = False
        self.depth = 0

    def _wanted_by_another(self) -> bool:
        return any(p != self.mine for p in self.folder.glob("alone-wanted-*"))

    def share(self) -> None:
        while True:
            while self._wanted_by_another():
                time.sleep(0.2)
            fcntl.flock(self.lock, fcntl.LOCK_SH)
            if not self._wanted_by_another():
                self.shared = True
                return
            fcntl.flock(self.lock, fcntl.LOCK_UN)

    def unshare(self) -> None:
        if self.shared:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            self.shared = False

    @contextlib.contextmanager
    def alone(self):
        if self.depth:  # already alone (an alone test's alone fixture)
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
            return
        was_shared = self.shared
        self.unshare()  # never wait for the queue while holding what another alone() waits for
        fcntl.flock(self.queue, fcntl.LOCK_EX)
        self.mine.touch()
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX)
            self.depth = 1
            yield
        finally:
            self.depth = 0
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            self.mine.unlink(missing_ok=True)
            fcntl.flock(self.queue, fcntl.LOCK_UN)
            if was_shared:
                self.share()


_MACHINE: _Machine | None = None


def shared_dir(config) -> Path:
    """A folder that all of this session's test processes share: under xdist the parent of the workers'
    basetemps (the controller's basetemp); else the basetemp."""
    base = config._tmp_path_factory.getbasetemp()
    return base.parent if WORKER else base


@contextlib.contextmanager
def alone():
    """Run the body with no other test running in another xdist worker (for wall-time budgets)."""
    if _MACHINE is None:
        yield
    else:
        with _MACHINE.alone():
            yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _MACHINE
    if WORKER is None:
        yield
        return
    if _MACHINE is None:
        _MACHINE = _Machine(shared_dir(item.config))
    if item.get_closest_marker("alone"):
        with _MACHINE.alone():
            yield
    else:
        _MACHINE.share()
        try:
            yield
        finally:
            _MACHINE.unshare()


# --- Commands run in the background -------------------------------------------------------------------------
# Long commands whose wall time no test bounds (the tiny bench, pose estimation on the real captures) run in
# the background while the other tests run: one at a time, at the lowest CPU priority, so they take the core
# the (mostly single-threaded) tests leave idle and hardly slow them. A test module names them in a dict
# BACKGROUND_COMMANDS = {name: make_args(folder) -> argv}; a test marked @pytest.mark.background(name) reads
# the result through the `background` fixture. Marked tests run last; the commands of the selected tests
# are queued in that order as the session starts. Each command's output is in its folder.

_BACKGROUND: list[BackgroundCommand] = []


class BackgroundCommand:
    """One command; under xdist each worker's queue holds all of them, and the first worker to claim one (a
    folder "claimed" made in its shared folder) runs it while the others wait for its file "done.json"."""

    def __init__(self, name: str, args: list[str], folder: Path):
        self.name, self.args, self.folder = name, args, folder
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.seconds = self.waited = 0.0
        self.ran_here = False
        self.finished = threading.Event()

    @property
    def done_file(self) -> Path:
        return self.folder / "done.json"

    def claim(self) -> bool:
        try:
            (self.folder / "claimed").mkdir()
            return True
        except FileExistsError:
            return False

    def run(self) -> None:
        t0 = time.perf_counter()
        self.ran_here = True
        try:
            with open(self.folder / "stdout.txt", "w") as out, open(self.folder / "stderr.txt", "w") as err:
                self.proc = subprocess.Popen(self.args, stdout=out, stderr=err, preexec_fn=_lowest_priority)
                (self.folder / "pgid").write_text(str(self.proc.pid))  # its own process group
                self.returncode = self.proc.wait()
        finally:
            self.seconds = time.perf_counter() - t0
            tmp = self.folder / "done.json.tmp"
            tmp.write_text(json.dumps({"returncode": self.returncode, "seconds": self.seconds, "worker": WORKER}))
            tmp.replace(self.done_file)
            self.finished.set()

    def _done(self) -> bool:
        if not self.finished.is_set() and self.done_file.exists():  # run by another worker
            done = json.loads(self.done_file.read_text())
            self.returncode, self.seconds = done["returncode"], done["seconds"]
            self.finished.set()
        return self.finished.is_set()

    def result(self, timeout: float = 540) -> subprocess.CompletedProcess:
        """Wait for the command (queued ones before it run first); its exit code, stdout and stderr."""
        t0 = time.perf_counter()
        boosted = -1e9
        while not self._done() and time.perf_counter() - t0 < timeout:
            if time.perf_counter() - boosted > 2.0:
                _raise_background_priority(self.folder.parent)
                boosted = time.perf_counter()
            self.finished.wait(0.5)
        self.waited += time.perf_counter() - t0
        if not self._done():
            pytest.fail(f"background command {self.name} did not finish within {timeout} s: {self.args}")
        if self.returncode is None:
            pytest.fail(f"background command {self.name} was stopped before it finished: {self.args}")
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


def _raise_background_priority(root: Path) -> None:
    """A test waits for a background command: this process has nothing else to do, so the commands still
    running (in any worker) get normal priority, not only the cores nothing else wants (under other load,
    SCHED_IDLE commands hardly run). Not while a test runs alone: they would take from its budget."""
    if any(root.parent.glob("alone-wanted-*")):  # root: the shared folder's background/
        return
    import psutil

    for pgid_file in root.glob("*/pgid"):
        if (pgid_file.parent / "done.json").exists():
            continue
        pgid = int(pgid_file.read_text())
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) != pgid:
                    continue
                for tid in os.listdir(f"/proc/{proc.pid}/task"):  # every thread has its own policy
                    if os.sched_getscheduler(int(tid)) == getattr(os, "SCHED_IDLE", -1):
                        os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
                        os.setpriority(os.PRIO_PROCESS, int(tid), 0)
            except (OSError, psutil.Error):  # gone, or not allowed (not root): it keeps its priority
                continue


def _background_names(item) -> list[str]:
    return [mark.args[0] for mark in item.iter_markers("background")]


@pytest.fixture(scope="session", autouse=True)
def background(request, tmp_path_factory):
    """Queues the background commands of the selected tests; background(name) -> its BackgroundCommand."""
    root = shared_dir(request.config) / "background"
    root.mkdir(exist_ok=True)
    jobs: dict[str, BackgroundCommand] = {}
    for item in request.session.items:
        for name in _background_names(item):
            if name not in jobs:
                make_args = item.module.BACKGROUND_COMMANDS[name]
                folder = root / name.replace(":", "-")
                folder.mkdir(exist_ok=True)
                jobs[name] = BackgroundCommand(name, make_args(folder), folder)
    _BACKGROUND[:] = jobs.values()
    stop = threading.Event()

    def run_all() -> None:  # under xdist every worker runs this queue: each command runs in one of them
        for job in jobs.values():
            if not stop.is_set() and job.claim():
                job.run()

    runner = threading.Thread(target=run_all, name="background-commands", daemon=True)
    runner.start()

    def get(name: str) -> BackgroundCommand:
        if name not in jobs:
            raise KeyError(f"{name} is not queued: mark the test @pytest.mark.background({name!r})")
        return jobs[name]

    yield get
    if WORKER is not None and not (request.session.shouldfail or request.session.shouldstop):
        # This worker's tests are done, but another worker's may still read the commands it runs or has
        # yet to claim: it runs the queue to its end.
        runner.join()
    stop.set()
    for job in jobs.values():
        job.kill()  # a session that ended early (-x, a failed setup) does not wait for what nobody read
    runner.join(timeout=60)


def pytest_terminal_summary(terminalreporter):
    if WORKER is None and terminalreporter.config.pluginmanager.hasplugin("dsession"):  # xdist's controller
        folder = shared_dir(terminalreporter.config) / "background"
        ran = sorted(folder.glob("*/done.json")) if folder.is_dir() else []
        if ran:
            terminalreporter.write_sep("-", "commands run in the background (by the xdist workers)")
            for done in ran:
                info = json.loads(done.read_text())
                terminalreporter.write_line(f"{done.parent.name}: exit {info['returncode']} after "
                                            f"{info['seconds']:.1f} s in {info['worker']}")
    elif _BACKGROUND:
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
    with alone():  # its wall time is bounded on the whole machine
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
            # test_capture_check bounds the time of fox's check on the whole machine
            with alone() if name == "fox" else contextlib.nullcontext():
                t0 = time.perf_counter()
                report = check_capture(root / name, report_dir=folder)
                done[name, sheet] = (report, time.perf_counter() - t0, folder)
        return done[name, sheet]

    return _check
