"""The server's own Ray instance: on loopback only, behind a token, and gone when the server is gone.

Why not `ray.init()` inside the server: Ray ties the GCS and the raylet to the *thread* that started them
(PR_SET_PDEATHSIG), so a server that started Ray from a pool thread lost its raylet as soon as the pool
retired that thread; and a server killed with -9 left Ray's agents running (they are the raylet's
children and hang trying to report to a dead GCS). So the server starts a small keeper process instead
(`python -m splatforge.service.local_ray`, this module's `main`). The keeper

- runs in its own session, and is a child subreaper, so every Ray process (GCS, raylet, agents,
  workers, which Ray puts in process groups of their own) stays its descendant;
- starts Ray with `ray start --head` bound to 127.0.0.1 (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes
  Ray a single-host instance that resolves its node address to loopback; its gRPC servers then listen
  on loopback only) and with token authentication on a token made for this server;
- tears every descendant down when the read end of a pipe from the server reaches end-of-file (the
  server exited, however it exited: the kernel closes the pipe even on SIGKILL), on SIGTERM/SIGINT, or
  when the GCS or the raylet died (so that a half-dead Ray is never reported as healthy).

The keeper's stdout carries one JSON line per event: {"address": ...} once Ray is up, {"error": ...}
if it could not start, {"dead": "raylet"} when a core process died.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CORE_PROCESSES = ("gcs_server", "raylet")
TEARDOWN_GRACE_S = 3.0
PR_SET_CHILD_SUBREAPER = 36


def ray_env(token: str) -> dict[str, str]:
    """The environment a process needs to start or join the server's own Ray (set before `import ray`:
    Ray reads the cluster switch when it is imported)."""
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
            "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass
class LocalRay:
    """A running keeper: the GCS address to give `ray.init`, and what the keeper said since."""

    address: str
    token: str
    process: subprocess.Popen
    log_path: Path | None = None
    events: list[dict] = field(default_factory=list)
    _reader: threading.Thread | None = field(default=None, repr=False)

    def problem(self) -> str | None:
        """None while the GCS and the raylet run; else what is wrong, in words."""
        dead = [e["dead"] for e in self.events if "dead" in e]
        if dead:
            return f"the local Ray's {dead[0]} process died"
        code = self.process.poll()
        if code is not None:
            return f"the local Ray's keeper process exited (code {code})"
        return None

    def pids(self) -> list[int]:
        """The keeper and every process below it (tests check they all go with the server)."""
        import psutil

        try:
            keeper = psutil.Process(self.process.pid)
            return [keeper.pid, *(p.pid for p in keeper.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout_s: float = 15.0) -> None:
        """Tear Ray down and wait for the keeper (it kills what does not stop within its grace)."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()  # end-of-file: the same signal as the server's death
            except OSError:
                pass
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=2)


def start_local_ray(num_cpus: int | None = None, log_path: Path | None = None,
                    timeout_s: float = 240.0, num_gpus: int | None = None) -> LocalRay:
    """Start a keeper and wait until its Ray is up. Sets this process's environment (`ray_env`) so
    that `ray.init(address=...)` here joins it. Raises RuntimeError with the keeper's words on failure."""
    token = secrets.token_hex(32)
    env = {**os.environ, **ray_env(token)}
    command = [sys.executable, "-m", "splatforge.service.local_ray"]
    if num_cpus is not None:
        command += ["--num-cpus", str(int(num_cpus))]
    if num_gpus is not None:  # None: the GPUs Ray finds; a number limits them (or fakes them in tests)
        command += ["--num-gpus", str(int(num_gpus))]
    stderr = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                   start_new_session=True)
    finally:
        if log_path is not None:
            stderr.close()
    first = _read_line(process, timeout_s)
    if first is None or "address" not in first:
        process.kill()
        process.wait(timeout=10)
        why = (first or {}).get("error") or f"no answer within {timeout_s:.0f} s"
        raise RuntimeError(f"could not start the local Ray instance: {why}"
                           + (f" (see {log_path})" if log_path is not None else ""))
    os.environ.update(ray_env(token))
    ray = LocalRay(address=first["address"], token=token, process=process, log_path=log_path)
    ray._reader = threading.Thread(target=_read_events, args=(ray,), name="splatforge-ray-keeper", daemon=True)
    ray._reader.start()
    return ray


def _read_line(process: subprocess.Popen, timeout_s: float) -> dict | None:
    deadline = time.monotonic() + timeout_s
    fd = process.stdout.fileno()
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            buf += chunk
            if b"\n" in buf:
                line, _, _rest = buf.partition(b"\n")
                return json.loads(line)
        elif process.poll() is not None:
            return None
    return None


def _read_events(ray: LocalRay) -> None:
    for line in ray.process.stdout:
        try:
            ray.events.append(json.loads(line))
        except ValueError:
            continue


# --- the keeper process ------------------------------------------------------------------------------
def _emit(event: dict) -> None:
    try:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
    except OSError:  # the server is gone; teardown follows
        pass


def _become_subreaper() -> None:
    """Orphaned Ray processes are re-parented to us rather than to init, so we can still find them."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _teardown(grace_s: float = TEARDOWN_GRACE_S) -> None:
    """SIGTERM to every descendant, SIGKILL to those left after `grace_s`, and reap them all."""
    import psutil

    me = psutil.Process()
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        procs = me.children(recursive=True)
        for p in procs:
            try:
                p.send_signal(signum)
            except psutil.Error:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap()
            alive = [p for p in me.children(recursive=True) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if not alive:
                break
            time.sleep(0.1)
    _reap()


def _core_processes() -> dict[str, object]:
    import psutil

    found: dict[str, object] = {}
    for p in psutil.Process().children(recursive=True):
        try:
            name = p.name()
        except psutil.Error:
            continue
        if name in CORE_PROCESSES and name not in found:
            found[name] = p
    return found


def _dead_core(core: dict[str, object]) -> str | None:
    import psutil

    for name, p in core.items():
        try:
            if not p.is_running() or p.status() == psutil.STATUS_ZOMBIE:
                return name
        except psutil.NoSuchProcess:
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--num-gpus", type=int, default=None)
    args = parser.parse_args(argv)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    _become_subreaper()
    port = _free_port()
    # A private temp dir: `ray start` records its address in <temp dir>/ray_current_cluster, and a plain
    # `ray.init()` anywhere on this machine would otherwise connect to (or fail on) this server's Ray.
    temp_dir = tempfile.mkdtemp(prefix="splatforge-ray-")
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}",
               f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats"]
    if args.num_cpus is not None:
        command.append(f"--num-cpus={args.num_cpus}")
    if args.num_gpus is not None:
        command.append(f"--num-gpus={args.num_gpus}")
    started = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr)
    core = _core_processes()
    if started.returncode != 0 or set(core) != set(CORE_PROCESSES):
        _emit({"error": f"`ray start` exited with code {started.returncode}; found {sorted(core) or 'nothing'}; "
                        f"Ray's logs are in {temp_dir}"})
        _teardown()
        return 1
    _emit({"address": f"127.0.0.1:{port}", "keeper_pid": os.getpid()})
    stdin = sys.stdin.fileno()
    while not stopping.is_set():
        _reap()
        ready, _, _ = select.select([stdin], [], [], 0.5)
        if ready and not os.read(stdin, 4096):
            break  # the server is gone (or asked us to stop by closing the pipe)
        dead = _dead_core(core)
        if dead:
            _emit({"dead": dead, "logs": temp_dir})
            sys.stderr.write(f"Ray's {dead} died; its logs are kept in {temp_dir}\n")
            _teardown()
            return 1
    _teardown()
    shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
