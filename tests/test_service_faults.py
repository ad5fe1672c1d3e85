"""The service under faults (issue 15): a full disk (a small tmpfs as the workspace, SQLite job store on
it), cancel with a grace period (clean stop with a checkpoint, force after the grace), a watcher that
outlives store and Ray errors, and the cookie login with tokens holding / + =.

The full-disk tests mount a tmpfs (the test machine is root); they skip, saying why, where mount is not
permitted.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from service_runner import CHECKPOINT_EVERY, CRASH_AT_STEP
from service_support import RUNNER, ThreadServer, ensure_ray, fresh_db_url, image_files, wait_for
from splatforge.service.app import create_app
from splatforge.service.settings import ServiceSettings

TOKEN = "faults-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DISK = "16m"  # room for SQLite's write-ahead log (up to 4 MiB before a checkpoint) and a few jobs
RESERVE = 256 * 1024

pytestmark = pytest.mark.timeout(300)


# --- helpers ----------------------------------------------------------------------------------------
@contextmanager
def small_disk(path: Path, size: str = DISK):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs for the full-disk test ({mounted.stderr.strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """A filler file that leaves about `leave` bytes free (0: writes until the disk refuses)."""
    filler = disk / f"filler-{time.monotonic_ns()}"
    with open(filler, "wb", buffering=0) as f:
        while True:
            room = shutil.disk_usage(disk).free - leave
            if room <= 0:
                break
            try:
                f.write(b"\0" * min(room, 1 << 20))
            except OSError:
                break
    return filler


def free(disk: Path) -> int:
    return shutil.disk_usage(disk).free


def random_png(seed: int, side: int = 256) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def job(client: httpx.Client, job_id: str) -> dict:
    return client.get(f"/v1/jobs/{job_id}").json()


def wait_state(client, job_id, states=("succeeded", "failed", "cancelled"), timeout=90) -> dict:
    return wait_for(lambda: (lambda j: j if j["state"] in states else None)(job(client, job_id)), timeout,
                    what=f"job {job_id} to reach {states}")


def metrics_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


@contextmanager
def server(workspace: Path, *, runner=RUNNER, db_url: str | None = None, **settings_kw):
    ensure_ray()
    settings = ServiceSettings(token=TOKEN, workspace=workspace, db_url=db_url, runner=runner,
                               progress_interval_s=0.1, events_poll_s=0.1, **settings_kw)
    app = create_app(settings)
    with ThreadServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as client:
        client.settings, client.app = settings, app
        yield client


def saturate_ray():
    """Ray tasks holding every free CPU of the test Ray, so that jobs submitted now stay queued."""
    import ray

    @ray.remote(num_cpus=1)
    def hold(seconds: float) -> None:
        time.sleep(seconds)

    cpus = int(ray.available_resources().get("CPU", 0))
    holders = [hold.remote(120) for _ in range(cpus)]
    wait_for(lambda: ray.available_resources().get("CPU", 0) == 0, 60, what="Ray's CPUs to be taken")
    return holders


# --- a full disk -------------------------------------------------------------------------------------
def test_upload_that_does_not_fit_gets_507_and_leaves_nothing(tmp_path):
    with small_disk(tmp_path / "disk") as disk, server(disk, disk_reserve_bytes=RESERVE) as client:
        fill(disk, leave=1024**2)
        room = free(disk)
        jobs_before = client.get("/v1/jobs").json()["total"]

        # Larger than the free space: refused before the body is read.
        big = [("files", (f"v{i}.png", random_png(i), "image/png")) for i in range(8)]  # ~1.6 MiB
        r = client.post("/v1/jobs", files=big)
        assert r.status_code == 507, r.text
        assert "no room" in r.json()["error"] and r.json()["advice"]

        # Fits as sent, not once unpacked: the disk fills while storing it.
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for i in range(4):  # ~0.8 MiB, stored: unpacking needs as much again
                zf.writestr(f"capture/v{i}.png", random_png(10 + i))
        r = client.post("/v1/jobs", files=[("files", ("capture.zip", buf.getvalue(), "application/zip"))])
        assert r.status_code == 507, r.text
        assert "disk filled up" in r.json()["error"] and "nothing was kept" in r.json()["advice"]

        assert list((disk / "jobs").iterdir()) == []  # no job folder, no partial file
        assert abs(free(disk) - room) < 64 * 1024
        assert client.get("/v1/jobs").json()["total"] == jobs_before


def test_job_that_fills_the_disk_fails_as_disk_full_keeps_its_checkpoint_and_resumes(tmp_path):
    with small_disk(tmp_path / "disk") as disk, server(disk, disk_reserve_bytes=RESERVE) as client:
        assert (disk / "jobs.sqlite.reserve").stat().st_size == RESERVE
        first = client.post("/v1/jobs", files=image_files(4), data={"steps": "2000"}).json()
        run = disk / "jobs" / first["id"] / "run"
        wait_for(lambda: (job(client, first["id"])["metrics"] or {}).get("step", 0) >= 12, 90, what="training")

        fillers = [fill(disk)]
        failed = wait_state(client, first["id"], timeout=60)
        assert failed["state"] == "failed", failed
        error = failed["error"]
        assert error["message"].startswith("disk full"), error
        ckpts = sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("ckpt_*.pt"))
        assert ckpts and ckpts[-1] >= 10
        assert f"training step {ckpts[-1]}" in error["advice"] and f"/v1/jobs/{first['id']}/retry" in error["advice"]
        assert not (disk / "jobs.sqlite.reserve").exists(), "the reserve was given up to record the failure"

        # The server goes on: its watcher threads live, reads answer, a cancel of a finished job is a 409,
        # and a retry while the disk is still full is refused rather than run into the same wall.
        fillers.append(fill(disk))
        executor = client.app.state.service.executor
        assert all(t.is_alive() for t in executor._threads)
        assert client.post(f"/v1/jobs/{first['id']}/cancel").status_code == 409
        assert client.get("/v1/jobs").status_code == 200
        r = client.post(f"/v1/jobs/{first['id']}/retry")
        assert r.status_code == 507 and "disk is full" in r.json()["error"], r.text

        # Space freed: the reserve comes back, and the retry resumes from the kept checkpoint.
        for filler in fillers:
            filler.unlink()
        wait_for(lambda: (disk / "jobs.sqlite.reserve").exists(), 30, what="the store's reserve to come back")
        r = client.post(f"/v1/jobs/{first['id']}/retry")
        assert r.status_code == 202, r.text
        wait_for(lambda: len(json.loads((run / "resumes.json").read_text())) >= 2, 60, what="training to resume")
        resumes = json.loads((run / "resumes.json").read_text())
        assert resumes == [0, ckpts[-1]], resumes
        assert client.post(f"/v1/jobs/{first['id']}/cancel").status_code == 200  # 2000 steps: no need to wait


def test_cancel_and_delete_work_on_a_full_disk(tmp_path):
    import ray

    with small_disk(tmp_path / "disk") as disk, server(disk, disk_reserve_bytes=RESERVE, cancel_grace_s=2) as client:
        holders = saturate_ray()
        try:
            queued = client.post("/v1/jobs", files=image_files(3), data={"steps": "5"}).json()
            time.sleep(1.0)
            assert job(client, queued["id"])["state"] == "queued"
            fill(disk)
            r = client.post(f"/v1/jobs/{queued['id']}/cancel")
            assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
            fill(disk)  # the reserve given up for the cancel is taken again: the disk is full once more
            assert free(disk) < 8192
            r = client.delete(f"/v1/jobs/{queued['id']}")
            assert r.status_code == 204, r.text
            assert client.get(f"/v1/jobs/{queued['id']}").status_code == 404
            assert not (disk / "jobs" / queued["id"]).exists()
        finally:
            for ref in holders:
                ray.cancel(ref, force=True)


# --- cancel: ask, then force -------------------------------------------------------------------------
def test_cancel_stops_the_trainer_cleanly_with_a_checkpoint(tmp_path):
    with server(tmp_path / "ws", db_url=fresh_db_url(tmp_path)) as client:  # default grace: 30 s
        running = client.post("/v1/jobs", files=image_files(4), data={"steps": "2000"}).json()
        run = client.settings.jobs_dir / running["id"] / "run"
        wait_for(lambda: (job(client, running["id"])["metrics"] or {}).get("step", 0) >= 8, 90, what="training")
        asked = time.monotonic()
        r = client.post(f"/v1/jobs/{running['id']}/cancel")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert r.json()["message"].startswith("cancelling")
        final = wait_for(lambda: (lambda j: j if "stopped cleanly" in (j["message"] or "") else None)(
            job(client, running["id"])), 20, what="the worker to report its clean stop")
        assert time.monotonic() - asked < 20, "stopped by the grace period's kill, not by the ask"
        last = metrics_steps(run)[-1]
        assert (run / "checkpoints" / f"ckpt_{last:07d}.pt").is_file(), "no checkpoint at the step it stopped"
        assert f"training step {last}" in final["message"] and final["state"] == "cancelled"
        time.sleep(1.0)
        assert metrics_steps(run)[-1] == last


def test_cancel_kills_a_worker_that_does_not_stop_after_the_grace_period(tmp_path):
    grace = 3.0
    with server(tmp_path / "ws", db_url=fresh_db_url(tmp_path), runner="service_runner:stubborn_pipeline",
                cancel_grace_s=grace) as client:
        running = client.post("/v1/jobs", files=image_files(4), data={"steps": "2000"}).json()
        run = client.settings.jobs_dir / running["id"] / "run"
        wait_for(lambda: (job(client, running["id"])["metrics"] or {}).get("step", 0) >= 8, 90, what="training")
        asked = time.monotonic()
        assert client.post(f"/v1/jobs/{running['id']}/cancel").status_code == 200
        time.sleep(grace - 1.5)
        early = metrics_steps(run)[-1]
        time.sleep(0.5)
        assert metrics_steps(run)[-1] > early, "the stubborn worker should still be training within the grace"
        final = wait_for(lambda: (lambda j: j if "by force" in (j["message"] or "") else None)(
            job(client, running["id"])), 30, what="the forced stop")
        assert time.monotonic() - asked >= grace
        assert final["state"] == "cancelled" and final["error"] is None
        stopped = metrics_steps(run)[-1]
        time.sleep(1.5)
        assert metrics_steps(run)[-1] == stopped, "the worker kept training after the kill"

        # A retry within a cancel's grace period stops the old worker first: one writer per run folder.
        assert client.post(f"/v1/jobs/{running['id']}/retry").status_code == 202
        wait_for(lambda: len(json.loads((run / "resumes.json").read_text())) == 2, 60, what="the first retry")
        assert client.post(f"/v1/jobs/{running['id']}/cancel").status_code == 200
        assert client.post(f"/v1/jobs/{running['id']}/retry").status_code == 202  # well within the grace
        wait_for(lambda: len(json.loads((run / "resumes.json").read_text())) == 3, 60, what="the second retry")
        time.sleep(1.5)
        start = json.loads((run / "resumes.json").read_text())[-1] + 1
        steps = metrics_steps(run)
        tail = steps[len(steps) - 1 - steps[::-1].index(start):]
        assert tail == list(range(start, start + len(tail))) and len(tail) > 3, "two workers wrote one run folder"
        assert client.delete(f"/v1/jobs/{running['id']}").status_code == 204


# --- the watcher ------------------------------------------------------------------------------------
def test_watcher_outlives_store_and_ray_errors_and_records_a_crash_later(tmp_path, monkeypatch, caplog):
    import ray
    from sqlalchemy.exc import OperationalError

    from splatforge.service.executor import RayExecutor
    from splatforge.service.store import Store

    ensure_ray()
    db_url = fresh_db_url(tmp_path)

    class FlakyStore(Store):
        """The server's store on a disk that is full for the first few writes."""

        failures = 3

        def update_where(self, *args, **kwargs):
            if FlakyStore.failures > 0:
                FlakyStore.failures -= 1
                raise OperationalError("UPDATE", {}, Exception("database or disk is full"))
            return super().update_where(*args, **kwargs)

    store = FlakyStore(db_url)
    jobs_dir = tmp_path / "jobs"
    (jobs_dir / ("c" * 22) / "upload").mkdir(parents=True)
    for _, (name, data, _) in image_files(3):
        (jobs_dir / ("c" * 22) / "upload" / name).write_bytes(data)
    created = Store(db_url).create("c" * 22, {"train.steps": 50}, {"kind": "images", "source": "upload"}, owner="t")
    executor = RayExecutor(store, db_url=db_url, jobs_dir=jobs_dir, runner="service_runner:crashing_pipeline",
                           progress_interval_s=0.05, worker_retries=0)
    real_wait, calls = ray.wait, {"n": 0}

    def wait_that_fails_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected: Ray answered with garbage")
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(ray, "wait", wait_that_fails_once)
    executor.start()
    try:
        executor.submit(created.id, 0)
        final = wait_for(lambda: (lambda j: j if j.state == "failed" else None)(Store(db_url).get(created.id)), 90,
                         what="the crash to be recorded")
        assert "stopped unexpectedly" in final.error and final.advice
        assert FlakyStore.failures == 0 and calls["n"] >= 2
        assert all(t.is_alive() for t in executor._threads)
        assert "could not record job" in caplog.text

        # A retry after the worker's death resumes from the checkpoint before it: the loss is what was
        # trained since that checkpoint.
        attempt = store.claim_attempt(created.id, "t", states=("failed",))
        executor.submit(created.id, attempt)
        done = wait_for(lambda: (lambda j: j if j.state in ("succeeded", "failed") else None)(Store(db_url).get(created.id)),
                        90, what="the retry to finish")
        assert done.state == "succeeded", done.error
        run = jobs_dir / created.id / "run"
        resumes = json.loads((run / "resumes.json").read_text())
        assert resumes == [0, (CRASH_AT_STEP // CHECKPOINT_EVERY) * CHECKPOINT_EVERY], resumes
    finally:
        executor.stop()
        store.close()


def test_a_dead_worker_is_retried_from_its_checkpoint_a_bounded_number_of_times(tmp_path):
    """kill -9 of a worker (here: os._exit at step 8) queues the job again under a new attempt, which resumes
    from the step-5 checkpoint; a job whose worker dies on every attempt fails after `worker_retries`."""
    from splatforge.service.executor import RayExecutor
    from splatforge.service.store import Store

    ensure_ray()
    db_url = fresh_db_url(tmp_path)
    store, jobs_dir = Store(db_url), tmp_path / "jobs"
    ids = {"once": "o" * 22, "always": "a" * 22}
    for job_id in ids.values():
        (jobs_dir / job_id / "upload").mkdir(parents=True)
        for _, (name, data, _) in image_files(3):
            (jobs_dir / job_id / "upload" / name).write_bytes(data)
        store.create(job_id, {"train.steps": 12}, {"kind": "images", "source": "upload"}, owner="t")
    (jobs_dir / ids["always"] / "upload" / "crash-always").write_text("")
    executor = RayExecutor(store, db_url=db_url, jobs_dir=jobs_dir, runner="service_runner:crashing_pipeline",
                           progress_interval_s=0.05, worker_retries=2)
    executor.start()
    try:
        executor.submit(ids["once"], 0)
        executor.submit(ids["always"], 0)

        def final(job_id):
            return wait_for(lambda: (lambda j: j if j.state in ("succeeded", "failed") else None)(store.get(job_id)),
                            180, what=f"job {job_id} to end")

        once, always = final(ids["once"]), final(ids["always"])
        assert once.state == "succeeded" and once.attempt == 1, (once.state, once.error)
        run = jobs_dir / ids["once"] / "run"
        assert json.loads((run / "resumes.json").read_text()) == [0, (CRASH_AT_STEP // CHECKPOINT_EVERY) * CHECKPOINT_EVERY]
        log = (jobs_dir / ids["once"] / "job.log").read_text()
        assert "automatic retry 1 of 2, training resumes from its checkpoint at step 5" in log
        assert always.state == "failed" and always.attempt == 2
        assert "stopped unexpectedly" in always.error and "after 2 automatic retries" in always.error
        assert json.loads((jobs_dir / ids["always"] / "run" / "resumes.json").read_text()) == [0, 5, 5]
    finally:
        executor.stop()
        store.close()


# --- the web UI's cookie ----------------------------------------------------------------------------
def test_cookie_login_with_a_token_holding_url_characters(tmp_path):
    token = "a/b+c=d%e-0123456789"
    ensure_ray()
    settings = ServiceSettings(token=token, workspace=tmp_path, db_url=fresh_db_url(tmp_path), runner=RUNNER)
    with ThreadServer(create_app(settings)) as srv, httpx.Client(base_url=srv.url, timeout=30) as anonymous:
        encoded = quote(token, safe="-_.!~*'()")  # what the page's encodeURIComponent writes
        assert "%2F" in encoded and "%2B" in encoded and "%3D" in encoded
        assert anonymous.get("/v1/jobs", headers={"Cookie": f"splatforge_token={encoded}"}).status_code == 200
        assert anonymous.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert anonymous.get("/v1/jobs", headers={"Cookie": f"splatforge_token={quote('x' + token)}"}).status_code == 403
