"""Clipping to Discord's limits."""

from __future__ import annotations

import discord

from bot.discord_app.limits import EMBED_TOTAL, FIELD_VALUE, clip, fit_embed, join_lines


def more(n: int) -> str:
    return f"+{n} more"


def test_clip():
    assert clip("abc", 3) == "abc"
    assert clip("abcd", 3) == "ab…"
    assert len(clip("x" * 5000, 1024)) == 1024


def test_join_lines_keeps_whole_lines_and_counts_the_rest():
    lines = [f"line {i}" for i in range(100)]
    text = join_lines(lines, 60, more)
    assert len(text) <= 60
    kept = text.splitlines()
    assert kept[:-1] == lines[: len(kept) - 1]
    assert kept[-1] == f"+{100 - len(kept) + 1} more"
    assert join_lines(["a", "b"], 60, more) == "a\nb"
    assert join_lines([], 60, more) == ""
    assert join_lines(["x" * 100], 10, more) == "xxxxxxxxx…"


def test_fit_embed_respects_every_limit():
    embed = discord.Embed(title="t" * 300, description="d" * 5000)
    for _i in range(30):
        embed.add_field(name="n" * 300, value="v" * 2000)
    embed.set_footer(text="f" * 3000)
    fit_embed(embed)
    assert len(embed.title) == 256 and len(embed.description) <= 4096
    assert 1 <= len(embed.fields) <= 25  # 25 names of 256 characters alone exceed 6000
    assert all(len(f.name) <= 256 and len(f.value) <= FIELD_VALUE for f in embed.fields)
    assert len(embed) <= EMBED_TOTAL


def test_fit_embed_leaves_small_embeds_alone():
    embed = discord.Embed(title="hello", description="world")
    embed.add_field(name="a", value="b")
    before = embed.to_dict()
    assert fit_embed(embed).to_dict() == before
