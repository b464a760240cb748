"""/queue (your jobs and their positions) and /help."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord_app import texts as T
from bot.discord_app.render import help_embed, queue_embed
from bot.discord_app.replies import send_private
from bot.discord_app.texts import locale_of
from bot.discord_app.translator import desc
from bot.discord_app.views import queue_view

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot


def register(client: LoracleBot) -> None:
    @app_commands.command(name="queue", description=desc("Your pictures waiting in the queue"))
    async def queue(interaction: discord.Interaction) -> None:
        locale = locale_of(interaction)
        jobs = client.engine.queue
        if jobs is None:
            await send_private(interaction, T.QUEUE_OFF.render(locale))
            return
        entries = list(jobs.jobs_of(str(interaction.user.id)))
        embed = queue_embed(entries, jobs.size, jobs.paused, locale)
        view = queue_view(entries, interaction.user.id, locale)
        if view is None:
            await send_private(interaction, embed=embed)
        else:
            await send_private(interaction, embed=embed, view=view)

    @app_commands.command(name="help", description=desc("How to use Loracle"))
    async def help_(interaction: discord.Interaction) -> None:
        await send_private(interaction, embed=help_embed(locale_of(interaction)))

    client.tree.add_command(queue)
    client.tree.add_command(help_)
