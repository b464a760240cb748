"""Prompt advice: tags that belong to another family's vocabulary.

Pony checkpoints learned `score_9, score_8_up, ...`, `source_anime`, `rating_explicit`;
to an Illustrious checkpoint those are noise that dilutes the prompt. `lint_prompt` flags
such tags, whatever their weight syntax (`(score_9:1.2)`), underscores or case, and stays
quiet when the checkpoint's own lineage uses them or its family is unknown.

Written with underscores (`score_9`) a vocabulary tag is unmistakable wherever it stands;
written with spaces it must be the whole tag ("score 9", "score 9 score 8 up"), because
plain SDXL prompts are often sentences ("the scoreboard shows score 9 to 7", "rating safe
for kids") whose words are not tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from engine.families import Family, FamilyTable, default_table
from engine.i18n import EN, Text

_FOREIGN_TAG = Text(
    "“{tag}” comes from the {tag_family} vocabulary; {checkpoint_family} checkpoints were not trained on it, so it does nothing there.",
    "「{tag}」是 {tag_family} 專用的標籤；{checkpoint_family} 模型沒有學過它，所以不會有效果。",
)
_FOREIGN_TAG_TRY = Text(
    _FOREIGN_TAG.en + " Try “{suggestion}” instead.",
    _FOREIGN_TAG.zh_tw + "可以改用「{suggestion}」。",
)
_FOREIGN_NEGATIVE = Text(
    "“{tag}” in the negative prompt comes from the {tag_family} vocabulary; {checkpoint_family} checkpoints were not trained on it, so it does nothing there.",
    "負面提示詞中的「{tag}」是 {tag_family} 專用的標籤；{checkpoint_family} 模型沒有學過它，所以不會有效果。",
)
_FOREIGN_NEGATIVE_TRY = Text(
    _FOREIGN_NEGATIVE.en + " Try “{suggestion}” instead.",
    _FOREIGN_NEGATIVE.zh_tw + "可以改用「{suggestion}」。",
)
_SUGGEST = Text(
    "{family} checkpoints were trained to read “{positive}” as a sign of a good picture.",
    "{family} 模型學過把「{positive}」當作好圖的標記。",
)
_SUGGEST_NEGATIVE = Text(
    _SUGGEST.en + " In the negative prompt: “{negative}”.",
    _SUGGEST.zh_tw + "負面提示詞可用：「{negative}」。",
)

# A1111/ComfyUI prompt syntax around the words: <lora:...> calls, (a:1.2) weights,
# [a] de-emphasis, {a} (NovelAI) emphasis, and the BREAK keyword.
_LORA_CALL = re.compile(r"<[^<>]*>")
_SEPARATORS = re.compile(r"[,\n|]|\bBREAK\b")
# `\d+(?:\.\d+)?|\.\d+`, not `\d*\.?\d+`: the two digit runs of the latter overlap, and a
# long run of digits was tried split at every place (quadratic).
_WEIGHT = re.compile(r":\s*[-+]?(?:\d+(?:\.\d+)?|\.\d+)\s*(?=[)\]}]|$)")
# Vocabulary tags are a few words; longer pieces are not matched against the vocabulary
# patterns, whose alternatives can overlap (backtracking grows with the tag's length).
_MAX_TAG_CHARS = 200
_BRACKETS = re.compile(r"\\?[()\[\]{}]")


@dataclass(frozen=True)
class LintWarning:
    tag: str  # as the user wrote it, without weight syntax
    family: Family  # the family whose vocabulary the tag belongs to
    text: Text
    params: dict[str, Any] = field(default_factory=dict)
    negative: bool = False

    def render(self, locale: str | None = EN) -> str:
        return self.text.render(locale, **self.params)

    def __str__(self) -> str:
        return self.render(EN)


@dataclass(frozen=True)
class QualitySuggestion:
    family: Family
    positive: tuple[str, ...]
    negative: tuple[str, ...]

    @property
    def prompt(self) -> str:
        return ", ".join(self.positive)

    @property
    def negative_prompt(self) -> str:
        return ", ".join(self.negative)

    @property
    def text(self) -> Text:
        return _SUGGEST_NEGATIVE if self.negative else _SUGGEST

    @property
    def params(self) -> dict[str, Any]:
        return {"family": self.family.label, "positive": self.prompt, "negative": self.negative_prompt}

    def render(self, locale: str | None = EN) -> str:
        return self.text.render(locale, **self.params)


def suggest_quality_tags(family: Family | None) -> QualitySuggestion | None:
    """The quality tags a family's checkpoints were trained on, if it has any."""
    if family is None or not family.quality_tags:
        return None
    return QualitySuggestion(family, family.quality_tags, family.negative_tags)


def split_tags(prompt: str | None) -> list[str]:
    """The prompt's tags without weight syntax: '(score_9:1.2), [x]' -> ['score_9', 'x']."""
    if not prompt:
        return []
    text = _LORA_CALL.sub(",", prompt)
    tags = []
    for piece in _SEPARATORS.split(text):
        piece = _WEIGHT.sub("", piece.strip())
        piece = _BRACKETS.sub("", piece)
        piece = _WEIGHT.sub("", piece).strip()
        if piece:
            tags.append(piece)
    return tags


def normalize_tag(tag: str) -> str:
    """Case-folded, underscores as spaces, single spaces: 'Score_8_UP' -> 'score 8 up'."""
    return " ".join(tag.replace("_", " ").casefold().split())


def lint_prompt(
    prompt: str | None,
    negative: str | None,
    checkpoint_family: Family | None,
    table: FamilyTable | None = None,
) -> list[LintWarning]:
    """Warnings for tags from another family's vocabulary, once per tag and prompt."""
    if checkpoint_family is None:
        return []
    table = table or default_table()
    own = {f.id for f in table.lineage(checkpoint_family.id)} or {checkpoint_family.id}
    vocab = [(fam, _vocabulary_rules(fam.vocabulary)) for fam in table.families() if fam.vocabulary]
    suggestion = suggest_quality_tags(checkpoint_family)
    warnings: list[LintWarning] = []
    seen: set[tuple[str, bool]] = set()
    for is_negative, text in ((False, prompt), (True, negative)):
        for tag in split_tags(text):
            key = normalize_tag(tag)
            if not key or len(tag) > _MAX_TAG_CHARS or (key, is_negative) in seen:
                continue
            claimed_by = [fam for fam, rules in vocab if _claims(rules, tag, key)]
            if not claimed_by or any(fam.id in own for fam in claimed_by):
                continue
            seen.add((key, is_negative))
            warnings.append(_warning(tag, claimed_by[0], checkpoint_family, suggestion, is_negative))
    return warnings


def _warning(
    tag: str, tag_family: Family, checkpoint_family: Family, suggestion: QualitySuggestion | None, negative: bool
) -> LintWarning:
    params: dict[str, Any] = {"tag": tag, "tag_family": tag_family.label, "checkpoint_family": checkpoint_family.label}
    replacement = None
    if suggestion is not None:
        replacement = suggestion.negative_prompt if negative else suggestion.prompt
    if replacement:
        params["suggestion"] = replacement
        text = _FOREIGN_NEGATIVE_TRY if negative else _FOREIGN_TAG_TRY
    else:
        text = _FOREIGN_NEGATIVE if negative else _FOREIGN_TAG
    return LintWarning(tag=tag, family=tag_family, text=text, params=params, negative=negative)


@dataclass(frozen=True)
class _Rules:
    whole: re.Pattern[str] | None  # the normalized tag is made only of vocabulary words
    joined: re.Pattern[str] | None  # an underscore-joined vocabulary tag anywhere in it


def _claims(rules: _Rules, tag: str, key: str) -> bool:
    if rules.whole is not None and rules.whole.fullmatch(key):
        return True
    return rules.joined is not None and rules.joined.search(tag.casefold()) is not None


@lru_cache(maxsize=256)
def _vocabulary_rules(patterns: tuple[str, ...]) -> _Rules:
    # Vocabulary is written with underscores; normalized tags use spaces.
    spaced = [p.replace("_", " ") for p in patterns if p]
    joined = [p for p in patterns if p and "_" in p]
    whole = None
    if spaced:
        term = "(?:" + "|".join(f"(?:{p})" for p in spaced) + ")"
        whole = re.compile(f"{term}(?: {term})*", re.IGNORECASE)
    near = None
    if joined:
        # "score_9" yes, "highscore_9x" no: letters and digits around it end the match.
        near = re.compile(
            r"(?<![a-z0-9])(?:" + "|".join(f"(?:{p})" for p in joined) + r")(?![a-z0-9])", re.IGNORECASE
        )
    return _Rules(whole, near)
