"""`loracle cluster status [--json]`: what the running bot's GPU workers do, read from the
status file the bot rewrites (engine.workers.status)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from engine.api import Engine
from engine.queue.lanes import ClusterStatus, WorkerStatus
from engine.settings import Settings
from engine.workers.status import status_path, write_status


@pytest.fixture
def run(demo_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("LORACLE_DATA_DIR", str(demo_dir))

    def invoke(*args: str):
        return CliRunner().invoke(app, ["cluster", "status", *args])

    return invoke


def test_without_a_running_bot_it_says_so(run) -> None:
    result = run()
    assert result.exit_code == 1
    assert "the bot is not running" in result.output and "LORACLE_CLUSTER=local" in result.output


async def test_it_shows_what_a_started_engine_publishes(run, demo_settings: Settings) -> None:
    engine = Engine(demo_settings)
    await engine.start(front_end="bot")
    try:
        path = status_path(demo_settings.root)
        for _ in range(100):
            if path.exists():
                break
            await asyncio.sleep(0.05)
        result = await asyncio.to_thread(run, "--json")
    finally:
        await engine.close()
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["mode"] == "local" and data["available"] is True and not data["stale"]
    assert [w["id"] for w in data["workers"]] == ["local"]
    assert data["workers"][0]["jobs_done"] == 0


def test_the_table_names_errors_missing_files_and_staleness(run, demo_settings: Settings) -> None:
    status = ClusterStatus(
        "ray", True,
        [WorkerStatus("w0", "gpu-node-1", "NVIDIA H100", "ab12cd34ef56", 12, 0.43, None, "busy", "job1"),
         WorkerStatus("w1", "gpu-node-2", None, None, 3, 0.1, "WorkerLostError: worker w1: ActorDiedError", "idle",
                      missing=("0123abcd",))],
        queued=4, note="Ray at auto: 2 of 2 workers up, 2 GPU(s) in the cluster",
    )
    write_status(status_path(demo_settings.root), status)
    result = run()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("mode ray · drawing available · 4 job(s) waiting · written 0 s ago")
    assert "w0     busy        node gpu-node-1  GPU NVIDIA H100  loaded ab12cd34ef56  jobs 12  busy 43%" in lines
    assert "       lacks: 0123abcd" in lines
    assert "       last error: WorkerLostError: worker w1: ActorDiedError" in lines
    write_status(status_path(demo_settings.root), status, now=time.time() - 3600)
    stale = run()
    assert stale.exit_code == 1 and "STALE" in stale.output
