"""Migrations: a database written by an older Loracle keeps working."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import sqlite_utils

from engine import db as dbmod
from engine.queue.store import JobStore
from engine.requests import DrawRequest


def _database_before_origin(path: Path) -> None:
    """A database as Loracle left it before jobs carried an opaque origin (schema 3)."""
    db = sqlite_utils.Database(sqlite3.connect(str(path), isolation_level=None))
    for number, step in enumerate(dbmod.MIGRATIONS[:3], start=1):
        step(db)
        db.execute(f"PRAGMA user_version = {number}")
    old_request = {
        "prompt": "a cat", "negative": "", "checkpoint": None, "loras": [{"name": "detail", "weight": 0.5}],
        "seed": 7, "steps": 4, "cfg": None, "width": None, "height": None, "count": 1, "sampler": None,
        "user_id": "42", "guild_id": "1001", "channel_id": "2002", "locale": "zh-TW", "allow_nsfw": False,
    }
    cli_request = {**old_request, "user_id": "cli", "guild_id": None, "channel_id": None}
    db["jobs"].insert_all([
        {"id": "a" * 32, "user_id": "42", "guild_id": "1001", "channel_id": "2002", "checkpoint": "sha",
         "status": "queued", "request": json.dumps(old_request), "created_at": 1.0, "attempts": 0},
        {"id": "b" * 32, "user_id": "cli", "guild_id": None, "channel_id": None, "checkpoint": "sha",
         "status": "done", "request": json.dumps(cli_request), "created_at": 2.0, "attempts": 0},
    ])
    db.conn.close()


def test_old_job_rows_get_an_origin_and_their_requests_still_load(tmp_path: Path) -> None:
    path = tmp_path / "loracle.db"
    _database_before_origin(path)
    db = dbmod.connect(path)
    assert dbmod.schema_version(db) == len(dbmod.MIGRATIONS)
    assert "guild_id" not in db["jobs"].columns_dict and "channel_id" not in db["jobs"].columns_dict

    store = JobStore(db)
    bot_job = store.get("a" * 32)
    assert bot_job is not None and bot_job.origin == {"guild_id": "1001", "channel_id": "2002"}
    request = DrawRequest.from_json(bot_job.request)
    assert (request.scope, request.origin) == ("1001", {"guild_id": "1001", "channel_id": "2002"})
    assert (request.prompt, request.locale, request.allow_nsfw, request.loras[0].weight) == ("a cat", "zh-TW", False, 0.5)

    cli_job = store.get("b" * 32)
    assert cli_job is not None and cli_job.origin is None
    assert DrawRequest.from_json(cli_job.request).scope is None

    # A recovered job takes its origin along, as the bot needs it to answer.
    recovered = store.recover().requeue
    assert [row.id for row in recovered] == ["a" * 32]
    assert recovered[0].to_job().origin == {"guild_id": "1001", "channel_id": "2002"}


def test_a_fresh_database_has_the_origin_column() -> None:
    db = dbmod.memory()
    assert "origin" in db["jobs"].columns_dict and "guild_id" not in db["jobs"].columns_dict
