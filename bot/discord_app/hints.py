"""How to fix it, in Discord's words: the engine names a fix by code (`engine.i18n.Fix`)
and never a front end's command; these hints say which slash command does it."""

from __future__ import annotations

import dataclasses

from bot.hints import Hints
from engine.answers import FamilyCheck
from engine.i18n import LOCALES, Text
from engine.planning.checkpoints import ADD_CHECKPOINT
from engine.verdict_texts import SET_BASE_MODEL

HINTS: dict[str, Text] = {
    # an `unknown` verdict: params {"name": the file whose family is unknown}
    SET_BASE_MODEL: Text(
        "Use /admin set (option base_model) on “{name}”.",
        "請對「{name}」使用 /admin set（選項 base_model）。",
    ),
    # no usable checkpoint in the library
    ADD_CHECKPOINT: Text(
        "Use /admin add with a CivitAI link to an SDXL checkpoint.",
        "請用 /admin add 加上 SDXL 模型的 CivitAI 連結。",
    ),
}


_HINTS = Hints(HINTS)
hint, with_hint, error_hint = _HINTS.hint, _HINTS.with_hint, _HINTS.error_message


def family_check_with_hints(answer: FamilyCheck) -> FamilyCheck:
    """The answer with each verdict's explanation followed by its hint, in every locale."""
    loras = [
        dataclasses.replace(v, explanation={loc: with_hint(v.explanation[loc], v.fix, loc) for loc in LOCALES})
        if v.fix
        else v
        for v in answer.loras
    ]
    return dataclasses.replace(answer, loras=loras)
