"""A1111 prompt syntax: attention weights, BREAK and 75-token chunks, as A1111 reads them.

Prompts pasted from CivitAI are written for A1111 (and Forge, which reads them the same
way): `(tag)` is 1.1 times the attention, `((tag))` 1.21, `[tag]` 1/1.1, `(tag:1.3)` 1.3,
`\\(` a literal parenthesis, and `BREAK` starts a new chunk. A prompt longer than CLIP's
window is cut into chunks of 75 tokens, each encoded on its own and laid side by side, so
nothing is lost. This module is the text half: it turns a prompt into chunks of token ids and
per-token weights; `prompt_encoder` turns those into the text encoders' embeddings.

Ported from AUTOMATIC1111/stable-diffusion-webui: `modules/prompt_parser.py`
(parse_prompt_attention) and `modules/sd_hijack_clip.py` (TextConditionalModel.tokenize_line,
empty_chunk), with A1111's defaults: emphasis "Original", comma_padding_backtrack 20.
Textual-inversion embeddings, which A1111 also resolves there, are not supported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Prompt tokens per chunk: CLIP reads 77, one start and one end token around them.
CHUNK_LENGTH = 75
# Chunks the text encoders read; tokens past them are dropped (prompt_encoder says so).
MAX_CHUNKS = 32
# A1111's "Prompt word wrap length limit": when a chunk fills up, a tag begun at most this
# many tokens after the last comma moves whole to the next chunk instead of being split.
COMMA_BACKTRACK = 20

_ROUND = 1.1
_SQUARE = 1 / 1.1

# A1111's re_attention, token for token: escapes, brackets, a `:weight)` closer, plain text,
# and a lone colon (so "score:9" stays text). The closer takes any run of dots and digits,
# as A1111's does, so planning can name "(hair:1.2.)" as a typo instead of drawing it.
ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
# The whitespace around a BREAK goes too, stripped by hand: `\s*\bBREAK\b\s*` would try
# every start inside a long run of spaces (quadratic in its length).
_BREAK = re.compile(r"\bBREAK\b")
# A1111 marks a BREAK in the parsed list as the text "BREAK" with weight -1.
BREAK = ("BREAK", -1.0)


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split `text` into (fragment, weight) pairs exactly as A1111's function of this name.

    Runs of equal weight are merged; unbalanced brackets weigh until the end of the text
    (each one rescales what follows it, so planning bounds how many can be open);
    `BREAK` (a whole word, in capitals) comes back as `BREAK`, ("BREAK", -1.0). An empty
    text gives [("", 1.0)].
    """
    res: list[list[Any]] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for match in ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece == "(":
            round_brackets.append(len(res))
        elif piece == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            value = attention_weight(weight)
            if value is None:  # "(hair:1.2.)": A1111 raises; the typo stays text instead
                res.append([piece[:-1].rstrip(), 1.0])
                value = _ROUND
            multiply_range(round_brackets.pop(), value)
        elif piece == ")" and round_brackets:
            multiply_range(round_brackets.pop(), _ROUND)
        elif piece == "]" and square_brackets:
            multiply_range(square_brackets.pop(), _SQUARE)
        else:
            parts = _BREAK.split(piece)
            for i, part in enumerate(parts):
                if i > 0:
                    res.append(list(BREAK))
                    part = part.lstrip()
                if i + 1 < len(parts):
                    part = part.rstrip()
                res.append([part, 1.0])

    for pos in round_brackets:
        multiply_range(pos, _ROUND)
    for pos in square_brackets:
        multiply_range(pos, _SQUARE)
    if not res:
        res = [["", 1.0]]

    # Merge runs of identical weights in one pass (A1111 pops from the list, which is
    # quadratic in the number of fragments: 100 000 colons took seconds).
    merged: list[tuple[list[str], float]] = []
    for fragment, weight in res:
        if merged and merged[-1][1] == weight:
            merged[-1][0].append(fragment)
        else:
            merged.append(([fragment], weight))
    return [("".join(parts), float(weight)) for parts, weight in merged]


def attention_weight(text: str) -> float | None:
    """The number in `(tag:1.3)`, or None for what A1111's pattern also takes but is no
    number ("1.2.3", "."). Planning refuses those first (engine.planning.prompt_checks)."""
    try:
        return float(text)
    except ValueError:
        return None


def is_plain(text: str) -> bool:
    """True when A1111 would read `text` as written: no weights, escapes or BREAK."""
    return parse_prompt_attention(text) == [(text, 1.0)]


@dataclass(frozen=True)
class Vocabulary:
    """The token ids chunking needs from one tokenizer.

    `pad` fills a chunk after its end token. A1111 pads CLIP-L with the end token and
    OpenCLIP-G with 0 (`id_pad` in sd_hijack_open_clip.py); SDXL's tokenizers say the same
    through their pad tokens ("<|endoftext|>" and "!", id 0), which diffusers pads with too.
    """

    start: int
    end: int
    pad: int
    comma: int

    @classmethod
    def of(cls, tokenizer: Any) -> Vocabulary:
        pad = tokenizer.pad_token_id
        return cls(
            start=tokenizer.bos_token_id,
            end=tokenizer.eos_token_id,
            pad=tokenizer.eos_token_id if pad is None else pad,
            # A1111's comma_token; an unknown token reads as the end token, never in a prompt.
            comma=tokenizer.convert_tokens_to_ids(",</w>"),
        )


@dataclass(frozen=True)
class Chunk:
    """One window of the text encoder: 77 token ids (start, 75 prompt or padding, end)
    and the attention weight of each; `length` is how many of them are the prompt's."""

    tokens: tuple[int, ...]
    weights: tuple[float, ...]
    length: int

    @property
    def weighted(self) -> bool:
        return any(w != 1.0 for w in self.weights)

    @property
    def prompt_tokens(self) -> tuple[int, ...]:
        return self.tokens[1 : 1 + self.length]

    @classmethod
    def build(cls, tokens: list[int], weights: list[float], vocab: Vocabulary) -> Chunk:
        # A1111 fills with end tokens, then (where pad differs) overwrites everything after
        # the first end token with pad: start, prompt, end, pad... in effect.
        fill = CHUNK_LENGTH - len(tokens)
        return cls(
            tokens=(vocab.start, *tokens, vocab.end, *[vocab.pad] * fill),
            weights=(1.0, *weights, *[1.0] * fill, 1.0),
            length=len(tokens),
        )

    @classmethod
    def empty(cls, vocab: Vocabulary) -> Chunk:
        """A1111's empty_chunk: what an empty prompt encodes to, used to pad."""
        return cls.build([], [], vocab)


def chunk_prompt(text: str, tokenizer: Any) -> list[Chunk]:
    """`text` as A1111 feeds it to one text encoder: at least one chunk, as many as needed."""
    parsed = parse_prompt_attention(text)
    ids = tokenizer([fragment for fragment, _ in parsed], add_special_tokens=False, truncation=False, verbose=False)
    return chunk_fragments(parsed, ids["input_ids"], Vocabulary.of(tokenizer))


def chunk_fragments(
    parsed: list[tuple[str, float]], tokenized: list[list[int]], vocab: Vocabulary
) -> list[Chunk]:
    """A1111's tokenize_line, given each fragment's token ids: fill chunks of 75 tokens,
    break at BREAK, and at a full chunk move the tokens after a comma less than
    COMMA_BACKTRACK tokens back into the next chunk, so a tag is not cut in two."""
    chunks: list[Chunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def next_chunk() -> None:
        nonlocal tokens, weights, last_comma
        chunks.append(Chunk.build(tokens, weights, vocab))
        tokens, weights, last_comma = [], [], -1

    for ids, (fragment, weight) in zip(tokenized, parsed, strict=True):
        if (fragment, weight) == BREAK:
            next_chunk()
            continue
        for token in ids:
            if token == vocab.comma:
                last_comma = len(tokens)
            elif (
                COMMA_BACKTRACK
                and len(tokens) == CHUNK_LENGTH
                and last_comma != -1
                and len(tokens) - last_comma <= COMMA_BACKTRACK
            ):
                cut = last_comma + 1
                moved, moved_weights = tokens[cut:], weights[cut:]
                tokens, weights = tokens[:cut], weights[:cut]
                next_chunk()
                tokens, weights = moved, moved_weights
            if len(tokens) == CHUNK_LENGTH:
                next_chunk()
            tokens.append(token)
            weights.append(weight)
    if tokens or not chunks:
        next_chunk()
    return chunks
