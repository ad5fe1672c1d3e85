"""Helpers for the service tests: one Ray instance per test process, a server in a thread, captures."""

from __future__ import annotations

import atexit
import io
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np

TESTS_DIR = Path(__file__).resolve().parent
RUNNER = "service_runner:fake_pipeline"
_ray_address: str | None = None


def ensure_ray(num_cpus: int = 2) -> str:
    """Start one small local Ray for the whole test process (it is slow to start on 2 shared cores).
    Workers find `service_runner` through PYTHONPATH, which they inherit."""
    global _ray_address
    if _ray_address is not None:
        return _ray_address
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if not ray.is_initialized():
        # address="local": a new instance even when some other Ray on this machine left its address behind.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
        atexit.register(ray.shutdown)
    _ray_address = ray.get_runtime_context().gcs_address
    return _ray_address


def fresh_db_url(tmp: Path) -> str:
    """A new empty database: on the PostgreSQL of SPLATFORGE_TEST_DB when set (scripts/pg_for_tests.sh),
    else a SQLite file in `tmp`."""
    base = os.environ.get("SPLATFORGE_TEST_DB")
    if not base:
        return f"sqlite:///{tmp / 'jobs.sqlite'}"
    import psycopg

    name = f"sf_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """uvicorn serving `app` in a background thread on a free loopback port."""

    def __init__(self, app, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def png_bytes(seed: int, width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(seed: int, width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def image_files(n: int, start: int = 0) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"view_{i:03d}.png", png_bytes(i), "image/png")) for i in range(start, start + n)]


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def serve_subprocess(workspace: Path, port: int, token: str, *, ray_address: str | None = None,
                     ray_cpus: int | None = None, step_s: float = 0.05, startup_s: float = 240.0,
                     extra_args: tuple[str, ...] = ()):
    """`splatforge serve` in a child process, with the test runner; returns the Popen once /healthz answers
    200. Without `ray_address` the server starts its own Ray (slow on 2 shared cores, hence `startup_s`)."""
    import subprocess
    import sys

    import httpx

    env = dict(os.environ, SPLATFORGE_SERVE_RUNNER=RUNNER, SPLATFORGE_TOKEN=token, SPLATFORGE_FAKE_STEP_S=str(step_s),
               PYTHONPATH=os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "splatforge", "serve", "--port", str(port), "--workspace", str(workspace),
               *extra_args]
    if ray_address:
        command += ["--ray-address", ray_address]
    if ray_cpus:
        command += ["--ray-cpus", str(ray_cpus)]
    log = workspace / f"server-{port}.log"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "ab"))

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, startup_s, interval=0.5, what="the server subprocess to answer")
    return proc


def stop_subprocess(proc, timeout: float = 30.0) -> None:
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
