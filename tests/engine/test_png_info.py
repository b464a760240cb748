from __future__ import annotations

import os
import stat
import zlib

import pytest
from PIL import Image

from engine.png_info import (
    DEFAULT_VERSION,
    LoraUse,
    format_number,
    format_parameters,
    lora_tags,
    parse_lora_hashes,
    parse_parameters,
    prompt_with_loras,
    quote,
    read_parameters,
    save_png,
    short_hash,
)

SHA_MODEL = "1A2B3C4D5E" + "F" * 54
LORAS = [
    LoraUse("add_detail", 0.8, "0123456789ABCDEF" + "0" * 48),
    LoraUse("style,v2:beta", -0.5, "abcdefabcdef"),
    LoraUse("no_hash_known", 1.0),
]


def example(**overrides) -> str:
    kwargs = dict(
        prompt="1girl, solo, looking at viewer",
        negative="lowres, bad anatomy",
        steps=28,
        sampler="Euler a",
        cfg=6.0,
        seed=12345,
        width=1024,
        height=1024,
        model_hash=SHA_MODEL,
        model_name="novaOrangeXL_v90",
        loras=LORAS,
    )
    kwargs.update(overrides)
    return format_parameters(**kwargs)


def test_layout_is_exactly_what_a1111_writes():
    assert example() == (
        "1girl, solo, looking at viewer <lora:add_detail:0.8> <lora:stylev2beta:-0.5> "
        "<lora:no_hash_known:1>\n"
        "Negative prompt: lowres, bad anatomy\n"
        "Steps: 28, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6, Seed: 12345, "
        "Size: 1024x1024, Model hash: 1a2b3c4d5e, Model: novaOrangeXL_v90, "
        'Lora hashes: "add_detail: 0123456789ab, stylev2beta: abcdefabcdef", '
        f"Version: {DEFAULT_VERSION}"
    )
    assert DEFAULT_VERSION == "loracle 0.1.0"


def test_loras_may_be_given_as_tuples():
    as_tuples = [(lora.name, lora.weight, lora.hash) for lora in LORAS]
    assert example(loras=as_tuples) == example()


def test_optional_parts_are_left_out():
    text = format_parameters(prompt="a cat", steps=20, sampler="DPM++ 2M", cfg=7.5,
                             seed=1, width=832, height=1216, schedule_type="Karras",
                             version=None)
    assert text == ("a cat\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, "
                    "Seed: 1, Size: 832x1216")


def test_values_with_commas_colons_or_newlines_are_json_quoted():
    text = example(model_name='model, "v2": final', loras=(), extra={"Clip skip": 2,
                                                                     "Note": "plain"})
    last = text.splitlines()[-1]
    assert 'Model: "model, \\"v2\\": final"' in last
    assert "Clip skip: 2, Note: plain, Version" in last
    assert quote("no separators") == "no separators"
    assert quote("a:b") == '"a:b"'
    assert quote("multi\nline") == '"multi\\nline"'
    assert quote(12) == 12


def test_round_trip_through_the_parser():
    prompt = "明亮的湖泊, soft light\nsecond line"
    negative = "模糊, watermark\nmore, negatives"
    text = example(prompt=prompt, negative=negative,
                   model_name="Model: with, separators")
    parsed = parse_parameters(text)
    assert parsed["Prompt"] == prompt_with_loras(prompt, LORAS)
    assert parsed["Negative prompt"] == negative
    assert parsed["Steps"] == "28" and parsed["Sampler"] == "Euler a"
    assert parsed["Schedule type"] == "Automatic" and parsed["CFG scale"] == "6"
    assert parsed["Seed"] == "12345" and parsed["Size"] == "1024x1024"
    assert parsed["Model hash"] == "1a2b3c4d5e"
    assert parsed["Model"] == "Model: with, separators"
    assert parse_lora_hashes(parsed["Lora hashes"]) == {
        "add_detail": "0123456789ab", "stylev2beta": "abcdefabcdef"}
    assert parsed["Version"] == DEFAULT_VERSION
    assert lora_tags(parsed["Prompt"]) == [
        ("add_detail", 0.8), ("stylev2beta", -0.5), ("no_hash_known", 1.0)]


# An infotext as AUTOMATIC1111 v1.9 writes it (SD 1.5 hires-fix run with a LoRA and an
# embedding): quoted hash lists, extension keys, a negative prompt with weights.
A1111_INFOTEXT = (
    "masterpiece, best quality, 1girl, solo, (looking at viewer:1.2), <lora:add_detail:0.5>\n"
    "Negative prompt: (worst quality, low quality:1.4), EasyNegative\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 2775463165, "
    "Size: 512x768, Model hash: 7f96a1a9ca, Model: anything-v5, VAE hash: 735e4c3a44, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.5, Clip skip: 2, "
    "Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "add_detail: 7c6bad76eb54", TI hashes: "EasyNegative: c74b4e810b03", '
    "Downcast alphas_cumprod: True, Version: v1.9.4"
)


def test_parses_a_real_a1111_infotext():
    parsed = parse_parameters(A1111_INFOTEXT)
    assert parsed["Prompt"].startswith("masterpiece, best quality")
    assert parsed["Negative prompt"] == "(worst quality, low quality:1.4), EasyNegative"
    assert parsed["Sampler"] == "DPM++ 2M" and parsed["Schedule type"] == "Karras"
    assert parsed["Seed"] == "2775463165" and parsed["Size"] == "512x768"
    assert parsed["Model hash"] == "7f96a1a9ca" and parsed["Model"] == "anything-v5"
    assert parsed["Hires upscaler"] == "R-ESRGAN 4x+ Anime6B"
    assert parse_lora_hashes(parsed["Lora hashes"]) == {"add_detail": "7c6bad76eb54"}
    assert parsed["TI hashes"] == "EasyNegative: c74b4e810b03"
    assert parsed["Downcast alphas_cumprod"] == "True"
    assert parsed["Version"] == "v1.9.4"
    assert lora_tags(parsed["Prompt"]) == [("add_detail", 0.5)]


def test_text_without_a_parameter_line_is_all_prompt():
    assert parse_parameters("just a prompt, nothing else") == {
        "Prompt": "just a prompt, nothing else", "Negative prompt": ""}


def test_loras_already_in_the_prompt_are_not_repeated():
    prompt = "a cat <lora:add_detail:0.3>"
    assert prompt_with_loras(prompt, LORAS[:1]) == prompt
    assert prompt_with_loras("", LORAS[:1]) == "<lora:add_detail:0.8>"
    assert prompt_with_loras("x", []) == "x"


def test_numbers_are_written_the_way_people_write_them():
    assert [format_number(v) for v in (6.0, 7, 0.75, 0.1 + 0.2, -0.5, -0.0, 1.23456789)] == [
        "6", "7", "0.75", "0.3", "-0.5", "0", "1.2346"]
    with pytest.raises(TypeError):
        format_number(True)


def test_hashes_are_validated_and_shortened():
    assert short_hash(SHA_MODEL, 10) == "1a2b3c4d5e"
    assert short_hash(" ABCDEF012345 ", 12) == "abcdef012345"
    for bad in ("xyz", "12345", ""):
        with pytest.raises(ValueError):
            short_hash(bad, 10)


def _chunk_types(data: bytes) -> list[bytes]:
    types, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset:offset + 4], "big")
        types.append(data[offset + 4:offset + 8])
        offset += 12 + length
    return types


def test_save_png_writes_a_readable_parameters_chunk(tmp_path):
    text = example()
    path = save_png(Image.new("RGB", (8, 8), "red"), tmp_path / "out" / "a.png", text)
    assert path == tmp_path / "out" / "a.png"
    assert read_parameters(path) == text
    data = path.read_bytes()
    assert b"tEXt" in _chunk_types(data) and b"tEXtparameters\x00" in data  # Latin-1: tEXt
    with Image.open(path) as image:
        assert image.size == (8, 8) and image.getpixel((0, 0)) == (255, 0, 0)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.png"]


def test_save_png_uses_itxt_for_chinese_text(tmp_path):
    text = example(prompt="一隻貓, 水彩")
    path = save_png(Image.new("RGBA", (4, 4)), tmp_path / "zh.png", text)
    assert read_parameters(path) == text
    assert b"iTXt" in _chunk_types(path.read_bytes())


def test_save_png_replaces_atomically_and_leaves_no_debris_on_failure(tmp_path):
    path = save_png(Image.new("RGB", (4, 4)), tmp_path / "a.png", "old")
    with pytest.raises(OSError):
        save_png(Image.new("CMYK", (4, 4)), path, "new")  # PNG cannot hold CMYK
    assert read_parameters(path) == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    save_png(Image.new("RGB", (4, 4)), path, "new")
    assert read_parameters(path) == "new"


def test_read_parameters_of_a_png_without_them(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (2, 2)).save(path)
    assert read_parameters(path) is None


@pytest.mark.parametrize("value", ['"quoted"', '"', " leading space", "trailing space ", '"a" b'])
def test_values_the_reader_would_change_are_quoted(value):
    # found by tests/fuzz: a model or sampler name like "x" (in quotes) came back as x, and
    # edge spaces were lost
    text = format_parameters(prompt="p", steps=1, sampler=value, cfg=1, seed=1, width=1, height=1, model_name=value)
    fields = parse_parameters(text)
    assert fields["Sampler"] == value and fields["Model"] == value


def test_a_damaged_png_has_no_parameters(tmp_path):
    # found by tests/fuzz: a zTXt chunk with an unknown compression method, or a cut-off
    # file, made Pillow raise UnidentifiedImageError / OSError out of read_parameters
    good = save_png(Image.new("RGB", (2, 2)), tmp_path / "a.png", "Steps: 1")
    data = good.read_bytes()
    at = data.index(b"IDAT") - 4
    body = b"parameters\x00\x01"
    chunk = len(body).to_bytes(4, "big") + b"zTXt" + body + zlib.crc32(b"zTXt" + body).to_bytes(4, "big")
    (tmp_path / "bad.png").write_bytes(data[:at] + chunk + data[at:])
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_bytes(b"not an image")
    for name in ("bad.png", "cut.png", "text.png"):
        assert read_parameters(tmp_path / name) is None
    with pytest.raises(FileNotFoundError):
        read_parameters(tmp_path / "missing.png")
