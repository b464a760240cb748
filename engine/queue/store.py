"""Jobs in SQLite, so that a crash or restart loses none of them.

Every job gets a row when it is submitted and the row follows it:

    queued ──► running ──► done | failed | cancelled
       └──────────────────► failed | cancelled        (refused or cancelled while waiting)

Each transition is guarded by the states it may start from, so a late or repeated write
(say, a cancellation racing the job's end) cannot undo a finished job.

After a crash, rows still `queued` never ran and rows still `running` were cut off. On
start-up `recover()` hands back every such job to run again, except a job that has
already been cut off `max_attempts` times: that one is marked failed with the reason, in
case it is the job that brings the process down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import sqlite_utils

from engine.db import ThreadLocalDB
from engine.queue.job import QueuedJob
from engine.queue.owner import Owner

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
INTERRUPTED = "Interrupted by a restart {attempts} times; not tried again."
ORPHANED = "Its {kind} process (pid {pid}) ended before the job finished; nobody was left to deliver it."


class DBSource(Protocol):
    @property
    def db(self) -> sqlite_utils.Database: ...


class _Fixed:
    # A single connection (tests, scripts); SQLite forbids using it from other threads.
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db


@dataclass(frozen=True)
class JobRow:
    """One row of the `jobs` table, with JSON columns decoded."""

    id: str
    user_id: str
    checkpoint: str | None
    status: str
    request: dict[str, Any]
    result: Any
    error: str | None
    origin: dict[str, Any] | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    owner: dict[str, Any] | None = None  # engine.queue.owner.Owner as JSON

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobRow:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            checkpoint=row.get("checkpoint"),
            status=row["status"],
            request=json.loads(row["request"]) if row.get("request") else {},
            result=json.loads(row["result"]) if row.get("result") else None,
            error=row.get("error"),
            origin=json.loads(row["origin"]) if row.get("origin") else None,
            created_at=row.get("created_at") or 0.0,
            started_at=row.get("started_at"),
            finished_at=row.get("finished_at"),
            attempts=row.get("attempts") or 0,
            owner=json.loads(row["owner"]) if row.get("owner") else None,
        )

    # Read like the sqlite row it came from too: row["request"], row.get("created_at").
    def __getitem__(self, column: str) -> Any:
        if column not in self.__dataclass_fields__:
            raise KeyError(column)
        return getattr(self, column)

    def get(self, column: str, default: Any = None) -> Any:
        value = getattr(self, column, None) if column in self.__dataclass_fields__ else None
        return default if value is None else value

    def to_job(self, payload: Any = None, *, checkpoint: str | None = None) -> QueuedJob:
        """The QueuedJob to resubmit; the caller rebuilds `payload` from `request`."""
        return QueuedJob(
            id=self.id,
            user_id=self.user_id,
            checkpoint=checkpoint or self.checkpoint or "",
            request=self.request,
            payload=payload,
            origin=self.origin,
            created_at=self.created_at,
        )


def _origin_json(job: QueuedJob) -> str | None:
    return None if job.origin is None else json.dumps(job.origin, ensure_ascii=False)


@dataclass(frozen=True)
class RecoveryReport:
    requeue: list[JobRow]  # oldest first; now `queued` again
    failed: list[JobRow]  # now `failed`, with the reason in `error`


class JobStore:
    """The `jobs` table. `db_source` is an engine.db.ThreadLocalDB (one connection per
    thread, as the worker thread needs), a path, or a single Database (one thread only)."""

    def __init__(
        self,
        db_source: DBSource | sqlite_utils.Database | Path | str,
        *,
        clock: Callable[[], float] = time.time,
        owner: Owner | None = None,
    ) -> None:
        if isinstance(db_source, (str, Path)):
            db_source = ThreadLocalDB(db_source)
        elif isinstance(db_source, sqlite_utils.Database):
            db_source = _Fixed(db_source)
        self._source: DBSource = db_source
        self._clock = clock
        # Stamped on every job this store records; None (scripts, tests) stamps none.
        self.owner = owner
        self._owner_json = None if owner is None else json.dumps(owner.to_json())

    @property
    def db(self) -> sqlite_utils.Database:
        return self._source.db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite_utils.Database]:
        db = self.db
        conn = db.conn
        if conn.in_transaction:
            yield db
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    # -- writes ------------------------------------------------------------------------

    def insert(self, job: QueuedJob) -> None:
        """Record a newly submitted job as queued (raises if the id exists)."""
        with self._transaction() as db:
            db.table("jobs").insert(self._row(job))

    def insert_if_missing(self, job: QueuedJob) -> bool:
        """Record `job` unless a row with its id exists; True if it was inserted."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO jobs (id, user_id, origin, checkpoint, "
                "status, request, created_at, attempts, owner) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                [job.id, job.user_id, _origin_json(job), job.checkpoint, QUEUED,
                 json.dumps(job.request, ensure_ascii=False), job.created_at, self._owner_json],
            )
            return cursor.rowcount == 1

    def mark_running(self, job_id: str) -> bool:
        return self._move(job_id, (QUEUED,), RUNNING, started_at=self._clock())

    def mark_requeued(self, job_id: str) -> bool:
        """Its worker died under it: the job waits again (a restart would re-run it)."""
        return self._move(job_id, (RUNNING,), QUEUED, started_at=None)

    def mark_done(self, job_id: str, summary: Any = None) -> bool:
        result = None if summary is None else json.dumps(summary, ensure_ascii=False, default=repr)
        return self._move(job_id, (RUNNING,), DONE, result=result, finished_at=self._clock())

    def mark_failed(self, job_id: str, error: str) -> bool:
        return self._move(job_id, (QUEUED, RUNNING), FAILED, error=error,
                          finished_at=self._clock())

    def mark_cancelled(self, job_id: str) -> bool:
        return self.mark_cancelled_many([job_id]) == 1

    def mark_cancelled_many(self, job_ids: Iterable[str]) -> int:
        now = self._clock()
        changed = 0
        with self._transaction() as db:
            for job_id in job_ids:
                cursor = db.execute(
                    "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)",
                    [CANCELLED, now, job_id, QUEUED, RUNNING],
                )
                changed += cursor.rowcount
        return changed

    def _move(self, job_id: str, sources: tuple[str, ...], target: str, **values: Any) -> bool:
        columns = ", ".join(f"{name} = ?" for name in values)
        marks = ", ".join("?" for _ in sources)
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET status = ?, {columns} WHERE id = ? AND status IN ({marks})",
                [target, *values.values(), job_id, *sources],
            )
            return cursor.rowcount == 1

    def _row(self, job: QueuedJob) -> dict[str, Any]:
        return {
            "id": job.id,
            "user_id": job.user_id,
            "origin": _origin_json(job),
            "checkpoint": job.checkpoint,
            "status": QUEUED,
            "request": json.dumps(job.request, ensure_ascii=False),
            "result": None,
            "error": None,
            "created_at": job.created_at,
            "started_at": None,
            "finished_at": None,
            "attempts": 0,
            "owner": self._owner_json,
        }

    # -- reads -------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRow | None:
        rows = list(self.db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))
        return JobRow.from_row(rows[0]) if rows else None

    def rows(
        self,
        *,
        status: str | Iterable[str] | None = None,
        user_id: str | None = None,
        limit: int | None = None,
    ) -> list[JobRow]:
        """Rows oldest first, optionally filtered by status(es) and user."""
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, rowid"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [JobRow.from_row(row) for row in self.db.query(sql, params)]

    # -- start-up ----------------------------------------------------------------------

    def recover(self, max_attempts: int = 2, *, requeue: bool = True) -> RecoveryReport:
        """Settle jobs a crash left behind; call once at start-up, before the queue runs.

        `running` rows were interrupted: attempts+1, then queued again if attempts is still
        below `max_attempts`, else failed with the reason. `queued` rows are queued again
        as they are. Returned oldest first, ready for JobQueue.resubmit.

        With an `owner`, only jobs of its own front-end kind are queued again (and become
        its own); a job of a dead process of another kind is failed, because only that
        process could have delivered it; a job of a live process is left to it. With
        `requeue=False` (a one-off CLI run) nothing is queued again: the jobs of dead
        processes of its own kind are failed, all others are left for the bot.
        """
        take: list[str] = []
        failed: list[str] = []
        now = self._clock()
        with self._transaction() as db:
            rows = list(db.query(
                "SELECT id, status, attempts, owner FROM jobs WHERE status IN (?, ?) "
                "ORDER BY created_at, rowid",
                [QUEUED, RUNNING],
            ))
            for row in rows:
                owner = Owner.from_json(json.loads(row["owner"])) if row["owner"] else None
                if self.owner is not None and owner is not None:
                    # Rows of this very process were left by an engine it closed: its own.
                    if owner != self.owner and owner.is_alive():
                        continue  # a live front end's job: it delivers it itself
                    mine = owner.kind == self.owner.kind
                    if not requeue and not mine:
                        continue  # the recovering front end (the bot) decides these
                    if not (requeue and mine):
                        db.execute(
                            "UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                            [FAILED, ORPHANED.format(kind=owner.kind, pid=owner.pid), now, row["id"]],
                        )
                        failed.append(row["id"])
                        continue
                if not requeue:
                    continue
                if row["status"] == QUEUED:
                    db.execute("UPDATE jobs SET owner = ? WHERE id = ?", [self._owner_json, row["id"]])
                    take.append(row["id"])
                    continue
                attempts = (row["attempts"] or 0) + 1
                if attempts < max_attempts:
                    db.execute(
                        "UPDATE jobs SET status = ?, attempts = ?, started_at = NULL, owner = ? WHERE id = ?",
                        [QUEUED, attempts, self._owner_json, row["id"]],
                    )
                    take.append(row["id"])
                else:
                    db.execute(
                        "UPDATE jobs SET status = ?, attempts = ?, error = ?, finished_at = ? "
                        "WHERE id = ?",
                        [FAILED, attempts, INTERRUPTED.format(attempts=attempts), now, row["id"]],
                    )
                    failed.append(row["id"])
        return RecoveryReport(
            requeue=[found for job_id in take if (found := self.get(job_id)) is not None],
            failed=[found for job_id in failed if (found := self.get(job_id)) is not None],
        )
