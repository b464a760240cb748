"""When two names look the same: a skeleton in the spirit of Unicode TR39.

Two names that render alike (Cyrillic "а" for Latin "a", full-width letters, a zero-width
joiner inside, another case) would show as two identical entries in autocomplete, and a
user could not tell which one they pick. `skeleton()` maps a name to a form in which such
look-alikes are equal: NFKC (full-width and compatibility forms), default-ignorable code
points removed, case folded, and the common Cyrillic/Greek/Latin homoglyphs of Unicode's
confusables.txt mapped to their Latin letter. The table is deliberately small — the letters
of those scripts that are drawn like a Latin letter in ordinary fonts — rather than all of
confusables.txt (no library for it is installed). Digits 0/1 are mapped to o/l as TR39 does;
"I"/"l" cannot be told apart after case folding and are left alone.
"""

from __future__ import annotations

import re
import unicodedata

_HOMOGLYPHS = str.maketrans(
    {
        # Cyrillic (lower case; capitals fold to these first)
        "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "н": "h", "і": "i", "ї": "i", "ј": "j",
        "к": "k", "ӏ": "l", "м": "m", "о": "o", "р": "p", "ԛ": "q", "с": "c", "ѕ": "s", "т": "t",
        "у": "y", "ү": "y", "х": "x", "ԁ": "d", "ԝ": "w", "ɡ": "g", "ԍ": "g",
        # Greek
        "α": "a", "β": "b", "ε": "e", "ζ": "z", "η": "n", "ι": "i", "κ": "k", "μ": "m", "ν": "v",
        "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ϲ": "c", "ϳ": "j",
        # Latin look-alikes NFKC keeps
        "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ʏ": "y", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z",
        # digits, as TR39
        "0": "o", "1": "l",
        # dashes and the like
        "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-", "ー": "-",
    }
)
# Default-ignorable and format characters: zero-width (non-)joiners and spaces, soft
# hyphen, word joiner, BOM, variation selectors, bidi controls.
_IGNORABLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                        "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]")
_SPACE = re.compile(r"\s+")


def skeleton(text: str) -> str:
    """The form in which names that look alike are equal (see the module docstring)."""
    folded = unicodedata.normalize("NFKC", _IGNORABLE.sub("", text)).casefold()
    mapped = folded.translate(_HOMOGLYPHS)
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", mapped)).strip()
