"""The bot's lifecycle through the loopback Discord: a /draw while the start-up scan runs
is drawn, a /draw while stopping is told so, and a stop logs no traceback."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

from bot.discord_app import endpoints
from bot.discord_app.launch import serve
from bot.settings import load_settings
from tests.bot.fakes import FakeEngine
from tests.bot.loopback import FakeDiscord, slash_interaction


@pytest.fixture
async def loopback(tmp_path):
    saved = endpoints.current()
    discord_fake = FakeDiscord()
    await discord_fake.start()
    settings = load_settings(
        data_dir=tmp_path / "data",
        discord_token="secret-token",
        discord_api_base=discord_fake.api_base,
        discord_gateway_url=discord_fake.gateway_url,
        offline=True,
    )
    endpoints.apply(settings.discord_api_base, settings.discord_gateway_url)
    yield discord_fake, settings
    await discord_fake.stop()
    endpoints.restore(saved)


async def _until(condition, seconds: float = 10) -> None:
    for _ in range(int(seconds * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never met")


def _no_traceback(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text and "never retrieved" not in caplog.text, caplog.text


async def test_a_draw_while_stopping_is_told_so_and_the_stop_logs_no_traceback(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    discord_fake, settings = loopback
    engine = FakeEngine(settings)
    bots = []
    task = asyncio.create_task(serve(settings, "secret-token", engine, started=bots.append, progress_interval=0))
    try:
        await asyncio.wait_for(discord_fake.identified.wait(), 10)
        [bot] = bots
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        await discord_fake.dispatch("INTERACTION_CREATE", slash_interaction("draw", prompt="first", interaction_id=1))
        await asyncio.wait_for(discord_fake.callbacks.get(), 10)
        await _until(lambda: engine.jobs)
        [job] = engine.jobs
        job.start()  # the bot's stop waits for this picture
        os.kill(os.getpid(), signal.SIGTERM)
        await _until(lambda: engine.queue.stopping)
        await discord_fake.dispatch("INTERACTION_CREATE", slash_interaction("draw", prompt="a cat", interaction_id=2))
        refusal = await asyncio.wait_for(discord_fake.callbacks.get(), 10)
        assert "shutting down" in refusal["data"]["content"] and refusal["data"]["flags"] == 64
        job.finish()
        await asyncio.wait_for(task, 10)
        answers = [r.body for r in discord_fake.requests if r.path.startswith(("/interactions/", "/webhooks/"))]
        text = repr(answers)
        assert "shutting down" in text, text
        assert "unexpected" not in text.lower()
        assert bot.is_closed()
        # what discord.py's connect() does when the websocket's close reaches it late
        bot.dispatch("disconnect")
        await asyncio.sleep(0.2)  # anything discord.py still dispatches after the close
        _no_traceback(caplog)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_draw_being_planned_when_the_signal_comes_is_answered_before_the_close(loopback, caplog):
    """No job running, so stopping could close at once; the /draw still being planned
    gets its "shutting down" answer first (not an unexpected error after the close)."""
    caplog.set_level(logging.INFO)
    discord_fake, settings = loopback
    engine = FakeEngine(settings)
    gate = threading.Event()
    plan = engine.plan
    engine.plan = lambda request: (gate.wait(10), plan(request))[1]
    bots = []
    task = asyncio.create_task(serve(settings, "secret-token", engine, started=bots.append, progress_interval=0))
    try:
        await asyncio.wait_for(discord_fake.identified.wait(), 10)
        [bot] = bots
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        await discord_fake.dispatch("INTERACTION_CREATE", slash_interaction("draw", prompt="a cat"))
        assert (await asyncio.wait_for(discord_fake.callbacks.get(), 10))["type"] == 5  # deferred, now planning
        os.kill(os.getpid(), signal.SIGTERM)
        await _until(lambda: engine.queue.stopping)
        await asyncio.sleep(0.2)
        assert not bot.is_closed()  # waiting for the answer
        gate.set()
        await asyncio.wait_for(task, 10)
        edits = [r.body for r in discord_fake.requests if r.path.startswith("/webhooks/")]
        assert edits and "shutting down" in edits[-1]["content"], edits
        await asyncio.sleep(0.2)
        _no_traceback(caplog)
    finally:
        gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(scope="module")
def demo_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bot.demo import build_demo_library

    root = tmp_path_factory.mktemp("demo-library")
    build_demo_library(root)
    return root


@pytest.mark.slow
async def test_a_draw_right_after_ready_waits_for_the_start_up_scan_and_is_drawn(
    loopback, demo_library, monkeypatch, caplog
):
    """A new admin: models copied into data/, the bot started, /draw at once. The start-up
    scan is held in its hashing pass (a slow disk, deterministically) until the /draw has
    said that the library is being indexed; then it is drawn, not refused."""
    import engine.library_scan
    from bot.discord_app.launch import _startup_scan
    from engine.api import Engine

    caplog.set_level(logging.INFO)
    discord_fake, settings = loopback
    for folder in ("models", "loras"):
        shutil.copytree(demo_library / folder, settings.root / folder)
    settings = settings.model_copy(
        update={"device": "cpu", "default_steps": 2, "default_width": 64, "default_height": 64}
    )
    gate = threading.Event()
    hash_file = engine.library_scan.hash_file
    monkeypatch.setattr(engine.library_scan, "hash_file", lambda *a: (gate.wait(20), hash_file(*a))[1])

    engine_ = Engine(settings)
    await engine_.start()
    scan = asyncio.create_task(_startup_scan(engine_))
    bots = []
    task = asyncio.create_task(
        serve(settings, "secret-token", engine_, started=bots.append, handle_signals=False, progress_interval=0)
    )
    try:
        await asyncio.wait_for(discord_fake.identified.wait(), 10)
        [bot] = bots
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        assert engine_.indexing.running
        await discord_fake.dispatch("INTERACTION_CREATE", slash_interaction("draw", prompt="1girl, watercolor"))
        assert (await asyncio.wait_for(discord_fake.callbacks.get(), 10))["type"] == 5

        def webhook_texts() -> list[str]:
            return [str(r.body) for r in discord_fake.requests if r.path.startswith("/webhooks/")]

        await _until(lambda: any("being indexed" in t for t in webhook_texts()))
        assert not any("No checkpoint" in t or "no usable checkpoint" in t for t in webhook_texts())
        gate.set()
        await asyncio.wait_for(scan, 30)

        def posts() -> list:
            return [
                r
                for r in discord_fake.requests
                if r.method == "POST" and r.path.startswith("/webhooks/") and r.body and r.body.get("attachments")
            ]

        await _until(lambda: posts(), 60)
        assert posts()[-1].body["embeds"], webhook_texts()
        # The answer ends with the private "thinking…" reply removed; closing before that
        # (a loaded machine) would fail the removal on a closed connection.
        await _until(lambda: any(r.method == "DELETE" and r.path.startswith("/webhooks/") for r in discord_fake.requests), 30)
        await bot.close()
        await asyncio.wait_for(task, 10)
        await asyncio.sleep(0.2)
        _no_traceback(caplog)
    finally:
        gate.set()
        task.cancel()
        await asyncio.gather(task, scan, return_exceptions=True)
        await engine_.close()


async def test_a_draw_waiting_for_the_scan_is_told_the_bot_stops_without_waiting_for_the_scan(loopback, caplog):
    caplog.set_level(logging.INFO)
    discord_fake, settings = loopback
    engine = FakeEngine(settings)
    engine.indexing.begin()  # a scan that will not end before the stop
    never = threading.Event()
    plan = engine.plan
    engine.plan = lambda request: (never.wait(20), plan(request))[1]
    bots = []
    task = asyncio.create_task(serve(settings, "secret-token", engine, started=bots.append, progress_interval=0))
    try:
        await asyncio.wait_for(discord_fake.identified.wait(), 10)
        [bot] = bots
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        await discord_fake.dispatch("INTERACTION_CREATE", slash_interaction("draw", prompt="a cat"))
        await asyncio.wait_for(discord_fake.callbacks.get(), 10)

        def edits() -> list[str]:
            return [str((r.body or {}).get("content")) for r in discord_fake.requests if r.path.startswith("/webhooks/")]

        await _until(lambda: any("being indexed" in text for text in edits()))
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 5)  # not the scan's time, nor the 100 s grace
        assert "shutting down" in edits()[-1], edits()
        _no_traceback(caplog)
    finally:
        never.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
