"""Parsing /draw options before the defer."""

from __future__ import annotations

import pytest

from bot.discord_app.parsing import DrawOptions, build_request, parse_size
from engine.errors import LimitError, RequestError, WeightError


def build(**options):
    return build_request(
        DrawOptions(**options),
        user_id="1",
        scope="2",
        origin={"channel_id": "3"},
        locale="en",
        allow_nsfw=False,
        max_loras=6,
        max_prompt_chars=100,
    )


@pytest.mark.parametrize(
    ("text", "size"),
    [("832x1216", (832, 1216)), ("832 × 1216", (832, 1216)), ("８３２ｘ１２１６", (832, 1216)), ("1024*1024px", (1024, 1024))],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["big", "1024", "0x0x0", "-5x100", "1024x"])
def test_bad_sizes(text):
    with pytest.raises(RequestError, match="is not a size"):
        parse_size(text)


def test_build_request():
    request = build(prompt="cat", negative="blurry", checkpoint=" nova\u200b ", loras="a:0.5, <lora:b:1>", size="64x128", count=None)
    assert request.checkpoint == "nova"
    assert [(l.name, l.weight) for l in request.loras] == [("a", 0.5), ("b", 1.0)]
    assert (request.width, request.height, request.count) == (64, 128, 1)
    assert (request.user_id, request.scope, request.origin, request.allow_nsfw) == ("1", "2", {"channel_id": "3"}, False)


def test_prompt_checks():
    with pytest.raises(RequestError, match="empty"):
        build(prompt="\u200b \u2060")
    with pytest.raises(LimitError, match="101 characters long; the limit is 100"):
        build(prompt="a" * 101)
    with pytest.raises(LimitError, match="negative prompt is 101"):
        build(prompt="a", negative="b" * 101)
    with pytest.raises(WeightError):
        build(prompt="a", loras="x:1e")


def test_chinese_prompt_error():
    with pytest.raises(LimitError) as info:
        build(prompt="貓" * 101)
    assert info.value.localized("zh-TW") == "提示詞長度為 101 個字元，上限是 100。請縮短一些。"


def test_size_parsing_is_linear_on_adversarial_input():
    import time

    start = time.perf_counter()
    with pytest.raises(RequestError):
        parse_size("64x64" + " " * 50_000 + "z")
    assert time.perf_counter() - start < 2.0
    assert parse_size("832 x 1216 px ") == (832, 1216)
