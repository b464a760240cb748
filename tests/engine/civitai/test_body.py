from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.civitai.body import MAX_DEPTH, BadBody, check_depth, decode_json


def test_real_bodies_decode():
    assert decode_json(b'{"id": 1, "x": [1.5, "\\u00e9", null, true]}') == {"id": 1, "x": [1.5, "é", None, True]}
    assert decode_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "[" * 100_000 + "]" * 100_000,
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        "NaN",
        "-Infinity",
        "[1e400]",
        "1" * 31,
        "{bad",
        "",
    ],
)
def test_hostile_text_is_a_bad_body(text: str):
    with pytest.raises(BadBody):
        decode_json(text)


def test_size_and_encoding_limits():
    with pytest.raises(BadBody):
        decode_json(b'"\xff"')
    with pytest.raises(BadBody):
        decode_json('"' + "a" * 100 + '"', max_chars=50)


def test_brackets_inside_strings_do_not_count():
    text = '{"a": "' + "[" * 10_000 + '"}'
    assert decode_json(text) == {"a": "[" * 10_000}


def test_check_depth_is_iterative():
    value: list[object] = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(BadBody):
        check_depth(value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=2000))
def test_anything_is_a_value_or_a_bad_body(data: bytes | str):
    started = time.monotonic()
    with contextlib.suppress(BadBody):  # any other exception fails the test
        decode_json(data)
    assert time.monotonic() - started < 1.0
