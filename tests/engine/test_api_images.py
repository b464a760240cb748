"""Image jobs through the Engine (store_image, upscalers, hires / img2img / upscale kinds):
the same queue, persistence and restart recovery as /draw, and the PNG says how."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import Engine
from engine.errors import ImageInputError, LimitError, UnknownNameError
from engine.images.input import store
from engine.planning.lora_weights import LoraRequest
from engine.png_info import parse_parameters, read_parameters
from engine.queue.job import QueuedJob
from engine.requests import DrawRequest
from engine.settings import Settings, load_settings
from engine.testing.tiny_upscaler import write_tiny_esrgan

CKPT = "loracleDemoXL_v10"


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def request(*loras: tuple[str, float | None], seed: int = 7, **kw) -> DrawRequest:
    base = dict(prompt="1girl, smile, flower", negative="lowres", seed=seed, steps=2, width=64, height=64)
    base.update(kw)
    return DrawRequest(loras=[LoraRequest(n, w) for n, w in loras], **base)


def png_bytes(width: int = 80, height: int = 64) -> bytes:
    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
async def engine(demo_settings: Settings):
    write_tiny_esrgan(demo_settings.upscalers_dir / "tiny-2x.safetensors")
    (demo_settings.upscalers_dir / "4x-Pickled.pth").write_bytes(b"\x80\x04K\x01.")
    engine = Engine(demo_settings)
    await engine.scan(civitai=False)
    engine.set_entry(CKPT, base_model="Illustrious")
    await engine.start()
    yield engine
    await engine.close()


def infotext(result) -> dict[str, str]:
    return parse_parameters(read_parameters(result.images[0]) or "")


async def test_upscalers_lists_the_built_ins_then_usable_models(engine: Engine) -> None:
    assert engine.upscalers() == ["latent", "lanczos", "demo-2x-esrgan", "tiny-2x"]  # the demo's, then this test's
    (pickled,) = [e for e in engine.entries("upscaler") if e.name == "4x-Pickled"]
    assert pickled.error and "weights_only=True" in pickled.error
    (model,) = [e for e in engine.entries("upscaler") if e.name == "tiny-2x"]
    assert model.sha256 and model.kind == "upscaler"  # hashed like the rest of the library


async def test_a_hires_job_writes_a1111s_fields(engine: Engine) -> None:
    result = await engine.draw(request(hires=1.5, hires_denoise=0.6, hires_steps=4, width=64, height=80))
    with Image.open(result.images[0]) as image:
        assert image.size == (96, 120)
    fields = infotext(result)
    assert fields["Size"] == "64x80"  # A1111: the first pass
    assert fields["Hires upscale"] == "1.5"
    assert fields["Hires steps"] == "4"
    assert fields["Hires upscaler"] == "Latent"
    assert fields["Denoising strength"] == "0.6"
    data = result.to_json()
    assert data["kind"] == "hires"
    assert data["hires"] == {"scale": 1.5, "denoise": 0.6, "steps": 4, "upscaler": "latent", "width": 96, "height": 120}


async def test_hires_steps_are_left_out_when_they_follow_the_steps(engine: Engine) -> None:
    fields = infotext(await engine.draw(request(hires=1.25, hires_denoise=0.5, hires_upscaler="lanczos")))
    assert "Hires steps" not in fields and fields["Hires upscaler"] == "Lanczos"


async def test_a_model_upscaler_runs_through_spandrel(engine: Engine) -> None:
    result = await engine.draw(request(hires=2.0, hires_denoise=0.5, hires_upscaler="tiny-2x"))
    with Image.open(result.images[0]) as image:
        assert image.size == (128, 128)
    assert infotext(result)["Hires upscaler"] == "tiny-2x"


async def test_an_unknown_upscaler_is_refused_before_any_gpu_work(engine: Engine) -> None:
    with pytest.raises(UnknownNameError):
        engine.plan(request(hires=1.5, hires_upscaler="4x-Nonexistent"))


async def test_weight_zero_is_bit_identical_to_no_lora_in_both_passes(engine: Engine) -> None:
    hires = dict(hires=1.5, hires_denoise=0.5)
    none = await engine.draw(request(**hires))
    applied = await engine.draw(request(("demo_exact_style", 1.0), **hires))
    zero = await engine.draw(request(("demo_exact_style", 0.0), **hires))
    assert not np.array_equal(pixels(none.images[0]), pixels(applied.images[0]))
    assert np.array_equal(pixels(none.images[0]), pixels(zero.images[0]))
    lora = applied.to_json()["loras"][0]
    assert lora["requested_weight"] == 1.0 and lora["applied_weight"] == 1.0 and lora["verdict"]


async def test_the_lora_changes_the_second_pass_too(engine: Engine) -> None:
    # an upscale job has only the second pass: a LoRA that changed it is applied there
    stored = await engine.store_image(png_bytes(64, 64))
    job = dict(init_image=stored.id, hires=1.5, hires_denoise=0.6, width=None, height=None)
    none = await engine.draw(request(**job))
    styled = await engine.draw(request(("demo_exact_style", 1.0), **job))
    assert not np.array_equal(pixels(none.images[0]), pixels(styled.images[0]))


async def test_image_to_image_from_a_stored_picture(engine: Engine) -> None:
    stored = await engine.store_image(png_bytes(80, 64))
    assert (stored.width, stored.height) == (80, 64)
    result = await engine.draw(request(init_image=stored.id, strength=0.5, width=None, height=None))
    with Image.open(result.images[0]) as image:
        assert image.size == (80, 64)
    fields = infotext(result)
    assert fields["Denoising strength"] == "0.5" and "Hires upscale" not in fields
    assert result.to_json()["kind"] == "img2img" and result.to_json()["strength"] == 0.5


async def test_an_upscale_job_doubles_a_stored_picture(engine: Engine) -> None:
    stored = await engine.store_image(png_bytes(64, 64))
    result = await engine.draw(request(init_image=stored.id, hires=2.0, width=None, height=None))
    with Image.open(result.images[0]) as image:
        assert image.size == (128, 128)
    assert result.plan.request.kind == "upscale"
    assert infotext(result)["Hires upscaler"] == "Lanczos"  # pixels in: no latent round trip


async def test_limits_on_hires_are_clear(engine: Engine) -> None:
    with pytest.raises(LimitError, match="hires must be between 1 and 2"):
        engine.plan(request(hires=3.0))
    engine.set_limits(max_size=1024)
    with pytest.raises(LimitError, match=r"1536×1536, past the largest side allowed \(1024 pixels\)\. Use a scale up to 1"):
        engine.plan(request(hires=1.5, width=1024, height=1024))
    with pytest.raises(LimitError, match="no step at all"):
        engine.plan(request(hires=1.5, hires_denoise=0.1, steps=4))


async def test_a_picture_that_is_gone_is_refused_at_planning(engine: Engine) -> None:
    with pytest.raises(ImageInputError, match="no longer stored"):
        engine.plan(request(init_image="0" * 64, strength=0.5))


async def test_the_admins_hires_default_applies_to_text_jobs_only(demo_dir: Path) -> None:
    settings = load_settings(_env_file=None, data_dir=demo_dir, offline=True, hires_default=True, hires_default_scale=1.5)
    engine = Engine(settings)
    try:
        await engine.scan(civitai=False)
        assert engine.plan(request()).params.hires == 1.5
        assert engine.plan(request(hires=1.0)).params.hires == 1.0
        stored = await engine.store_image(png_bytes())
        assert engine.plan(request(init_image=stored.id, width=None, height=None)).params.hires == 1.0
    finally:
        await engine.close()


async def test_an_img2img_job_queued_at_a_crash_runs_after_restart(demo_settings: Settings) -> None:
    first = Engine(demo_settings)
    await first.scan(civitai=False)
    await first.start()
    stored = await first.store_image(png_bytes(72, 64))
    job_request = request(init_image=stored.id, strength=0.6, width=None, height=None, seed=5)
    plan = first.plan(job_request)
    job = QueuedJob(user_id="cli", checkpoint=plan.checkpoint.sha256, request=job_request.to_json(), payload=plan)
    first.job_store.insert(job)
    await first.close()
    # a day later: the waiting job's picture survives the start-up clean-up, others go
    import os
    import time

    stale = store(png_bytes(96, 64), demo_settings.inputs_dir, max_side=1024).id
    day_ago = time.time() - 3 * 24 * 3600
    for image_id in (stored.id, stale):
        os.utime(demo_settings.inputs_dir / f"{image_id}.png", (day_ago, day_ago))

    second = Engine(demo_settings)
    try:
        await second.start()
        assert not (demo_settings.inputs_dir / f"{stale}.png").exists()
        assert [h.id for h in second.recovered] == [job.id]
        result = await second.recovered[0].result()
        with Image.open(result.images[0]) as image:
            assert image.size == (72, 64)
        assert result.plan.request.kind == "img2img"
        assert second.job_store.get(job.id).status == "done"
    finally:
        await second.close()


async def test_an_upscale_job_reports_its_hires_denoise_not_a_strength(engine: Engine) -> None:
    stored = await engine.store_image(png_bytes(64, 64))
    plan = engine.plan(request(init_image=stored.id, hires=1.5, hires_denoise=0.5, strength=0.9, width=None, height=None))
    assert plan.params.strength is None and plan.params.hires_denoise == 0.5
