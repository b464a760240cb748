"""Every bot message exists in both languages with placeholders that render."""

from __future__ import annotations

import string
from collections import defaultdict

import pytest

from bot.discord_app import launch, texts
from bot.discord_app.texts import human_size, locale_of
from engine.i18n import Text


def all_texts() -> dict[str, Text]:
    found = {name: value for name, value in vars(texts).items() if isinstance(value, Text)}
    for table in ("VERDICTS", "STATUSES", "SOURCES", "DEFAULT_NAMES"):
        for key, value in getattr(texts, table).items():
            found[f"{table}[{key}]"] = value
    found["launch.NO_TOKEN"] = launch.NO_TOKEN
    found["launch.BAD_TOKEN"] = launch.BAD_TOKEN
    return found


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize(("name", "text"), sorted(all_texts().items()))
def test_both_languages_render(name, text):
    assert text.en.strip() and text.zh_tw.strip(), name
    params = defaultdict(lambda: 1.5)
    params.update({key: 1.5 for key in fields(text.en) | fields(text.zh_tw)})
    text.render("en", **params)
    text.render("zh-TW", **params)
    # Only these name a word per language; every other message shares its values.
    if name not in ("PROMPT_TOO_LONG", "ADDED"):
        assert fields(text.en) == fields(text.zh_tw), name


class Interaction:
    def __init__(self, locale):
        self.locale = locale


def test_locale_of_discord_locales():
    import discord

    assert locale_of(Interaction(discord.Locale.taiwan_chinese)) == "zh-TW"
    assert locale_of(Interaction(discord.Locale.chinese)) == "zh-TW"
    assert locale_of(Interaction(discord.Locale.japanese)) == "en"
    assert locale_of(Interaction(None)) == "en"


def test_human_size():
    assert [human_size(n) for n in (0, 999, 1000, 1_536_000, 6_900_000_000, None)] == [
        "0 B", "999 B", "1.0 KB", "1.5 MB", "6.9 GB", "?"
    ]
