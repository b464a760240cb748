"""/settings show, set and reset: a user's own drawing defaults (engine.user_defaults).

Every answer is private. Values are checked by the engine when they are set (the admin's
limits, known samplers, LoRA weights in range, a checkpoint in the library); /draw options
override them, and the draw's reply names each default it used.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.discord_app import autocomplete, limits
from bot.discord_app import texts as T
from bot.discord_app.defaults import shown_values
from bot.discord_app.parsing import parse_size
from bot.discord_app.render import DRAW_COLOUR, safe
from bot.discord_app.replies import describe, error_text, send_private
from bot.discord_app.texts import locale_of
from bot.discord_app.translator import desc
from engine.errors import RequestError
from engine.pipeline.samplers import sampler_names
from engine.user_defaults import UserDefaults

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot

# What `reset` can clear one at a time; "size" is width and height together.
RESETTABLE = ("checkpoint", "size", "steps", "cfg", "sampler", "negative", "loras", "hires")


def defaults_embed(defaults: UserDefaults, locale: str, heading: str | None = None) -> discord.Embed:
    embed = discord.Embed(title=T.SETTINGS_TITLE.render(locale), colour=DRAW_COLOUR)
    shown = shown_values(defaults, locale)
    if not shown:
        embed.description = (f"{heading}\n\n" if heading else "") + T.SETTINGS_EMPTY.render(locale)
    else:
        if heading:
            embed.description = heading
        for key, value in shown:
            embed.add_field(name=T.default_name(key, locale), value=limits.clip(safe(value), limits.FIELD_VALUE), inline=True)
        embed.set_footer(text=T.SETTINGS_FOOTER.render(locale))
    return limits.fit_embed(embed)


async def sampler_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    key = current.casefold().strip()
    names = [name for name in sampler_names() if key in name.casefold()]
    return [app_commands.Choice(name=name, value=name) for name in names[: limits.CHOICES]]


def register(client: LoracleBot) -> None:
    engine = client.engine
    group = app_commands.Group(name="settings", description=desc("Your drawing defaults (checkpoint, size, steps, LoRAs...)"))

    async def answer(interaction: discord.Interaction, work: Any, heading: str | None = None) -> None:
        locale = locale_of(interaction)
        # SQLite (and the library, for a checkpoint): off the event loop, after the defer.
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            defaults = await asyncio.to_thread(work)
        except Exception as exc:
            await send_private(interaction, error_text(exc, locale, describe(interaction)))
            return
        await send_private(interaction, embed=defaults_embed(defaults, locale, heading))

    @group.command(name="show", description=desc("Show your defaults"))
    async def show(interaction: discord.Interaction) -> None:
        await answer(interaction, lambda: engine.user_defaults(str(interaction.user.id)))

    @group.command(name="set", description=desc("Change your defaults; /draw options still override them"))
    @app_commands.describe(
        checkpoint=desc("Checkpoint to draw with"),
        size=desc("Size as width x height, e.g. 832x1216"),
        steps=desc("Denoising steps (more is slower)"),
        cfg=desc("How closely to follow the prompt (CFG scale)"),
        sampler=desc("Sampler"),
        negative=desc("What to keep out of the picture"),
        loras=desc("LoRAs as name:weight, e.g. detail:0.8, style:-0.5"),
        hires=desc("Hires fix scale (1 = off)"),
    )
    @app_commands.autocomplete(
        checkpoint=autocomplete.checkpoints, size=autocomplete.sizes, loras=autocomplete.lora_list, sampler=sampler_choices
    )
    async def set_(
        interaction: discord.Interaction,
        checkpoint: str | None = None,
        size: str | None = None,
        steps: app_commands.Range[int, 1, 150] | None = None,
        cfg: app_commands.Range[float, 0.0, 30.0] | None = None,
        sampler: str | None = None,
        negative: str | None = None,
        loras: str | None = None,
        hires: app_commands.Range[float, 1.0, 2.0] | None = None,
    ) -> None:
        locale = locale_of(interaction)
        values: dict[str, Any] = {
            key: value
            for key, value in (
                ("checkpoint", checkpoint), ("steps", steps), ("cfg", cfg), ("sampler", sampler),
                ("negative", negative), ("loras", loras), ("hires", hires),
            )
            if value is not None
        }
        try:
            if size is not None:
                values["width"], values["height"] = parse_size(size)
            if not values:
                raise RequestError(T.SETTINGS_NOTHING)
        except RequestError as exc:
            await send_private(interaction, error_text(exc, locale, describe(interaction)))
            return
        user_id = str(interaction.user.id)
        await answer(interaction, lambda: engine.set_user_defaults(user_id, **values), T.SETTINGS_SAVED.render(locale))

    @group.command(name="reset", description=desc("Clear your defaults (all, or one)"))
    @app_commands.describe(name=desc("Which default to clear (empty: all)"))
    @app_commands.choices(name=[app_commands.Choice(name=key, value=key) for key in RESETTABLE])
    async def reset(interaction: discord.Interaction, name: str | None = None) -> None:
        locale = locale_of(interaction)
        user_id = str(interaction.user.id)

        def work() -> UserDefaults:
            if name is None:
                engine.clear_user_defaults(user_id)
                return UserDefaults()
            keys = ("width", "height") if name == "size" else (name,)
            return engine.set_user_defaults(user_id, **dict.fromkeys(keys))

        heading = (
            T.SETTINGS_RESET_ALL.render(locale)
            if name is None
            else T.SETTINGS_RESET_ONE.render(locale, name=T.default_name(name, locale))
        )
        await answer(interaction, work, heading)

    client.tree.add_command(group)
