"""The Discord client: commands, translator, persistent buttons, command sync, heartbeat.

Intents: only `guilds` (channel flags such as age restriction come from the guild cache);
slash commands need no privileged intent, so the bot needs no approval switches in the
developer portal.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import discord
from discord import app_commands

from engine.settings import Settings

from bot.discord_app import commands
from bot.discord_app import texts as T
from bot.discord_app.heartbeat import INTERVAL_S, Heartbeat, heartbeat_path
from bot.discord_app.jobs import DrawService
from bot.discord_app.permissions import AdminDirectory
from bot.discord_app.progress import DEFAULT_INTERVAL
from bot.discord_app.replies import describe, report_error, send_private
from bot.discord_app.texts import locale_of
from bot.discord_app.translator import LoracleTranslator
from bot.discord_app.views import DYNAMIC_ITEMS

log = logging.getLogger("loracle.bot")

ADMIN_GROUP = "admin"


class LoracleTree(app_commands.CommandTree):
    client: LoracleBot

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Refuse /admin (and its autocomplete) to anyone not in the bot's admin list,
        whatever the server's command permissions say."""
        data = interaction.data or {}
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
        engine: Any,
        settings: Settings,
        *,
        sync_commands: bool = True,
        progress_interval: float = DEFAULT_INTERVAL,
        heartbeat_interval: float = INTERVAL_S,
    ) -> None:
        super().__init__(intents=discord.Intents(guilds=True), allowed_mentions=discord.AllowedMentions.none())
        self.engine = engine
        self.settings = settings
        self.sync_commands = sync_commands
        self.tree = LoracleTree(self)
        self.admins = AdminDirectory(self, list(settings.owner_ids), list(settings.admin_role_ids))
        self.draws = DrawService(self, engine, interval=progress_interval)
        self.heartbeat = Heartbeat(heartbeat_path(settings.root), self._heartbeat_state, heartbeat_interval)
        self.synced: list[app_commands.AppCommand] = []
        commands.register(self)

    async def setup_hook(self) -> None:
        await self.tree.set_translator(LoracleTranslator())
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        if self.sync_commands:
            await self.sync()
        self.heartbeat.start()

    async def sync(self) -> list[app_commands.AppCommand]:
        """Register the commands with Discord: per guild in LORACLE_GUILD_IDS (visible at
        once, for testing servers), otherwise globally (may take a while to appear)."""
        if self.settings.guild_ids:
            synced: list[app_commands.AppCommand] = []
            for guild_id in self.settings.guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced += await self.tree.sync(guild=guild)
            where = f"{len(self.settings.guild_ids)} server(s)"
        else:
            synced = await self.tree.sync()
            where = "all servers"
        self.synced = synced
        log.info("synced %d commands to %s", len(synced), where)
        return synced

    async def on_ready(self) -> None:
        log.info("connected as %s to %d server(s)", self.user, len(self.guilds))
        await self.heartbeat.beat()
        recovered = self.draws.follow_recovered()
        if recovered:
            log.info("following %d job(s) re-queued after the restart", recovered)

    def _heartbeat_state(self) -> dict[str, Any] | None:
        if self.is_closed() or not self.is_ready():
            return None
        state: dict[str, Any] = {"guilds": len(self.guilds), "user": str(self.user)}
        try:
            latency = self.latency
        except Exception:  # noqa: BLE001 - no websocket (e.g. tests)
            latency = math.nan
        if math.isfinite(latency):
            state["latency_ms"] = round(latency * 1000, 1)
        jobs = getattr(self.engine, "queue", None)
        if jobs is not None:
            state["queue"] = jobs.size
        return state

    async def close(self) -> None:
        await self.heartbeat.stop()
        await super().close()


def create_bot(engine: Any, settings: Settings, **options: Any) -> LoracleBot:
    """The bot for `engine`; options: sync_commands, progress_interval, heartbeat_interval."""
    return LoracleBot(engine, settings, **options)
