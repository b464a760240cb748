"""How to fix it, in a front end's words.

The engine names a fix by code (`engine.i18n.Fix`) and never a front end's command; each
front end gives one wording per code (bot/cli/hints.py, bot/discord_app/hints.py) and
appends it where it shows an engine error or verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.i18n import Fix, Text


class Hints:
    """One front end's wordings, by fix code."""

    def __init__(self, table: Mapping[str, Text]) -> None:
        self.table = dict(table)

    def hint(self, fix: Fix | None, locale: str) -> str:
        """The hint for a fix ("" when none, or when this front end has no wording for it)."""
        text = self.table.get(fix.code) if fix else None
        return text.render(locale, **fix.params) if text and fix else ""

    def with_hint(self, message: str, fix: Fix | None, locale: str) -> str:
        extra = self.hint(fix, locale)
        return f"{message} {extra}" if extra else message

    def error_message(self, error: Any, locale: str) -> str:
        """An engine error's message followed by this front end's hint for its fix."""
        return self.with_hint(error.localized(locale), getattr(error, "fix", None), locale)
