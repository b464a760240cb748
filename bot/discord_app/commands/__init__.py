"""The slash commands, one module per group; `register(client)` adds them all."""

from __future__ import annotations

from typing import Any

from bot.discord_app.commands import admin, draw, general, knowledge


def register(client: Any) -> None:
    for module in (draw, knowledge, general, admin):
        module.register(client)
