"""CivitAI answers kept in SQLite (table civitai_cache), hits and 404s alike.

Keys: "by-hash:<HASH>" (upper-case), "version:<id>", "model:<id>". A stored version is
also reachable by every hash of its files: those "by-hash:" rows hold a small reference
to the "version:" row rather than another copy of a body that can run to tens of KB
(ten images with prompts), so a library of thousands of LoRAs stays a small database.
Expired rows are kept: when CivitAI cannot be asked, an old answer beats none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import sqlite_utils

from engine.civitai.body import decode_json

TABLE = "civitai_cache"
_REF = "$ref"


class DatabaseSource(Protocol):
    @property
    def db(self) -> sqlite_utils.Database: ...


def by_hash_key(value: str) -> str:
    return f"by-hash:{value.strip().upper()}"


def version_key(version_id: int) -> str:
    return f"version:{int(version_id)}"


def model_key(model_id: int) -> str:
    return f"model:{int(model_id)}"


@dataclass(frozen=True)
class CacheEntry:
    status: int  # the HTTP status CivitAI answered: 200, or 404 for "CivitAI does not know it"
    body: str | None  # the JSON text CivitAI sent (None for a 404)
    fetched_at: float
    expires_at: float
    fresh: bool

    def json(self) -> Any:
        """The body, decoded with the same limits as a network answer (raises BadBody)."""
        return decode_json(self.body) if self.body is not None else None

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.fetched_at)


class CivitaiCache:
    def __init__(self, db_source: DatabaseSource, *, clock: Callable[[], float] = time.time) -> None:
        self._source = db_source
        self.clock = clock

    @property
    def _table(self) -> sqlite_utils.db.Table:
        return self._source.db[TABLE]  # type: ignore[return-value]

    def get(self, key: str) -> CacheEntry | None:
        row = self._row(key)
        if row is None:
            return None
        ref = _ref_target(row["body"]) if row["status"] == 200 else None
        if ref is not None:
            target = self._row(ref)
            if target is None or target["status"] != 200 or _ref_target(target["body"]):
                return None
            # The answer is as fresh as the older of the two rows.
            fetched = min(row["fetched_at"], target["fetched_at"])
            expires = min(row["expires_at"], target["expires_at"])
            return self._entry(200, target["body"], fetched, expires)
        return self._entry(row["status"], row["body"], row["fetched_at"], row["expires_at"])

    def put(self, key: str, status: int, body: str | None, ttl_s: float) -> CacheEntry:
        now = self.clock()
        self._table.insert(
            {"key": key, "status": int(status), "body": body, "fetched_at": now, "expires_at": now + ttl_s},
            pk="key",
            replace=True,
        )
        return self._entry(int(status), body, now, now + ttl_s)

    def put_version(self, version_id: int, hashes: Iterable[str], body: str, ttl_s: float) -> None:
        """Store a version body under "version:<id>" and point each of its hashes at it."""
        now = self.clock()
        target = version_key(version_id)
        ref = json.dumps({_REF: target})
        rows = [{"key": target, "status": 200, "body": body, "fetched_at": now, "expires_at": now + ttl_s}]
        rows += [
            {"key": by_hash_key(h), "status": 200, "body": ref, "fetched_at": now, "expires_at": now + ttl_s}
            for h in sorted({h.strip().upper() for h in hashes if h and h.strip()})
        ]
        self._table.insert_all(rows, pk="key", replace=True)

    def delete(self, key: str) -> None:
        self._source.db.execute(f"DELETE FROM {TABLE} WHERE key = ?", [key])

    def _row(self, key: str) -> dict[str, Any] | None:
        cursor = self._source.db.execute(
            f"SELECT status, body, fetched_at, expires_at FROM {TABLE} WHERE key = ?", [key]
        )
        row = cursor.fetchone()
        if row is None:
            return None
        return {"status": row[0], "body": row[1], "fetched_at": row[2], "expires_at": row[3]}

    def _entry(self, status: int, body: str | None, fetched: float, expires: float) -> CacheEntry:
        return CacheEntry(
            status=int(status),
            body=body,
            fetched_at=float(fetched),
            expires_at=float(expires),
            fresh=self.clock() < expires,
        )


def _ref_target(body: str | None) -> str | None:
    # Cheap prefix test first: real bodies are large and never start with a reference.
    if not body or not body.startswith('{"' + _REF):
        return None
    try:
        value = decode_json(body).get(_REF)
    except (ValueError, AttributeError):  # BadBody is a ValueError
        return None
    return value if isinstance(value, str) else None
