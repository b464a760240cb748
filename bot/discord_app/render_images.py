"""What the image loop shows: how a picture's resources were matched, and /Image info.

Pure functions of the engine's answers (engine.images.types) and a locale, like render.py.
Names and prompts come from other people's pictures: escaped and clipped like any user text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import discord

from bot.discord_app import limits
from bot.discord_app import texts as T
from bot.discord_app.render import DRAW_COLOUR, code, safe
from engine.i18n import EN, Message

SOURCES = {"loracle": "Loracle", "a1111": "A1111/Forge", "comfyui": "ComfyUI", "civitai": "CivitAI"}


def match_line(match: Any, locale: str) -> str:
    """One resource of a picture: found by hash, by name only, or missing (with its link)."""
    ref = match.ref
    kind = (T.KIND_CHECKPOINT if ref.kind == "checkpoint" else T.KIND_LORA).render(locale)
    name = code(ref.name or ref.hash or "?")
    if ref.weight is not None:
        name += f" {ref.weight:g}"
    if match.how == "hash":
        line = T.MATCH_HASH.render(locale, kind=kind, name=name)
    elif match.how == "name":
        line = T.MATCH_NAME.render(locale, kind=kind, name=name)
    elif match.civitai_url:
        line = T.MATCH_MISSING_LINK.render(locale, kind=kind, name=name, url=f"<{match.civitai_url}>")
    else:
        line = T.MATCH_MISSING.render(locale, kind=kind, name=name)
    if match.matched and match.matched != ref.name:
        line += f" → {code(match.matched)}"
    if match.verdict:
        line += f" · {T.verdict_label(match.verdict, locale)}"
    return line


def _lines(lines: Sequence[str], locale: str) -> str:
    return limits.join_lines(lines, limits.FIELD_VALUE, lambda n: T.AND_MORE.render(locale, count=n))


def picture_fields(matches: Sequence[Any], warnings: Sequence[Message], locale: str) -> list[tuple[str, str]]:
    """Embed fields for a draw made from a picture: its resources and what was refused."""
    lines = [match_line(m, locale) for m in matches]
    lines += [f"• {safe(w.render(locale))}" for w in warnings]
    return [(T.F_FROM_PICTURE.render(locale), _lines(lines, locale))] if lines else []


def image_info_embed(info: Any, locale: str = EN) -> discord.Embed:
    """The private answer of "Image info": the parameters and each resource's verdict."""
    p = info.parameters
    embed = discord.Embed(title=T.INFO_TITLE.render(locale), colour=DRAW_COLOUR)
    embed.description = T.INFO_SOURCE.render(locale, source=SOURCES.get(p.source, p.source))
    embed.add_field(name=T.F_PROMPT.render(locale), value=limits.clip(safe(p.prompt) or "—", limits.FIELD_VALUE), inline=False)
    if p.negative:
        embed.add_field(name=T.F_NEGATIVE.render(locale), value=limits.clip(safe(p.negative), limits.FIELD_VALUE), inline=False)
    if info.matches:
        embed.add_field(
            name=T.F_RESOURCES.render(locale), value=_lines([match_line(m, locale) for m in info.matches], locale), inline=False
        )
    for label, value in (
        (T.F_SEED, p.seed),
        (T.F_STEPS, p.steps),
        (T.F_CFG, None if p.cfg is None else f"{p.cfg:g}"),
        (T.F_SIZE, f"{p.width}×{p.height}" if p.width and p.height else None),
        (T.F_SAMPLER, safe(p.sampler) if p.sampler else None),
        (T.F_STRENGTH, None if p.denoise is None else f"{p.denoise:g}"),
    ):
        if value is not None:
            embed.add_field(name=label.render(locale), value=str(value), inline=True)
    if p.hires and p.hires > 1:
        line = T.HIRES_LINE.render(
            locale,
            scale=p.hires,
            denoise="?" if p.hires_denoise is None else f"{p.hires_denoise:g}",
            steps="?" if p.hires_steps is None else p.hires_steps,
            upscaler=safe(p.hires_upscaler or "?"),
        )
        embed.add_field(name=T.F_HIRES.render(locale), value=line, inline=True)
    warnings = [*p.warnings, *info.warnings]
    if warnings:
        embed.add_field(
            name=T.F_WARNINGS.render(locale), value=_lines([f"• {safe(w.render(locale))}" for w in warnings], locale), inline=False
        )
    return limits.fit_embed(embed)
