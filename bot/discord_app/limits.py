"""Discord's size limits, and helpers that keep our replies inside them.

Discord rejects a whole message (HTTP 400) when one embed field is a character too long,
so every user-controlled or engine-controlled string is clipped before it is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import discord

from engine.text_input import shorten

CONTENT = 2000
EMBED_TOTAL = 6000
EMBED_TITLE = 256
EMBED_DESCRIPTION = 4096
EMBED_FIELDS = 25
FIELD_NAME = 256
FIELD_VALUE = 1024
FOOTER = 2048
CHOICES = 25
CHOICE_NAME = 100
CHOICE_VALUE = 100
BUTTON_LABEL = 80
CUSTOM_ID = 100


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marking the cut with an ellipsis."""
    return shorten(text, limit)


def join_lines(lines: Iterable[str], limit: int, more: Callable[[int], str], sep: str = "\n") -> str:
    """As many whole lines as fit in `limit`, then `more(n)` naming how many were left out."""
    items = [clip(line, limit) for line in lines]
    out: list[str] = []
    for index, line in enumerate(items):
        rest = len(items) - index - 1
        # Keep room for the "and N more" note while later lines may still be cut.
        reserve = len(sep) + len(more(rest)) if rest else 0
        if len(sep.join([*out, line])) + reserve <= limit:
            out.append(line)
            continue
        note = more(len(items) - index)
        if len(sep.join([*out, note])) <= limit:
            out.append(note)
        break
    return sep.join(out) if out else clip(more(len(items)), limit) if items else ""


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Clip every part to its own limit, then shorten the longest parts until the whole
    embed is within Discord's 6000-character total."""
    if embed.title:
        embed.title = clip(embed.title, EMBED_TITLE)
    if embed.description:
        embed.description = clip(embed.description, EMBED_DESCRIPTION)
    if len(embed.fields) > EMBED_FIELDS:
        for index in range(len(embed.fields) - 1, EMBED_FIELDS - 1, -1):
            embed.remove_field(index)
    for index, field in enumerate(embed.fields):
        embed.set_field_at(
            index,
            name=clip(field.name or "\u200b", FIELD_NAME),
            value=clip(field.value or "\u200b", FIELD_VALUE),
            inline=bool(field.inline),
        )
    if embed.footer.text:
        embed.set_footer(text=clip(embed.footer.text, FOOTER), icon_url=embed.footer.icon_url)
    while len(embed) > EMBED_TOTAL:
        excess = len(embed) - EMBED_TOTAL
        longest = max(range(len(embed.fields)), key=lambda i: len(embed.fields[i].value or ""), default=None)
        field_len = len(embed.fields[longest].value or "") if longest is not None else 0
        desc_len = len(embed.description or "")
        if desc_len >= field_len and desc_len > 1:
            embed.description = clip(embed.description or "", max(desc_len - excess, 1))
        elif longest is not None and field_len > 1:
            field = embed.fields[longest]
            embed.set_field_at(
                longest, name=field.name, value=clip(field.value or "", max(field_len - excess, 1)), inline=bool(field.inline)
            )
        elif embed.fields:
            embed.remove_field(len(embed.fields) - 1)
        else:
            embed.title = clip(embed.title or "", max(len(embed.title or "") - excess, 1))
    return embed
