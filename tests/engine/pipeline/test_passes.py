"""Hires fix, image-to-image and upscale jobs in the Generator (engine.pipeline.passes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.errors import JobCancelledError, LimitError
from engine.pipeline.generator import Generator
from engine.pipeline.passes import StepCounter, upscale_latents


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def differ(a, b) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


@pytest.fixture
def hires(params):
    return dataclasses.replace(params, hires=1.5, hires_denoise=0.5, hires_upscaler="latent")


def storage(module) -> set[int]:
    return {p.data_ptr() for p in module.parameters()}


def test_the_image_to_image_pipeline_shares_every_weight(generator):
    img2img = generator.img2img()
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert getattr(img2img, part) is getattr(generator.pipe, part)
    every = lambda pipe: set().union(*(storage(getattr(pipe, n)) for n in ("unet", "vae", "text_encoder", "text_encoder_2")))  # noqa: E731 - a test's shorthand
    assert every(img2img) == every(generator.pipe)
    assert generator.img2img() is img2img  # built once per loaded checkpoint


def test_the_image_to_image_pipeline_goes_with_its_checkpoint(tiny_spec, pipeline_cache):
    gen = Generator(device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    gen.ensure_checkpoint(tiny_spec)
    first = gen.img2img()
    gen.unload()
    assert gen._img2img is None
    gen.ensure_checkpoint(tiny_spec)
    assert gen.img2img() is not first and gen.img2img().unet is gen.pipe.unet


@pytest.mark.parametrize("upscaler", ["latent", "lanczos"])
def test_hires_comes_out_at_the_scaled_size(generator, hires, upscaler):
    images = generator.generate(dataclasses.replace(hires, hires_upscaler=upscaler, width=64, height=80, count=2))
    assert [im.size for im in images] == [(96, 120), (96, 120)]


def test_hires_is_reproducible_and_unlike_a_plain_resize(generator, params, hires):
    first = generator.generate(hires)[0]
    assert differ(first, generator.generate(hires)[0]) == 0
    resized = generator.generate(params)[0].resize((96, 96))
    assert differ(first, resized) > 2  # the second pass really redrew it


def test_hires_denoise_and_steps_change_the_picture(generator, hires):
    base = generator.generate(hires)[0]
    assert differ(base, generator.generate(dataclasses.replace(hires, hires_denoise=0.9))[0]) > 1
    assert differ(base, generator.generate(dataclasses.replace(hires, hires_steps=6))[0]) > 0


def test_a_model_upscaler_is_called_with_the_first_pass_and_the_final_size(generator, hires):
    seen = []

    def model(image, size):
        seen.append((image.size, size))
        return image.resize((image.width * 2, image.height * 2))

    out = generator.generate(dataclasses.replace(hires, hires_upscaler="tiny-2x"), upscaler=model)
    assert seen == [((64, 64), (96, 96))] and out[0].size == (96, 96)


def test_progress_counts_both_passes_as_one(generator, hires):
    calls = []
    generator.generate(dataclasses.replace(hires, steps=4, hires_steps=6), on_step=lambda i, n: calls.append((i, n)))
    # 4 first-pass steps, then int(6 * 0.5) = 3 second-pass steps; the total never moves
    assert calls == [(i, 7) for i in range(1, 8)]


def test_cancel_in_the_second_pass_and_draw_again(generator, hires):
    calls = []
    with pytest.raises(JobCancelledError):
        generator.generate(hires, on_step=lambda i, n: calls.append(i), should_cancel=lambda: len(calls) >= 4)
    assert calls == [1, 2, 3, 4]
    assert generator.generate(hires)[0].size == (96, 96)


def test_image_to_image_moves_away_from_the_source_as_far_as_strength_says(generator, params):
    source = generator.generate(dataclasses.replace(params, seed=99))[0]
    img = dataclasses.replace(params, steps=8)
    weak = generator.generate(dataclasses.replace(img, strength=0.25), init_image=source)[0]
    strong = generator.generate(dataclasses.replace(img, strength=0.9), init_image=source)[0]
    assert weak.size == source.size
    assert 0 < differ(weak, source) < differ(strong, source)
    again = generator.generate(dataclasses.replace(img, strength=0.25), init_image=source)[0]
    assert differ(weak, again) == 0


def test_image_to_image_batches_vary_by_seed(generator, params):
    source = generator.generate(params)[0]
    a, b = generator.generate(dataclasses.replace(params, strength=0.8, count=2), init_image=source)
    assert differ(a, b) > 1


def test_image_to_image_resizes_the_source_to_the_asked_size(generator, params):
    source = generator.generate(params)[0]
    out = generator.generate(dataclasses.replace(params, strength=0.5, width=96, height=64), init_image=source)
    assert out[0].size == (96, 64)


def test_an_upscale_job_runs_only_the_second_pass(generator, params):
    source = generator.generate(params)[0]
    calls = []
    job = dataclasses.replace(params, steps=4, hires=2.0, hires_denoise=0.5, hires_upscaler="lanczos")
    out = generator.generate(job, init_image=source, on_step=lambda i, n: calls.append((i, n)))
    assert out[0].size == (128, 128)
    assert calls == [(1, 2), (2, 2)]  # int(4 * 0.5): no first pass


def test_a_second_pass_without_a_step_is_refused(generator, params):
    with pytest.raises(LimitError, match="no step at all"):
        generator.generate(dataclasses.replace(params, steps=3, hires=1.5, hires_denoise=0.2))


def test_an_image_to_image_job_needs_a_strength_in_range(generator, params):
    source = generator.generate(params)[0]
    with pytest.raises(LimitError):
        generator.generate(params, init_image=source)
    with pytest.raises(LimitError, match="at most 1"):
        generator.generate(dataclasses.replace(params, strength=1.5), init_image=source)


def test_latent_upscale_is_a1111s_bilinear():
    latents = torch.arange(16.0).reshape(1, 1, 4, 4)
    up = upscale_latents(latents, (64, 64))
    assert up.shape == (1, 1, 8, 8)
    assert torch.allclose(up, torch.nn.functional.interpolate(latents, size=(8, 8), mode="bilinear"))


def test_step_counter_scales_the_second_pass_like_the_first():
    calls = []
    counter = StepCounter(lambda i, n: calls.append((i, n)), first_steps=4, second=2)
    for i in range(1, 9):
        counter.first(i, 8)  # a sampler that calls the model twice per step
    counter.later(1, 4)
    assert calls[0] == (1, 12) and calls[-1] == (9, 12)


@pytest.mark.parametrize("upscaler", ["latent", "lanczos"])
def test_nan_in_either_pass_fails_the_job_and_the_next_one_draws(generator, hires, monkeypatch, upscaler):
    from engine.pipeline.generator import NonFiniteImageError

    unet = generator.pipe.unet
    original = type(unet).forward
    calls = []

    def poisoned(self, sample, *args, **kwargs):
        calls.append(sample.shape[-1])
        out = original(self, sample, *args, **kwargs)
        if sample.shape[-1] == 12:  # only the second pass (96 px = 12 latent cells)
            (out[0] if isinstance(out, tuple) else out.sample).fill_(float("nan"))
        return out

    monkeypatch.setattr(type(unet), "forward", poisoned)
    with pytest.raises(NonFiniteImageError):
        generator.generate(dataclasses.replace(hires, hires_upscaler=upscaler))
    assert 8 in calls and 12 in calls  # the first pass ran clean, the second overflowed
    monkeypatch.undo()
    assert generator.generate(hires)[0].size == (96, 96)
