"""Reading infotext as A1111, Forge, CivitAI and Loracle write it (texts in the formats'
real layout: one `Key: value` line, values with commas JSON-quoted)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.errors import ImageInputError
from engine.images.parameters import parameters_from_texts, parse_infotext, read_image_parameters
from engine.png_info import format_parameters

A1111_HIRES = """masterpiece, best quality, 1girl, <lora:add_detail:0.6>, (smile:1.2),
standing in a field BREAK blue sky, clouds <lora:watercolor_xl:-0.4>
Negative prompt: lowres, bad anatomy, (worst quality:1.4)
EasyNegative
Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3171446210, Size: 832x1216, \
Model hash: 67ab2fd8ec, Model: ponyDiffusionV6XL_v6StartWithThisOne, Denoising strength: 0.4, Clip skip: 2, \
Hires upscale: 1.5, Hires steps: 12, Hires upscaler: R-ESRGAN 4x+ Anime6B, \
Lora hashes: "add_detail: 7c6bad76eb54, watercolor_xl: 0a1b2c3d4e5f", \
TI hashes: "EasyNegative: c74b4e810b03", ADetailer prompt: "face, smile", Version: v1.10.1"""

FORGE = """score_9, score_8_up, 1girl, solo, looking at viewer
Negative prompt: score_4, score_5
Steps: 25, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 3859205071, Size: 832x1216, \
Model hash: 67ab2fd8ec, Model: ponyDiffusionV6XL_v6StartWithThisOne, VAE hash: 235745af8d, \
VAE: sdxl_vae.safetensors, Clip skip: 2, Version: f2.0.1v1.10.1-previous-313-g8a042934, Module 1: sdxl_vae"""

CIVITAI = """cinematic photo of a red fox in snow, <lora:fox_style_v2:0.7>
Negative prompt: cartoon, painting
Steps: 30, CFG scale: 4, Sampler: DPM++ 2M Karras, Seed: 1402183311, Size: 832x1216, Clip skip: 2, \
Created Date: 2024-07-01T1702:39.1820349Z, Civitai resources: [{"type":"checkpoint","modelVersionId":456194,\
"modelName":"Juggernaut XL","modelVersionName":"Jugg_X_RunDiffusion_Hyper"},{"type":"lora","weight":0.7,\
"modelVersionId":354657,"modelName":"Fox style, by someone","modelVersionName":"v2.0"},{"type":"lora",\
"weight":0.35,"modelVersionId":112233,"modelName":"Film grain","modelVersionName":"v1"}], \
Civitai metadata: {"remixOfId":21716367}"""

CIVITAI_EXTENSION = """a castle on a hill
Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 1024x1024, Model hash: 31e35c80fc, \
Model: sd_xl_base_1.0, Hashes: {"model": "31e35c80fc", "lora:castle": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", "embed:badhands": "1a2b3c4d5e"}, Version: v1.6.0"""


def test_a1111_with_hires_lora_hashes_quotes_multiline_and_break() -> None:
    p = parse_infotext(A1111_HIRES)
    assert p.source == "a1111"
    assert p.prompt == (
        "masterpiece, best quality, 1girl, (smile:1.2),\nstanding in a field BREAK blue sky, clouds"
    )
    assert p.negative == "lowres, bad anatomy, (worst quality:1.4)\nEasyNegative"
    assert (p.steps, p.cfg, p.seed, p.width, p.height, p.clip_skip) == (28, 6.5, 3171446210, 832, 1216, 2)
    assert p.sampler == "DPM++ 2M Karras"
    assert p.checkpoint is not None and (p.checkpoint.name, p.checkpoint.hash) == ("ponyDiffusionV6XL_v6StartWithThisOne", "67ab2fd8ec")
    assert [(l.name, l.hash, l.weight) for l in p.loras] == [
        ("add_detail", "7c6bad76eb54", 0.6),
        ("watercolor_xl", "0a1b2c3d4e5f", -0.4),
    ]
    assert (p.hires, p.hires_steps, p.hires_denoise, p.hires_upscaler, p.denoise) == (1.5, 12, 0.4, "R-ESRGAN 4x+ Anime6B", None)
    assert p.extra["ADetailer prompt"] == "face, smile" and p.extra["Version"] == "v1.10.1"
    assert any("EasyNegative" in w.render("en") for w in p.warnings)


def test_forge_text_and_a1111_automatic_schedule() -> None:
    p = parse_infotext(FORGE)
    assert p.source == "a1111" and p.sampler == "Euler a" and p.loras == []
    assert p.prompt == "score_9, score_8_up, 1girl, solo, looking at viewer"
    assert p.extra["VAE"] == "sdxl_vae.safetensors" and p.hires is None and p.warnings == []


@pytest.mark.parametrize(
    ("sampler", "schedule", "expected"),
    [
        ("DPM++ 2M", "Automatic", "DPM++ 2M Karras"),  # A1111 >= 1.9: Karras is its default
        ("DPM++ 2M", None, "DPM++ 2M"),  # before 1.9: the plain schedule
        ("DPM++ 2M", "Uniform", "DPM++ 2M"),
        ("DPM++ 2M Karras", None, "DPM++ 2M Karras"),
        ("DPM++ SDE", "Karras", "DPM++ SDE Karras"),
        ("Euler a", "Automatic", "Euler a"),
        ("UniPC", None, "UniPC"),
    ],
)
def test_sampler_names_map_to_loracles(sampler: str, schedule: str | None, expected: str) -> None:
    line = f"Steps: 20, Sampler: {sampler}, " + (f"Schedule type: {schedule}, " if schedule else "") + "Seed: 1"
    assert parse_infotext(f"a cat\n{line}").sampler == expected


def test_an_unknown_sampler_warns_and_leaves_the_default() -> None:
    p = parse_infotext("a cat\nSteps: 20, Sampler: Heun++ 9M Turbo, Seed: 1, CFG scale: 5")
    assert p.sampler is None
    assert "Heun++ 9M Turbo" in p.warnings[0].render("en") and "Euler a" in p.warnings[0].render("en")


def test_civitai_generator_resources_give_versions_and_weights() -> None:
    p = parse_infotext(CIVITAI)
    assert p.source == "civitai" and p.prompt == "cinematic photo of a red fox in snow"
    assert p.checkpoint is not None
    assert (p.checkpoint.name, p.checkpoint.hash, p.checkpoint.civitai_version) == ("Juggernaut XL", None, 456194)
    loras = {l.name: l for l in p.loras}
    # the tag's weight and the resource's version id describe the same LoRA once each
    assert loras["fox_style_v2"].weight == 0.7
    assert loras["Fox style, by someone"].civitai_version == 354657
    assert loras["Film grain"].weight == 0.35 and loras["Film grain"].civitai_version == 112233
    assert p.extra["Created Date"].startswith("2024") and "21716367" in p.extra["Civitai metadata"]
    assert p.sampler == "DPM++ 2M Karras" and p.cfg == 4 and p.clip_skip == 2


def test_civitai_extension_hashes_json() -> None:
    p = parse_infotext(CIVITAI_EXTENSION)
    assert p.checkpoint is not None and p.checkpoint.hash == "31e35c80fc"
    assert [(l.name, l.hash) for l in p.loras] == [
        ("castle", "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855")
    ]
    assert any("badhands" in w.render("en") for w in p.warnings)


def test_loracle_own_text_round_trips_field_for_field() -> None:
    text = format_parameters(
        prompt="1girl, <lora:inline:0.5> smile",
        negative="lowres",
        steps=3,
        sampler="DPM++ 2M",
        schedule_type="Karras",
        cfg=5.5,
        seed=4242,
        width=64,
        height=72,
        model_name="loracleDemoXL_v10",
        model_hash="ABCDEF0123456789",
        loras=[("first", 0.7, "111111111111"), ("inline", 0.5, "222222222222")],
        extra={"Clip skip": 3},
    )
    p = parse_infotext(text)
    assert p.source == "loracle" and p.prompt == "1girl, smile"
    assert (p.seed, p.steps, p.cfg, p.width, p.height, p.sampler, p.clip_skip) == (4242, 3, 5.5, 64, 72, "DPM++ 2M Karras", 3)
    assert p.checkpoint is not None and p.checkpoint.hash == "abcdef0123"
    # the order they were applied in, which `Lora hashes` keeps
    assert [(l.name, l.weight, l.hash) for l in p.loras] == [("first", 0.7, "111111111111"), ("inline", 0.5, "222222222222")]


def test_img2img_denoise_without_hires() -> None:
    p = parse_infotext("a cat\nSteps: 20, Sampler: Euler, Seed: 5, Denoising strength: 0.55, Size: 512x512")
    assert p.denoise == 0.55 and p.hires is None and p.hires_denoise is None


def test_hires_resize_gives_the_scale() -> None:
    p = parse_infotext("a cat\nSteps: 20, Seed: 5, Size: 1000x1000, Hires resize: 1500x1500, Hires upscaler: Latent (nearest-exact)")
    assert p.hires == 1.5 and p.hires_upscaler == "latent"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("Steps: 99999999, Seed: 1, CFG scale: 5", "Steps"),
        ("Steps: 20, Seed: 1, CFG scale: nan", "CFG scale"),
        ("Steps: 20, Seed: 1, Size: 0x-5", "Size"),
        ("Steps: 20, Seed: 1.5, Size: 64x64", "Seed"),
        ("Steps: 20, Seed: 1, Clip skip: 400", "Clip skip"),
        ("Steps: 20, Seed: 1, Hires upscale: 1e9", "Hires upscale"),
    ],
)
def test_absurd_values_are_left_out_with_a_warning(line: str, field: str) -> None:
    p = parse_infotext(f"a cat\n{line}")
    assert any(field in w.render("en") for w in p.warnings)
    assert all(w.render("zh-TW") for w in p.warnings)


def test_absurd_lora_weights_are_dropped_and_bad_tags_leave_the_prompt() -> None:
    p = parse_infotext("a cat <lora:a:1e300> <lora:b:nan> <lora:c:zz>\nSteps: 20, Seed: 1, Size: 64x64")
    assert p.prompt == "a cat"
    assert {l.name: l.weight for l in p.loras} == {"a": None, "b": None, "c": None}
    assert len(p.warnings) >= 3


def test_seed_minus_one_means_random() -> None:
    assert parse_infotext("a\nSteps: 20, Seed: -1, Size: 64x64").seed is None


def test_text_without_a_prompt_is_refused() -> None:
    with pytest.raises(ImageInputError):
        parse_infotext("\nSteps: 20, Seed: 1, Size: 64x64")
    with pytest.raises(ImageInputError):
        parameters_from_texts({})


def _jpeg_with_comment(text: str, encoding: str, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    body = text.encode(encoding)
    exif.get_ifd(0x8769)[0x9286] = (b"UNICODE\0" if encoding.startswith("utf-16") else b"ASCII\0\0\0") + body
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buffer, fmt, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("encoding", "fmt"),
    [("utf-16-be", "JPEG"), ("utf-16-le", "JPEG"), ("utf-8", "JPEG"), ("utf-16-be", "WEBP"), ("utf-16-be", "PNG")],
)
def test_jpeg_and_webp_exif_user_comment(encoding: str, fmt: str) -> None:
    text = "夜の街, neon <lora:city:0.8>\nNegative prompt: blurry\nSteps: 24, Sampler: Euler a, CFG scale: 5, Seed: 77, Size: 64x64"
    if encoding == "utf-8":
        text = text.replace("夜の街", "night city")
    p = read_image_parameters(_jpeg_with_comment(text, encoding, fmt))
    assert p.prompt.endswith("neon") and p.negative == "blurry" and p.seed == 77
    assert [(l.name, l.weight) for l in p.loras] == [("city", 0.8)]
    if encoding != "utf-8":
        assert p.prompt.startswith("夜の街")


def test_a_png_is_read_whatever_its_text_chunk_kind() -> None:
    info = PngInfo()
    info.add_itxt("parameters", "猫, cute\nSteps: 20, Seed: 3, Size: 64x64", zip=True)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "PNG", pnginfo=info)
    assert read_image_parameters(buffer.getvalue()).prompt == "猫, cute"
