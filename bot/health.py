"""`loracle health`: is the bot alive? Used as the container healthcheck.

Healthy means: the database opens (read-only, so a check never creates or migrates it),
and a running bot wrote its heartbeat recently while connected to Discord. The check runs
in its own process, so it only looks at files.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from bot.discord_app.heartbeat import INTERVAL_S, heartbeat_path, read_heartbeat
from engine.settings import Settings

# Three missed beats: one slow disk write or a short reconnect is not an outage.
MAX_AGE_S = 3 * INTERVAL_S


def check_database(path: Path) -> str | None:
    """None if the database opens and answers; else what is wrong."""
    if not path.exists():
        return f"no database at {path} (the bot creates it on its first start)"
    try:
        # as_uri() percent-encodes the path: a data dir with "#", "?" or "%" in its name
        # would otherwise be cut short and a different file opened (or none).
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"the database {path} cannot be read: {exc}"
    if version < 1:
        return f"the database {path} has no tables yet"
    return None


def check_health(settings: Settings, *, now: float | None = None, max_age: float = MAX_AGE_S) -> tuple[bool, str]:
    """(ok, one line saying why) for `loracle health`."""
    problem = check_database(settings.db_path)
    if problem:
        return False, f"unhealthy: {problem}"
    path = heartbeat_path(settings.root)
    beat = read_heartbeat(path)
    if beat is None:
        if path.exists():
            return False, f"unhealthy: the heartbeat file {path} cannot be read"
        return False, f"unhealthy: no heartbeat at {path}; the bot is not running (start it with `loracle run`)"
    now = time.time() if now is None else now
    try:
        age = now - float(beat["time"])
    except (KeyError, TypeError, ValueError):
        return False, f"unhealthy: the heartbeat file {path} has no time in it"
    if age > max_age:
        return False, (
            f"unhealthy: the last heartbeat is {age:.0f} s old (more than {max_age:.0f} s); "
            "the bot is stopped, stuck or disconnected from Discord"
        )
    details = [f"heartbeat {max(age, 0):.0f} s ago"]
    if isinstance(beat.get("guilds"), int):
        details.append(f"{beat['guilds']} server(s)")
    latency = beat.get("latency_ms")
    if isinstance(latency, (int, float)):
        details.append(f"gateway latency {latency:.0f} ms")
    if isinstance(beat.get("queue"), int):
        details.append(f"{beat['queue']} job(s) waiting")
    return True, "healthy: database opens, " + ", ".join(details)
