"""Fuzzing /draw's options as Discord delivers them: size strings, LoRA lists with
weights, prompts; a bad one must come back as a RequestError the user can read."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.discord_app.parsing import DrawOptions, build_request, parse_size
from engine.errors import RequestError
from engine.requests import DrawRequest
from tests.fuzz._support import lora_lists, own_errors_only, prompts

_size_pieces = st.sampled_from(
    [
        "832",
        "1216",
        "x",
        "×",
        "X",
        "*",
        ",",
        " ",
        "px",
        "８３２",
        "ｘ",
        "٨٣٢",
        "0",
        "99999",
        "123456",
        "-",
        "\u200b",
    ]
) | st.text(max_size=4)
sizes = st.lists(_size_pieces, max_size=6).map("".join) | st.text(max_size=30)


@given(text=sizes)
def test_size_strings(text):
    result = own_errors_only(parse_size, text)
    if isinstance(result, tuple):
        width, height = result
        assert 10 <= width <= 99999 and 10 <= height <= 99999
    else:
        assert isinstance(result, RequestError)


@given(
    width=st.integers(10, 99999),
    height=st.integers(10, 99999),
    sep=st.sampled_from(["x", "X", "×", "*", ",", " x ", "ｘ"]),
    px=st.booleans(),
)
def test_sizes_read_back(width, height, sep, px):
    assert parse_size(f"{width}{sep}{height}{'px' if px else ''}") == (width, height)


_texts = st.none() | prompts | st.text(max_size=40)


@given(
    prompt=prompts,
    negative=_texts,
    checkpoint=_texts,
    loras=st.none() | lora_lists,
    size=st.none() | sizes,
    numbers=st.tuples(*[st.none() | st.integers(-(2**63), 2**63)] * 3),
    cfg=st.none() | st.floats(),
    max_loras=st.integers(0, 8),
    max_prompt_chars=st.integers(1, 300),
)
def test_draw_options(prompt, negative, checkpoint, loras, size, numbers, cfg, max_loras, max_prompt_chars):
    steps, seed, count = numbers
    options = DrawOptions(
        prompt=prompt,
        negative=negative,
        checkpoint=checkpoint,
        loras=loras,
        size=size,
        steps=steps,
        cfg=cfg,
        seed=seed,
        count=count,
    )
    result = own_errors_only(
        build_request,
        options,
        user_id="1",
        scope=None,
        origin=None,
        locale="en-US",
        allow_nsfw=False,
        max_loras=max_loras,
        max_prompt_chars=max_prompt_chars,
    )
    if isinstance(result, DrawRequest):
        assert len(result.loras) <= max_loras
        # what the queue stores reads back the same
        assert DrawRequest.from_json(result.to_json()) == result
    else:
        assert isinstance(result, RequestError)
