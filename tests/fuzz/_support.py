"""What every fuzz property shares: the one kind of error a parser may answer with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import strategies as st

from engine.errors import LoracleError

T = TypeVar("T")


def own_errors_only(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | LoracleError:
    """Call `fn`; its own LoracleError comes back as the value, anything else propagates
    (and fails the property with the input that caused it)."""
    try:
        return fn(*args, **kwargs)
    except LoracleError as exc:
        # The message must render in both languages: it is what the user is shown.
        assert str(exc)
        assert exc.localized("zh-TW")
        return exc


# JSON values of every kind, nested a few levels: what a stranger's file or an API sends.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

# Prompts built from the pieces A1111's syntax is made of, so brackets, weights, escapes
# and BREAK meet in every combination; plus any text at all.
_SYNTAX = [
    "(", ")", "[", "]", ":", "\\", "\\(", "\\)", "\\\\", "BREAK", " BREAK ", "\nBREAK\n", ":1.2)",
    ": 0.5 )", ":-1)", ":.)", ":1.2.3)", ":+)", ":1e3)", ":9999999999)", ",", ", ", "1girl", "score:9",
    " ", "\n", "<lora:x:0.8>", "<lora:", ">", "<lyco:y>", "０.５", "(((", ")))", "masterpiece",
]  # fmt: skip
prompts = st.lists(st.sampled_from(_SYNTAX) | st.text(max_size=5), max_size=40).map("".join) | st.text(
    max_size=200
)

# LoRA lists as typed in /draw's `loras` option: separators, tags, full-width punctuation.
_list_pieces = st.sampled_from(
    [
        "a",
        "b",
        "A",
        "name:0.8",
        ":",
        ",",
        ";",
        "\n",
        "<lora:x:1>",
        "<lora:",
        ">",
        "：",
        "，",
        " ",
        "-0.5",
        "nan",
        "x:",
    ]
) | st.text(max_size=6)
lora_lists = st.lists(_list_pieces, max_size=20).map("".join) | st.text(max_size=80)
