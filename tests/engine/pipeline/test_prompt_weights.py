"""A1111's prompt syntax: its parser's own docstring examples, and its 75-token chunks."""

from __future__ import annotations

import pytest

from engine.pipeline.prompt_weights import (
    BREAK,
    CHUNK_LENGTH,
    Chunk,
    Vocabulary,
    chunk_fragments,
    chunk_prompt,
    is_plain,
    parse_prompt_attention,
)

# The doctests of parse_prompt_attention in AUTOMATIC1111/stable-diffusion-webui
# modules/prompt_parser.py, float for float.
A1111_EXAMPLES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ],
    ),
]


@pytest.mark.parametrize("text, expected", A1111_EXAMPLES)
def test_parses_like_a1111(text, expected):
    assert parse_prompt_attention(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("((masterpiece)), 1girl", [("masterpiece", 1.1 * 1.1), (", 1girl", 1.0)]),
        ("[blurry]", [("blurry", 1 / 1.1)]),
        ("(red hair: 1.2 ), smile", [("red hair", 1.2), (", smile", 1.0)]),  # spaces around the weight
        ("(x:-0.5)", [("x", -0.5)]),
        ("score:9, rating:safe", [("score:9, rating:safe", 1.0)]),  # a colon alone is text
        ("a (b:1.0) c", [("a b c", 1.0)]),  # weight 1 merges back into plain text
        ("1girl, \\(cosplay\\)", [("1girl, (cosplay)", 1.0)]),
        ("a\\\\b", [("a\\b", 1.0)]),
        ("a) b] c", [("a) b] c", 1.0)]),  # closers without openers are text
        ("", [("", 1.0)]),
        ("sky BREAK sea", [("sky", 1.0), BREAK, ("sea", 1.0)]),
        ("sky\nBREAK\nsea", [("sky", 1.0), BREAK, ("sea", 1.0)]),
        ("BREAKFAST, break", [("BREAKFAST, break", 1.0)]),  # only the capitalised word
    ],
)
def test_a1111_syntax_in_tag_lists(text, expected):
    parsed = parse_prompt_attention(text)
    assert [fragment for fragment, _ in parsed] == [fragment for fragment, _ in expected]
    assert [weight for _, weight in parsed] == pytest.approx([weight for _, weight in expected])


def test_plain_means_read_as_written():
    assert is_plain("1girl, solo, score:9, smile")
    for text in ("(1girl)", "(1girl:1.0)", "[x]", "a\\(b", "a BREAK b"):
        assert not is_plain(text)


VOCAB = Vocabulary(start=1000, end=1001, pad=0, comma=9)


def tokens(chunk: Chunk) -> list[int]:
    return list(chunk.prompt_tokens)


def test_a_chunk_is_start_prompt_end_then_padding():
    (chunk,) = chunk_fragments([("ab", 1.0), ("c", 1.5)], [[5, 6], [7]], VOCAB)
    assert len(chunk.tokens) == len(chunk.weights) == CHUNK_LENGTH + 2
    assert chunk.tokens[:5] == (1000, 5, 6, 7, 1001) and set(chunk.tokens[5:]) == {0}
    assert chunk.weights[:5] == (1.0, 1.0, 1.0, 1.5, 1.0) and set(chunk.weights[5:]) == {1.0}
    assert chunk.weighted and chunk.length == 3
    # CLIP-L pads with its end token, as A1111 and diffusers do
    (padded,) = chunk_fragments([("ab", 1.0)], [[5, 6]], Vocabulary(start=1000, end=1001, pad=1001, comma=9))
    assert padded.tokens[3:] == (1001,) * 74 and not padded.weighted


def test_an_empty_prompt_is_one_empty_chunk():
    (chunk,) = chunk_fragments([("", 1.0)], [[]], VOCAB)
    assert chunk == Chunk.empty(VOCAB) and chunk.tokens[:3] == (1000, 1001, 0) and chunk.length == 0


def test_75_tokens_fit_one_chunk_76_need_two():
    assert len(chunk_fragments([("x", 1.0)], [[5] * 75], VOCAB)) == 1
    first, second = chunk_fragments([("x", 1.0)], [[5] * 76], VOCAB)
    assert first.length == 75 and tokens(second) == [5]


def test_a_tag_that_would_straddle_two_chunks_moves_whole_to_the_next():
    # 70 tokens, a comma, then a 10-token tag: the tag starts 5 tokens before the end
    # (within A1111's 20), so the first chunk ends at the comma and the tag goes on.
    ids = [5] * 70 + [9] + list(range(100, 110))
    first, second = chunk_fragments([("x", 1.0)], [ids], VOCAB)
    assert tokens(first) == [5] * 70 + [9]
    assert tokens(second) == list(range(100, 110))


def test_the_moved_tag_keeps_its_weight():
    parsed = [("a", 1.0), ("b", 1.3)]
    first, second = chunk_fragments(parsed, [[5] * 70 + [9], list(range(100, 110))], VOCAB)
    assert second.weights[1 : 1 + second.length] == (1.3,) * 10
    assert first.weights[1 : 1 + first.length] == (1.0,) * 71


def test_a_comma_further_back_than_20_tokens_does_not_move_anything():
    ids = [5] * 50 + [9] + list(range(100, 130))  # 24 tokens follow the comma in the full chunk
    first, second = chunk_fragments([("x", 1.0)], [ids], VOCAB)
    assert first.length == 75 and tokens(second) == list(range(124, 130))


def test_break_starts_a_new_chunk():
    parsed = parse_prompt_attention("a BREAK b")
    first, second = chunk_fragments(parsed, [[5], [77], [6]], VOCAB)  # "BREAK"'s own ids are unused
    assert tokens(first) == [5] and tokens(second) == [6]
    # a leading BREAK leaves an empty first chunk, as in A1111
    empty, rest = chunk_fragments(parse_prompt_attention("BREAK b"), [[], [77], [6]], VOCAB)
    assert empty == Chunk.empty(VOCAB) and tokens(rest) == [6]


def test_chunks_with_the_real_tokenizer(tiny_pipe):
    tokenizer = tiny_pipe.tokenizer
    first, second = chunk_prompt("masterpiece, 1girl BREAK (blue hair:1.2)", tokenizer)
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    head = tokenizer("masterpiece, 1girl", add_special_tokens=False)["input_ids"]
    assert head[1] == comma
    assert tokens(first) == head and not first.weighted
    assert tokens(second) == tokenizer("blue hair", add_special_tokens=False)["input_ids"]
    assert second.weights[1 : 1 + second.length] == (1.2, 1.2)
    assert first.tokens[0] == tokenizer.bos_token_id and first.tokens[1 + first.length] == tokenizer.eos_token_id


def test_a_long_tag_list_is_cut_at_a_comma(tiny_pipe):
    # 37 x "masterpiece," is 74 tokens; "blue hair" would straddle the 75-token line.
    prompt = "masterpiece, " * 37 + "blue hair, smile"
    first, second = chunk_prompt(prompt, tiny_pipe.tokenizer)
    assert first.length == 74
    assert tiny_pipe.tokenizer.decode(list(second.prompt_tokens)) == "blue hair , smile"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("(hair:1.2.)", [("hair:1.2.", 1.1)]),
        ("(a:.)", [("a:.", 1.1)]),
        ("(a:1.2.3), b", [("a:1.2.3", 1.1), (", b", 1.0)]),
        ("(a:1.)", [("a", 1.0)]),
        ("(a:.5)", [("a", 0.5)]),
    ],
)
def test_a_weight_that_is_no_number_stays_text(text, expected):
    # found by tests/fuzz: A1111's closer took any run of dots and digits, and
    # float("1.2.") raised ValueError out of the parser
    assert parse_prompt_attention(text) == expected


def test_attention_parsing_is_fast_on_adversarial_prompts() -> None:
    import time

    # linear: a quadratic pass over this many characters takes tens of seconds
    for prompt in (" " * 100_000 + "x", "a" + " " * 50_000 + "BREAK" + " " * 50_000 + "b", ":" * 30_000):
        start = time.perf_counter()
        parse_prompt_attention(prompt)
        assert time.perf_counter() - start < 2.0


def test_break_takes_the_spaces_around_it() -> None:
    assert parse_prompt_attention("a  \n BREAK \t b") == [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]
    assert parse_prompt_attention("a BREAK BREAK b") == [("a", 1.0), ("BREAK", -1.0), ("", 1.0), ("BREAK", -1.0), ("b", 1.0)]
