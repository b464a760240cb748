"""Plan-time prompt checks: what would fail (or should not run) on the GPU worker is
refused before any work, naming the bad text."""

from __future__ import annotations

import pytest

from engine.errors import LimitError, RequestError
from engine.planning.prompt_checks import (
    MAX_ATTENTION_WEIGHT,
    MAX_BREAKS,
    MAX_NESTING,
    check_prompt_syntax,
    check_prompt_text,
)


@pytest.mark.parametrize(
    ("prompt", "quoted"),
    [
        ("1girl, (smile:1.2.3), flower", "“(smile:1.2.3)”"),
        ("(x:.)", "“(x:.)”"),
        ("a, (b, (c:1..5)), d", "“(c:1..5)”"),
    ],
)
def test_a_malformed_weight_is_refused_naming_it(prompt: str, quoted: str) -> None:
    with pytest.raises(RequestError, match="not a number") as info:
        check_prompt_syntax(prompt)
    assert quoted in str(info.value)
    assert quoted.strip("“”") in info.value.localized("zh-TW")


def test_the_negative_prompt_is_named_as_such() -> None:
    with pytest.raises(RequestError, match="in the negative prompt"):
        check_prompt_syntax("(lowres:1.2.3)", "negative")


@pytest.mark.parametrize(
    "prompt",
    [
        "1girl, (smile:1.2), [blurry], ((masterpiece)), (a:-1.5), \\(literal:9.9.9\\), score:9",
        "(x:10)",  # the bound itself
        "[x:1.2.3]",  # a square bracket takes no weight: A1111 reads this as text
        "x:1.2.3)",  # no open bracket: text
        "a BREAK b",
    ],
)
def test_what_the_pipeline_reads_passes(prompt: str) -> None:
    check_prompt_syntax(prompt)


def test_attention_weights_are_bounded() -> None:
    with pytest.raises(LimitError, match=r"“\(smile:11\)”.*between -10 and 10"):
        check_prompt_syntax("(smile:11)")
    with pytest.raises(LimitError, match=r"“\(smile:-1000\)”"):
        check_prompt_syntax("(smile:-1000)")
    # weights multiply when nested: each one is fine, the product is not
    with pytest.raises(LimitError, match="“deep”"):
        check_prompt_syntax("((((deep:9):1.5)))")
    assert MAX_ATTENTION_WEIGHT == 10


def test_nesting_depth_is_bounded() -> None:
    check_prompt_syntax("(" * MAX_NESTING + "x" + ")" * MAX_NESTING)
    with pytest.raises(RequestError, match=f"{MAX_NESTING + 1} deep"):
        check_prompt_syntax("(" * (MAX_NESTING + 1) + "x" + ")" * (MAX_NESTING + 1))
    with pytest.raises(RequestError, match="deep"):
        check_prompt_syntax("[" * 6 + "(" * 6 + "x")  # unclosed brackets count too


def test_breaks_are_bounded() -> None:
    check_prompt_syntax(" BREAK ".join(["a"] * (MAX_BREAKS + 1)))
    with pytest.raises(LimitError, match=f"{MAX_BREAKS + 1} BREAKs"):
        check_prompt_syntax(" BREAK ".join(["a"] * (MAX_BREAKS + 2)))


def test_text_check_cleans_and_bounds() -> None:
    assert check_prompt_text(" a\u200b ", "", limit=5) == ("a", "")
    with pytest.raises(RequestError, match="empty"):
        check_prompt_text("\u200b", "x", limit=5)
    with pytest.raises(LimitError, match="6 characters long; the limit is 5"):
        check_prompt_text("aaaaaa", "", limit=5)
    with pytest.raises(LimitError, match="negative prompt is 6"):
        check_prompt_text("a", "bbbbbb", limit=5)
