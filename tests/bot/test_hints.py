"""Every fix the engine can name has a wording in each front end."""

from __future__ import annotations

import pytest

from bot.cli.hints import HINTS as CLI_HINTS
from bot.discord_app.hints import HINTS as DISCORD_HINTS
from bot.hints import Hints
from engine.i18n import Fix, Text
from engine.planning.checkpoints import ADD_CHECKPOINT
from engine.verdict_texts import SET_BASE_MODEL


@pytest.mark.parametrize("table", [CLI_HINTS, DISCORD_HINTS])
def test_each_front_end_words_every_fix_code(table: dict[str, Text]) -> None:
    assert set(table) == {SET_BASE_MODEL, ADD_CHECKPOINT}
    for code, text in table.items():
        for locale in ("en", "zh-TW"):
            assert text.render(locale, name="x").strip(), (code, locale)


def test_a_code_without_a_wording_adds_nothing() -> None:
    hints = Hints({"known": Text("Do {what}.", "請{what}。")})
    assert hints.with_hint("Broken.", Fix("known", {"what": "this"}), "en") == "Broken. Do this."
    assert hints.with_hint("Broken.", Fix("unheard_of", {}), "en") == "Broken."
    assert hints.with_hint("Broken.", None, "zh-TW") == "Broken."
