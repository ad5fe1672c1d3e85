"""Job records through SQLAlchemy: SQLite in the workspace by default, PostgreSQL by URL.

The server and the Ray workers each open their own `Store` on the same URL. Every state change is a
compare-and-set (`update_where`), so a worker whose attempt was superseded (a retry, a restart) or
whose job was cancelled cannot overwrite the record: its write matches no row and it stops.

States: queued -> running -> succeeded | failed | cancelled; retry puts failed/cancelled back to queued.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from splatforge.service.diskspace import DiskReserve, is_disk_full

log = logging.getLogger(__name__)

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")

metadata = sa.MetaData()
jobs_table = sa.Table(
    "splatforge_jobs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("stage", sa.String(32)),
    sa.Column("stage_fraction", sa.Float, nullable=False, default=0.0),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("message", sa.Text),
    sa.Column("metrics", sa.JSON),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("advice", sa.Text),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("owner", sa.String(255)),
    sa.Column("worker", sa.String(255)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _aware(value: _dt.datetime | None) -> _dt.datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value


@dataclass
class Job:
    """One job record. `progress` is 0..1 over the whole pipeline; `stage_fraction` 0..1 within `stage`."""

    id: str
    state: str
    options: dict[str, Any]
    inputs: dict[str, Any]
    created_at: _dt.datetime
    updated_at: _dt.datetime
    stage: str | None = None
    stage_fraction: float = 0.0
    progress: float = 0.0
    message: str | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None
    advice: str | None = None
    attempt: int = 0
    owner: str | None = None
    worker: str | None = None
    started_at: _dt.datetime | None = None
    finished_at: _dt.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_row(cls, row: Any) -> Job:
        data = dict(row._mapping)
        for key in ("created_at", "updated_at", "started_at", "finished_at"):
            data[key] = _aware(data[key])
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the workers' writes
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, *, pooled: bool = True) -> sa.Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout so server and workers can share the file."""
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    if not pooled:
        kwargs["poolclass"] = NullPool
    elif not url.startswith("sqlite:///:memory:"):
        kwargs.update(pool_size=10, max_overflow=30, pool_pre_ping=True)
    engine = sa.create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    database = sa.engine.make_url(url).database
    return Path(database) if database and database != ":memory:" else None


class Store:
    """The job table behind an engine. Thread-safe (one connection per call).

    With SQLite, a reserve file of `reserve_bytes` beside the database (`DiskReserve`) is given up when
    the disk is full, so that changes of a job's state can still be written; progress updates cannot use
    it. Every process may release it; the server makes it again (`refill_reserve`) once there is room.
    """

    def __init__(self, url: str, *, pooled: bool = True, create: bool = True, reserve_bytes: int = 0):
        self.url = url
        self.engine = make_engine(url, pooled=pooled)
        db_file = sqlite_file(url)
        self.reserve = DiskReserve(db_file.with_name(db_file.name + ".reserve"), reserve_bytes) if db_file else None
        if create:
            metadata.create_all(self.engine)
            self.refill_reserve()

    def refill_reserve(self) -> bool:
        return self.reserve.refill() if self.reserve is not None else False

    def _write(self, write: Callable[[], Any], essential: bool) -> Any:
        """Run `write`; if an essential one fails on a full disk, give up the reserve and try once more."""
        try:
            return write()
        except sa.exc.OperationalError as exc:
            if not essential or self.reserve is None or not is_disk_full(exc) or not self.reserve.release():
                raise
            log.warning("the job store's disk is full: gave up its %d-byte reserve to record a job's state",
                        self.reserve.size)
        return write()

    def close(self) -> None:
        self.engine.dispose()

    # --- reads --------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).first()
        return Job.from_row(row) if row is not None else None

    def list(self, state: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[Job], int]:
        """Newest first, and the total count matching `state`."""
        query = sa.select(jobs_table)
        count = sa.select(sa.func.count()).select_from(jobs_table)
        if state:
            query = query.where(jobs_table.c.state == state)
            count = count.where(jobs_table.c.state == state)
        query = query.order_by(jobs_table.c.created_at.desc(), jobs_table.c.id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            total = conn.execute(count).scalar_one()
        return [Job.from_row(r) for r in rows], int(total)

    def with_states(self, states: Iterable[str], owner: str | None = None) -> list[Job]:
        query = sa.select(jobs_table).where(jobs_table.c.state.in_(list(states)))
        if owner is not None:
            query = query.where(sa.or_(jobs_table.c.owner == owner, jobs_table.c.owner.is_(None)))
        with self.engine.connect() as conn:
            return [Job.from_row(r) for r in conn.execute(query.order_by(jobs_table.c.created_at)).all()]

    # --- writes -------------------------------------------------------------------------------
    def create(self, job_id: str, options: dict[str, Any], inputs: dict[str, Any], owner: str | None) -> Job:
        now = utcnow()
        with self.engine.begin() as conn:  # not essential: a new job on a full disk is refused (507)
            conn.execute(jobs_table.insert().values(
                id=job_id, state="queued", stage=None, stage_fraction=0.0, progress=0.0, message="queued",
                metrics=None, options=options, inputs=inputs, attempt=0, owner=owner,
                created_at=now, updated_at=now))
        job = self.get(job_id)
        assert job is not None
        return job

    def update_where(self, job_id: str, *, states: Iterable[str] | None = None, attempt: int | None = None,
                     **values: Any) -> bool:
        """Set `values` on the job only if its state is in `states` and its attempt is `attempt`.

        Returns whether the row matched: False means someone else moved the job on (cancelled it,
        retried it, deleted it) and the caller must not act as if it owned it.
        """
        query = jobs_table.update().where(jobs_table.c.id == job_id)
        if states is not None:
            query = query.where(jobs_table.c.state.in_(list(states)))
        if attempt is not None:
            query = query.where(jobs_table.c.attempt == attempt)
        values.setdefault("updated_at", utcnow())

        def write() -> bool:
            with self.engine.begin() as conn:
                return conn.execute(query.values(**values)).rowcount == 1

        return self._write(write, essential="state" in values)

    def claim_attempt(self, job_id: str, owner: str, states: Iterable[str] = ACTIVE, *, attempt: int | None = None,
                      **values: Any) -> int | None:
        """Queue the job again under a new attempt number (fencing out older workers); None if not in `states`
        (or, given `attempt`, if the job is under another attempt by now). Not essential: a retry on a full
        disk is refused rather than run into the same wall."""
        return self._write(lambda: self._claim_attempt(job_id, owner, states, attempt, values), essential=False)

    def _claim_attempt(self, job_id: str, owner: str, states: Iterable[str], expected: int | None,
                       values: dict[str, Any]) -> int | None:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(jobs_table.c.attempt, jobs_table.c.state)
                               .where(jobs_table.c.id == job_id)).first()
            if row is None or row.state not in states or (expected is not None and row.attempt != expected):
                return None
            attempt = int(row.attempt) + 1
            done = conn.execute(jobs_table.update().where(jobs_table.c.id == job_id)
                                .where(jobs_table.c.attempt == row.attempt)
                                .where(jobs_table.c.state == row.state)
                                .values(attempt=attempt, state="queued", owner=owner, updated_at=utcnow(),
                                        error=None, advice=None, finished_at=None, **values)).rowcount
        return attempt if done == 1 else None

    def delete(self, job_id: str) -> bool:
        def write() -> bool:
            with self.engine.begin() as conn:
                return conn.execute(jobs_table.delete().where(jobs_table.c.id == job_id)).rowcount == 1

        return self._write(write, essential=True)
