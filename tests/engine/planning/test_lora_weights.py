from __future__ import annotations

import contextlib
import math

import pytest

from engine.errors import WeightError
from engine.planning.lora_weights import (
    LoraRequest,
    LoraStatus,
    decide_weight,
    parse_lora_list,
    split_prompt_loras,
)


def test_parse_list_forms() -> None:
    assert parse_lora_list("a:0.8, b:-0.5 ; c\nd:1e-1") == [
        LoraRequest("a", 0.8), LoraRequest("b", -0.5), LoraRequest("c", None), LoraRequest("d", 0.1)
    ]
    assert parse_lora_list("<lora:style_v2:0.7> <lora:other>") == [LoraRequest("style_v2", 0.7), LoraRequest("other", None)]
    assert parse_lora_list("") == []


def test_full_width_and_invisible_characters() -> None:
    assert parse_lora_list("ｓｔｙｌｅ：０．５，\u200bink\u202e") == [LoraRequest("style", 0.5), LoraRequest("ink", None)]


@pytest.mark.parametrize("text", ["a:abc", "a:nan", "a:inf", "a:-inf", ":1", "a, A", "a:1:2x", "a:1_0"])
def test_parse_errors_are_clear(text: str) -> None:
    with pytest.raises(WeightError) as err:
        parse_lora_list(text)
    assert str(err.value) and err.value.localized("zh-TW") != str(err.value)


def test_too_many() -> None:
    with pytest.raises(WeightError, match="At most 2"):
        parse_lora_list("a,b,c", max_loras=2)


def test_policy() -> None:
    default = decide_weight("x", None, None, -2, 2)
    assert (default.requested, default.applied, default.status) == (None, 1.0, LoraStatus.APPLIED)
    assert decide_weight("x", None, 0.6, -2, 2).applied == 0.6
    zero = decide_weight("x", 0.0, 0.6, -2, 2)
    assert zero.status == LoraStatus.NOT_APPLIED and zero.applied == 0
    neg = decide_weight("x", -1.5, None, -2, 2)
    assert neg.status == LoraStatus.APPLIED and neg.applied == -1.5
    big = decide_weight("x", 1e9, None, -2, 2)
    assert big.status == LoraStatus.CLAMPED and big.applied == 2 and "outside" in str(big.note)
    small = decide_weight("x", -1e9, None, -2, 2)
    assert small.applied == -2
    with pytest.raises(WeightError):
        decide_weight("x", math.nan, None, -2, 2)


def test_prompt_tags_are_taken_out_and_the_rest_is_left_as_written() -> None:
    prompt, loras = split_prompt_loras("1girl,smile, <lora:style_v2:0.7>, (best quality:1.2)\n<LyCO:ink:-0.5:0.3>")
    assert prompt == "1girl,smile, (best quality:1.2)"
    assert loras == [LoraRequest("style_v2", 0.7), LoraRequest("ink", -0.5)]
    assert split_prompt_loras("<lora:x> masterpiece") == ("masterpiece", [LoraRequest("x", None)])
    assert split_prompt_loras("a <b:1.2>, c") == ("a <b:1.2>, c", [])


@pytest.mark.parametrize("tag", ["<lora:x:abc>", "<lora:x:nan>", "<lora:x:inf>"])
def test_prompt_tags_with_bad_weights_are_refused(tag: str) -> None:
    with pytest.raises(WeightError, match="“x”"):
        split_prompt_loras(f"1girl, {tag}")


def _seconds(call, *args) -> float:
    import time

    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "text",
    [
        "<lora:a:" * 15_000,  # 117 KB of unterminated tags: 44 s before the pattern was linear
        "<lora:" + "a" * 120_000,
        "<lora:a:1:" + ":" * 120_000,
        "a" + " ," * 60_000 + "<lora:x:1>" + " ," * 60_000 + "b",  # separators around a tag
    ],
)
def test_tag_parsing_is_linear_on_adversarial_prompts(text: str) -> None:
    assert _seconds(split_prompt_loras, text) < 2.0
    assert _seconds(lambda t: _try(parse_lora_list, t), text) < 2.0


def _try(call, *args) -> None:
    with contextlib.suppress(WeightError):
        call(*args)


def test_tags_keep_their_meaning_with_the_linear_pattern() -> None:
    assert split_prompt_loras("a, < lora : My Style : 0.5 >, b") == ("a, b", [LoraRequest("My Style", 0.5)])
    assert split_prompt_loras("<lora:x:0.5:te=1> a") == ("a", [LoraRequest("x", 0.5)])
    assert split_prompt_loras("a <lora::1> b") == ("a <lora::1> b", [])  # no name: left as written
    assert split_prompt_loras("<lora:a:1> <lora:b> c") == ("c", [LoraRequest("a", 1.0), LoraRequest("b", None)])
    assert parse_lora_list("<lora:x:0.5>, y") == [LoraRequest("x", 0.5), LoraRequest("y", None)]
