"""Start-up: command sync (global and per guild), localised descriptions, the admin
group's default permissions, the heartbeat, and the tree's error handler."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import discord
import pytest
import simcord
from discord import app_commands

from bot.discord_app.client import create_bot
from bot.discord_app.heartbeat import Heartbeat
from bot.discord_app.translator import DESCRIPTIONS, MENU_NAMES, LoracleTranslator
from bot.health import check_health
from bot.settings import load_settings
from tests.bot.fakes import FakeEngine
from tests.bot.helpers import private_text, progress_text, public

COMMANDS = {"draw", "lora", "family", "checkpoint", "queue", "help", "admin", "settings", "Draw like this", "Image info"}
_NAME = re.compile(r"^[-_\w]{1,32}$")


def synced_payload(env: simcord.Env) -> list[dict]:
    [put] = [r for r in env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]
    return put.json


async def test_commands_are_synced_globally_at_start_up(world):
    puts = [r for r in world.env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]
    assert [r.path for r in puts] == [f"/applications/{world.env.backend.application_id}/commands"]
    assert {c["name"] for c in puts[0].json} == COMMANDS
    assert {c.name for c in world.bot.synced} == COMMANDS
    assert set(world.alice.available_commands(world.channel)) >= {"draw", "lora info", "family check", "checkpoint info", "queue", "help"}
    assert not any(name.startswith("admin") for name in world.alice.available_commands(world.channel))
    assert "admin scan" in world.admin.available_commands(world.channel)


async def test_admin_group_needs_manage_server_and_a_server(world):
    admin = next(c for c in synced_payload(world.env) if c["name"] == "admin")
    assert admin["default_member_permissions"] == discord.Permissions(manage_guild=True).value
    assert admin["dm_permission"] is False
    assert admin["contexts"] == [0]  # servers only: not DMs, not group DMs
    assert admin["integration_types"] == [0]  # only where the bot is installed in the server


async def test_descriptions_are_localised_and_within_discord_limits(world):
    def walk(node, depth=0):
        yield node
        for option in node.get("options") or []:
            yield from walk(option, depth + 1)

    seen = 0
    menus = [c for c in synced_payload(world.env) if c.get("type") == 3]
    # Context menus have no description; their names are what people read, in their language.
    assert {c["name"]: c["name_localizations"]["zh-TW"] for c in menus} == MENU_NAMES
    for command in synced_payload(world.env):
        if command.get("type") == 3:
            continue
        for node in walk(command):
            assert _NAME.match(node["name"]) and node["name"] == node["name"].lower(), node["name"]
            assert 1 <= len(node["description"]) <= 100, node["description"]
            localized = node.get("description_localizations") or {}
            assert set(localized) == {"zh-TW", "zh-CN"}, node["name"]
            assert all(1 <= len(text) <= 100 for text in localized.values())
            assert localized["zh-TW"] == DESCRIPTIONS[node["description"]]
            seen += 1
    assert seen > 50
    assert json.dumps(synced_payload(world.env), ensure_ascii=False).count("zh-TW") == seen + len(menus)


async def test_translator_leaves_names_and_other_languages_alone():
    translator = LoracleTranslator()
    text = app_commands.locale_str("What to draw")
    desc_ctx = app_commands.TranslationContext(app_commands.TranslationContextLocation.parameter_description, None)
    name_ctx = app_commands.TranslationContext(app_commands.TranslationContextLocation.command_name, None)
    assert await translator.translate(text, discord.Locale.taiwan_chinese, desc_ctx) == "要畫的內容"
    assert await translator.translate(text, discord.Locale.japanese, desc_ctx) is None
    assert await translator.translate(text, discord.Locale.taiwan_chinese, name_ctx) is None


async def test_guild_ids_sync_to_those_guilds_at_once(tmp_path):
    guild_id = 1456074443980801234
    settings = load_settings(data_dir=tmp_path / "data", offline=True, guild_ids=str(guild_id))
    env = simcord.Env(create_bot(FakeEngine(settings), settings, progress_interval=0, heartbeat_interval=3600))
    guild = env.create_guild("Test server", id=guild_id)
    await env.start()
    try:
        puts = [r.path for r in env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]
        assert puts == [f"/applications/{env.backend.application_id}/guilds/{guild_id}/commands"]
        alice = guild.add_member(env.create_user("alice"))
        result = await alice.slash(guild.create_text_channel("art"), "help")
        assert result.ephemeral
    finally:
        await env.shutdown()
    env.raise_errors()


async def test_heartbeat_is_written_once_ready(world, settings):
    world.engine.admin.limits()  # the fake engine opens its database lazily
    ok, message = check_health(settings)
    assert ok, message  # written by on_ready, before the test server existed
    assert json.loads((settings.root / "heartbeat").read_text())["guilds"] == 0
    assert await world.bot.heartbeat.beat()
    beat = json.loads((settings.root / "heartbeat").read_text())
    assert beat["guilds"] == 1 and beat["queue"] == 0 and beat["user"]
    await world.bot.heartbeat.stop()
    assert not (settings.root / "heartbeat").exists()


async def test_unexpected_errors_reach_the_tree_handler_and_the_user(world, caplog):
    def broken(user_id):
        raise ZeroDivisionError("oops")

    world.engine.queue.jobs_of = broken
    result = await world.alice.slash(world.channel, "queue")
    assert private_text(result).startswith("Something went wrong on our side (reference ")
    assert "ZeroDivisionError" in caplog.text
    [error] = world.env.errors  # SimCord saw it reach the tree's handler
    assert isinstance(error.original, ZeroDivisionError)
    again = await world.alice.slash(world.channel, "help")
    assert again.ephemeral  # the bot carries on


async def test_draw_in_a_direct_message(world):
    world.engine.auto = True
    user = world.env.create_user("dora")
    result = await user.slash("draw", prompt="a cat")
    assert next(m for m in result.followups if not m.ephemeral).attachments
    refused = await user.slash("draw", prompt="a cat", loras="spicy")
    assert "marked NSFW" in refused.response.content


# -- syncing only when needed --------------------------------------------------------------
def command_puts(env: simcord.Env) -> list[tuple[str, list[str]]]:
    return [
        (r.path, sorted(c["name"] for c in r.json or []))
        for r in env.http_requests
        if r.method == "PUT" and r.path.endswith("/commands")
    ]


def restarted(engine, settings):
    return create_bot(engine, settings, progress_interval=0, heartbeat_interval=3600)


async def test_a_restart_with_unchanged_commands_does_not_sync_again(world, engine, settings, caplog):
    caplog.set_level(logging.INFO, "loracle")
    assert len(command_puts(world.env)) == 1
    await world.env.restart_bot(restarted(engine, settings))
    assert len(command_puts(world.env)) == 1  # asked Discord (one GET), wrote nothing
    assert "commands unchanged since the last sync" in caplog.text
    result = await world.alice.slash(world.channel, "help")
    assert result.ephemeral

    bot = restarted(engine, settings)
    bot.tree.get_command("help").description = "How to use Loracle, the LoRA bot"
    await world.env.restart_bot(bot)
    assert len(command_puts(world.env)) == 2  # a changed description is synced


async def test_commands_changed_elsewhere_are_synced_again(world, engine, settings):
    backend = world.env.backend
    backend.commands[None] = {k: v for k, v in backend.commands[None].items() if k[0] != "draw"}
    await world.env.restart_bot(restarted(engine, settings))
    assert len(command_puts(world.env)) == 2
    assert "draw" in world.alice.available_commands(world.channel)


async def test_moving_to_guild_ids_removes_the_global_copies_and_back(world, engine, settings):
    app = world.env.backend.application_id
    per_guild = load_settings(data_dir=settings.root, offline=True, guild_ids=str(world.guild.id))
    await world.env.restart_bot(restarted(engine, per_guild))
    assert command_puts(world.env)[1:] == [
        (f"/applications/{app}/guilds/{world.guild.id}/commands", sorted(COMMANDS)),
        (f"/applications/{app}/commands", []),  # else the server lists every command twice
    ]
    assert world.alice.available_commands(world.channel).count("draw") == 1
    await world.env.restart_bot(restarted(engine, per_guild))
    assert len(command_puts(world.env)) == 3  # nothing changed

    await world.env.restart_bot(restarted(engine, settings))
    assert command_puts(world.env)[3:] == [
        (f"/applications/{app}/commands", sorted(COMMANDS)),
        (f"/applications/{app}/guilds/{world.guild.id}/commands", []),
    ]
    assert world.alice.available_commands(world.channel).count("draw") == 1


async def test_a_guild_the_bot_cannot_register_in_does_not_stop_it(tmp_path, caplog):
    guild_id, missing_id = 1456074443980801234, 1456074443980805678
    settings = load_settings(data_dir=tmp_path / "data", offline=True, guild_ids=f"{missing_id},{guild_id}")
    env = simcord.Env(create_bot(FakeEngine(settings), settings, progress_interval=0, heartbeat_interval=3600))
    guild = env.create_guild("Test server", id=guild_id)
    env.inject_error("PUT", f"/applications/*/guilds/{missing_id}/commands", status=403, code=50001, message="Missing Access")
    await env.start()
    try:
        assert f"cannot register commands in server {missing_id}" in caplog.text
        alice = guild.add_member(env.create_user("alice"))
        result = await alice.slash(guild.create_text_channel("art"), "help")
        assert result.ephemeral
    finally:
        await env.shutdown()


# -- stopping ----------------------------------------------------------------------------
async def test_stopping_lets_the_running_picture_reach_its_channel_before_closing(world):
    running = await world.alice.slash(world.channel, "draw", prompt="almost done")
    waiting = await world.bob.slash(world.channel, "draw", prompt="next")
    first, _ = world.engine.jobs
    first.start()
    first.step(2)
    await world.env.settle()

    world.bot.request_stop("SIGTERM")  # what the signal handler calls
    await world.env.settle()
    assert not world.bot.is_closed()
    assert "The bot is restarting. Your job is saved" in progress_text(waiting)
    late = await world.bob.slash(world.channel, "draw", prompt="too late")
    assert "no new jobs are accepted" in private_text(late)

    first.finish()
    await world.env.settle()
    assert public(running).attachments  # posted while still connected
    assert world.bot.is_closed()


async def test_no_heartbeat_while_the_gateway_is_reconnecting(world):
    """discord.py keeps is_ready() true while it reconnects: a bot that cannot get back
    must go stale for the healthcheck, not keep beating."""
    assert await world.bot.heartbeat.beat()
    world.bot.dispatch("disconnect")
    await world.env.settle()
    assert not await world.bot.heartbeat.beat()
    world.bot.dispatch("resumed")
    await world.env.settle()
    assert await world.bot.heartbeat.beat()


async def test_stopping_does_not_announce_recovered_jobs_in_their_channel(world, engine, settings):
    await world.alice.slash(world.channel, "draw", prompt="before the restart")
    job = engine.jobs[-1]
    engine.recovered = [job.handle]
    bot = restarted(engine, settings)
    await world.env.restart_bot(bot)
    before = world.channel.last_message
    bot.request_stop("SIGTERM")
    await world.env.settle()
    assert bot.is_closed()
    assert world.channel.last_message == before, world.channel.last_message.content  # posted once drawn, after the next start


async def test_beats_at_the_same_moment_all_land(tmp_path):
    """on_ready/on_resumed beat while the periodic beat may be writing too."""
    path = tmp_path / "heartbeat"
    beats = [Heartbeat(path, lambda: {"guilds": 1}) for _ in range(2)]
    for _ in range(20):
        results = await asyncio.gather(*(beat.beat() for beat in beats for _ in range(3)))
        assert all(results)
    assert json.loads(path.read_text())["guilds"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["heartbeat"]


# -- LORACLE_SHARDS ------------------------------------------------------------------------
@pytest.mark.parametrize(("shards", "sharded", "count"), [(None, False, None), (4, True, 4), ("auto", True, None)])
def test_shards_setting_picks_the_client_class(tmp_path, shards, sharded, count):
    from bot.discord_app.client import LoracleBot, ShardedLoracleBot

    settings = load_settings(_env_file=None, data_dir=tmp_path, shards=shards)
    bot = create_bot(FakeEngine(settings), settings, sync_commands=False)
    assert isinstance(bot, LoracleBot)  # commands, jobs and the heartbeat either way
    assert isinstance(bot, discord.AutoShardedClient) is sharded
    assert isinstance(bot, ShardedLoracleBot) is sharded
    assert bot.shard_count == count  # "auto": asked of Discord when connecting
    assert bot.intents == discord.Intents(guilds=True)


async def test_a_sharded_bot_draws_and_beats(tmp_path):
    """The whole SimCord world around an AutoShardedClient: a server's /draw, the heartbeat."""
    settings = load_settings(_env_file=None, data_dir=tmp_path / "data", offline=True, shards=2)
    engine = FakeEngine(settings)
    engine.auto = True
    bot = create_bot(engine, settings, progress_interval=0, heartbeat_interval=3600)
    env = simcord.Env(bot)
    await env.start()
    try:
        engine.waiter = env.external_wait
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        guild = env.create_guild("Sharded")
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        result = await alice.slash(channel, "draw", prompt="a cat")
        assert next(m for m in result.followups if not m.ephemeral).attachments
        assert await bot.heartbeat.beat()
        assert json.loads((settings.root / "heartbeat").read_text())["guilds"] == 1
    finally:
        await env.shutdown()
