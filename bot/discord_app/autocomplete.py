"""Autocomplete for checkpoints, LoRA lists, LoRA names, sizes and library names.

Discord drops an autocomplete answer that takes longer than 3 s, and shows at most 25
choices whose names and values are at most 100 characters. Library questions run in a
thread with a time budget well inside that; if it is exceeded, the user sees no
suggestions rather than an error. NSFW-flagged entries are only suggested in
age-restricted channels.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast

import discord
from discord import app_commands

from bot.discord_app import limits
from bot.discord_app import texts as T
from bot.discord_app.lifecycle import with_indexing_note
from bot.discord_app.port import EnginePort
from bot.discord_app.render import arch_label
from bot.discord_app.replies import age_restricted
from bot.discord_app.texts import locale_of
from engine.text_input import clean_name

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot
    from engine.library import LibraryEntry

log = logging.getLogger("loracle.bot")

BUDGET_S = 1.5
Choice = app_commands.Choice
R = TypeVar("R")

# SDXL's trained resolutions (about one megapixel each), portrait and landscape.
SDXL_SIZES = [
    (1024, 1024),
    (896, 1152),
    (832, 1216),
    (768, 1344),
    (640, 1536),
    (1152, 896),
    (1216, 832),
    (1344, 768),
    (1536, 640),
]


async def _bounded(work: Callable[[], R], default: R) -> R:
    try:
        return await asyncio.wait_for(asyncio.to_thread(work), timeout=BUDGET_S)
    except TimeoutError:
        log.warning("autocomplete took longer than %.1f s; answered with no suggestions", BUDGET_S)
        return default
    except Exception:
        log.exception("autocomplete failed")
        return default


def _engine(interaction: discord.Interaction) -> EnginePort:
    return cast("LoracleBot", interaction.client).engine


def _choice(name: str, value: str) -> Choice[str] | None:
    if not value or len(value) > limits.CHOICE_VALUE:
        return None
    return Choice(name=limits.clip(name, limits.CHOICE_NAME), value=value)


def _matches(key: str, *names: str) -> int | None:
    """Rank of a name for what was typed: 0 exact, 1 prefix, 2 substring, None no match."""
    if not key:
        return 2
    best = None
    for name in names:
        lowered = name.lower()
        rank = 0 if lowered == key else 1 if lowered.startswith(key) else 2 if key in lowered else None
        if rank is not None and (best is None or rank < best):
            best = rank
    return best


def _visible(engine: EnginePort, entry: LibraryEntry, allow_nsfw: bool) -> bool:
    return entry.error is None and entry.enabled and engine.may_list(entry, allow_nsfw=allow_nsfw)


# -- checkpoints ----------------------------------------------------------------------
async def checkpoints(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    engine = _engine(interaction)
    locale = locale_of(interaction)
    allow_nsfw = age_restricted(interaction)
    key = clean_name(current).lower()

    def work() -> list[Choice[str]]:
        default = engine.admin.default_checkpoint()
        ranked = []
        for entry in engine.entries("checkpoint"):
            rank = _matches(key, entry.name, entry.label)
            if rank is None or not _visible(engine, entry, allow_nsfw):
                continue
            is_default = entry.name == default
            ranked.append((rank, not is_default, entry.label.lower(), entry, is_default))
        ranked.sort(key=lambda item: item[:3])
        out = []
        for _, _, _, entry, is_default in ranked[: limits.CHOICES]:
            summary = engine.summary(entry)
            family = summary.family_label or T.UNKNOWN.render(locale)
            name = f"{entry.label} — {family} · {arch_label(summary.architecture)}" + (" ★" if is_default else "")
            choice = _choice(name, entry.name)
            if choice is not None:
                out.append(choice)
        return out

    return with_indexing_note(engine, locale, current, await _bounded(work, []))


# -- LoRA lists: "name:0.8, other:-0.5" --------------------------------------------------
_SEPARATORS = re.compile(r"[,;\n，；]")


def split_list(current: str) -> tuple[str, str]:
    """("a:0.8, b:1, ", "de") for "a:0.8, b:1, de": the finished items and the one being typed."""
    last = None
    for match in _SEPARATORS.finditer(current):
        last = match
    if last is None:
        return "", current.strip()
    head = current[: last.start()].rstrip()
    return (f"{head}, " if head else ""), current[last.end() :].strip()


def _names_in(prefix: str) -> set[str]:
    names = set()
    for item in _SEPARATORS.split(prefix):
        item = clean_name(item)  # "name：0.8" (full-width colon) -> "name:0.8"
        name = (item.rpartition(":")[0] if ":" in item else item).strip().lower()
        if name:
            names.add(name)
    return names


async def lora_list(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    """Complete the LoRA being typed; the best verdict for the chosen checkpoint first,
    incompatible ones left out (the engine ranks them)."""
    engine = _engine(interaction)
    locale = locale_of(interaction)
    allow_nsfw = age_restricted(interaction)
    prefix, typing = split_list(current)
    if ":" in clean_name(typing):  # a full-width "：" from a CJK keyboard counts too
        # Typing a weight: offer the text as it is, so Enter keeps it.
        choice = _choice(current.strip(), current.strip())
        return [choice] if choice else []
    used = _names_in(prefix)
    checkpoint = getattr(interaction.namespace, "checkpoint", None) or None

    def work() -> list[Choice[str]]:
        suggestions = engine.suggest_loras(
            checkpoint, clean_name(typing), limits.CHOICES + len(used), allow_nsfw=allow_nsfw
        )
        out = []
        for entry, verdict in suggestions:
            if entry.name.lower() in used or not _visible(engine, entry, allow_nsfw):
                continue
            name = f"{entry.label} — {T.verdict_label(str(verdict) if verdict is not None else None, locale)}"
            if entry.weight_override is not None:
                name += f" · {entry.weight_override:g}"
            choice = _choice(name, prefix + entry.name)
            if choice is not None:
                out.append(choice)
            if len(out) == limits.CHOICES:
                break
        return out

    return with_indexing_note(engine, locale, current, await _bounded(work, []))


# -- single names ---------------------------------------------------------------------
async def _names(interaction: discord.Interaction, current: str, category: str | None, *, listing: bool = False) -> list[Choice[str]]:
    """Names of one category (None: every file, for admins). With `listing`, the option
    holds several names separated by commas: the one being typed is completed and the
    ones before it are kept."""
    engine = _engine(interaction)
    locale = locale_of(interaction)
    allow_nsfw = age_restricted(interaction)
    prefix, typing = split_list(current) if listing else ("", current)
    used = _names_in(prefix)
    key = clean_name(typing).lower()
    show_all = category is None  # admins manage disabled and NSFW files too

    def work() -> list[Choice[str]]:
        ranked = []
        for entry in engine.entries(category):
            rank = _matches(key, entry.name, entry.label)
            if rank is None or entry.name.lower() in used:
                continue
            # After the match: the NSFW question may read the CivitAI cache.
            if not show_all and not _visible(engine, entry, allow_nsfw):
                continue
            ranked.append((rank, entry.label.lower(), entry))
        ranked.sort(key=lambda item: item[:2])
        out = []
        for _, _, entry in ranked:
            label = entry.label if category else f"{entry.label} ({entry.category})"
            choice = _choice(label, prefix + entry.name)
            if choice is not None:
                out.append(choice)
            if len(out) == limits.CHOICES:
                break
        return out

    return with_indexing_note(engine, locale, current, await _bounded(work, []))


async def lora_names(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    return await _names(interaction, current, "lora")


async def lora_name_list(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    """`/family check lora`: "a, b, c" (several LoRAs at once)."""
    return await _names(interaction, current, "lora", listing=True)


async def checkpoint_names(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    return await _names(interaction, current, "checkpoint")


async def library_names(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    return await _names(interaction, current, None)


# -- sizes ------------------------------------------------------------------------------
async def sizes(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    engine = _engine(interaction)
    limit = await _bounded(lambda: engine.admin.limits().max_size, 1024)
    key = clean_name(current).lower().replace(" ", "")
    out = []
    for width, height in SDXL_SIZES:
        if max(width, height) > limit:
            continue
        value = f"{width}x{height}"
        if key and key not in value:
            continue
        shape = "■" if width == height else "▯" if height > width else "▭"
        out.append(Choice(name=f"{value} {shape}", value=value))
    return out
