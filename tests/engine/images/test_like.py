"""A request rebuilt from a picture: what the library cannot give is left out with a note,
and what the limits forbid is brought within them (the demo library, no drawing)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.api import Engine
from engine.settings import Settings

CKPT = "loracleDemoXL_v10"


def png(parameters: str) -> bytes:
    info = PngInfo()
    info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.fixture
async def engine(demo_settings: Settings):
    engine = Engine(demo_settings)
    await engine.scan(civitai=False)
    engine.set_entry(CKPT, base_model="Illustrious")
    yield engine
    await engine.close()


async def test_incompatible_and_nsfw_loras_are_left_out_with_notes(engine: Engine) -> None:
    engine.set_entry("demo_pony_style", nsfw=True)
    text = (
        "1girl <lora:demo_sd15_detail:0.8> <lora:demo_pony_style:0.5> <lora:demo_exact_style:0.6>\n"
        f"Steps: 20, Sampler: Euler a, Seed: 1, Size: 64x64, Model: {CKPT}"
    )
    like = await engine.like_request(png(text), user_id="u", allow_nsfw=False)
    assert [(l.name, l.weight) for l in like.request.loras] == [("demo_exact_style", 0.6)]
    notes = " | ".join(w.render("en") for w in like.warnings)
    assert "demo_sd15_detail" in notes and "incompatible" in notes and "demo_pony_style" in notes and "NSFW" in notes
    # where NSFW is allowed, the NSFW one stays
    allowed = await engine.like_request(png(text), user_id="u")
    assert [l.name for l in allowed.request.loras] == ["demo_pony_style", "demo_exact_style"]
    info = await engine.image_info(png(text), allow_nsfw=False)
    assert any("NSFW" in w.render("en") for w in info.warnings)


async def test_more_loras_than_allowed_and_sizes_off_the_grid(engine: Engine) -> None:
    names = ["demo_exact_style", "demo_noob_character", "demo_pony_style", "demo_mystery"]
    engine.settings.max_loras = 2
    tags = " ".join(f"<lora:{n}:0.5>" for n in names)
    like = await engine.like_request(png(f"a cat {tags}\nSteps: 20, Seed: 1, Size: 100x70, CFG scale: 45"), user_id="u")
    request = like.request
    assert [l.name for l in request.loras] == names[:2]
    assert (request.width, request.height, request.cfg) == (96, 64, 30)
    notes = " | ".join(w.render("en") for w in like.warnings)
    assert "4 LoRAs" in notes and "width 100" in notes and "CFG 45" in notes
    assert all(w.render("zh-TW") for w in like.warnings)


async def test_a_picture_drawn_without_hires_is_redrawn_without_it(engine: Engine) -> None:
    plain = await engine.like_request(png("a cat\nSteps: 20, Seed: 1, Size: 64x64"), user_id="u")
    assert plain.request.hires == 1.0 and plain.request.kind == "draw"
    hires = await engine.like_request(
        png("a cat\nSteps: 20, Seed: 1, Size: 64x64, Hires upscale: 2, Hires steps: 5, Denoising strength: 0.3"),
        user_id="u",
    )
    r = hires.request
    assert (r.hires, r.hires_steps, r.hires_denoise, r.kind) == (2.0, 5, 0.3, "hires")


async def test_an_upscaler_this_server_lacks_falls_back_to_the_default(engine: Engine, monkeypatch) -> None:
    monkeypatch.setattr(engine.pictures, "upscalers", lambda: ["latent", "lanczos", "4x-AnimeSharp"])
    text = "a cat\nSteps: 20, Seed: 1, Size: 64x64, Hires upscale: 1.5, Hires upscaler: {}"
    missing = await engine.like_request(png(text.format("R-ESRGAN 4x+")), user_id="u")
    assert missing.request.hires_upscaler is None and "R-ESRGAN 4x+" in missing.warnings[0].render("en")
    known = await engine.like_request(png(text.format("4x-animesharp")), user_id="u")
    assert known.request.hires_upscaler == "4x-AnimeSharp" and known.warnings == []
