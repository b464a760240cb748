"""/draw: the options Discord shows, handed to DrawService (pictures: images.PictureService)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord_app import autocomplete
from bot.discord_app.parsing import DrawOptions
from bot.discord_app.translator import desc

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot

MAX_SEED = 2**32 - 1


def register(client: LoracleBot) -> None:
    @app_commands.command(name="draw", description=desc("Draw a picture with an SDXL checkpoint and LoRAs"))
    @app_commands.describe(
        prompt=desc("What to draw"),
        negative=desc("What to keep out of the picture"),
        checkpoint=desc("Checkpoint to draw with (default: the server's default)"),
        loras=desc("LoRAs as name:weight, e.g. detail:0.8, style:-0.5"),
        size=desc("Size as width x height, e.g. 832x1216"),
        steps=desc("Denoising steps (more is slower)"),
        cfg=desc("How closely to follow the prompt (CFG scale)"),
        seed=desc("Seed for a repeatable picture (empty: random)"),
        count=desc("How many pictures"),
        image=desc("Draw from this picture (image-to-image)"),
        strength=desc("How far to move away from the image (0.05 subtle - 1 new picture)"),
        hires=desc("Hires fix: draw, upscale by this factor and refine (1 = off)"),
        like=desc("Draw like this picture (its parameters; your other options override them)"),
    )
    @app_commands.autocomplete(
        checkpoint=autocomplete.checkpoints, loras=autocomplete.lora_list, size=autocomplete.sizes
    )
    async def draw(
        interaction: discord.Interaction,
        prompt: str | None = None,
        negative: str | None = None,
        checkpoint: str | None = None,
        loras: str | None = None,
        size: str | None = None,
        steps: app_commands.Range[int, 1, 150] | None = None,
        cfg: app_commands.Range[float, 0.0, 30.0] | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        count: app_commands.Range[int, 1, 8] | None = None,
        image: discord.Attachment | None = None,
        strength: app_commands.Range[float, 0.05, 1.0] | None = None,
        hires: app_commands.Range[float, 1.0, 2.0] | None = None,
        like: discord.Attachment | None = None,
    ) -> None:
        # The prompt may be left out only with `like` (the picture brings its own).
        options = DrawOptions(
            prompt or "", negative, checkpoint, loras, size, steps, cfg, seed, count,
            image=image, strength=strength, hires=hires, like=like,
        )
        await client.draws.draw_command(interaction, options)

    client.tree.add_command(draw)
