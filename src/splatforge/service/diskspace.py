"""A full disk, told apart from other failures and explained with what to do.

A job that fills the workspace's disk fails with error "disk full" and advice (free space, then retry:
it resumes from the last checkpoint, which is kept); an upload that does not fit gets HTTP 507.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How a full disk shows when the errno was lost on the way: SQLite ("database or disk is full"),
# PostgreSQL ("could not extend file ...: No space left on device"), torch.save ("file write failed").
_DISK_FULL_TEXT = re.compile(r"no space left on device|database or disk is full|disk quota exceeded|disk full",
                             re.IGNORECASE)
_WRITE_FAILED_TEXT = re.compile(r"write failed|failed writing|could not write|error writing", re.IGNORECASE)
LOW_SPACE_BYTES = 64 * 1024**2  # below this, a write that failed without saying why is taken for a full disk
# The trainer's checkpoint names (splat/checkpoint.py); matched here so the server need not import torch.
_CHECKPOINT = re.compile(r"^ckpt_(\d{7,})\.pt$")


def free_bytes(path: Path) -> int | None:
    """Free space on the filesystem holding `path` (its nearest existing parent); None if unknown."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _chain(exc: BaseException | None):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException | None, where: Path | None = None) -> bool:
    """Whether `exc` (or anything it was raised from) is a full disk or quota. With `where`, a write that
    failed without an errno (torch.save says only "file write failed") counts when that disk is nearly full."""
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in DISK_FULL_ERRNOS:
            return True
        if _DISK_FULL_TEXT.search(str(link)):
            return True
    if where is not None and any(_WRITE_FAILED_TEXT.search(str(link)) for link in _chain(exc)):
        free = free_bytes(where)
        return free is not None and free < LOW_SPACE_BYTES
    return False


def newest_checkpoint_step(run_dir: Path) -> int | None:
    folder = Path(run_dir) / "checkpoints"
    try:
        steps = [int(m.group(1)) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name))]
    except OSError:
        return None
    return max(steps) if steps else None


def _size(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def disk_full_explanation(job_id: str, job_dir: Path) -> tuple[str, str]:
    """(error, advice) for a job that stopped on a full disk."""
    step = newest_checkpoint_step(Path(job_dir) / "run")
    kept = (f"it resumes from its last checkpoint (training step {step}), which is kept" if step is not None
            else "finished stages are kept and are not redone")
    error = f"disk full: the server's disk ran out of space while the job was writing ({_size(free_bytes(job_dir))} free now)"
    advice = (f"free space on the server (delete jobs you no longer need with DELETE /v1/jobs/{{id}}, or ask the "
              f"administrator to enlarge the workspace), then retry this job with POST /v1/jobs/{job_id}/retry: {kept}")
    return error, advice


def upload_too_large_for_disk(needed: int | None, where: Path) -> tuple[str, str]:
    """(error, advice) for an upload refused because the workspace's disk cannot hold it (HTTP 507)."""
    free = free_bytes(where)
    if needed is not None:
        error = f"the server has no room for this upload ({_size(needed)} sent, {_size(free)} free on its disk)"
    else:
        error = f"the server's disk filled up while storing this upload ({_size(free)} free)"
    advice = ("nothing was kept; send a smaller capture (downscale the images, fewer frames), or try again once "
              "space is freed on the server (DELETE /v1/jobs/{id} removes finished jobs and their files)")
    return error, advice


class DiskFullTolerantFile:
    """A text file whose writes are dropped, not raised, when the disk is full: a job's log must not turn
    a full disk into a second, unexplained failure. Everything else is passed through."""

    def __init__(self, file):
        self._file = file
        self.lost_writes = 0

    def write(self, text: str) -> int:
        try:
            return self._file.write(text)
        except OSError:
            self.lost_writes += 1
            return 0

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError:
            self.lost_writes += 1

    def fileno(self) -> int:
        return self._file.fileno()


class DiskReserve:
    """A file of `size` bytes kept beside the SQLite job store, deleted when the disk is full so that the
    store can still record state changes (a failure, a cancel, a delete), and made again once there is
    room. SQLite cannot write a single row on a full disk: without it a job that filled the disk could
    not even be marked failed."""

    def __init__(self, path: Path, size: int):
        self.path, self.size = Path(path), int(size)

    def release(self) -> bool:
        """Delete the reserve; whether there was one to free."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False

    def refill(self) -> bool:
        """Make the reserve if it is missing and the disk has twice its size free; whether it exists."""
        if self.size <= 0:
            return False
        if self.path.exists():
            return True
        free = free_bytes(self.path.parent)
        if free is None or free < 2 * self.size:
            return False
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                try:
                    os.posix_fallocate(f.fileno(), 0, self.size)
                except (AttributeError, OSError):
                    f.write(b"\0" * self.size)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return False
        return True
