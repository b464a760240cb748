"""The LoRA weight policy, applied in one place and reported per LoRA.

- no weight given  -> the LoRA's recommended weight (admin-set, else the author's, else 1.0)
- a weight outside the author's recommended range -> used as given, and the reply says so
- NaN or infinity  -> refused (WeightError)
- 0                -> not applied at all (bit-identical to leaving it out)
- outside the configured range -> clamped to it, and the reply says so
- negative         -> supported: pushes the image away from what the LoRA learned
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from engine.errors import WeightError
from engine.i18n import Message, Text
from engine.text_input import clean_name

DEFAULT_WEIGHT = 1.0


class LoraStatus(StrEnum):
    APPLIED = "applied"
    NOT_APPLIED = "not_applied"
    CLAMPED = "clamped"
    REFUSED = "refused"


@dataclass(frozen=True)
class LoraRequest:
    name: str
    weight: float | None = None


@dataclass(frozen=True)
class WeightDecision:
    requested: float | None
    applied: float
    status: LoraStatus
    note: Message | None = None


_CLAMPED = Text(
    "{name}: weight {requested:g} is outside {low:g}…{high:g}, so {applied:g} was used.",
    "{name}：權重 {requested:g} 超出 {low:g}…{high:g} 的範圍，已改用 {applied:g}。",
)
_ZERO = Text(
    "{name}: weight 0 means the LoRA is not applied.",
    "{name}：權重 0 代表不套用此 LoRA。",
)
_OUTSIDE_AUTHOR = Text(
    "{name}: weight {requested:g} is outside the author's recommended {low:g}…{high:g}.",
    "{name}：權重 {requested:g} 超出作者建議的 {low:g}…{high:g}。",
)
_NOT_FINITE = Text(
    "The weight for “{name}” must be a real number, not {value}.",
    "「{name}」的權重必須是一般數字，不能是 {value}。",
)
_NOT_A_NUMBER = Text(
    "The weight “{value}” for “{name}” is not a number. Write it like {name}:0.8",
    "「{name}」的權重「{value}」不是數字。請寫成 {name}:0.8 這樣的格式。",
)
_EMPTY_NAME = Text(
    "A LoRA name is missing in “{item}”. Write LoRAs like: name:0.8, other:-0.5",
    "「{item}」中缺少 LoRA 名稱。請寫成：name:0.8, other:-0.5",
)
_TWICE = Text(
    "“{name}” is listed twice; give each LoRA once with one weight.",
    "「{name}」重複出現；每個 LoRA 只能列一次、給一個權重。",
)
_TOO_MANY = Text(
    "At most {limit} LoRAs per image (you gave {count}).",
    "每張圖最多 {limit} 個 LoRA（您給了 {count} 個）。",
)


def decide_weight(
    name: str, requested: float | None, recommended: float | None, low: float, high: float
) -> WeightDecision:
    wanted = requested if requested is not None else (recommended if recommended is not None else DEFAULT_WEIGHT)
    if not math.isfinite(wanted):
        raise WeightError(_NOT_FINITE, name=name, value=wanted)
    if wanted == 0:
        return WeightDecision(requested, 0.0, LoraStatus.NOT_APPLIED, Message.of(_ZERO, name=name))
    if wanted < low or wanted > high:
        applied = float(min(max(wanted, low), high))
        note = Message.of(_CLAMPED, name=name, requested=wanted, low=low, high=high, applied=applied)
        return WeightDecision(requested, applied, LoraStatus.CLAMPED, note)
    return WeightDecision(requested, float(wanted), LoraStatus.APPLIED)


def outside_author_range(name: str, requested: float | None, low: float | None, high: float | None) -> Message | None:
    """A note when a user's own weight lies outside the range the LoRA's author gives;
    the weight stands (within the admin range), since authors' ranges are advice."""
    if requested is None or requested == 0 or low is None or high is None or low <= requested <= high:
        return None
    return Message.of(_OUTSIDE_AUTHOR, name=name, requested=requested, low=low, high=high)


# `lyco` is the alias A1111 1.5+ keeps for LyCORIS tags written for the old extension.
# Linear on any input: no part may cross a `<`, so an unterminated tag is given up at the
# next one (a prompt of unterminated `<lora:a:` tags was quadratic, 44 s for 117 KB), and
# no two adjacent parts can match the same characters; spaces are stripped afterwards.
_A1111_TAG = re.compile(r"<\s*(?:lora|lyco)\s*:([^:<>]*)(?::([^:<>]*))?(?::[^<>]*)?>", re.I)


def _tag_parts(match: re.Match[str]) -> tuple[str, str | None] | None:
    """(name, weight text or None) of a `<lora:...>` tag; None for a tag with no name."""
    name = match.group(1).strip()
    weight = match.group(2)
    return (name, weight.strip() if weight is not None else None) if name else None


def lora_tags_in(text: str) -> Iterator[tuple[str, str | None]]:
    """(name, weight text or None) of each `<lora:...>` / `<lyco:...>` tag in `text`: the
    one reading of A1111's tag grammar (prompts, infotext, authors' usage examples)."""
    for match in _A1111_TAG.finditer(text):
        parts = _tag_parts(match)
        if parts is not None:
            yield parts


def parse_weight(name: str, text: str) -> float:
    value = text.strip()
    try:
        if "_" in value:  # Python reads "1_0" as 10; nobody typing a weight means that
            raise ValueError(value)
        number = float(value)
    except ValueError:
        raise WeightError(_NOT_A_NUMBER, name=name, value=value[:40]) from None
    if not math.isfinite(number):
        raise WeightError(_NOT_FINITE, name=name, value=value[:40])
    return number


def split_prompt_loras(prompt: str) -> tuple[str, list[LoraRequest]]:
    """Take A1111's `<lora:name:weight>` tags out of a prompt, as A1111 does: prompts
    copied from CivitAI carry them, and left in they would be drawn as words, with the
    LoRA silently missing. Returns the prompt without them and the requests they make."""
    requests: list[LoraRequest] = []

    def take(match: re.Match[str]) -> str:
        parts = _tag_parts(match)
        if parts is None:
            return match.group(0)
        name, weight = parts
        requests.append(LoraRequest(name, parse_weight(name, weight) if weight else None))
        return "\0"

    text = _A1111_TAG.sub(take, prompt.replace("\0", ""))
    if not requests:
        return prompt, []
    # Only the separators around a tag go ("a, <lora:x:1>, b" -> "a, b"); the rest of
    # the prompt is left exactly as written. Stripped by hand, not by `[\s,]*\0[\s,]*`,
    # which would rescan a long run of spaces from each of its characters.
    pieces = text.split("\0")
    last = len(pieces) - 1
    kept = [_strip_separators(p, left=i > 0, right=i < last) for i, p in enumerate(pieces)]
    return ", ".join(kept).strip(" ,\n\t"), requests


def _strip_separators(text: str, *, left: bool, right: bool) -> str:
    start, end = 0, len(text)
    if left:
        while start < end and (text[start].isspace() or text[start] == ","):
            start += 1
    if right:
        while end > start and (text[end - 1].isspace() or text[end - 1] == ","):
            end -= 1
    return text[start:end]


def _tag_as_item(match: re.Match[str]) -> str:
    parts = _tag_parts(match)
    return f",{parts[0]}:{parts[1] or ''}," if parts else match.group(0)


def parse_lora_list(text: str, *, max_loras: int | None = None) -> list[LoraRequest]:
    """Parse `name:0.8, other:-0.5` (also `<lora:name:0.8>` as pasted from A1111, and
    full-width punctuation typed with a CJK keyboard) into requests."""
    cleaned = clean_name(text)
    cleaned = _A1111_TAG.sub(_tag_as_item, cleaned)
    requests: list[LoraRequest] = []
    seen: set[str] = set()
    for item in re.split(r"[,;\n]+", cleaned):
        item = item.strip()
        if not item:
            continue
        name, sep, weight_text = item.rpartition(":")
        if not sep:
            name, weight = item, None
        else:
            name = name.strip()
            weight = parse_weight(name or item, weight_text) if weight_text.strip() else None
        if not name:
            raise WeightError(_EMPTY_NAME, item=item[:60])
        key = name.lower()
        if key in seen:
            raise WeightError(_TWICE, name=name)
        seen.add(key)
        requests.append(LoraRequest(name, weight))
    if max_loras is not None and len(requests) > max_loras:
        raise WeightError(_TOO_MANY, limit=max_loras, count=len(requests))
    return requests
