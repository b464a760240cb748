"""Reading a body CivitAI (or something pretending to be it) sent, without trusting it.

Python's json module recurses once per bracket, so a body of 100k "[" raises
RecursionError, which is no ValueError and used to escape the client (and a body just under
the limit recurses again wherever it is walked or re-encoded); it also accepts NaN,
Infinity and 1e999, and integers thousands of digits long. `decode_json` turns every such
body into `BadBody` (a ValueError): bounded size, strict UTF-8, bounded nesting, finite
numbers of sane length.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_TEXT_CHARS = 4 * 1024 * 1024
# Real bodies nest about eight deep (model > versions > images > meta > resources).
MAX_DEPTH = 64
_MAX_INT_DIGITS = 30


class BadBody(ValueError):
    """A body that is not a JSON value we are willing to read."""


def decode_json(data: bytes | str, *, max_chars: int = MAX_TEXT_CHARS, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in `data`; raises BadBody for anything malformed or hostile."""
    if isinstance(data, bytes):
        if len(data) > max_chars * 4:
            raise BadBody("too long")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadBody("not UTF-8") from exc
    else:
        text = data
    if len(text) > max_chars:
        raise BadBody("too long")
    try:
        # The C decoder guards its own recursion and raises RecursionError at about a
        # thousand levels; anything deeper than MAX_DEPTH is refused after it.
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite, parse_int=_short_int)
    except RecursionError as exc:
        raise BadBody("nested too deep") from exc
    except BadBody:
        raise
    except ValueError as exc:
        raise BadBody(str(exc)[:200]) from exc
    if text.count("[") + text.count("{") > max_depth:  # fewer cannot nest that deep
        check_depth(value, max_depth)
    return value


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise BadBody when lists and objects in `value` nest deeper than `max_depth`.

    Iterative, so it cannot itself run out of stack, and linear in the size of `value`.
    """
    level: list[Any] = [value]
    for _ in range(max_depth):
        below: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
        if not below:
            return
        level = below
    raise BadBody("nested too deep")


def _no_constant(name: str) -> Any:
    raise BadBody(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadBody("a number too large")
    return value


def _short_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise BadBody("a number too long")
    return int(text)
