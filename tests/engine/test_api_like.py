"""From a picture to a request through the Engine facade, on the tiny demo library: a
picture Loracle made, drawn again with `like_request`, comes out bit-identical."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.api import Engine
from engine.errors import ImageInputError
from engine.planning.lora_weights import LoraRequest
from engine.requests import DrawRequest
from engine.settings import Settings

CKPT = "loracleDemoXL_v10"


def pixels(data: bytes | Path) -> np.ndarray:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    return np.asarray(Image.open(source).convert("RGB"))


def png(text: dict[str, str], size: tuple[int, int] = (64, 64)) -> bytes:
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 80, 40)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.fixture
async def engine(demo_settings: Settings):
    engine = Engine(demo_settings)
    await engine.scan(civitai=False)
    engine.set_entry(CKPT, base_model="Illustrious")
    yield engine
    await engine.close()


@pytest.mark.slow
async def test_a_loracle_picture_drawn_again_is_bit_identical(engine: Engine) -> None:
    await engine.start()
    first = await engine.draw(
        DrawRequest(
            prompt="1girl, smile, flower <lora:demo_noob_character:0.6>",
            negative="lowres",
            loras=[LoraRequest("demo_exact_style", 0.7)],
            seed=4242,
            steps=3,
            cfg=5.5,
            width=64,
            height=72,
            sampler="DPM++ 2M Karras",
            clip_skip=3,
        )
    )
    data = first.images[0].read_bytes()
    like = await engine.like_request(data, user_id="u1")
    request = like.request
    assert [m.how for m in like.matches] == ["hash", "hash", "hash"]
    assert [(l.name, l.weight) for l in request.loras] == [("demo_exact_style", 0.7), ("demo_noob_character", 0.6)]
    assert "<lora" not in request.prompt and request.prompt == "1girl, smile, flower"
    assert (request.seed, request.steps, request.cfg, request.width, request.height) == (4242, 3, 5.5, 64, 72)
    assert (request.sampler, request.clip_skip, request.checkpoint, request.user_id) == ("DPM++ 2M Karras", 3, CKPT, "u1")
    again = await engine.draw(request)
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    # and the job's picture is handed back by id, as the bot's buttons fetch it
    assert await engine.job_image(first.job_id) == data
    assert await engine.job_image(first.job_id, 1) is None
    assert await engine.job_image("no-such-job") is None
    first.images[0].unlink()
    assert await engine.job_image(first.job_id) is None


async def test_image_info_reports_hash_name_and_missing_with_verdicts(engine: Engine) -> None:
    lora = engine.find("demo_exact_style")
    ckpt = engine.find(CKPT)
    text = (
        "1girl <lora:demo_exact_style:0.8> <lora:renamed_noob:0.5> <lora:not_here:1>\n"
        "Negative prompt: lowres\n"
        f"Steps: 20, Sampler: Euler a, CFG scale: 6, Seed: 7, Size: 832x1216, Model hash: {ckpt.autov2.lower()}, "
        f'Model: whatever, Lora hashes: "demo_exact_style: {lora.autov3.lower()}, not_here: 0123456789ab", Version: v1.10.1'
    )
    # a LoRA found only by name: its tag says "demo_pony_style"
    text = text.replace("renamed_noob", "demo_pony_style")
    info = await engine.image_info(png({"parameters": text}))
    found = {m.ref.name: m for m in info.matches}
    assert found["whatever"].how == "hash" and found["whatever"].matched == CKPT
    assert found["demo_exact_style"].how == "hash" and found["demo_exact_style"].verdict == "exact"
    assert found["demo_pony_style"].how == "name" and found["demo_pony_style"].verdict is not None
    assert found["not_here"].how == "missing" and found["not_here"].civitai_url is None  # offline: no link
    assert json.loads(json.dumps([m.to_json() for m in info.matches]))[1]["how"] == "hash"
    rendered = [w.render("en") for w in info.warnings]
    assert any("not_here" in w and "left out" in w for w in rendered)
    assert any("found by name only" in w for w in rendered)
    assert all(w.render("zh-TW") for w in info.warnings)


async def test_like_request_leaves_out_missing_and_falls_back_to_the_default_checkpoint(engine: Engine) -> None:
    text = (
        "a cat <lora:nowhere:0.5>\nSteps: 500, Sampler: Heun, CFG scale: 6, Seed: 18446744073709551615, "
        "Size: 5000x700, Model hash: 0123456789, Model: unknownModel"
    )
    like = await engine.like_request(png({"parameters": text}), user_id="u", allow_nsfw=False)
    request = like.request
    assert request.checkpoint is None and request.loras == [] and request.allow_nsfw is False
    limits = engine.admin.limits()
    assert request.steps == limits.max_steps and request.width == limits.max_size and request.height == 696
    assert request.sampler is None and request.seed is not None and 0 <= request.seed < 2**32
    rendered = " | ".join(w.render("en") for w in like.warnings)
    for expected in ("Heun", "nowhere", "unknownModel", "default checkpoint", "steps 500", "width 5000"):
        assert expected in rendered


async def test_a_picture_without_parameters_is_refused_clearly(engine: Engine) -> None:
    with pytest.raises(ImageInputError) as caught:
        await engine.image_info(png({}))
    assert "no generation parameters" in str(caught.value) and caught.value.localized("zh-TW")
    with pytest.raises(ImageInputError):
        await engine.like_request(b"not a picture at all", user_id="u")


async def test_vary_and_upscale_start_from_the_stored_picture(engine: Engine) -> None:
    ckpt = engine.find(CKPT)
    text = f"a dog\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 99, Size: 64x64, Model hash: {ckpt.autov2}"
    data = png({"parameters": text}, size=(80, 64))
    vary = await engine.vary_request(data, strength=0.4, user_id="u")
    stored = engine.settings.root / "inputs" / f"{vary.request.init_image}.png"
    assert stored.exists() and vary.request.strength == 0.4 and vary.request.seed is None
    assert (vary.request.width, vary.request.height) == (80, 64) and vary.request.kind == "img2img"
    up = await engine.upscale_request(data, user_id="u", scale=1.5, upscaler="lanczos")
    assert up.request.init_image == vary.request.init_image and up.request.seed == 99
    assert (up.request.hires, up.request.hires_upscaler, up.request.kind) == (1.5, "lanczos", "upscale")
    default = await engine.upscale_request(data, user_id="u")
    assert default.request.hires == engine.settings.hires_default_scale  # asked to upscale: never off
