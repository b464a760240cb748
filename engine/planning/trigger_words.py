"""Is a LoRA's trigger word in the prompt? The commonest reason a LoRA "does nothing".

Compared as A1111 users write prompts: case does not matter, `_` and spaces are one,
weight syntax (`(word:1.2)`, `[word]`, `{word}`), escaped brackets (`\\(` `\\)`) and
runs of spaces or punctuation are ignored; a trigger must match whole words, so "art"
is not found in "artist". A trigger list counts as present when any one of its words is
(character packs list one trigger per character, and CivitAI entries are often
comma-separated tag lists of which the user writes some).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from engine.i18n import Message, Text

# Bounds: CivitAI trainedWords lists run to hundreds of tags for some packs.
MAX_TRIGGERS = 300
MAX_TRIGGER_CHARS = 200
NAMED = 3  # triggers named in a warning; the rest are counted

_MISSING = Text(
    "{name}: none of its trigger words is in the prompt, so it may do little. Add one of: {words}{more_en}.",
    "{name}：提示詞中沒有它的觸發詞，效果可能不明顯。請加入其中一個：{words}{more_zh}。",
)
_MORE = Text(" and {count} more", " 等另外 {count} 個")

# A1111 weight suffixes, `(word:1.2)` and `[from:to:0.5]`, are not words of the prompt.
_WEIGHT = re.compile(r":\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
# Anything not a letter or digit separates words (`_`, brackets, backslashes, commas).
_SEPARATORS = re.compile(r"[\W_]+")


def words_of(text: str) -> str:
    """The text as " word word ... ", for whole-word matching."""
    words = _SEPARATORS.sub(" ", _WEIGHT.sub(" ", text.lower())).split()
    return f" {' '.join(words)} " if words else ""


def trigger_candidates(triggers: Iterable[str]) -> list[str]:
    """Each listed trigger, comma-separated entries split, blanks and repeats dropped."""
    seen: dict[str, str] = {}
    for entry in list(triggers)[:MAX_TRIGGERS]:
        for piece in entry[:MAX_TRIGGER_CHARS].split(","):
            piece = " ".join(piece.split())
            key = words_of(piece)
            if key and key not in seen:
                seen[key] = piece
    return list(seen.values())


def missing_triggers(prompt: str, triggers: Iterable[str]) -> list[str]:
    """The triggers to suggest when none is in the prompt; [] when one is, or there are none."""
    candidates = trigger_candidates(triggers)
    if not candidates:
        return []
    text = words_of(prompt)
    if any(words_of(word) in text for word in candidates):
        return []
    return candidates


def missing_trigger_warning(name: str, missing: list[str]) -> Message:
    """One warning for one LoRA, naming at most a few of its triggers."""
    words = ", ".join(missing[:NAMED])
    extra = len(missing) - NAMED
    more_en = _MORE.render("en", count=extra) if extra > 0 else ""
    more_zh = _MORE.render("zh-TW", count=extra) if extra > 0 else ""
    return Message.of(_MISSING, name=name, words=words, more_en=more_en, more_zh=more_zh, triggers=missing)
