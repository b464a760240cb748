"""How to fix it, in the CLI's words: the engine names a fix by code (`engine.i18n.Fix`)
and never a front end's command; these hints name the `loracle` command that does it."""

from __future__ import annotations

from typing import Any

from bot.hints import Hints
from engine.i18n import Fix, Text
from engine.planning.checkpoints import ADD_CHECKPOINT
from engine.verdict_texts import SET_BASE_MODEL

HINTS: dict[str, Text] = {
    # an `unknown` verdict: params {"name": the file whose family is unknown}
    SET_BASE_MODEL: Text(
        'Run: loracle library set "{name}" --base-model "Illustrious" (use the real base model).',
        '請執行：loracle library set "{name}" --base-model "Illustrious"（請填入實際的基礎模型）。',
    ),
    # no usable checkpoint in the library
    ADD_CHECKPOINT: Text(
        "Run: loracle library add URL (a CivitAI link), or copy a .safetensors into data/models/ "
        "and run: loracle library scan",
        "請執行：loracle library add 網址（CivitAI 連結），或把 .safetensors 放進 data/models/ 後執行："
        "loracle library scan",
    ),
}


_HINTS = Hints(HINTS)
hint, with_hint, error_message = _HINTS.hint, _HINTS.with_hint, _HINTS.error_message


def family_check_json(data: dict[str, Any], locale: str) -> dict[str, Any]:
    """`FamilyCheck.to_json()` with each verdict's hint after its explanation."""
    for item in data["loras"]:
        fix = Fix(item["fix"]["code"], item["fix"]["params"]) if item.get("fix") else None
        item["explanation"] = with_hint(item["explanation"], fix, locale)
        item["explanations"] = {loc: with_hint(text, fix, loc) for loc, text in item["explanations"].items()}
    return data
