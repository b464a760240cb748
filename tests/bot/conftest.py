"""Fixtures for bot tests: the fake engine, a SimCord world around the real bot, and
helpers to change what SimCord's interactions carry (locale, upload limit)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest
import simcord
import simcord.interactions as sim_interactions

from bot.discord_app.client import LoracleBot, create_bot
from bot.settings import BotSettings as Settings
from bot.settings import load_settings
from tests.bot.fakes import FakeEngine


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        offline=True,
        default_steps=4,
        max_steps=50,
        queue_per_user=2,
    )


@pytest.fixture
def engine(settings: Settings) -> FakeEngine:
    return FakeEngine(settings)


@pytest.fixture
def simcord_bot(engine: FakeEngine, settings: Settings) -> LoracleBot:
    # Progress edits unthrottled: SimCord's clock stands still unless a test advances it.
    # The heartbeat's sleep must outlast any settle timeout, or SimCord waits for it.
    return create_bot(engine, settings, progress_interval=0, heartbeat_interval=3600)


@dataclass
class World:
    env: simcord.Env
    bot: LoracleBot
    engine: Any
    guild: simcord.GuildHandle
    channel: simcord.ChannelHandle
    nsfw_channel: simcord.ChannelHandle
    alice: simcord.MemberActor
    bob: simcord.MemberActor
    admin: simcord.MemberActor  # in LORACLE_OWNER_IDS
    moderator: simcord.MemberActor  # has Manage Server, but is not a Loracle admin

    def message(self, result: simcord.InteractionResult) -> discord.Message:
        assert result.response is not None, "the interaction has no reply"
        return result.response.message


@pytest.fixture
async def world(simcord_env: simcord.Env, engine: Any) -> World:
    env = simcord_env
    bot: LoracleBot = env.bot  # type: ignore[assignment]
    if isinstance(engine, FakeEngine):
        engine.waiter = env.external_wait
    guild = env.create_guild("Loracle Test")
    channel = guild.create_text_channel("art")
    nsfw_channel = guild.create_text_channel("after-dark")
    cached = bot.get_channel(nsfw_channel.id)
    assert isinstance(cached, discord.TextChannel)
    # SimCord does not model the age-restricted flag; set it where discord.py reads it.
    cached.nsfw = True
    alice = guild.add_member(env.create_user("alice"))
    bob = guild.add_member(env.create_user("bob"))
    managers = guild.create_role("Managers", permissions=discord.Permissions(manage_guild=True))
    admin = guild.add_member(env.create_user("keeper"), roles=[managers])
    moderator = guild.add_member(env.create_user("moderator"), roles=[managers])
    bot.admins._owner_ids = {admin.id}
    return World(env, bot, engine, guild, channel, nsfw_channel, alice, bob, admin, moderator)


@pytest.fixture
def interaction_payload(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Keys to overwrite in every INTERACTION_CREATE SimCord builds (it always sends
    locale en-US and a 25 MiB upload limit), e.g. {"locale": "zh-TW"}."""
    overrides: dict[str, Any] = {}
    original = sim_interactions.base_payload

    def patched(*args: Any, **kwargs: Any) -> Any:
        record, payload = original(*args, **kwargs)
        payload.update(overrides)
        return record, payload

    monkeypatch.setattr(sim_interactions, "base_payload", patched)
    yield overrides
