"""Fuzzing A1111 infotext: the `parameters` text we write into PNGs (and CivitAI reads),
read back field for field, and random text and PNG text chunks read without failing."""

from __future__ import annotations

import io
import math
import zlib
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.png_info import (
    PARAMETERS_KEY,
    LoraUse,
    format_number,
    format_parameters,
    lora_alias,
    lora_tags,
    parse_lora_hashes,
    parse_parameters,
    prompt_with_loras,
    read_parameters,
)

_pieces = st.sampled_from(
    [
        "Steps: 20", "Sampler: Euler a", ", ", ": ", "\n", "Negative prompt:", '"', '\\"', "<lora:x:0.5>",
        "<lora:a:b:c>", "Lora hashes: ", '"a: 0123456789ab, b: ffffffffffff"', "Size: 1x1", ",,", "::",
        "\r\n", "Seed: -1", "Model hash: zz", "<lora::>", "<lora:x:nan>", "<lora:y:1e999>",
    ]
)  # fmt: skip
infotexts = st.lists(_pieces | st.text(max_size=8), max_size=30).map("".join) | st.text(max_size=300)


@given(text=infotexts)
def test_any_infotext_is_read(text):
    fields = parse_parameters(text)
    assert isinstance(fields["Prompt"], str) and isinstance(fields["Negative prompt"], str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    for value in fields.values():
        pairs = parse_lora_hashes(value)
        assert all(k and isinstance(v, str) for k, v in pairs.items())
    for name, weight in lora_tags(fields["Prompt"]):
        assert name and isinstance(weight, float)


# --- format -> parse --------------------------------------------------------------------

# Prompts as the reader gives them back: A1111's reader strips each line (and the whole
# text), so edge whitespace is not kept, in A1111 as here.
_line_text = (
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r"), max_size=30)
    .map(str.strip)
    .filter(bool)
)
_multiline = st.lists(_line_text, max_size=3).map("\n".join)
_hex = st.text(alphabet="0123456789abcdefABCDEF", min_size=12, max_size=64)
_words = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20)
_finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(
    prompt=_multiline,
    negative=_multiline,
    steps=st.integers(1, 10_000),
    sampler=_words,
    cfg=_finite,
    seed=st.integers(-(2**63), 2**64),
    width=st.integers(1, 16384),
    height=st.integers(1, 16384),
    model_name=st.none() | _words,
    model_hash=st.none() | _hex,
    loras=st.lists(
        st.tuples(_words, _finite, st.none() | _hex), max_size=4, unique_by=lambda l: lora_alias(l[0])
    ),
    clip_skip=st.none() | st.integers(1, 12),
)
def test_format_then_parse_gives_the_fields_back(
    prompt, negative, steps, sampler, cfg, seed, width, height, model_name, model_hash, loras, clip_skip
):
    # A line of the prompt that starts like the negative prompt's is read as it, in A1111
    # as here; and a value equal to its key is written as a bare flag.
    assume(not any(line.strip().startswith("Negative prompt:") for line in prompt.split("\n")))
    assume(sampler != "Sampler" and model_name != "Model")
    text = format_parameters(
        prompt=prompt,
        negative=negative,
        steps=steps,
        sampler=sampler,
        cfg=cfg,
        seed=seed,
        width=width,
        height=height,
        model_name=model_name,
        model_hash=model_hash,
        loras=loras,
        extra={"Clip skip": clip_skip} if clip_skip else None,
    )
    fields = parse_parameters(text)
    uses = [LoraUse(*lora) for lora in loras]
    assert fields["Prompt"] == prompt_with_loras(prompt, uses)
    assert fields["Negative prompt"] == negative
    assert fields["Steps"] == str(steps) and fields["Seed"] == str(seed)
    assert fields["Sampler"] == sampler
    assert fields["Size"] == f"{width}x{height}"
    assert math.isclose(float(fields["CFG scale"]), round(cfg, 4), abs_tol=1e-9)
    assert fields.get("Model") == (model_name or None)
    assert fields.get("Model hash") == (model_hash[:10].lower() if model_hash else None)
    assert fields.get("Clip skip") == (str(clip_skip) if clip_skip else None)
    hashed = {lora_alias(n): h[:12].lower() for n, _, h in loras if h}
    assert parse_lora_hashes(fields.get("Lora hashes", "")) == hashed
    tags = dict(lora_tags(fields["Prompt"]))
    for name, weight, _ in loras:
        if lora_alias(name) not in {lora_alias(n) for n, _ in lora_tags(prompt)}:
            assert tags[lora_alias(name)] == float(format_number(weight))


# --- PNG text chunks --------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-png") / "image.png"


_keys = st.sampled_from([PARAMETERS_KEY, "Parameters", "prompt", "workflow", "Comment"]) | st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=20
)


@given(
    chunks=st.lists(
        st.tuples(_keys, st.text(max_size=200).filter(lambda t: "\x00" not in t), st.booleans()), max_size=4
    )
)
def test_png_text_chunks(scratch, chunks):
    info = PngInfo()
    for key, value, compressed in chunks:
        info.add_text(key, value, zip=compressed)
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG", pnginfo=info)
    scratch.write_bytes(buffer.getvalue())
    found = read_parameters(scratch)
    written = [v for k, v, _ in chunks if k == PARAMETERS_KEY]
    # the last chunk of that name wins, as Pillow reads them
    assert found == (written[-1] if written else None)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


@given(kind=st.sampled_from([b"tEXt", b"zTXt", b"iTXt"]), data=st.binary(max_size=120))
def test_hand_made_text_chunks(scratch, kind, data):
    # chunks no writer of ours makes: no separator, bad compression, odd encodings
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    png = buffer.getvalue()
    at = png.index(b"IDAT") - 4
    scratch.write_bytes(png[:at] + _chunk(kind, b"parameters\x00" + data) + png[at:])
    found = read_parameters(scratch)
    assert found is None or isinstance(found, str)
