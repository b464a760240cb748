"""Localisable user-facing text (English and Traditional Chinese).

Every module keeps its own messages next to the code that uses them, as `Text` constants,
so there is no central catalogue to edit and no key that can go missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EN = "en"
ZH_TW = "zh-TW"
LOCALES = (EN, ZH_TW)


def normalize_locale(locale: str | None) -> str:
    """Map a Discord or POSIX locale ("zh-TW", "zh_HK", "en-US", None) to one we speak."""
    if not locale:
        return EN
    loc = str(locale).replace("_", "-").lower()
    # Traditional Chinese is written in Taiwan, Hong Kong and Macau; Simplified users
    # still read Traditional far better than English, so all Chinese maps here.
    if loc.startswith("zh"):
        return ZH_TW
    return EN


@dataclass(frozen=True)
class Text:
    """One message in every locale we speak; `{name}` placeholders are filled on render."""

    en: str
    zh_tw: str

    def render(self, locale: str | None = EN, /, **params: Any) -> str:
        template = self.zh_tw if normalize_locale(locale) == ZH_TW else self.en
        return template.format(**params) if params else template

    def both(self, **params: Any) -> dict[str, str]:
        """The message in every locale, as stored in JSON outputs."""
        return {EN: self.render(EN, **params), ZH_TW: self.render(ZH_TW, **params)}


@dataclass(frozen=True)
class Fix:
    """How the reader can put something right, as a code a front end words its own way
    ("/admin set" on Discord, `loracle library set` in a shell): engine texts never name a
    front end's commands. `params` fill the front end's hint (e.g. the file's name)."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """A `Text` with its parameters: a warning or note rendered later, per reader."""

    text: Text
    params: dict[str, Any]
    fix: Fix | None = None

    @classmethod
    def of(cls, text: Text, /, fix: Fix | None = None, **params: Any) -> Message:
        return cls(text, params, fix)

    def render(self, locale: str | None = EN) -> str:
        return self.text.render(locale, **self.params)

    def __str__(self) -> str:
        return self.render(EN)
