"""Prompt checks that need no library: length, emptiness and A1111's weight syntax.

Run first and cheaply: the bot calls `check_prompt_text` before it defers (its answer can
then be private), and the planner again for every front end. Lengths are checked before
anything parses the text, so no pattern ever sees more than `max_prompt_chars` of it.
The syntax check reads the prompt the way the pipeline will (prompt_weights), so a prompt
that would fail on the GPU worker ("(smile:1.2.3)") is refused here, naming the bad text.
"""

from __future__ import annotations

from engine.errors import LimitError, RequestError
from engine.i18n import Text
from engine.pipeline.prompt_weights import ATTENTION, MAX_CHUNKS, attention_weight, parse_prompt_attention
from engine.text_input import clean_prompt, shorten

# Beyond these the image is noise, or the request is an attack on the parser.
MAX_ATTENTION_WEIGHT = 10.0
MAX_NESTING = 10
MAX_BREAKS = MAX_CHUNKS - 1  # each BREAK starts a chunk; chunks past MAX_CHUNKS are never read

_SNIPPET = 60  # characters of the bad text quoted back

PROMPT_EMPTY = Text(
    "The prompt is empty. Describe what to draw, for example: 1girl, red scarf, snowy street",
    "提示詞是空的。請描述要畫的內容，例如：1girl, red scarf, snowy street",
)
PROMPT_TOO_LONG = Text(
    "The prompt is {length} characters long; the limit is {limit}. Please shorten it.",
    "提示詞長度為 {length} 個字元，上限是 {limit}。請縮短一些。",
)
NEGATIVE_TOO_LONG = Text(
    "The negative prompt is {length} characters long; the limit is {limit}. Please shorten it.",
    "負面提示詞長度為 {length} 個字元，上限是 {limit}。請縮短一些。",
)
_WHERE = {"prompt": ("prompt", "提示詞"), "negative": ("negative prompt", "負面提示詞")}
_BAD_WEIGHT = Text(
    "“{text}” in the {where} has a weight that is not a number (“{weight}”). Write weights like (smile:1.2).",
    "{where_zh}中的「{text}」權重不是數字（「{weight}」）。請寫成 (smile:1.2) 這樣的格式。",
)
_WEIGHT_TOO_BIG = Text(
    "“{text}” in the {where} weighs {weight:g}; attention weights must be between -{limit:g} and {limit:g}.",
    "{where_zh}中的「{text}」權重為 {weight:g}；注意力權重必須介於 -{limit:g} 和 {limit:g} 之間。",
)
_TOO_DEEP = Text(
    "“{text}” in the {where} nests brackets {depth} deep; at most {limit} levels are read.",
    "{where_zh}中的「{text}」括號巢狀了 {depth} 層；最多只能 {limit} 層。",
)
_TOO_MANY_BREAKS = Text(
    "The {where} has {count} BREAKs; at most {limit} (each starts one of the {chunks} chunks Loracle reads).",
    "{where_zh}有 {count} 個 BREAK；最多 {limit} 個（每個 BREAK 開始新的一段，Loracle 最多讀 {chunks} 段）。",
)


def check_prompt_text(prompt: str, negative: str, *, limit: int) -> tuple[str, str]:
    """The cleaned prompt and negative prompt; refused when empty or too long."""
    cleaned, cleaned_negative = clean_prompt(prompt), clean_prompt(negative or "")
    for text, too_long in ((cleaned, PROMPT_TOO_LONG), (cleaned_negative, NEGATIVE_TOO_LONG)):
        if len(text) > limit:
            raise LimitError(too_long, length=len(text), limit=limit)
    if not cleaned:
        raise RequestError(PROMPT_EMPTY)
    return cleaned, cleaned_negative


def check_prompt_syntax(text: str, where: str = "prompt") -> None:
    """Refuse what the pipeline could not read or should not be asked to: malformed or
    huge attention weights, brackets nested too deep, too many BREAKs. `text` must
    already be length-checked (and stripped of `<lora:...>` tags)."""
    where_en, where_zh = _WHERE[where]
    # Open brackets as the parser keeps them: a `:1.2)` closes the last round one only.
    round_open: list[int] = []
    square_open: list[int] = []
    for match in ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece in ("(", "["):
            (round_open if piece == "(" else square_open).append(match.start())
            depth = len(round_open) + len(square_open)
            if depth > MAX_NESTING:
                first = min(round_open[:1] + square_open[:1])
                raise RequestError(_TOO_DEEP, text=_quote(text, first, match.end()), depth=depth, limit=MAX_NESTING, where=where_en, where_zh=where_zh)
        elif weight is not None and round_open:
            quoted = _quote(text, round_open.pop(), match.end())
            value = attention_weight(weight)
            if value is None:
                raise RequestError(_BAD_WEIGHT, text=quoted, weight=shorten(weight, 20), where=where_en, where_zh=where_zh)
            if not abs(value) <= MAX_ATTENTION_WEIGHT:
                raise LimitError(_WEIGHT_TOO_BIG, text=quoted, weight=value, limit=MAX_ATTENTION_WEIGHT, where=where_en, where_zh=where_zh)
        elif piece == ")" and round_open:
            round_open.pop()
        elif piece == "]" and square_open:
            square_open.pop()
    fragments = parse_prompt_attention(text)
    breaks = sum(1 for fragment in fragments if fragment == ("BREAK", -1.0))
    if breaks > MAX_BREAKS:
        raise LimitError(_TOO_MANY_BREAKS, count=breaks, limit=MAX_BREAKS, chunks=MAX_CHUNKS, where=where_en, where_zh=where_zh)
    for fragment, value in fragments:
        # nesting multiplies: (((x:9))) inside more brackets can still grow past the bound
        if fragment != "BREAK" and abs(value) > MAX_ATTENTION_WEIGHT:
            raise LimitError(
                _WEIGHT_TOO_BIG, text=shorten(fragment.strip(), _SNIPPET), weight=value, limit=MAX_ATTENTION_WEIGHT, where=where_en, where_zh=where_zh
            )


def _quote(text: str, start: int, end: int) -> str:
    return shorten(text[start:end], _SNIPPET)
