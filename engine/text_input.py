"""Cleaning what people type: prompts and names arrive from Discord and shells with
invisible characters, full-width punctuation and unbounded lengths."""

from __future__ import annotations

import re
import unicodedata

# Zero-width and bidirectional control characters: invisible, and able to make one name
# look like another (or reverse the rest of an embed), so they never reach a lookup.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_name(text: str) -> str:
    """A library name as typed: NFKC (full-width -> ASCII), invisible characters gone."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).strip()


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the cut marked with an ellipsis: names and
    quoted text in messages must not bury the message."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def clean_prompt(text: str) -> str:
    """Prompts keep every script (right-to-left ones included) but lose invisible
    controls; newlines and tabs are fine."""
    return _CONTROL.sub("", _INVISIBLE.sub("", text)).strip()
