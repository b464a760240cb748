"""Discord's hints for the engine's fix codes: the engine says what is wrong, the bot says
which slash command fixes it."""

from __future__ import annotations

import pytest

from bot.discord_app.hints import HINTS, error_hint, family_check_with_hints
from bot.discord_app.render import family_check_embed
from bot.discord_app.replies import error_text
from engine.answers import FamilyCheck, LoraVerdict, ModelSummary
from engine.errors import LibraryError
from engine.families import default_table
from engine.i18n import EN, ZH_TW, Fix, Text
from engine.kinds import Architecture
from engine.verdicts import ModelFacts, Source, judge


def facts(name: str, category: str, base: str | None) -> ModelFacts:
    return ModelFacts(
        name, category, None, None, Architecture.SDXL, Source.TENSORS, base, Source.CIVITAI if base else None
    )


def summary(name: str) -> ModelSummary:
    return ModelSummary(name, name, "lora", "lora", "sdxl", None, None, None, None)


@pytest.mark.parametrize("code", ["set_base_model", "add_checkpoint"])
def test_every_engine_fix_code_has_a_hint_in_both_languages(code: str) -> None:
    text = HINTS[code]
    assert text.render(EN, name="x") and text.render(ZH_TW, name="x")


def test_an_unknown_verdict_on_discord_names_the_slash_command() -> None:
    result = judge(facts("mystery", "lora", None), facts("nova", "checkpoint", "Illustrious"), default_table())
    assert "/admin" not in result.explain(EN)
    verdict = LoraVerdict(summary("mystery"), str(result.verdict), [], result.explanation, fix=result.fix)
    check = family_check_with_hints(FamilyCheck(summary("nova"), [verdict]))
    assert check.loras[0].explanation[EN].endswith("Use /admin set (option base_model) on “mystery”.")
    assert "/admin set（選項 base_model）" in check.loras[0].explanation[ZH_TW]
    embed = family_check_embed(check, EN)
    assert "/admin set" in embed.fields[0].value and "mystery" in embed.fields[0].value


def test_errors_carry_discords_hint() -> None:
    error = LibraryError(Text("No checkpoint yet.", "還沒有模型。"), fix=Fix("add_checkpoint"))
    assert error_text(error, EN, "test") == "No checkpoint yet. Use /admin add with a CivitAI link to an SDXL checkpoint."
    assert "/admin add" in error_hint(error, ZH_TW)
    plain = LibraryError(Text("Plain.", "一般。"))
    assert error_text(plain, EN, "test") == "Plain."
