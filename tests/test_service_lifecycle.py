"""A server with its own Ray, over its whole life (issue 15, item 1): Ray listens on loopback only, the
server keeps scheduling jobs after bursts of requests separated by idle gaps longer than the request
thread pool's idle time (Ray used to be tied to a pool thread and died when the pool retired it),
/healthz turns 503 when the raylet dies, and a server killed with -9 leaves no Ray process behind.

Each test starts `splatforge serve` without --ray-address, so it starts Ray itself: slow on 2 cores.
"""

from __future__ import annotations

import concurrent.futures as cf
import ipaddress
import re
import shutil
import signal
import time

import httpx
import psutil
import pytest

from service_support import free_port, image_files, serve_subprocess, stop_subprocess, wait_for

TOKEN = "lifecycle-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POOL_IDLE_S = 10  # anyio's worker threads retire after this long idle (anyio WorkerThread.MAX_IDLE_TIME)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def names(procs: list[psutil.Process]) -> set[str]:
    found = set()
    for p in procs:
        try:
            found.add(p.name())
        except psutil.Error:
            continue
    return found


def listening(pids: set[int]) -> list[tuple[str, int, int]]:
    return [(c.laddr.ip, c.laddr.port, c.pid) for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids]


def loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return bool(address.is_loopback or (getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback))


def gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_job(base: str, job_id: str, timeout: float = 120) -> dict:
    def done():
        job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=AUTH, timeout=30).json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done, timeout, interval=0.3, what=f"job {job_id} to finish")


def test_own_ray_is_loopback_survives_idle_bursts_and_goes_with_a_killed_server(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve_subprocess(tmp_path, port, TOKEN, ray_cpus=2)
    try:
        health = httpx.get(f"{base}/healthz").json()
        assert health["ok"] and health["ray"]["ok"], health
        ray_procs = descendants(proc.pid)
        assert {"gcs_server", "raylet"} <= names(ray_procs)

        # Ray of a loopback server listens on loopback only.
        sockets = listening({proc.pid, *(p.pid for p in ray_procs)})
        assert sockets, "found no listening socket of the server or its Ray"
        exposed = [s for s in sockets if not loopback(s[0])]
        assert not exposed, f"listening beyond loopback: {exposed}"

        # Bursts, then an idle gap longer than the thread pool's idle time, then a few requests (the
        # pool retires idle threads when the next request comes).
        def get(_):
            return httpx.get(f"{base}/v1/jobs?limit=5", headers=AUTH, timeout=60).status_code

        def post(i):
            return httpx.post(f"{base}/v1/jobs", files=image_files(3, start=10 * i), data={"steps": "3"},
                              headers=AUTH, timeout=60)

        with cf.ThreadPoolExecutor(110) as pool:
            gets = pool.map(get, range(100))
            burst = list(pool.map(post, range(10)))
            assert set(gets) == {200}
        assert all(r.status_code == 202 for r in burst), [r.text for r in burst if r.status_code != 202]
        time.sleep(POOL_IDLE_S + 2)
        assert [get(i) for i in range(3)] == [200] * 3
        time.sleep(5)  # the raylet used to die 12-18 s after such a burst, or at once when the pool pruned

        assert {"gcs_server", "raylet"} <= names(descendants(proc.pid)), "Ray lost a core process"
        health = httpx.get(f"{base}/healthz")
        assert health.status_code == 200 and health.json()["ray"]["ok"], health.text
        # The server still schedules: the burst's jobs and one submitted now all finish.
        r = httpx.post(f"{base}/v1/jobs", files=image_files(4), data={"steps": "10"}, headers=AUTH, timeout=60)
        assert r.status_code == 202, r.text
        for job_id in [b.json()["id"] for b in burst] + [r.json()["id"]]:
            assert wait_job(base, job_id)["state"] == "succeeded"

        # Killed with -9: every Ray process goes too (they were the server's descendants a moment ago).
        before = [p for p in descendants(proc.pid) if not gone(p)]
        assert len(before) >= 4, names(before)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        wait_for(lambda: all(gone(p) for p in before), 45, interval=0.5,
                 what=f"Ray's processes to exit after the server's death: {names([p for p in before if not gone(p)])}")
    finally:
        stop_subprocess(proc)


def test_healthz_turns_503_when_the_raylet_dies(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve_subprocess(tmp_path, port, TOKEN, ray_cpus=1)
    try:
        assert httpx.get(f"{base}/healthz").json()["ray"]["ok"]
        raylet = next(p for p in descendants(proc.pid) if p.name() == "raylet")
        raylet.send_signal(signal.SIGKILL)
        answer = wait_for(lambda: (lambda r: r if r.status_code == 503 else None)(httpx.get(f"{base}/healthz")),
                          15, interval=0.3, what="/healthz to report the dead raylet")
        body = answer.json()
        assert body["ok"] is False and body["ray"]["ok"] is False
        assert "raylet" in body["ray"]["detail"], body
    finally:
        stop_subprocess(proc)
        kept = re.search(r"its logs are kept in (\S+)", (tmp_path / "ray.log").read_text())
        if kept:  # the keeper keeps Ray's logs when Ray died under it; not wanted after a test
            shutil.rmtree(kept.group(1), ignore_errors=True)
