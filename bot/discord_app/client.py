"""The Discord client: commands, translator, persistent buttons, command sync, heartbeat.

Intents: only `guilds` (channel flags such as age restriction come from the guild cache);
slash commands need no privileged intent, so the bot needs no approval switches in the
developer portal.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import discord
from discord import app_commands

from bot.discord_app import commands
from bot.discord_app import texts as T
from bot.discord_app.heartbeat import INTERVAL_S, Heartbeat, heartbeat_path
from bot.discord_app.images import PictureService
from bot.discord_app.jobs import DrawService
from bot.discord_app.permissions import AdminDirectory
from bot.discord_app.port import EnginePort
from bot.discord_app.progress import DEFAULT_INTERVAL
from bot.discord_app.replies import describe, report_error, send_private
from bot.discord_app.sync import CommandSync, state_path
from bot.discord_app.texts import locale_of
from bot.discord_app.translator import LoracleTranslator
from bot.discord_app.views import DYNAMIC_ITEMS
from bot.settings import BotSettings

log = logging.getLogger("loracle.bot")

ADMIN_GROUP = "admin"
# Under docker compose's stop_grace_period (2 minutes), with time left to close.
SHUTDOWN_GRACE_S = 100.0


class LoracleTree(app_commands.CommandTree):
    client: LoracleBot

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Refuse /admin (and its autocomplete) to anyone not in the bot's admin list,
        whatever the server's command permissions say."""
        data: dict[str, Any] = dict(interaction.data or {})
        if data.get("name") != ADMIN_GROUP:
            return True
        if await self.client.admins.is_admin(interaction.user):
            return True
        log.info("refused /admin to %s", describe(interaction))
        if interaction.type is discord.InteractionType.autocomplete:
            await interaction.response.autocomplete([])
        else:
            await send_private(interaction, T.ADMIN_ONLY.render(locale_of(interaction)))
        return False

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError, /) -> None:
        await report_error(interaction, error)


class LoracleBot(discord.Client):
    def __init__(
        self,
        engine: EnginePort,
        settings: BotSettings,
        *,
        sync_commands: bool = True,
        progress_interval: float = DEFAULT_INTERVAL,
        heartbeat_interval: float = INTERVAL_S,
    ) -> None:
        super().__init__(
            intents=discord.Intents(guilds=True),
            allowed_mentions=discord.AllowedMentions.none(),
            **self._gateway_options(settings),
        )
        self.engine = engine
        self.settings = settings
        self.sync_commands = sync_commands
        self.tree = LoracleTree(self)
        self.admins = AdminDirectory(self, list(settings.owner_ids), list(settings.admin_role_ids))
        self.draws = DrawService(self, engine, interval=progress_interval)
        self.pictures = PictureService(self)  # pictures in: buttons, /draw image/like, context menus
        self.heartbeat = Heartbeat(heartbeat_path(settings.root), self._heartbeat_state, heartbeat_interval)
        self.synced: list[app_commands.AppCommand] = []
        # discord.py keeps is_ready() true while it reconnects; the heartbeat must not.
        self.gateway_connected = False
        self._stop_task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        commands.register(self)

    @staticmethod
    def _gateway_options(settings: BotSettings) -> dict[str, Any]:
        return {}

    def _connected(self) -> bool:
        return self.gateway_connected

    async def setup_hook(self) -> None:
        await self.tree.set_translator(LoracleTranslator())
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        if self.sync_commands:
            await self.sync()
        self.heartbeat.start()

    async def sync(self, *, force: bool = False) -> list[app_commands.AppCommand]:
        """Register the commands with Discord where they changed (see `sync.CommandSync`):
        per guild in LORACLE_GUILD_IDS (visible at once, for testing servers), otherwise
        globally (may take a while to appear)."""
        guild_ids = list(self.settings.guild_ids)
        report = await CommandSync(self, self.tree, state_path(self.settings.root)).run(guild_ids, force=force)
        where = f"{len(guild_ids)} server(s)" if guild_ids else "all servers"
        count = len(self.tree.get_commands())
        if report.updated:
            log.info("synced %d commands to %s", count, where if not report.unchanged else ", ".join(report.updated))
        if report.unchanged:
            log.info(
                "commands unchanged since the last sync (%s), not syncing them again; delete %s to force a sync",
                where if not report.updated else ", ".join(report.unchanged),
                state_path(self.settings.root),
            )
        if report.cleared:
            log.info("removed commands no longer wanted from %s", ", ".join(report.cleared))
        self.synced = report.synced
        return report.synced

    async def on_ready(self) -> None:
        self.gateway_connected = True
        log.info("connected as %s to %d server(s)", self.user, len(self.guilds))
        await self.heartbeat.beat()
        recovered = self.draws.follow_recovered()
        if recovered:
            log.info("following %d job(s) re-queued after the restart", recovered)

    async def on_disconnect(self) -> None:
        # discord.py reconnects (and RESUMEs) by itself; until it has, the heartbeat
        # stops, so a bot that cannot get back goes stale and the healthcheck says so.
        self.gateway_connected = False

    async def on_resumed(self) -> None:
        self.gateway_connected = True
        await self.heartbeat.beat()

    def _heartbeat_state(self) -> dict[str, Any] | None:
        if self.is_closed() or not self.is_ready() or not self._connected():
            return None
        state: dict[str, Any] = {"guilds": len(self.guilds), "user": str(self.user)}
        try:
            latency = self.latency
        except Exception:
            latency = math.nan
        if math.isfinite(latency):
            state["latency_ms"] = round(latency * 1000, 1)
        jobs = self.engine.queue
        if jobs is not None:
            state["queue"] = jobs.size
        return state

    # -- stopping --------------------------------------------------------------------
    def request_stop(self, reason: str = "asked to stop") -> None:
        """What SIGTERM (`docker stop`) and Ctrl-C do: the first starts `shutdown()`, a
        second one closes the bot at once. Called from the loop's signal handler; the
        tasks are kept here (the loop holds only weak references to them)."""
        loop = asyncio.get_running_loop()
        if self._stop_task is None:
            log.info("%s: finishing the picture being drawn, then stopping (again to stop at once)", reason)
            self._stop_task = loop.create_task(self.shutdown(), name="loracle-shutdown")
        elif self._close_task is None:
            log.warning("%s again: stopping now", reason)
            self._close_task = loop.create_task(self.close(), name="loracle-close")

    async def shutdown(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """Stop gracefully: take no new jobs, let the running picture finish and reach
        its channel while still connected (closing first would draw it for nobody), tell
        the waiting ones they are kept for the next start, then close."""
        try:
            if not await self.draws.drain(grace):
                log.warning("jobs still running after %.0f s; stopping anyway", grace)
        except Exception:
            log.exception("could not finish the running jobs; stopping anyway")
        await self.close()

    async def close(self) -> None:
        await self.heartbeat.stop()
        await super().close()

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        # discord.py's connect() dispatches `disconnect` after close() dropped the loop;
        # scheduling it would raise AttributeError ('_MissingSentinel' ... 'create_task')
        # into a task nobody awaits. A closed bot has nobody to tell.
        if self.loop is discord.utils.MISSING:
            log.debug("closed: not dispatching %s", event)
            return
        super().dispatch(event, *args, **kwargs)


class ShardedLoracleBot(LoracleBot, discord.AutoShardedClient):
    """The same bot over several gateway connections (LORACLE_SHARDS), for bots in more
    servers than one connection may serve. Discord routes each server's events to one
    shard; commands, jobs and the heartbeat are shared by all of them."""

    def __init__(self, engine: EnginePort, settings: BotSettings, **options: Any) -> None:
        # Shards that dropped and have not come back (RESUMED or a new READY) yet.
        self._shards_down: set[int] = set()
        super().__init__(engine, settings, **options)

    @staticmethod
    def _gateway_options(settings: BotSettings) -> dict[str, Any]:
        # None: discord.py asks Discord (GET /gateway/bot) for the recommended count.
        return {"shard_count": None if settings.shards == "auto" else settings.shards}

    async def launch_shards(self) -> None:
        # With no count, discord.py would also take the gateway URL from Discord's answer,
        # bypassing LORACLE_DISCORD_GATEWAY_URL (a gateway proxy); take the count only.
        if self.shard_count is None and not self.is_closed():
            self.shard_count, _url, _limits = await self.http.get_bot_gateway()
            log.info("Discord recommends %d shard(s)", self.shard_count)
        await super().launch_shards()

    def _connected(self) -> bool:
        # The heartbeat goes stale while any shard is down: its servers get no answers.
        return self.gateway_connected and not self._shards_down

    async def on_disconnect(self) -> None:
        pass  # per shard, below: one shard's drop must not hide the others' state

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self._shards_down.add(shard_id)

    async def on_shard_connect(self, shard_id: int) -> None:
        await self._shard_back(shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        await self._shard_back(shard_id)

    async def _shard_back(self, shard_id: int) -> None:
        self._shards_down.discard(shard_id)
        if self.is_ready():
            await self.heartbeat.beat()


def bot_class(settings: BotSettings) -> type[LoracleBot]:
    """discord.Client (one connection) unless LORACLE_SHARDS asks for AutoShardedClient."""
    return LoracleBot if settings.shards is None else ShardedLoracleBot


def create_bot(engine: EnginePort, settings: BotSettings, **options: Any) -> LoracleBot:
    """The bot for `engine`; options: sync_commands, progress_interval, heartbeat_interval."""
    return bot_class(settings)(engine, settings, **options)
