"""The FastAPI application of `splatforge serve`: the /v1 job API, the web UI at /, the viewer at /viewer/.

Requests under /v1 need the bearer token (header `Authorization: Bearer T`, or the `splatforge_token`
cookie the web UI sets so that the viewer's <iframe> can fetch artifacts). The check happens in an ASGI
middleware before any request body is read, and the same middleware bounds the body size.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from splatforge import __version__
from splatforge.errors import InputError
from splatforge.rundir import RunDir
from splatforge.service.diskspace import free_bytes, is_disk_full, upload_too_large_for_disk
from splatforge.service.executor import RayExecutor, job_paths
from splatforge.service.settings import ServiceSettings
from splatforge.service.store import ACTIVE, FINAL, STATES, Job, Store, utcnow
from splatforge.service.uploads import UploadRefused, remove_job_dir, store_upload
from splatforge.service.wording import api_wording

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent / "web"
UI_FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
COOKIE = "splatforge_token"
PUBLIC_PREFIXES = ("/ui/", "/viewer/")
PUBLIC_PATHS = {"/", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/healthz", "/favicon.ico"}
MULTIPART_SLACK = 1 << 20  # form boundaries and option fields around the files
MAX_OFFSET = 10**9  # far beyond any job list, far below the database's 64-bit integers
# The form fields POST /v1/jobs takes besides `files`; each becomes a stage option (`job_options`).
API_OPTIONS = ("preset", "steps", "force", "frame_count", "downscale", "max_gaussians", "checkpoint_every_s",
               "options")
DISK_FULL_ADVICE = ("free space on the server (DELETE /v1/jobs/{id} removes a job and its files), "
                    "then try again")

# Artifact name -> (RunDir attribute, media type). Nothing else under a job can be fetched.
ARTIFACTS: dict[str, tuple[str, str]] = {
    "scene.ply": ("ply", "application/octet-stream"),  # the exported splat, one artifact per format (splat/formats)
    "scene.spz": ("spz", "application/octet-stream"),
    "scene.sog": ("sog", "application/zip"),
    "scene.compressed.ply": ("ply_compressed", "application/octet-stream"),
    "scene.splat": ("splat", "application/octet-stream"),
    "report.html": ("report_html", "text/html; charset=utf-8"),
    "report.json": ("report_json", "application/json"),
    "train.json": ("train_json", "application/json"),
    "quality.json": ("quality_json", "application/json"),
    "poses.json": ("poses_json", "application/json"),
    "frames.json": ("frames_json", "application/json"),
    "metrics.jsonl": ("metrics_jsonl", "application/x-ndjson"),
    "transforms.json": ("transforms_json", "application/json"),
    "run.json": ("manifest", "application/json"),
}
COMPUTED_ARTIFACTS = ("cameras.json",)  # the viewer's camera path, computed from the run


class ApiError(Exception):
    """A refusal: HTTP status, what went wrong, what to change."""

    def __init__(self, status: int, message: str, advice: str = ""):
        super().__init__(message)
        self.status, self.message, self.advice = status, message, advice


def _error_response(status: int, message: str, advice: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "advice": advice}, status_code=status, headers=headers)


@dataclass
class ServiceState:
    settings: ServiceSettings
    store: Store
    executor: Any  # RayExecutor, or anything with start/submit/cancel/stop


class _BodyTooLarge(Exception):
    pass


class GuardMiddleware:
    """Token check and body bound for /v1, before the body is read (pure ASGI, so streaming still works)."""

    def __init__(self, app: Any, settings: ServiceSettings):
        self.app, self.settings = app, settings
        self.max_body = settings.limits.max_total_bytes + MULTIPART_SLACK

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.settings.auth_required:
            refusal = self._check_token(headers)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        length = headers.get("content-length")
        if (scope["method"] == "POST" and path == "/v1/jobs" and length is not None and length.isdigit()
                and int(length) > (free_bytes(self.settings.jobs_dir) or 0)):
            message, advice = upload_too_large_for_disk(int(length), self.settings.jobs_dir)
            await _error_response(507, message, advice, {"Connection": "close"})(scope, receive, send)
            return
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _error_response(413, f"the request body is {int(length) / 1024**2:.0f} MiB, over the limit of "
                                  f"{self.max_body / 1024**2:.0f} MiB",
                                  "send fewer or smaller files (downscale images, or trim the video)",
                                  {"Connection": "close"})(scope, receive, send)
            return
        seen = 0
        started = False

        async def bounded_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _error_response(413, f"the request body is over the limit of {self.max_body / 1024**2:.0f} MiB",
                                      "send fewer or smaller files", {"Connection": "close"})(scope, receive, send)

    def _check_token(self, headers: dict[str, str]) -> JSONResponse | None:
        given = None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif "cookie" in headers:
            for part in headers["cookie"].split(";"):
                name, _, value = part.strip().partition("=")
                if name == COOKIE:
                    given = unquote(value)  # the web UI stores it URL-encoded (a token may hold / + =)
        if not given:
            return _error_response(401, "this server needs an access token",
                                   "send the header `Authorization: Bearer <token>` (the token `splatforge serve` "
                                   "was started with)", {"WWW-Authenticate": "Bearer"})
        expected = (self.settings.token or "").encode()
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected):
            return _error_response(403, "the access token is wrong",
                                   "use the token `splatforge serve` was started with (--token / SPLATFORGE_TOKEN)")
        return None


def check_job_options(fields: Mapping[str, list[str]]) -> None:
    """Refuse form fields that are not job options, and options sent empty or twice (FastAPI would
    ignore the first and take an empty value for "not given"). The values themselves are checked by
    `job_options`, against every stage's options."""
    for name, values in fields.items():
        if name == "files":
            continue
        if name not in API_OPTIONS:
            raise ApiError(422, f"unknown job option {name!r}",
                           f"the fields are: {', '.join(API_OPTIONS)} (any stage's option goes in `options` as "
                           'JSON, e.g. {"poses.mapper": "global"}); leave out any other field')
        if len(values) > 1:
            raise ApiError(422, f"the option {name} was given {len(values)} times", "give each option once")
        if not values or not values[0].strip():
            raise ApiError(422, f"the option {name} is empty", f"give {name} a value, or leave the field out "
                           "for the default")


async def _form_fields(request: Request) -> dict[str, list[str]]:
    """The raw text fields of the multipart form (FastAPI has parsed it already; this reads its cache)."""
    form = await request.form()
    return {name: [v for v in form.getlist(name) if isinstance(v, str)] for name in form.keys()}


async def _in_own_thread(fn: Callable[[], Any]) -> Any:
    """Run `fn` in a new thread and await it. Ray's driver is set up here: not on the event loop's thread
    (ray.init on the main thread replaces uvicorn's SIGTERM handler) and not on a pool thread (the pool
    retires idle threads, and Ray has tied processes to the thread that started them)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not done.done():
            setter(value)

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, done.set_exception, exc)
        else:
            loop.call_soon_threadsafe(settle, done.set_result, result)

    threading.Thread(target=run, name=f"splatforge-{getattr(fn, '__name__', 'start')}", daemon=True).start()
    return await done


def _iso(value: _dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _eta_seconds(job: Job) -> float | None:
    if job.state != "running" or not job.started_at or job.progress < 0.02:
        return None
    elapsed = (utcnow() - job.started_at).total_seconds()
    metrics = job.metrics or {}
    if job.stage == "train" and metrics.get("steps_per_s") and metrics.get("total") and "step" in metrics:
        train_left = max(0.0, (metrics["total"] - metrics["step"]) / metrics["steps_per_s"])
        return round(train_left + elapsed * 0.1 / max(job.progress, 0.02), 1)
    return round(elapsed * (1.0 - job.progress) / job.progress, 1)


def _artifacts(job_id: str, run: RunDir) -> dict[str, str]:
    found = {name: f"/v1/jobs/{job_id}/artifacts/{name}" for name, (attr, _) in ARTIFACTS.items()
             if getattr(run, attr).is_file()}
    if any(name.startswith("scene.") for name in found):
        found["cameras.json"] = f"/v1/jobs/{job_id}/artifacts/cameras.json"
    return found


def _error_view(job: Job, jobs_dir: Path) -> dict[str, str | None] | None:
    if not job.error:
        return None
    job_dir = jobs_dir / job.id
    run = RunDir(job_dir / "run")
    artifacts = {str(getattr(run, attr).relative_to(run.root)): f"/v1/jobs/{job.id}/artifacts/{name}"
                 for name, (attr, _) in ARTIFACTS.items()}
    return {"message": api_wording(job.error, job_dir, jobs_dir.parent, artifacts),
            "advice": api_wording(job.advice, job_dir, jobs_dir.parent, artifacts)}


def job_view(job: Job, jobs_dir: Path, detail: bool = True) -> dict[str, Any]:
    base = f"/v1/jobs/{job.id}"
    view: dict[str, Any] = {
        "id": job.id, "url": base, "page": f"/#/jobs/{job.id}", "state": job.state, "stage": job.stage,
        "stage_progress": round(100 * job.stage_fraction, 1), "progress": round(100 * job.progress, 1),
        "eta_s": _eta_seconds(job), "message": job.message, "metrics": job.metrics or {},
        "error": _error_view(job, jobs_dir),
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at), "updated_at": _iso(job.updated_at),
        "attempt": job.attempt, "worker": job.worker, "options": job.options, "inputs": {k: v for k, v in job.inputs.items() if k != "files"},
    }
    if detail:
        view["artifacts"] = _artifacts(job.id, RunDir(job_paths(jobs_dir / job.id)["run"]))
        view["links"] = {"events": f"{base}/events", "log": f"{base}/log", "cancel": f"{base}/cancel",
                         "retry": f"{base}/retry"}
    return view


def job_options(*, options: str | None = None, **named: Any) -> dict[str, Any]:
    """A job's options as the changes to the pipeline's defaults it stores (`train.steps`, ...): the form's
    named fields, then the JSON `options` field; checked now, so a bad one is a 422, not a failed job."""
    from splatforge.errors import InputError
    from splatforge.pipeline import RunOptions
    from splatforge.pipeline_cli import stage_changes
    from splatforge.service.executor import job_gpu_count

    changes = stage_changes(**{k: v for k, v in named.items() if k not in ("frame_count",)},
                            frames=named.get("frame_count"))
    if options:
        try:
            extra = json.loads(options)
        except ValueError as exc:
            raise ApiError(422, f"options is not valid JSON ({exc})", 'send an object, e.g. {"train.sh_degree": 2}') from None
        if not isinstance(extra, dict):
            raise ApiError(422, "options must be a JSON object", 'e.g. {"poses": {"mapper": "global"}}')
        changes.update(extra)
    for key in ("from_stage", "until_stage"):
        if key in changes:
            raise ApiError(422, f"{key} cannot be set on a job", "a job runs every stage; retry resumes a failed one")
    try:
        RunOptions().with_changes(changes)
        job_gpu_count(changes)
    except InputError as exc:
        raise ApiError(422, exc.message, exc.advice) from None
    return changes


def check_fits(executor: Any, options: dict[str, Any]) -> None:
    """A 422 for a job no host of the cluster can hold (more GPUs than any one host has), before anything
    of it is stored or queued; an executor without the check lets every job through."""
    check = getattr(executor, "check_fits", None)
    if check is None:
        return
    try:
        check(options)
    except InputError as exc:
        raise ApiError(422, exc.message, exc.advice) from None


def create_app(settings: ServiceSettings, executor: Any = None) -> FastAPI:
    """The service application. `executor` defaults to a `RayExecutor` started in the lifespan."""
    settings.check()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        if settings.ray_address and settings.database_url.startswith("sqlite"):
            log.warning("jobs run on a Ray cluster but the job store is SQLite (%s): workers on other hosts need "
                        "the same file on shared storage; prefer --db postgresql+psycopg://...",
                        settings.database_url)
        store = Store(settings.database_url, reserve_bytes=settings.disk_reserve_bytes)
        ex = executor or RayExecutor(store, db_url=settings.database_url, jobs_dir=settings.jobs_dir,
                                     runner=settings.runner, address=settings.ray_address,
                                     num_cpus=settings.ray_num_cpus, num_gpus=settings.ray_num_gpus,
                                     job_num_cpus=settings.job_num_cpus,
                                     progress_interval_s=settings.progress_interval_s,
                                     cancel_grace_s=settings.cancel_grace_s, log_dir=settings.workspace,
                                     worker_retries=settings.worker_retries)
        await _in_own_thread(ex.start)
        app.state.service = ServiceState(settings, store, ex)
        if settings.recover_on_start:
            await run_in_threadpool(recover_jobs, app.state.service)
        try:
            yield
        finally:
            await run_in_threadpool(drain_jobs, app.state.service, settings.shutdown_grace_s)
            await run_in_threadpool(ex.stop)
            store.close()

    app = FastAPI(title="splatforge", version=__version__, lifespan=lifespan,
                  description="Send captures (images, a video, or a zip); get camera poses, a trained Gaussian "
                              "splat, a PLY and a report back. Every /v1 request needs `Authorization: Bearer <token>`.")
    app.add_middleware(GuardMiddleware, settings=settings)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc.status, exc.message, exc.advice)

    def _disk_full(exc: Exception) -> JSONResponse:
        log.warning("refused a request: the disk is full (%s)", exc)
        return _error_response(507, "the server's disk is full", DISK_FULL_ADVICE)

    @app.exception_handler(OSError)
    async def _os_error(_request: Request, exc: OSError) -> JSONResponse:
        if is_disk_full(exc):
            return _disk_full(exc)
        raise exc

    @app.exception_handler(OperationalError)
    async def _db_error(_request: Request, exc: OperationalError) -> JSONResponse:
        if is_disk_full(exc):
            return _disk_full(exc)
        raise exc

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if is_disk_full(exc.__cause__):  # FastAPI turns a failed body parse (spooling to disk) into a 400
            return _disk_full(exc)
        detail = str(exc.detail)
        if detail.startswith("Too many files"):
            return _error_response(413, f"more than {settings.limits.max_files} files in one upload",
                                   "send fewer files (50-300 images are plenty for one scene), or one zip")
        advice = {404: "see /docs for the API's paths", 405: "see /docs for the methods each path takes"}
        return _error_response(exc.status_code, detail, advice.get(exc.status_code, "see /docs"),
                               getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return _error_response(422, f"invalid request: {where}: {first.get('msg', 'invalid')}",
                               "see /docs for the fields this endpoint takes")

    def service(request: Request) -> ServiceState:
        return request.app.state.service

    def get_job(request: Request, job_id: str) -> Job:
        if not JOB_ID.match(job_id):
            raise ApiError(404, f"no job {job_id!r}", "job ids are the `id` returned by POST /v1/jobs")
        job = service(request).store.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id}", "list jobs with GET /v1/jobs; deleted jobs are gone")
        return job

    # --- jobs -----------------------------------------------------------------------------------
    @app.post("/v1/jobs", status_code=202, tags=["jobs"],
              form_limits={"max_files": settings.limits.max_files + 1, "max_fields": 64})
    def create_job(
        request: Request,
        files: list[UploadFile] = File(..., description="Images, one video, or one zip of either (repeat the field)."),
        preset: str = Form("default", description="Training preset: " + " | ".join(settings.presets)),
        steps: int | None = Form(None, description="Training steps (default: the preset's)."),
        force: bool = Form(False, description="Train even when the capture check predicts failure."),
        frame_count: int | None = Form(None, description="Frames to take from a video (default: chosen from it)."),
        downscale: float | None = Form(None, description="Training image downscale (default: the preset's)."),
        max_gaussians: int | None = Form(None, description="Cap on the number of Gaussians (default: the preset's)."),
        checkpoint_every_s: float | None = Form(None, description="Seconds between training checkpoints (60)."),
        options: str | None = Form(None, description='Any other option as JSON, by stage: '
                                   '{"poses": {"mapper": "global"}, "train.sh_degree": 2}'),
        fields: dict[str, list[str]] = Depends(_form_fields),
    ) -> JSONResponse:
        """Upload a capture and queue a job. Returns at once with the job id and URL."""
        st = service(request)
        limits = settings.limits
        check_job_options(fields)
        if preset not in settings.presets:
            raise ApiError(422, f"unknown preset {preset!r}", f"use one of: {', '.join(settings.presets)}")
        if steps is not None and not 1 <= steps <= limits.max_steps:
            raise ApiError(422, f"steps={steps} is out of range", f"use 1..{limits.max_steps}, or leave it out")
        if frame_count is not None and not 3 <= frame_count <= limits.max_files:
            raise ApiError(422, f"frame_count={frame_count} is out of range", f"use 3..{limits.max_files}")
        if downscale is not None and not 1.0 <= downscale <= 16.0:
            raise ApiError(422, f"downscale={downscale} is out of range", "use 1..16, or leave it out")
        changes = job_options(preset=preset, steps=steps, force=force or None, frame_count=frame_count,
                              downscale=downscale, max_gaussians=max_gaussians,
                              checkpoint_every_s=checkpoint_every_s, options=options)
        check_fits(st.executor, changes)
        job_id = secrets.token_urlsafe(16)
        job_dir = settings.jobs_dir / job_id
        try:
            summary = store_upload(((f.filename, f.file) for f in files), job_dir, limits)
        except UploadRefused as exc:
            remove_job_dir(job_dir)
            raise ApiError(exc.status, api_wording(exc.message, job_dir, settings.workspace),
                           api_wording(exc.advice, job_dir, settings.workspace)) from None
        except BaseException:
            remove_job_dir(job_dir)
            raise
        try:
            job = st.store.create(job_id, changes, summary.to_dict(), owner=settings.server_name)
        except BaseException:
            remove_job_dir(job_dir)
            raise
        st.executor.submit(job_id, job.attempt)
        view = job_view(job, settings.jobs_dir)
        return JSONResponse(view, status_code=202, headers={"Location": view["url"]})

    @app.get("/v1/jobs", tags=["jobs"])
    def list_jobs(request: Request, state: str | None = Query(None, description=" | ".join(STATES)),
                  limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> dict[str, Any]:
        """Jobs, newest first."""
        if state is not None and state not in STATES:
            raise ApiError(422, f"unknown state {state!r}", f"use one of: {', '.join(STATES)}")
        jobs, total = service(request).store.list(state, limit, offset)
        nxt = None
        if offset + len(jobs) < total:
            nxt = f"/v1/jobs?limit={limit}&offset={offset + limit}" + (f"&state={state}" if state else "")
        return {"jobs": [job_view(j, settings.jobs_dir, detail=False) for j in jobs], "total": total,
                "limit": limit, "offset": offset, "next": nxt}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    def job_status(request: Request, job_id: str) -> dict[str, Any]:
        """State, stage, progress %, ETA, metrics so far, error with advice, artifacts."""
        return job_view(get_job(request, job_id), settings.jobs_dir)

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"])
    async def job_events(request: Request, job_id: str) -> StreamingResponse:
        """Server-sent events: `progress` with the job's state on every change, then `end`."""
        await run_in_threadpool(get_job, request, job_id)
        store = service(request).store

        async def stream():
            last = None
            beat = asyncio.get_running_loop().time()
            while True:
                job = await run_in_threadpool(store.get, job_id)
                if job is None:
                    yield "event: end\ndata: {\"state\": \"deleted\"}\n\n"
                    return
                key = (job.state, job.stage, job.progress, job.message, job.attempt)
                if key != last:
                    last = key
                    yield f"event: progress\ndata: {json.dumps(job_view(job, settings.jobs_dir, detail=False))}\n\n"
                if job.state in FINAL:
                    yield f"event: end\ndata: {json.dumps({'state': job.state})}\n\n"
                    return
                now = asyncio.get_running_loop().time()
                if now - beat > 15:
                    beat = now
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(settings.events_poll_s)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/jobs/{job_id}/log", tags=["jobs"], response_class=PlainTextResponse)
    def job_log(request: Request, job_id: str, tail: int = Query(2000, ge=1, le=100_000)) -> PlainTextResponse:
        """The job's log (progress lines, warnings, errors): the last `tail` lines."""
        job = get_job(request, job_id)
        path = job_paths(settings.jobs_dir / job.id)["log"]
        if not path.is_file():
            return PlainTextResponse("")
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 4 * 1024**2))
            lines = f.read().decode("utf-8", "replace").splitlines()[-tail:]
        return PlainTextResponse("\n".join(lines) + ("\n" if lines else ""))

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
        """Stop a queued or running job: its worker is asked to checkpoint and stop, and is stopped by force
        if it has not after the grace period. Its files stay; retry resumes it."""
        st = service(request)
        job = get_job(request, job_id)
        if not st.store.update_where(job.id, states=ACTIVE, state="cancelled", finished_at=utcnow(),
                                     message="cancelling: the worker was asked to checkpoint and stop"):
            job = get_job(request, job_id)
            raise ApiError(409, f"job {job.id} is already {job.state}", "only queued or running jobs can be cancelled")
        st.executor.cancel(job.id)
        return job_view(get_job(request, job_id), settings.jobs_dir)

    @app.post("/v1/jobs/{job_id}/retry", status_code=202, tags=["jobs"])
    def retry_job(request: Request, job_id: str) -> dict[str, Any]:
        """Queue a failed or cancelled job again; finished stages are kept and training resumes from its
        last checkpoint."""
        st = service(request)
        job = get_job(request, job_id)
        if job.state in ("failed", "cancelled"):  # the cluster may have lost the host it fitted on
            check_fits(st.executor, job.options)
        attempt = st.store.claim_attempt(job.id, settings.server_name, states=("failed", "cancelled"),
                                         message="queued again (retry)")
        if attempt is None:
            raise ApiError(409, f"job {job.id} is {job.state}", "only failed or cancelled jobs can be retried")
        st.executor.submit(job.id, attempt)
        return job_view(get_job(request, job_id), settings.jobs_dir)

    @app.delete("/v1/jobs/{job_id}", status_code=204, tags=["jobs"])
    def delete_job(request: Request, job_id: str) -> Response:
        """Cancel the job if it is active, then delete its record and all its files."""
        st = service(request)
        job = get_job(request, job_id)
        try:  # fence its worker out of the store first; on a full disk this may fail, the kill still holds
            st.store.update_where(job.id, states=ACTIVE, state="cancelled", finished_at=utcnow(), message="deleted")
        except Exception as exc:  # noqa: BLE001 - removing the files below frees the space to delete the record
            log.warning("delete %s: could not mark it cancelled first (%s)", job.id, exc)
        kill = getattr(st.executor, "kill", None)
        if kill is not None:
            kill(job.id)  # gone before its files are: a worker must not write into a removed folder
        else:
            st.executor.cancel(job.id)
        remove_job_dir(settings.jobs_dir / job.id)
        st.store.delete(job.id)
        return Response(status_code=204)

    @app.get("/v1/jobs/{job_id}/artifacts/{name}", tags=["jobs"],
             description="A file of the job's run, by name: " + ", ".join([*ARTIFACTS, *COMPUTED_ARTIFACTS]))
    def artifact(request: Request, job_id: str, name: str) -> Response:
        job = get_job(request, job_id)
        run = RunDir(job_paths(settings.jobs_dir / job.id)["run"])
        if name == "cameras.json":
            from splatforge.viewer.camera_path import camera_path_json

            try:
                return JSONResponse(camera_path_json(run.root))
            except InputError as exc:
                raise ApiError(404, api_wording(exc.message, settings.jobs_dir / job.id, settings.workspace),
                               "wait until the job has exported its splat") from None
        if name not in ARTIFACTS:
            raise ApiError(404, f"no artifact named {name!r}",
                           f"artifacts are: {', '.join([*ARTIFACTS, *COMPUTED_ARTIFACTS])}")
        attr, media_type = ARTIFACTS[name]
        path = getattr(run, attr)
        if not path.is_file():
            raise ApiError(404, f"job {job.id} has no {name} yet (state {job.state}, stage {job.stage})",
                           "wait for the job to reach that stage; GET /v1/jobs/{id} lists the artifacts so far")
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

    # --- pages ----------------------------------------------------------------------------------
    @app.get("/healthz", include_in_schema=False)
    def health(request: Request) -> JSONResponse:
        """200 while jobs can run; 503 with what is wrong when Ray is not (the raylet or GCS died, Ray does
        not answer)."""
        st = service(request)
        probe = getattr(st.executor, "health", None)
        ray = probe() if probe is not None else None
        ok = ray is None or ray.ok
        free = free_bytes(settings.jobs_dir)
        body = {"ok": ok, "version": __version__, "gpu": bool(getattr(st.executor, "use_gpu", False)),
                "auth": settings.auth_required, "ray": ray.to_dict() if ray is not None else None,
                "disk_free_mb": round(free / 1024**2) if free is not None else None}
        return JSONResponse(body, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/ui/{name}", include_in_schema=False)
    def ui_file(name: str) -> FileResponse:
        if name not in UI_FILES:
            raise ApiError(404, f"no UI file {name!r}", "open / for the web UI")
        return FileResponse(WEB_DIR / name, media_type=UI_FILES[name], headers={"Cache-Control": "no-cache"})

    @app.get("/viewer/{path:path}", include_in_schema=False)
    def viewer_file(path: str) -> Response:
        found = _viewer_file(path)
        if found is None:
            raise ApiError(404, f"no viewer file {path!r}", "open a job page to see its splat")
        media = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8",
                 ".wasm": "application/wasm", ".json": "application/json"}.get(found.suffix.lower())
        return FileResponse(found, media_type=media, headers={"Cache-Control": "no-cache"})

    return app


def _viewer_file(url_path: str) -> Path | None:
    """A page or package file of the Spark viewer (`splatforge view`'s page); never job data."""
    try:
        from splatforge.viewer.server import ViewerSite
    except ImportError:
        return None
    if url_path in ("scene.ply", "cameras.json"):
        return None
    found = ViewerSite(splat=Path("/nonexistent.ply"), cameras={}).resolve("/" + url_path)
    return found if isinstance(found, Path) else None


def recover_jobs(state: ServiceState) -> list[str]:
    """Queue again this server's jobs that were queued or running when it stopped. The pipeline skips
    finished stages and resumes training from its last checkpoint, so nothing done is lost."""
    recovered = []
    for job in state.store.with_states(ACTIVE, owner=state.settings.server_name):
        try:
            attempt = state.store.claim_attempt(job.id, state.settings.server_name, ACTIVE,
                                                message=f"queued again after a server restart (was {job.state})")
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk: the job stays as it was, the server starts
            log.warning("could not queue job %s again after the restart: %s", job.id, exc)
            continue
        if attempt is not None:
            state.executor.submit(job.id, attempt)
            recovered.append(job.id)
    return recovered


def drain_jobs(state: ServiceState, grace_s: float) -> list[str]:
    """At shutdown: queue this server's active jobs again under a new attempt, which their workers read as
    "stop" (training stops at its next step with a checkpoint), and wait up to `grace_s` for them to stop.
    The next start picks them up (`recover_jobs`) and loses no finished training step."""
    running = getattr(state.executor, "running", None)
    if running is None or grace_s <= 0:
        return []
    drained = []
    for job_id in running():
        try:
            if state.store.claim_attempt(job_id, state.settings.server_name, ACTIVE,
                                         message="queued again: the server is restarting") is not None:
                drained.append(job_id)
        except Exception as exc:  # noqa: BLE001 - shutting down regardless
            log.warning("could not queue job %s again at shutdown: %s", job_id, exc)
    deadline = time.monotonic() + grace_s
    while drained and set(running()) & set(drained) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = set(running()) & set(drained)
    if left:
        log.warning("%d job(s) did not stop within %.0f s of the shutdown; they resume from their last "
                    "checkpoint at the next start", len(left), grace_s)
    return drained
