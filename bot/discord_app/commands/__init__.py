"""The slash commands, one module per group; `register(client)` adds them all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.discord_app.commands import admin, draw, general, knowledge, pictures, settings

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot


def register(client: LoracleBot) -> None:
    for module in (draw, knowledge, general, admin, settings, pictures):
        module.register(client)
