"""`loracle health`: database and heartbeat checks."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from bot.cli import app
from bot.discord_app.heartbeat import Heartbeat, heartbeat_path, read_heartbeat, write_heartbeat
from bot.health import check_health
from bot.settings import load_settings
from engine.db import connect


def settings_at(path):
    return load_settings(data_dir=path)


def test_no_database_yet(tmp_path):
    ok, message = check_health(settings_at(tmp_path))
    assert not ok and "no database" in message


def test_no_heartbeat_means_not_running(tmp_path):
    settings = settings_at(tmp_path)
    connect(settings.db_path)
    ok, message = check_health(settings)
    assert not ok and "the bot is not running" in message and "loracle run" in message


def test_fresh_and_stale_heartbeats(tmp_path):
    settings = settings_at(tmp_path)
    connect(settings.db_path)
    write_heartbeat(heartbeat_path(settings.root), {"guilds": 3, "latency_ms": 41.6, "queue": 2})
    ok, message = check_health(settings)
    assert ok and message == "healthy: database opens, heartbeat 0 s ago, 3 server(s), gateway latency 42 ms, 2 job(s) waiting"
    ok, message = check_health(settings, now=time.time() + 600)
    assert not ok and "600 s old" in message


def test_unreadable_heartbeat_and_database(tmp_path):
    settings = settings_at(tmp_path)
    connect(settings.db_path)
    heartbeat_path(settings.root).write_text("{not json")
    ok, message = check_health(settings)
    assert not ok and "cannot be read" in message
    settings.db_path.unlink()
    settings.db_path.write_bytes(b"garbage" * 100)
    ok, message = check_health(settings)
    assert not ok and "cannot be read" in message


def test_cli_health_exit_codes(tmp_path, monkeypatch):
    monkeypatch.setenv("LORACLE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(app, ["health"]).exit_code == 1
    connect(tmp_path / "loracle.db")
    write_heartbeat(tmp_path / "heartbeat", {"guilds": 1})
    result = runner.invoke(app, ["health"])
    assert result.exit_code == 0 and "healthy" in result.output


async def test_heartbeat_writes_only_when_ready_and_removes_its_file(tmp_path):
    path = tmp_path / "heartbeat"
    state = {"ready": None}
    beat = Heartbeat(path, lambda: state["ready"], interval=0.01)
    assert await beat.beat() is False and not path.exists()
    state["ready"] = {"guilds": 2}
    beat.start()
    for _ in range(100):
        if path.exists():
            break
        await __import__("asyncio").sleep(0.01)
    data = read_heartbeat(path)
    assert data["guilds"] == 2 and abs(data["time"] - time.time()) < 5 and data["pid"]
    await beat.stop()
    assert not path.exists()
    assert json.loads(json.dumps(data))  # plain JSON


def test_a_data_dir_with_uri_characters_in_its_name(tmp_path):
    # "#" and "?" end the path part of a SQLite "file:" URI unless they are encoded.
    settings = settings_at(tmp_path / "loracle #1 ?data% 100")
    connect(settings.db_path)
    write_heartbeat(heartbeat_path(settings.root), {"guilds": 1})
    ok, message = check_health(settings)
    assert ok, message
