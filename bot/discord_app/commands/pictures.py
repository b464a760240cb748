"""The message context menus (right-click a message → Apps): "Draw like this" draws again
from a picture's generation parameters, publicly like /draw; "Image info" shows them and
how each resource matches the library, privately."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord_app.translator import menu_name

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot

DRAW_LIKE = "Draw like this"
IMAGE_INFO = "Image info"


def register(client: LoracleBot) -> None:
    async def draw_like(interaction: discord.Interaction, message: discord.Message) -> None:
        await client.pictures.draw_like(interaction, message)

    async def image_info(interaction: discord.Interaction, message: discord.Message) -> None:
        await client.pictures.image_info(interaction, message)

    client.tree.add_command(app_commands.ContextMenu(name=menu_name(DRAW_LIKE), callback=draw_like))
    client.tree.add_command(app_commands.ContextMenu(name=menu_name(IMAGE_INFO), callback=image_info))
