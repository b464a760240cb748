"""The SQLite database (via sqlite-utils) and its migrations.

One file, `<data dir>/loracle.db`, in WAL mode so the bot's reads never wait on the GPU
worker's writes. SQLite connections must not cross threads, so every thread opens its own
with `connect()`; that is cheap. Migrations are numbered functions applied in order and
recorded in `PRAGMA user_version`; append new ones, never edit old ones.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import sqlite_utils


def _m1_initial(db: sqlite_utils.Database) -> None:
    # Every file the scanner has seen, keyed by its path relative to the data dir.
    db.table("files").create(
        {
            "path": str,
            "name": str,  # file stem, unique within a category; what users type
            "category": str,  # checkpoint | lora
            "format": str,  # safetensors | diffusers
            "kind": str,  # engine.kinds.FileKind
            "architecture": str,  # engine.kinds.Architecture
            "size": int,
            "mtime": float,
            "sha256": str,
            "autov1": str,
            "autov2": str,
            "autov3": str,
            "rank": int,
            "alpha": float,
            "metadata": str,  # JSON: the safetensors __metadata__ (bounded)
            "info": str,  # JSON: facts derived from tensors (counts, dtypes, v-pred, ...)
            "error": str,  # why the file cannot be used, when it cannot
            "scanned_at": float,
        },
        pk="path",
    )
    db.table("files").create_index(["sha256"])
    db.table("files").create_index(["category", "name"])
    # Admin settings keyed by content hash, so a renamed file keeps them.
    db.table("overrides").create(
        {
            "sha256": str,
            "display_name": str,
            "base_model": str,
            "weight": float,
            "nsfw": int,
            "enabled": int,
            "updated_at": float,
            "updated_by": str,
        },
        pk="sha256",
    )
    # Every CivitAI answer, hits and 404s alike, with its expiry.
    db.table("civitai_cache").create(
        {"key": str, "status": int, "body": str, "fetched_at": float, "expires_at": float},
        pk="key",
    )
    db.table("jobs").create(
        {
            "id": str,
            "user_id": str,
            "guild_id": str,
            "channel_id": str,
            "status": str,  # queued | running | done | failed | cancelled
            "request": str,  # JSON
            "result": str,  # JSON
            "error": str,
            "created_at": float,
            "started_at": float,
            "finished_at": float,
            "attempts": int,
        },
        pk="id",
    )
    db.table("jobs").create_index(["status"])
    # Small runtime settings admins change from Discord (limits, default checkpoint, ...).
    db.table("kv").create({"key": str, "value": str}, pk="key")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_m1_initial]


def _m2_job_checkpoint(db: sqlite_utils.Database) -> None:
    # The queue's affinity key, so a job recovered after a crash is scheduled next to the
    # jobs that share its checkpoint before its payload is rebuilt.
    db.table("jobs").add_column("checkpoint", str)


MIGRATIONS.append(_m2_job_checkpoint)

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def connect(path: Path | str) -> sqlite_utils.Database:
    """Open (and on first use per process, migrate) the database at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    db = sqlite_utils.Database(conn)
    key = str(path.resolve())
    if key not in _migrated:
        with _migrate_lock:
            if key not in _migrated:
                migrate(db)
                _migrated.add(key)
    return db


def memory() -> sqlite_utils.Database:
    """A migrated in-memory database, for tests."""
    db = sqlite_utils.Database(memory=True)
    migrate(db)
    return db


def schema_version(db: sqlite_utils.Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite_utils.Database) -> None:
    current = schema_version(db)
    for number, step in enumerate(MIGRATIONS, start=1):
        if number <= current:
            continue
        db.execute("BEGIN")
        try:
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


class ThreadLocalDB:
    """One connection per thread to the same file, so any thread may ask for `.db`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()

    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)
            self._local.db = db
        return db


def _m3_library_version(db: sqlite_utils.Database) -> None:
    # A counter every change to what Loracle knows about files bumps, from any connection
    # or process (the bot and an admin's `loracle library set` alike), so in-memory views
    # of the library know when to rebuild. Jobs do not count: they change all the time.
    db.execute("INSERT OR IGNORE INTO kv (key, value) VALUES ('library_version', '0')")
    for table in ("files", "overrides", "civitai_cache"):
        for event in ("INSERT", "UPDATE", "DELETE"):
            db.execute(
                f"CREATE TRIGGER bump_{table}_{event.lower()} AFTER {event} ON {table} BEGIN "
                "UPDATE kv SET value = CAST(value AS INTEGER) + 1 WHERE key = 'library_version'; END"
            )


MIGRATIONS.append(_m3_library_version)


def _m4_job_origin(db: sqlite_utils.Database) -> None:
    # The queue stores where a job came from as one opaque JSON object that only the front
    # end reads, instead of Discord's guild and channel columns. Old rows keep what they
    # had: the columns become the origin, and inside the request JSON the guild becomes
    # the blocklist scope and the origin is added, so a job queued before the upgrade is
    # recovered, posted and rerolled as before.
    db.table("jobs").add_column("origin", str)
    db.execute(
        "UPDATE jobs SET origin = json_object('guild_id', guild_id, 'channel_id', channel_id) "
        "WHERE guild_id IS NOT NULL OR channel_id IS NOT NULL"
    )
    db.execute(
        "UPDATE jobs SET request = json_remove(json_set(request, "
        "'$.scope', json_extract(request, '$.guild_id'), "
        "'$.origin', CASE WHEN origin IS NULL THEN NULL ELSE json(origin) END), "
        "'$.guild_id', '$.channel_id') "
        "WHERE json_valid(request) AND (json_type(request, '$.guild_id') IS NOT NULL "
        "OR json_type(request, '$.channel_id') IS NOT NULL)"
    )
    db.execute("ALTER TABLE jobs DROP COLUMN guild_id")
    db.execute("ALTER TABLE jobs DROP COLUMN channel_id")


MIGRATIONS.append(_m4_job_origin)


def _m5_job_owner(db: sqlite_utils.Database) -> None:
    # The front-end process that submitted the job (engine.queue.owner): a killed
    # `loracle draw` leaves its jobs to be failed, not re-run by the bot for nobody.
    db.table("jobs").add_column("owner", str)


MIGRATIONS.append(_m5_job_owner)


def _m6_user_defaults(db: sqlite_utils.Database) -> None:
    # Per-user drawing defaults (engine.user_defaults): one JSON object per user, so a new
    # default needs no migration of its own.
    db.table("user_defaults").create({"user_id": str, "defaults": str, "updated_at": float}, pk="user_id")


MIGRATIONS.append(_m6_user_defaults)


def library_version(db: sqlite_utils.Database) -> int:
    row = db.execute("SELECT value FROM kv WHERE key = 'library_version'").fetchone()
    return int(row[0]) if row else 0
