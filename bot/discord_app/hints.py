"""How to fix it, in Discord's words: the engine names a fix by code (`engine.i18n.Fix`)
and never a front end's command; these hints say which slash command does it."""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.answers import FamilyCheck
from engine.i18n import LOCALES, Fix, Text

HINTS: dict[str, Text] = {
    # an `unknown` verdict: params {"name": the file whose family is unknown}
    "set_base_model": Text(
        "Use /admin set (option base_model) on “{name}”.",
        "請對「{name}」使用 /admin set（選項 base_model）。",
    ),
    # no usable checkpoint in the library
    "add_checkpoint": Text(
        "Use /admin add with a CivitAI link to an SDXL checkpoint.",
        "請用 /admin add 加上 SDXL 模型的 CivitAI 連結。",
    ),
}


def hint(fix: Fix | None, locale: str) -> str:
    """The hint for a fix ("" when none or the code has no Discord wording)."""
    text = HINTS.get(fix.code) if fix else None
    return text.render(locale, **fix.params) if text and fix else ""


def with_hint(message: str, fix: Fix | None, locale: str) -> str:
    extra = hint(fix, locale)
    return f"{message} {extra}" if extra else message


def error_hint(error: Any, locale: str) -> str:
    """An engine error's message with Discord's hint for its fix."""
    return with_hint(error.localized(locale), getattr(error, "fix", None), locale)


def family_check_with_hints(answer: FamilyCheck) -> FamilyCheck:
    """The answer with each verdict's explanation followed by its hint, in every locale."""
    loras = [
        dataclasses.replace(v, explanation={loc: with_hint(v.explanation[loc], v.fix, loc) for loc in LOCALES})
        if v.fix
        else v
        for v in answer.loras
    ]
    return dataclasses.replace(answer, loras=loras)
