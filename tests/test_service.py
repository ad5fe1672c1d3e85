"""The job service end to end on CPU: uploads and their refusals, auth, Ray jobs (several at once,
cancel, retry resuming from a checkpoint, failure with advice), progress events, 50 concurrent status
requests, and a server killed mid-job that finishes the job after a restart.

Jobs run `service_runner.fake_pipeline` (a small real runner that writes run-folder files and reports
progress per training step); the real pipeline is exercised in test_service_pipeline.py. The database is
the PostgreSQL of SPLATFORGE_TEST_DB when scripts/pg_for_tests.sh started one, SQLite otherwise.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import json
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from service_runner import CHECKPOINT_EVERY
from service_support import (
    RUNNER,
    ThreadServer,
    ensure_ray,
    free_port,
    fresh_db_url,
    image_files,
    jpeg_bytes,
    png_bytes,
    serve_subprocess,
    wait_for,
)
from splatforge.service.app import create_app
from splatforge.service.settings import ServiceSettings, UploadLimits
from splatforge.service.store import Store

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    ensure_ray()
    workspace = tmp_path_factory.mktemp("service")
    settings = ServiceSettings(
        token=TOKEN, workspace=workspace, db_url=fresh_db_url(workspace), runner=RUNNER,
        limits=UploadLimits(max_total_bytes=3 * 1024**2, max_files=12, max_image_pixels=300_000,
                            max_unpacked_bytes=20 * 1024**2),
        progress_interval_s=0.1, events_poll_s=0.1)
    app = create_app(settings)
    with ThreadServer(app) as server:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
            client.settings, client.app = settings, app
            yield client


def submit(client, files=None, **options) -> dict:
    data = {k: str(v) for k, v in options.items()}
    r = client.post("/v1/jobs", files=files or image_files(4), data=data)
    assert r.status_code == 202, r.text
    return r.json()


def wait_state(client, job_id: str, states=("succeeded", "failed", "cancelled"), timeout=90) -> dict:
    def done():
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["state"] in states else None

    return wait_for(done, timeout, what=f"job {job_id} to reach {states}")


def job_dirs(client) -> set[str]:
    jobs = client.settings.jobs_dir
    return {p.name for p in jobs.iterdir()} if jobs.exists() else set()


# --- uploads and auth -------------------------------------------------------------------------------
def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buf.getvalue()


def _big_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (800, 600)).save(buf, "PNG")
    return buf.getvalue()


def _mp4(frames: int = 10) -> bytes:
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _zip_with_bad_crc() -> bytes:
    data = bytearray(_zip({"a.png": png_bytes(6), "b.png": png_bytes(7)}))
    start = data.index(b"\x89PNG", 40)  # inside the second member's data: its CRC no longer matches
    data[start + 200] ^= 0xFF
    return bytes(data)


def _zip_with_corrupt_deflate() -> bytes:
    data = bytearray(_zip({"a.png": png_bytes(8), "b.png": png_bytes(9)}, zipfile.ZIP_DEFLATED))
    header = data.index(b"PK\x03\x04", 10)  # the second member
    name_len, extra_len = int.from_bytes(data[header + 26:header + 28], "little"), int.from_bytes(data[header + 28:header + 30], "little")
    body = header + 30 + name_len + extra_len
    data[body:body + 8] = b"\xff" * 8  # a deflate block type that does not exist
    return bytes(data)


def _jpeg_with_a_lying_header(side: int = 500) -> bytes:
    """A 64x48 JPEG whose frame header claims side x side (the issue's was 7000x7000; this server's pixel
    bound is lower): Pillow decodes it into grey filler without a word."""
    data = bytearray(jpeg_bytes(9))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2
    return bytes(data)


BAD_UPLOADS = {
    "zip with a bad CRC": (422, "damaged", [("files", ("crc.zip", _zip_with_bad_crc(), "application/zip"))]),
    "zip with a corrupt deflate stream": (422, "damaged", [("files", ("z.zip", _zip_with_corrupt_deflate(),
                                                                      "application/zip"))]),
    "jpeg whose header lies about its size": (422, "damaged", [*image_files(3), ("files", (
        "big.jpg", _jpeg_with_a_lying_header(), "image/jpeg"))]),
    "not an image": (415, "not an image", [("files", ("photo.jpg", b"hello, this is text" * 10, "image/jpeg"))]),
    "truncated png": (422, "truncated", [("files", ("a.png", png_bytes(1)[:400], "image/png"))]),
    "truncated jpeg": (422, "truncated", [("files", ("a.jpg", jpeg_bytes(1)[:600], "image/jpeg"))]),
    "zip with ../": (422, "outside", [("files", ("c.zip", _zip({"ok.png": png_bytes(2), "../evil.png": png_bytes(3)}),
                                                 "application/zip"))]),
    "zip bomb": (413, "bomb", [("files", ("b.zip", _zip({"a.png": b"\0" * (10 * 1024**2)}, zipfile.ZIP_DEFLATED),
                                          "application/zip"))]),
    "zip with a fake image": (415, "not an image", [("files", ("c.zip", _zip({"a.png": png_bytes(4), "b.jpg": b"x" * 99}),
                                                                "application/zip"))]),
    "too many files": (413, "more than 12 files", image_files(13)),
    "far too many files": (413, "more than 12 files", image_files(40)),
    "truncated video": (422, "not a readable video", [("files", ("clip.mp4", _mp4()[:500], "video/mp4"))]),
    "two videos": (422, "mixed", [("files", ("a.mp4", _mp4(), "video/mp4")), ("files", ("b.mp4", _mp4(), "video/mp4"))]),
    "too many pixels": (413, "MP", [("files", ("big.png", _big_png(), "image/png"))]),
    "mixed kinds": (422, "mixed", [*image_files(2), ("files", ("c.zip", _zip({"a.png": png_bytes(5)}), "application/zip"))]),
    "body too large": (413, "limit", [("files", ("huge.png", b"\x89PNG\r\n\x1a\n" + os.urandom(5 * 1024**2), "image/png"))]),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_is_refused_and_leaves_nothing(service, case):
    status, words, files = BAD_UPLOADS[case]
    before_dirs, before_total = job_dirs(service), service.get("/v1/jobs").json()["total"]
    r = service.post("/v1/jobs", files=files)
    assert r.status_code == status, r.text
    body = r.json()
    assert words.lower() in body["error"].lower(), body
    assert body["advice"], "every refusal says what to change"
    assert job_dirs(service) == before_dirs
    assert service.get("/v1/jobs").json()["total"] == before_total
    assert not (service.settings.workspace / "evil.png").exists()


def test_bad_options_are_refused(service):
    r = service.post("/v1/jobs", files=image_files(3), data={"preset": "turbo"})
    assert r.status_code == 422 and "preset" in r.json()["error"] and "default" in r.json()["advice"]
    r = service.post("/v1/jobs", files=image_files(3), data={"steps": "0"})
    assert r.status_code == 422 and "steps" in r.json()["error"]
    r = service.post("/v1/jobs", data={"preset": "fast"})
    assert r.status_code == 422 and r.json()["advice"]


@pytest.mark.parametrize("data, words", [
    ({"preset": ""}, "preset is empty"),
    ({"steps": ""}, "steps is empty"),
    ({"gpu": "1"}, "unknown job option 'gpu'"),
    ({"colour": "red"}, "unknown job option 'colour'"),
    ({"preset": ["fast", "quality"]}, "2 times"),
    ({"options": '{"poses.mapper": "sideways"}'}, "mapper must be one of"),
    ({"options": '{"train.nonsense": 1}'}, "unknown option 'train.nonsense'"),
    ({"options": '{"from_stage": "train"}'}, "cannot be set on a job"),
    ({"options": "not json"}, "not valid JSON"),
], ids=["empty preset", "empty steps", "a CLI-only option", "an unknown field", "an option twice",
        "a bad value of a stage option", "an unknown stage option", "a pipeline-only option", "options not JSON"])
def test_options_that_would_be_ignored_are_refused(service, data, words):
    before = job_dirs(service)
    r = service.post("/v1/jobs", files=image_files(3), data=data)
    assert r.status_code == 422, r.text
    assert words in r.json()["error"] and r.json()["advice"]
    assert job_dirs(service) == before


def test_list_refuses_offsets_beyond_any_database(service):
    r = service.get("/v1/jobs?offset=9223372036854775808")
    assert r.status_code == 422 and "offset" in r.json()["error"]
    assert service.get("/v1/jobs?offset=1000000000").status_code == 200


def test_errors_shown_to_clients_have_no_server_paths_or_cli_wording(service):
    job = submit(service, files=image_files(2))
    final = wait_state(service, job["id"])
    assert final["state"] == "failed"
    error = final["error"]["message"] + " " + final["error"]["advice"]
    assert "too few" in error and "upload" in error
    assert str(service.settings.workspace) not in error and "/tmp" not in error
    assert "--force" not in error and "re-run" not in error
    assert "force=true" in error and "submit the capture again" in error
    job_log = service.get(f"/v1/jobs/{job['id']}/log").text  # the log stays verbatim, for the administrator
    assert "--force" in job_log


def test_token_is_required_and_checked(service):
    url = str(service.base_url)
    before = job_dirs(service)
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        r = anonymous.post("/v1/jobs", files=image_files(3))
        assert r.status_code == 401 and "token" in r.json()["error"] and r.headers["www-authenticate"] == "Bearer"
        r = anonymous.get("/v1/jobs", headers={"Authorization": "Bearer wrong-token-123456"})
        assert r.status_code == 403 and r.json()["advice"]
        r = anonymous.post("/v1/jobs", files=image_files(3), headers={"Authorization": "Bearer wrong-token-123456"})
        assert r.status_code == 403
        assert anonymous.get("/v1/jobs", headers={"Cookie": f"splatforge_token={TOKEN}"}).status_code == 200
        # The UI, the docs and the viewer's static files are public; job data is not.
        assert anonymous.get("/").status_code == 200
        assert anonymous.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]
        assert anonymous.get("/v1/jobs/whatever/artifacts/scene.ply").status_code == 401
    assert job_dirs(service) == before


def test_settings_refuse_open_server_without_token(tmp_path):
    from splatforge.errors import InputError

    with pytest.raises(InputError, match="localhost"):
        ServiceSettings(host="0.0.0.0", no_auth=True, workspace=tmp_path).check()
    with pytest.raises(InputError, match="token"):
        ServiceSettings(host="127.0.0.1", workspace=tmp_path).check()
    assert ServiceSettings(host="127.0.0.1", no_auth=True, workspace=tmp_path).check().no_auth


def test_paths_outside_the_job_are_unreachable(service):
    job = submit(service, steps=3)
    for name in ("..%2F..%2Fjobs.sqlite", "../upload", "upload", "run.log", "%2e%2e", "scene.ply%00"):
        r = service.get(f"/v1/jobs/{job['id']}/artifacts/{name}")
        assert r.status_code == 404, (name, r.status_code)
    for bad_id in ("..", "..%2F..", "a" * 10, job["id"] + "x" * 50):
        assert service.get(f"/v1/jobs/{bad_id}").status_code == 404
    r = service.get(f"/v1/jobs/{job['id']}/artifacts/secrets.txt")
    assert r.status_code == 404 and "scene.ply" in r.json()["advice"]
    wait_state(service, job["id"])


def test_the_viewer_page_is_served_but_no_job_data_through_it(service):
    page = service.get("/viewer/index.html")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "<" in page.text
    for name in ("scene.ply", "cameras.json", "..%2F..%2Fjobs.sqlite", "nothing.js"):
        assert service.get(f"/viewer/{name}").status_code == 404, name


# --- jobs ------------------------------------------------------------------------------------------
def test_jobs_queued_at_once_all_finish_and_cancel_keeps_files(service):
    quick = [submit(service, files=image_files(3 + i, start=10 * i), preset="fast", steps=10) for i in range(4)]
    long = submit(service, steps=2000)
    assert len({j["id"] for j in quick + [long]}) == 5 and all(len(j["id"]) >= 22 for j in quick)
    assert all(j["state"] == "queued" for j in quick)

    wait_for(lambda: service.get(f"/v1/jobs/{long['id']}").json()["metrics"].get("step", 0) >= 10, 90,
             what="the long job to train")
    r = service.post(f"/v1/jobs/{long['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    run = service.settings.jobs_dir / long["id"] / "run"
    time.sleep(1.5)  # the worker is killed; nothing more is written
    lines = len((run / "metrics.jsonl").read_text().splitlines())
    time.sleep(1.5)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == lines
    assert service.get(f"/v1/jobs/{long['id']}").json()["state"] == "cancelled"
    assert sorted((run / "checkpoints").glob("ckpt_*.pt")) and any((run / "frames").iterdir())
    assert service.post(f"/v1/jobs/{long['id']}/cancel").status_code == 409

    for job in quick:
        final = wait_state(service, job["id"])
        assert final["state"] == "succeeded", final
        assert final["progress"] == 100 and final["metrics"]["step"] == 10
        assert final["metrics"]["final"]["steps"] == 10
        assert {"scene.ply", "report.html", "cameras.json"} <= set(final["artifacts"])
        ply = service.get(final["artifacts"]["scene.ply"])
        assert ply.status_code == 200 and ply.content.startswith(b"ply\n")
        assert "Fake report" in service.get(final["artifacts"]["report.html"]).text
        assert "succeeded" in service.get(f"/v1/jobs/{job['id']}/log").text

    # A retry resumes the cancelled job from its last checkpoint instead of starting over.
    r = service.post(f"/v1/jobs/{long['id']}/retry")
    assert r.status_code == 202 and r.json()["state"] == "queued" and r.json()["attempt"] == 1
    wait_for(lambda: service.get(f"/v1/jobs/{long['id']}").json()["state"] == "running", 60, what="retry to start")
    # "running" comes when Ray starts the attempt; the runner records where it starts training a moment later
    # (reading resumes.json before that read the first attempt's [0] alone: a flaky failure under load)
    resumes = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(json.loads((run / "resumes.json").read_text())),
                       60, what="the retry to start training")
    assert resumes[0] == 0 and resumes[-1] >= 10
    service.post(f"/v1/jobs/{long['id']}/cancel")
    assert service.delete(f"/v1/jobs/{long['id']}").status_code == 204
    assert service.get(f"/v1/jobs/{long['id']}").status_code == 404
    assert not (service.settings.jobs_dir / long["id"]).exists()


def test_failed_job_reports_error_with_advice_and_retry_is_refused_while_running(service):
    job = submit(service, files=image_files(2))
    final = wait_state(service, job["id"])
    assert final["state"] == "failed"
    assert "too few" in final["error"]["message"] and "20 overlapping photos" in final["error"]["advice"]
    assert "too few" in service.get(f"/v1/jobs/{job['id']}/log").text
    running = submit(service, steps=40)
    r = service.post(f"/v1/jobs/{running['id']}/retry")
    assert r.status_code == 409 and r.json()["advice"]
    wait_state(service, running["id"])


# --- GPUs no host has (this Ray has none; tests/test_service_gpus.py fakes a host with 2) ---------------
@pytest.mark.parametrize("options", ['{"train.gpus": "0,1"}', '{"train.device": "cuda"}'])
def test_a_job_that_needs_gpus_no_host_has_is_refused_before_anything_is_stored(service, options):
    before, total = job_dirs(service), service.get("/v1/jobs").json()["total"]
    r = service.post("/v1/jobs", files=image_files(3), data={"options": options})
    assert r.status_code == 422, r.text
    error, advice = r.json()["error"], r.json()["advice"]
    assert error.startswith("this job asks for ") and error.endswith("on one host; the cluster has no GPU")
    assert "train on the CPU" in advice and "add a host with" in advice
    assert job_dirs(service) == before and service.get("/v1/jobs").json()["total"] == total
    assert submit(service, steps=3)["state"] == "queued"  # a job that may train on the CPU still goes


def test_a_queued_job_no_host_can_hold_says_so_and_is_not_retried_into_the_same_wait(service):
    state = service.app.state.service
    job_id = "waits-for-gpus-" + "x" * 8  # queued while a host with 2 GPUs was there, say
    (service.settings.jobs_dir / job_id / "upload").mkdir(parents=True)
    state.store.create(job_id, {"train.gpus": "0,1"}, {"kind": "images", "source": "upload"},
                       owner=service.settings.server_name)
    state.executor.submit(job_id, 0)

    def noted():
        job = service.get(f"/v1/jobs/{job_id}").json()
        return job if job["message"].startswith("waiting") else None

    job = wait_for(noted, 30, what="the job's message to say what it waits for")
    assert job["state"] == "queued"
    assert job["message"].startswith("waiting for a host with 2 GPUs: no host has a GPU now")
    assert service.post(f"/v1/jobs/{job_id}/cancel").json()["state"] == "cancelled"
    r = service.post(f"/v1/jobs/{job_id}/retry")
    assert r.status_code == 422 and r.json()["error"].endswith("the cluster has no GPU"), r.text
    assert service.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    assert service.delete(f"/v1/jobs/{job_id}").status_code == 204


def test_events_stream_progress_until_the_end(service):
    job = submit(service, steps=15)
    events = []
    with service.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name == "end":
                    break
    progress = [data["progress"] for name, data in events if name == "progress"]
    assert events[-1] == ("end", {"state": "succeeded"})
    assert progress == sorted(progress) and progress[-1] == 100 and len(progress) >= 3
    assert {data["stage"] for name, data in events if name == "progress"} >= {"train", "report"}


def test_fifty_concurrent_status_requests_during_a_running_job(service):
    job = submit(service, steps=200)
    # running, and past its first progress report (a job Ray has just started is "running" at progress 0)
    wait_for(lambda: (lambda j: j["state"] == "running" and j["progress"] > 0)(service.get(f"/v1/jobs/{job['id']}").json()),
             60, what="running")

    def ask(_):
        with httpx.Client(base_url=service.base_url, headers=AUTH, timeout=30) as c:
            return c.get(f"/v1/jobs/{job['id']}")

    with cf.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(ask, range(50)))
    assert all(r.status_code == 200 for r in answers)
    bodies = [r.json() for r in answers]
    assert all(b["id"] == job["id"] and b["state"] == "running" and 0 < b["progress"] < 100 for b in bodies)
    assert service.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"


def test_list_filters_and_pages(service):
    jobs = service.get("/v1/jobs?limit=2").json()
    assert len(jobs["jobs"]) == 2 and jobs["total"] >= 5 and jobs["next"] == "/v1/jobs?limit=2&offset=2"
    page2 = service.get(jobs["next"]).json()
    assert not {j["id"] for j in page2["jobs"]} & {j["id"] for j in jobs["jobs"]}
    succeeded = service.get("/v1/jobs?state=succeeded&limit=500").json()
    assert succeeded["jobs"] and all(j["state"] == "succeeded" for j in succeeded["jobs"])
    assert succeeded["total"] == len(succeeded["jobs"])
    assert service.get("/v1/jobs?state=bogus").status_code == 422


def test_zip_upload_is_unpacked_and_runs(service):
    members = {f"capture/img_{i}.jpg": jpeg_bytes(i) for i in range(4)}
    members["capture/notes.txt"] = b"ignored: not a photo"
    job = submit(service, files=[("files", ("capture.zip", _zip(members), "application/zip"))], steps=5)
    assert job["inputs"]["kind"] == "zip" and job["inputs"]["images"] == 4
    assert wait_state(service, job["id"])["state"] == "succeeded"
    frames = service.settings.jobs_dir / job["id"] / "run" / "frames"
    assert len(list(frames.iterdir())) == 4


def test_zip_of_a_posed_capture_keeps_its_poses_beside_the_images(service):
    """A capture with its own poses (transforms.json, a COLMAP model) travels in a zip; the pose stage's
    `auto` engine finds them beside the images (`poses.existing`). Anything else is still left out."""
    members = {f"images/img_{i}.jpg": jpeg_bytes(i) for i in range(4)}
    members["transforms.json"] = json.dumps({"frames": [{"file_path": f"images/img_{i}.jpg"} for i in range(4)]}).encode()
    members["sparse/0/cameras.txt"] = b"# a COLMAP model file"
    members["notes.txt"] = b"ignored"
    job = submit(service, files=[("files", ("posed.zip", _zip(members), "application/zip"))], steps=3)
    assert job["inputs"]["images"] == 4 and job["inputs"]["source"] == "upload/unzipped"
    unzipped = service.settings.jobs_dir / job["id"] / "upload" / "unzipped"
    assert (unzipped / "transforms.json").is_file() and (unzipped / "sparse" / "0" / "cameras.txt").is_file()
    assert not (unzipped / "notes.txt").exists()
    assert wait_state(service, job["id"])["state"] == "succeeded"


def test_video_upload_is_checked_and_runs(service):
    job = submit(service, files=[("files", ("../../clip.mov", _mp4(), "video/quicktime"))], steps=3)
    assert job["inputs"]["kind"] == "video" and job["inputs"]["source"] == "upload/clip.mp4"
    assert wait_state(service, job["id"])["state"] == "succeeded"
    assert (service.settings.jobs_dir / job["id"] / "upload" / "clip.mp4").is_file()


def test_serve_command_refuses_an_open_server_without_token(tmp_path):
    from typer.testing import CliRunner

    from splatforge.cli import app

    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--no-auth", "--workspace", str(tmp_path)])
    assert result.exit_code == 1
    assert "only allowed when listening on localhost" in result.output
    assert not (tmp_path / "jobs").exists()


# --- a server killed mid-job ------------------------------------------------------------------------
def _start_server(workspace: Path, db_url: str, port: int, ray_address: str) -> subprocess.Popen:
    return serve_subprocess(workspace, port, TOKEN, ray_address=ray_address, step_s=0.1, startup_s=90,
                            extra_args=("--db", db_url))


def test_server_killed_mid_job_finishes_the_job_after_restart(tmp_path):
    address = ensure_ray()
    db_url = fresh_db_url(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start_server(tmp_path, db_url, port, address)
    try:
        r = httpx.post(f"{base}/v1/jobs", files=image_files(5), data={"steps": "60"}, headers=AUTH, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        wait_for(lambda: httpx.get(f"{base}/v1/jobs/{job_id}", headers=AUTH).json()["metrics"].get("step", 0) >= 15,
                 90, what="training to pass step 15")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        store = Store(db_url)
        assert store.get(job_id).state == "running"  # the dead server could not record anything else
        metrics = tmp_path / "jobs" / job_id / "run" / "metrics.jsonl"
        time.sleep(2.0)  # the driver's death takes its Ray task with it
        lines = len(metrics.read_text().splitlines())
        time.sleep(1.5)
        assert len(metrics.read_text().splitlines()) == lines, "the old worker kept training"
        assert lines < 60

        proc = _start_server(tmp_path, db_url, port, address)
        final = wait_for(lambda: (lambda j: j if j["state"] in ("succeeded", "failed") else None)(
            httpx.get(f"{base}/v1/jobs/{job_id}", headers=AUTH).json()), 90, what="the job to finish after restart")
        assert final["state"] == "succeeded", final
        assert final["attempt"] == 1 and final["metrics"]["final"]["steps"] == 60
        resumes = json.loads((tmp_path / "jobs" / job_id / "run" / "resumes.json").read_text())
        assert resumes[0] == 0 and resumes[1] >= 15, resumes  # resumed from a checkpoint, not from scratch
        assert lines - resumes[1] <= CHECKPOINT_EVERY, (lines, resumes)  # lost: at most one checkpoint interval
        store.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_server_restart_stops_jobs_with_a_checkpoint_and_loses_no_step(tmp_path):
    address = ensure_ray()
    db_url = fresh_db_url(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start_server(tmp_path, db_url, port, address)
    try:
        r = httpx.post(f"{base}/v1/jobs", files=image_files(5), data={"steps": "300"}, headers=AUTH, timeout=30)
        job_id = r.json()["id"]
        run = tmp_path / "jobs" / job_id / "run"
        wait_for(lambda: httpx.get(f"{base}/v1/jobs/{job_id}", headers=AUTH).json()["metrics"].get("step", 0) >= 12,
                 90, what="training to pass step 12")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        store = Store(db_url)
        job = store.get(job_id)
        assert job.state == "queued" and "restarting" in job.message, (job.state, job.message)
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
        assert (run / "checkpoints" / f"ckpt_{last:07d}.pt").is_file(), "no checkpoint at the step it stopped"

        proc = _start_server(tmp_path, db_url, port, address)
        wait_for(lambda: len(json.loads((run / "resumes.json").read_text())) == 2, 60, what="training to resume")
        assert json.loads((run / "resumes.json").read_text()) == [0, last]  # not one step lost
        assert httpx.post(f"{base}/v1/jobs/{job_id}/cancel", headers=AUTH).status_code == 200
        store.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_store_fences_out_an_older_attempt(tmp_path):
    store = Store(fresh_db_url(tmp_path))
    job = store.create("j" * 22, {"train.preset": "fast"}, {"kind": "images", "source": "upload"}, owner="a")
    assert store.update_where(job.id, states=("queued",), attempt=0, state="running")
    assert store.claim_attempt(job.id, "a") == 1  # a restart re-queues it under attempt 1
    assert not store.update_where(job.id, states=("running",), attempt=0, progress=0.5)  # the old worker
    assert not store.update_where(job.id, states=("queued",), attempt=0, state="running")
    assert store.update_where(job.id, states=("queued",), attempt=1, state="running")
    assert store.update_where(job.id, states=("queued", "running"), state="cancelled")
    assert not store.update_where(job.id, states=("running",), attempt=1, state="succeeded")
    assert store.claim_attempt(job.id, "a") is None  # only active jobs are recovered
    assert store.claim_attempt(job.id, "a", states=("cancelled",)) == 2
    again = store.get(job.id)
    assert (again.state, again.attempt, again.progress, again.owner) == ("queued", 2, 0.0, "a")
    assert [j.id for j in store.with_states(("queued",), owner="a")] == [job.id]
    assert store.with_states(("queued",), owner="b") == []
    assert store.delete(job.id) and store.get(job.id) is None
    store.close()


def test_worker_stops_by_itself_when_its_job_is_cancelled(tmp_path):
    """Without Ray's kill (a server that cannot reach the task): the worker sees the cancel in the store,
    sets its cancel event, and training stops with a checkpoint. (A stage that never listens is killed by
    the executor after the grace period: test_service_faults.)"""
    import threading

    from service_runner import fake_pipeline
    from splatforge.service.executor import TaskSpec, run_job

    db_url = fresh_db_url(tmp_path)
    store = Store(db_url)
    job_dir = tmp_path / "jobs" / ("k" * 22)
    (job_dir / "upload").mkdir(parents=True)
    for _, (name, data, _) in image_files(3):
        (job_dir / "upload" / name).write_bytes(data)
    job = store.create("k" * 22, {"train.steps": 400},
                       {"kind": "images", "source": "upload"}, owner="t")
    result = {}
    spec = TaskSpec(job.id, 0, db_url, str(job_dir), fake_pipeline, progress_interval_s=0.05)
    worker = threading.Thread(target=lambda: result.setdefault("state", run_job(spec)))
    worker.start()
    wait_for(lambda: (store.get(job.id).metrics or {}).get("step", 0) >= 8, 60, what="training")
    assert store.update_where(job.id, states=("running",), state="cancelled")
    worker.join(timeout=30)
    assert not worker.is_alive() and result["state"] == "stopped"
    final = store.get(job.id)
    assert final.state == "cancelled" and final.error is None
    steps = [json.loads(line)["step"] for line in (job_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] < 400
    # the clean stop wrote a checkpoint at the step it stopped
    assert (job_dir / "run" / "checkpoints" / f"ckpt_{steps[-1]:07d}.pt").is_file()
    assert "stopped" in (job_dir / "job.log").read_text()
    store.close()


def test_api_wording_turns_the_pipelines_cli_texts_into_job_texts(tmp_path):
    from splatforge.service.wording import api_wording

    workspace = tmp_path / "ws"
    job_dir = workspace / "jobs" / ("J" * 22)
    artifacts = {"quality.json": f"/v1/jobs/{'J' * 22}/artifacts/quality.json"}
    advice = (f"Retake the dark views. Details: {job_dir}/run/quality.json. To try anyway, re-run with --force.")
    assert api_wording(advice, job_dir, workspace, artifacts) == (
        f"Retake the dark views. Details: /v1/jobs/{'J' * 22}/artifacts/quality.json. To try anyway, submit the "
        "capture again with the job option force=true.")
    message = f"only 2 image(s) in {job_dir}/upload: see /usr/lib/python3/site-packages/torch/serialization.py"
    assert api_wording(message, job_dir, workspace) == "only 2 image(s) in upload: see serialization.py"
    assert "(a setting of the command line" in api_wording("lower --max-gaussians", job_dir, workspace)
    kept = "retry with POST /v1/jobs/abc/retry, then GET /v1/jobs/abc/log"
    assert api_wording(kept, job_dir, workspace) == kept
