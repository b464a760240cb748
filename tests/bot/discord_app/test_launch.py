"""`loracle run`: the token check, and a real start-up against a loopback Discord reached
through LORACLE_DISCORD_API_BASE / LORACLE_DISCORD_GATEWAY_URL."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest
from discord import http
from discord.gateway import DiscordWebSocket

from bot.discord_app import endpoints
from bot.discord_app.launch import run_bot, serve
from bot.settings import load_settings
from engine.errors import SettingsError
from tests.bot.fakes import FakeEngine
from tests.bot.loopback import APP_ID, FakeDiscord, slash_interaction


@pytest.fixture
def restore_endpoints():
    saved = endpoints.current()
    yield
    endpoints.restore(saved)


@pytest.fixture
async def loopback(tmp_path, restore_endpoints):
    """A loopback Discord and settings that reach it through the two overrides."""
    discord_fake = FakeDiscord()
    await discord_fake.start()
    settings = load_settings(
        data_dir=tmp_path,
        discord_token="secret-token",
        discord_api_base=discord_fake.api_base,
        discord_gateway_url=discord_fake.gateway_url,
    )
    endpoints.apply(settings.discord_api_base, settings.discord_gateway_url)
    yield discord_fake, settings
    await discord_fake.stop()


def test_without_a_token_it_says_how_to_get_one(tmp_path):
    settings = load_settings(data_dir=tmp_path, discord_token="  ")
    with pytest.raises(SettingsError) as info:
        run_bot(settings)
    message = str(info.value)
    assert "LORACLE_DISCORD_TOKEN is not set" in message
    assert "https://discord.com/developers/applications" in message and "Reset Token" in message
    assert "LORACLE_DISCORD_TOKEN" in info.value.localized("zh-TW") and "建立應用程式" in info.value.localized("zh-TW")


def test_cli_run_exits_with_the_message(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bot.cli import app

    monkeypatch.setenv("LORACLE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LORACLE_DISCORD_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 1
    assert "LORACLE_DISCORD_TOKEN is not set" in result.output.replace("\n", " ")


def test_endpoint_overrides(restore_endpoints):
    endpoints.apply("http://proxy:8080/", "ws://gateway.local:9000/")
    assert http.Route("GET", "/users/@me").url == "http://proxy:8080/api/v10/users/@me"
    assert str(DiscordWebSocket.DEFAULT_GATEWAY) == "ws://gateway.local:9000/"
    endpoints.apply("http://proxy:8080/api/v9", None)
    assert http.Route.BASE == "http://proxy:8080/api/v9"
    assert str(DiscordWebSocket.DEFAULT_GATEWAY) == "ws://gateway.local:9000/"


async def test_starts_syncs_connects_and_answers_through_the_overrides(tmp_path, loopback, caplog):
    caplog.set_level(logging.DEBUG)
    discord_fake, settings = loopback
    bots = []
    task = asyncio.create_task(
        serve(settings, "secret-token", FakeEngine(settings), started=bots.append, handle_signals=False, progress_interval=0)
    )
    try:
        await asyncio.wait_for(discord_fake.identified.wait(), 10)
        [bot] = bots
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        assert discord_fake.identify["token"] == "secret-token"
        assert discord_fake.identify["intents"] == 1  # guilds only: no privileged intent
        paths = [(r.method, r.path) for r in discord_fake.requests]
        assert ("GET", "/users/@me") in paths
        assert ("PUT", f"/applications/{APP_ID}/commands") in paths
        sync = next(r for r in discord_fake.requests if r.method == "PUT")
        assert {c["name"] for c in sync.body} == {"draw", "lora", "family", "checkpoint", "queue", "help", "admin", "settings", "Draw like this", "Image info"}
        assert all(r.auth == "Bot secret-token" for r in discord_fake.requests)

        await discord_fake.dispatch("INTERACTION_CREATE", slash_interaction("help", locale="zh-TW"))
        answer = await asyncio.wait_for(discord_fake.callbacks.get(), 10)
        assert answer["type"] == 4 and answer["data"]["flags"] == 64
        assert "Loracle" in answer["data"]["embeds"][0]["title"]
        assert "不同系列" in answer["data"]["embeds"][0]["fields"][0]["value"]
        for _ in range(500):  # on_ready writes it from a thread
            if (tmp_path / "heartbeat").exists():
                break
            await asyncio.sleep(0.01)
        assert (tmp_path / "heartbeat").exists()
        await bot.close()
        await asyncio.wait_for(task, 10)
        assert not (tmp_path / "heartbeat").exists()
        assert "synced 10 commands to all servers" in caplog.text
        assert "secret-token" not in caplog.text  # never logged, even at DEBUG
        ours = [r.getMessage() for r in caplog.records if r.name.startswith("loracle")]
        assert not any("interaction-token" in line for line in ours)
        assert not any(r.levelname == "ERROR" for r in caplog.records), caplog.text
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_sigterm_lets_the_running_picture_reach_discord_before_closing(loopback):
    """`docker stop`: the picture being drawn is posted while the bot is still connected
    (closing first would draw it for nobody), then the bot closes."""
    discord_fake, settings = loopback
    engine = FakeEngine(settings)
    bots = []
    task = asyncio.create_task(serve(settings, "secret-token", engine, started=bots.append, progress_interval=0))
    try:
        await asyncio.wait_for(discord_fake.identified.wait(), 10)
        [bot] = bots
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        await discord_fake.dispatch("INTERACTION_CREATE", slash_interaction("draw", prompt="a cat"))
        assert (await asyncio.wait_for(discord_fake.callbacks.get(), 10))["type"] == 5
        for _ in range(500):
            if engine.jobs:
                break
            await asyncio.sleep(0.01)
        [job] = engine.jobs
        job.start()

        # The loop's handler is installed (the default one would end this test run).
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(500):
            if engine.queue.stopping:
                break
            await asyncio.sleep(0.01)
        assert engine.queue.stopping  # no new jobs from now on
        await asyncio.sleep(0.05)
        assert not bot.is_closed()  # waiting for the running picture

        job.finish()
        await asyncio.wait_for(task, 10)
        posts = [r for r in discord_fake.requests if r.method == "POST" and r.path.startswith("/webhooks/")]
        assert posts and posts[-1].body["attachments"] and posts[-1].body["embeds"]
        assert bot.is_closed()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_discord_is_one_line_and_a_failed_exit(tmp_path, monkeypatch, restore_endpoints):
    from typer.testing import CliRunner

    from bot.cli import app

    port = _closed_port()
    monkeypatch.chdir(tmp_path)
    env = {
        "LORACLE_DATA_DIR": str(tmp_path / "data"),
        "LORACLE_DISCORD_TOKEN": "secret-token-value",
        "LORACLE_DISCORD_API_BASE": f"http://127.0.0.1:{port}",
        "LORACLE_DISCORD_GATEWAY_URL": f"ws://127.0.0.1:{port}",
    }
    result = CliRunner().invoke(app, ["run"], env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "secret-token-value" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    line = lines[0]
    assert f"Could not reach Discord at http://127.0.0.1:{port}" in line
    assert "LORACLE_DISCORD_API_BASE" in line


# -- LORACLE_SHARDS: the same start-up through AutoShardedClient ---------------------------
@pytest.fixture
def quick_identify(monkeypatch):
    """discord.py waits 5 s before each shard's IDENTIFY after the first (Discord's
    identify rate limit); the loopback Discord has none."""
    from bot.discord_app.client import ShardedLoracleBot

    async def no_wait(self, shard_id, *, initial=False):
        return None

    monkeypatch.setattr(ShardedLoracleBot, "before_identify_hook", no_wait)


@pytest.mark.parametrize(("shards", "recommended", "expected"), [(2, 1, 2), ("auto", 3, 3)])
async def test_sharded_bot_connects_each_shard_and_answers(loopback, quick_identify, shards, recommended, expected):
    import discord

    from bot.discord_app.client import ShardedLoracleBot

    discord_fake, settings = loopback
    discord_fake.recommended_shards = recommended
    settings = settings.model_copy(update={"shards": shards})
    bots = []
    task = asyncio.create_task(
        serve(settings, "secret-token", FakeEngine(settings), started=bots.append, handle_signals=False, progress_interval=0)
    )
    try:
        await asyncio.wait_for(discord_fake.identified.wait(), 15)  # every shard
        [bot] = bots
        await asyncio.wait_for(bot.wait_until_ready(), 15)
        assert isinstance(bot, ShardedLoracleBot) and isinstance(bot, discord.AutoShardedClient)
        assert bot.shard_count == expected and sorted(bot.shards) == list(range(expected))
        # Every shard identified through the configured gateway (the URL /gateway/bot
        # names is unreachable), as shard i of N.
        assert sorted(tuple(i["shard"]) for i in discord_fake.identifies) == [(i, expected) for i in range(expected)]
        asked = [r.path for r in discord_fake.requests if r.path == "/gateway/bot"]
        assert len(asked) == (1 if shards == "auto" else 0)

        await discord_fake.dispatch("INTERACTION_CREATE", slash_interaction("help"), shard=expected - 1)
        answer = await asyncio.wait_for(discord_fake.callbacks.get(), 10)
        assert answer["type"] == 4 and "Loracle" in answer["data"]["embeds"][0]["title"]

        assert bot._heartbeat_state() is not None
        bot.dispatch("shard_disconnect", 1)
        await asyncio.sleep(0)
        assert bot._heartbeat_state() is None  # one shard down: its servers go unanswered
        bot.dispatch("shard_resumed", 1)
        await asyncio.sleep(0)
        assert bot._heartbeat_state() is not None
        await bot.close()
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- the Prometheus endpoint of `loracle run` ----------------------------------------------
async def test_metrics_endpoint_reads_the_bots_queue(loopback):
    """LORACLE_METRICS_PORT: the endpoint serves while the bot runs; the queue depth is
    the engine's queue, read on each scrape (here the queued /draw of a real interaction)."""
    from bot.discord_app.launch import start_metrics
    from engine import metrics
    from tests.scrape import scrape, value

    discord_fake, settings = loopback
    settings = settings.model_copy(update={"metrics_port": 0})
    engine = FakeEngine(settings)
    server = start_metrics(settings, engine)
    assert server is not None and server.host == "127.0.0.1"
    bots = []
    task = asyncio.create_task(
        serve(settings, "secret-token", engine, started=bots.append, handle_signals=False, progress_interval=0)
    )
    try:
        await asyncio.wait_for(discord_fake.identified.wait(), 10)
        [bot] = bots
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        assert value(await asyncio.to_thread(scrape, server.url), "loracle_queue_depth") == 0
        for i, prompt in enumerate(("a cat", "a dog")):
            await discord_fake.dispatch("INTERACTION_CREATE", slash_interaction("draw", prompt=prompt, interaction_id=10 + i))
            assert (await asyncio.wait_for(discord_fake.callbacks.get(), 10))["type"] == 5
        for _ in range(500):
            if len(engine.jobs) == 2:
                break
            await asyncio.sleep(0.01)
        assert engine.queue.size == 2
        assert value(await asyncio.to_thread(scrape, server.url), "loracle_queue_depth") == 2
        await bot.close()
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        metrics.track_queue(None)


def test_metrics_off_by_default(tmp_path):
    from bot.discord_app.launch import start_metrics
    from engine import metrics

    settings = load_settings(_env_file=None, data_dir=tmp_path)
    try:
        assert start_metrics(settings, FakeEngine(settings)) is None
    finally:
        metrics.track_queue(None)
