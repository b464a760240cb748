"""/lora info, /family check and /checkpoint info: what Loracle knows about LoRAs and
checkpoints, and where they fit."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord_app import autocomplete
from bot.discord_app import texts as T
from bot.discord_app.hints import family_check_with_hints
from bot.discord_app.lifecycle import while_indexing
from bot.discord_app.render import family_check_embed, lora_info_embed
from bot.discord_app.render_checkpoint import checkpoint_info_embed
from bot.discord_app.replies import DeferredReply, age_restricted, describe, error_text
from bot.discord_app.texts import locale_of
from bot.discord_app.translator import desc
from engine.errors import RequestError
from engine.text_input import clean_name

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot


def split_names(text: str) -> list[str]:
    return [name for name in (clean_name(part) for part in re.split(r"[,;\n，；]", text)) if name]


def register(client: LoracleBot) -> None:
    lora = app_commands.Group(name="lora", description=desc("What Loracle knows about LoRAs"))
    family = app_commands.Group(name="family", description=desc("Which LoRAs suit which checkpoints"))

    @lora.command(name="info", description=desc("Base model, family, trigger words and where a LoRA fits"))
    @app_commands.describe(name=desc("LoRA name"))
    @app_commands.autocomplete(name=autocomplete.lora_names)
    async def info(interaction: discord.Interaction, name: str) -> None:
        locale = locale_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = DeferredReply(interaction)
        try:
            # The engine applies the content rules; the bot only says where it answers.
            answer = await while_indexing(
                client.engine, reply, locale, client.engine.lora_info(name, allow_nsfw=age_restricted(interaction))
            )
        except Exception as exc:
            await reply.refuse(error_text(exc, locale, describe(interaction)))
            return
        await reply.publish(content=None, embed=lora_info_embed(answer, locale))

    @family.command(name="check", description=desc("Does a LoRA suit a checkpoint? Verdict, evidence and explanation"))
    @app_commands.describe(checkpoint=desc("Checkpoint name"), lora=desc("LoRA name (several: separate with commas)"))
    @app_commands.autocomplete(checkpoint=autocomplete.checkpoint_names, lora=autocomplete.lora_name_list)
    async def check(interaction: discord.Interaction, checkpoint: str, lora: str) -> None:
        locale = locale_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = DeferredReply(interaction)
        try:
            names = split_names(lora)
            if not names:
                raise RequestError(T.LORA_NAME_MISSING)
            answer = await while_indexing(
                client.engine, reply, locale, client.engine.family_check(checkpoint, names, allow_nsfw=age_restricted(interaction))
            )
        except Exception as exc:
            await reply.refuse(error_text(exc, locale, describe(interaction)))
            return
        await reply.publish(content=None, embed=family_check_embed(family_check_with_hints(answer), locale))

    checkpoint = app_commands.Group(name="checkpoint", description=desc("What Loracle knows about checkpoints"))

    @checkpoint.command(
        name="info", description=desc("Merged or trained, base model, parents, and the LoRAs that suit a checkpoint")
    )
    @app_commands.describe(name=desc("Checkpoint name"))
    @app_commands.autocomplete(name=autocomplete.checkpoint_names)
    async def checkpoint_info(interaction: discord.Interaction, name: str) -> None:
        locale = locale_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = DeferredReply(interaction)
        try:
            answer = await while_indexing(
                client.engine, reply, locale, client.engine.checkpoint_info(name, allow_nsfw=age_restricted(interaction))
            )
        except Exception as exc:
            await reply.refuse(error_text(exc, locale, describe(interaction)))
            return
        await reply.publish(content=None, embed=checkpoint_info_embed(answer, locale))

    client.tree.add_command(lora)
    client.tree.add_command(family)
    client.tree.add_command(checkpoint)
