"""Every knob of the job service, with defaults that are safe on a shared network."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splatforge.errors import InputError

DEFAULT_RUNNER = "splatforge.pipeline:run_pipeline"
PRESETS = ("fast", "default", "quality", "mcmc", "demo")


@dataclass
class UploadLimits:
    """Bounds on one upload. Every refusal names the bound and what to change."""

    max_total_bytes: int = 4 * 1024**3  # the request body
    max_files: int = 1000  # images (sent directly or inside a zip)
    max_image_pixels: int = 50_000_000  # width * height of one image or video frame
    max_zip_ratio: float = 200.0  # uncompressed / compressed: above this a zip is refused as a bomb
    max_unpacked_bytes: int = 8 * 1024**3  # a zip's total uncompressed size
    max_steps: int = 200_000


@dataclass
class ServiceSettings:
    """What `splatforge serve` runs with. Build it with `from_env()` or directly (tests)."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # bearer token; required unless `no_auth` on a loopback host
    no_auth: bool = False
    workspace: Path = Path("splatforge-workspace")
    db_url: str | None = None  # None: sqlite:///<workspace>/jobs.sqlite
    ray_address: str | None = None  # None: start a local Ray instance
    ray_num_cpus: int | None = None  # CPUs of the local Ray instance (None: all)
    ray_num_gpus: int | None = None  # GPUs of the local Ray instance (None: all it finds)
    job_num_cpus: float = 1.0  # CPUs one job asks Ray for
    server_name: str = field(default_factory=lambda: os.uname().nodename)  # owner of jobs it queues
    # "module:function" or a callable with run_pipeline's signature. A string travels to Ray workers
    # by name; the default is the real pipeline.
    runner: str | Callable[..., Any] = DEFAULT_RUNNER
    limits: UploadLimits = field(default_factory=UploadLimits)
    presets: tuple[str, ...] = PRESETS
    progress_interval_s: float = 0.5  # the fastest a worker writes progress to the store
    events_poll_s: float = 0.5  # how often the event stream looks for new progress
    recover_on_start: bool = True  # re-queue this server's unfinished jobs at start
    shutdown_grace_s: float = 20.0  # at shutdown, how long running jobs have to checkpoint and stop
    cancel_grace_s: float = 30.0  # how long a cancelled job's worker has to checkpoint and stop before it is killed
    worker_retries: int = 2  # automatic retries of a job whose worker died (killed, out of memory)
    # Kept free beside a SQLite job store so that state changes can be recorded on a full disk (DiskReserve).
    disk_reserve_bytes: int = 16 * 1024**2

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace).expanduser().resolve()

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.workspace / 'jobs.sqlite'}"

    @property
    def jobs_dir(self) -> Path:
        return self.workspace / "jobs"

    @property
    def auth_required(self) -> bool:
        return not self.no_auth

    def check(self) -> ServiceSettings:
        """Refuse unsafe combinations (an open server without a token)."""
        if self.no_auth and not is_loopback(self.host):
            raise InputError(f"--no-auth is only allowed when listening on localhost, not on {self.host}",
                             "drop --no-auth and give --token (or SPLATFORGE_TOKEN), or listen on --host 127.0.0.1")
        if not self.no_auth and not self.token:
            raise InputError("no access token configured", "give --token T (or SPLATFORGE_TOKEN), "
                             "or --no-auth when listening on localhost only")
        if self.token is not None and len(self.token) < 8:
            raise InputError("the token is shorter than 8 characters", "use a long random token, e.g. "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
