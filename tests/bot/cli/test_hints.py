"""The CLI's hints for the engine's fix codes: `loracle` commands, never slash commands."""

from __future__ import annotations

from bot.cli.hints import error_message, family_check_json
from engine.answers import FamilyCheck, LoraVerdict, ModelSummary
from engine.errors import LibraryError
from engine.i18n import EN, ZH_TW, Fix, Text


def summary(name: str) -> ModelSummary:
    return ModelSummary(name, name, "lora", "lora", "sdxl", None, None, None, None)


def test_unknown_verdict_says_the_loracle_command() -> None:
    explanation = {EN: "Unknown. An admin can set the base model of “mystery”.", ZH_TW: "未知。"}
    verdict = LoraVerdict(summary("mystery"), "unknown", [], explanation, fix=Fix("set_base_model", {"name": "mystery"}))
    data = family_check_json(FamilyCheck(summary("nova"), [verdict]).to_json(EN), EN)
    item = data["loras"][0]
    assert item["explanation"].endswith('Run: loracle library set "mystery" --base-model "Illustrious" (use the real base model).')
    assert 'loracle library set "mystery"' in item["explanations"][ZH_TW]
    assert "/admin" not in item["explanation"]
    assert item["fix"] == {"code": "set_base_model", "params": {"name": "mystery"}}


def test_errors_carry_the_cli_hint() -> None:
    error = LibraryError(Text("No checkpoint yet.", "還沒有模型。"), fix=Fix("add_checkpoint"))
    assert "loracle library scan" in error_message(error, EN) and "/admin" not in error_message(error, EN)
    assert "loracle library scan" in error_message(error, ZH_TW)
