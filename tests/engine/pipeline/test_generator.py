from __future__ import annotations

import dataclasses
import gc
import traceback
import weakref

import numpy as np
import pytest
import torch

from engine.errors import JobCancelledError, JobFailedError, LimitError, RequestError
from engine.pipeline.generator import DroppedTokens, Generator, effective_cfg
from engine.pipeline.loader import CheckpointSpec
from engine.pipeline.prompt_encoder import MAX_CHUNKS
from engine.pipeline.samplers import make_scheduler


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def same(a, b) -> bool:
    return np.array_equal(pixels(a), pixels(b))


def close(a, b) -> bool:
    # A batch runs the UNet at another batch size, and CPU kernels may round differently
    # in the last bit: allow one or two levels out of 255, nothing like another picture.
    return int(np.abs(pixels(a) - pixels(b)).max()) <= 2


def differ(a, b) -> bool:
    return float(np.abs(pixels(a) - pixels(b)).mean()) > 5


def test_draws_the_requested_images(generator, params):
    images = generator.generate(dataclasses.replace(params, width=64, height=96, count=2))
    assert [im.size for im in images] == [(64, 96), (64, 96)]
    assert all(im.mode == "RGB" for im in images)
    assert pixels(images[0]).std() > 1  # not a blank picture


def test_same_seed_gives_identical_images(generator, params):
    assert same(generator.generate(params)[0], generator.generate(params)[0])


def test_different_seeds_give_different_images(generator, params):
    a = generator.generate(params)[0]
    b = generator.generate(dataclasses.replace(params, seed=params.seed + 100))[0]
    assert differ(a, b)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M Karras", "DPM++ SDE Karras"])
def test_batch_images_use_consecutive_seeds(generator, params, sampler):
    params = dataclasses.replace(params, sampler=sampler)
    batch = generator.generate(dataclasses.replace(params, count=2))
    first = generator.generate(params)[0]
    second = generator.generate(dataclasses.replace(params, seed=params.seed + 1))[0]
    assert close(batch[0], first) and close(batch[1], second)
    assert differ(batch[0], batch[1])


def test_progress_is_reported_after_every_step(generator, params):
    calls = []
    generator.generate(dataclasses.replace(params, steps=4), on_step=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancel_mid_way(generator, params):
    calls = []
    with pytest.raises(JobCancelledError):
        generator.generate(
            dataclasses.replace(params, steps=4),
            on_step=lambda i, n: calls.append(i),
            should_cancel=lambda: len(calls) >= 2,
        )
    assert calls == [1, 2]  # stopped right after the step where the cancel was seen
    expected = generator.generate(params)[0]  # still usable, and unchanged
    assert same(expected, generator.generate(params)[0])


def test_cancel_before_start_runs_nothing(generator, params):
    calls = []
    with pytest.raises(JobCancelledError):
        generator.generate(params, on_step=lambda i, n: calls.append(i), should_cancel=lambda: True)
    assert calls == []


def test_sampler_switch(generator, params):
    euler_a = generator.generate(params)[0]
    karras = generator.generate(dataclasses.replace(params, sampler="DPM++ 2M Karras"))[0]
    assert differ(euler_a, karras)
    assert generator.pipe.scheduler.config.use_karras_sigmas is True
    generator.generate(dataclasses.replace(params, sampler="UniPC"))
    assert type(generator.pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert generator.pipe.scheduler.config.use_karras_sigmas is False  # nothing leaked
    assert same(euler_a, generator.generate(params)[0])


def test_unknown_sampler_is_a_request_error(generator, params):
    with pytest.raises(RequestError, match="no sampler"):
        generator.generate(dataclasses.replace(params, sampler="Restart"))


def test_single_file_and_folder_draw_the_same(generator, params, tiny_folder, pipeline_cache):
    folder_gen = Generator(device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    assert folder_gen.ensure_checkpoint(CheckpointSpec("tiny-folder", tiny_folder, format="diffusers"))
    assert same(generator.generate(params)[0], folder_gen.generate(params)[0])


def test_ensure_checkpoint_loads_only_when_needed(tiny_spec, tiny_folder, pipeline_cache):
    gen = Generator(device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    assert gen.loaded is None and gen.pipe is None
    assert gen.ensure_checkpoint(tiny_spec) is True
    first = gen.pipe
    assert gen.ensure_checkpoint(tiny_spec) is False and gen.pipe is first
    other = CheckpointSpec("tiny-folder", tiny_folder, format="diffusers")
    assert gen.ensure_checkpoint(other) is True
    assert gen.loaded == other and gen.pipe is not first
    gen.unload()
    assert gen.pipe is None and gen.loaded is None


def test_nothing_loaded_is_a_job_failure(pipeline_cache, params):
    with pytest.raises(JobFailedError, match="No checkpoint"):
        Generator(device="cpu", dtype=torch.float32, cache_dir=pipeline_cache).generate(params)


def test_a_failed_job_leaves_the_pipeline_usable(generator, params, tiny_spec, pipeline_cache):
    def explode(i, n):
        if i == 2:
            raise RuntimeError("boom")

    with pytest.raises(JobFailedError, match="boom") as err:
        generator.generate(dataclasses.replace(params, count=2), on_step=explode)
    assert isinstance(err.value.__cause__, RuntimeError)
    fresh = Generator(device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    fresh.ensure_checkpoint(tiny_spec)
    assert same(generator.generate(params)[0], fresh.generate(params)[0])


def test_out_of_memory_during_decode_is_explained_and_recovered(generator, params, monkeypatch):
    expected = generator.generate(params)[0]
    vae = generator.pipe.vae

    def decode_out_of_memory(*args, **kwargs):
        vae.to(torch.float64)  # as if diffusers had upcast the VAE for decoding
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(vae, "decode", decode_out_of_memory)
    with pytest.raises(JobFailedError, match="ran out of memory") as err:
        generator.generate(params)
    assert "記憶體不足" in err.value.localized("zh-TW")
    monkeypatch.undo()
    assert vae.dtype == torch.float32
    assert same(expected, generator.generate(params)[0])


def test_out_of_memory_gives_the_failed_jobs_memory_back(generator, params, monkeypatch):
    # The error reaches the front end with the original as its cause; the tensors the
    # failed frames held (activations, latents) must not live on with it.
    held = []

    def decode_out_of_memory(latents, *args, **kwargs):
        activations = torch.empty(1_000_000)
        held.append(weakref.ref(activations))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(generator.pipe.vae, "decode", decode_out_of_memory)
    with pytest.raises(JobFailedError, match="ran out of memory") as err:
        generator.generate(params)
    gc.collect()
    assert held and held[0]() is None
    assert isinstance(err.value.__cause__, torch.OutOfMemoryError)
    assert "decode_out_of_memory" in "".join(traceback.format_exception(err.value))  # still printable


def test_cancelled_job_leaves_no_tensors_behind(generator, params, monkeypatch):
    import engine.pipeline.generator as generator_module

    latents = []  # what the interrupted denoising loop held when the cancel came

    def recording_scheduler(*args, **kwargs):
        scheduler = make_scheduler(*args, **kwargs)
        step = scheduler.step

        def recorded(*a, **k):
            out = step(*a, **k)
            latents.append(weakref.ref(out[0]))
            return out

        scheduler.step = recorded
        return scheduler

    monkeypatch.setattr(generator_module, "make_scheduler", recording_scheduler)
    with pytest.raises(JobCancelledError) as err:
        generator.generate(params, should_cancel=lambda: bool(latents))
    gc.collect()
    assert latents and latents[-1]() is None
    assert err.value.__context__ is not None  # kept, as Python does, but emptied


def test_out_of_memory_while_loading_gives_the_half_loaded_checkpoint_back(tiny_spec, pipeline_cache, monkeypatch):
    import engine.pipeline.generator as generator_module

    held = []

    def load_out_of_memory(*args, **kwargs):
        weights = torch.empty(1_000_000)  # as if half the pipeline were on the GPU already
        held.append(weakref.ref(weights))
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(generator_module, "load_pipeline", load_out_of_memory)
    gen = Generator(device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    with pytest.raises(JobFailedError, match="ran out of memory") as err:
        gen.ensure_checkpoint(tiny_spec)
    gc.collect()
    assert held[0]() is None and err.value.__cause__ is not None


def test_cfg_below_one_draws_as_cfg_one(generator, params):
    # diffusers guides only above 1: below it the prompt alone is used, A1111's CFG 1.
    one = generator.generate(dataclasses.replace(params, cfg=1.0))[0]
    assert same(one, generator.generate(dataclasses.replace(params, cfg=0.5))[0])
    assert same(one, generator.generate(dataclasses.replace(params, cfg=0.0))[0])
    assert effective_cfg(0.0) == effective_cfg(0.5) == 1.0 and effective_cfg(6.5) == 6.5


@pytest.mark.parametrize(
    "change, words",
    [
        ({"width": 100}, "multiple of 8"),
        ({"height": 60}, "at least 64"),
        ({"steps": 0}, "steps"),
        ({"count": 0}, "number of images"),
        ({"cfg": float("nan")}, "CFG"),
        ({"cfg": -1.0}, "CFG"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64 - 1, "count": 2}, "seed"),
        ({"clip_skip": 0}, "Clip skip"),
        ({"clip_skip": 99}, "Clip skip"),
    ],
)
def test_impossible_parameters_are_refused_before_drawing(generator, params, change, words):
    calls = []
    with pytest.raises(LimitError, match=words):
        generator.generate(dataclasses.replace(params, **change), on_step=lambda i, n: calls.append(i))
    assert calls == []


def test_width_error_suggests_a_size(generator, params):
    with pytest.raises(LimitError, match="Try 104") as err:
        generator.generate(dataclasses.replace(params, width=100))
    assert "寬度" in err.value.localized("zh-TW")


def test_sizes_whose_latents_do_not_halve_twice_still_work(generator, params):
    # 72 px -> 9 latent cells: SDXL's UNet halves twice, diffusers interpolates back up.
    assert generator.generate(dataclasses.replace(params, width=72, height=80))[0].size == (72, 80)


def test_clip_skip_follows_the_civitai_convention(generator, params):
    default = generator.generate(params)[0]
    assert same(default, generator.generate(dataclasses.replace(params, clip_skip=1))[0])
    assert same(default, generator.generate(dataclasses.replace(params, clip_skip=2))[0])
    assert not same(default, generator.generate(dataclasses.replace(params, clip_skip=3))[0])


def test_dropped_tokens_are_reported(generator, params):
    generator.generate(params)
    assert generator.last_dropped == DroppedTokens() and not generator.last_dropped.any
    # Past CLIP's window is no longer lost (prompts are read in chunks of 75 tokens) ...
    fifty = dataclasses.replace(params, prompt=", ".join(["masterpiece"] * 50), steps=1)
    assert generator.dropped_tokens(fifty) == DroppedTokens()
    # ... only past the chunk ceiling: 32 one-tag chunks, then "blue hair, school" (4 tokens)
    long = dataclasses.replace(fifty, prompt="masterpiece BREAK " * MAX_CHUNKS + "blue hair, school")
    lost = "blue hair , school"  # as the tokenizer reads it back
    assert generator.dropped_tokens(long) == DroppedTokens(prompt=4, negative=0, prompt_text=lost)
    generator.generate(long)
    assert generator.last_dropped.prompt == 4 and generator.last_dropped.any
    generator.generate(dataclasses.replace(long, prompt="a cat", negative=long.prompt))
    assert generator.last_dropped == DroppedTokens(prompt=0, negative=4, negative_text=lost)
    # at CFG <= 1 the negative prompt is never read, so nothing of it is lost either
    assert generator.dropped_tokens(dataclasses.replace(long, prompt="a cat", negative=long.prompt, cfg=1.0)) == (
        DroppedTokens()
    )


def test_running_out_of_memory_while_loading_is_a_job_failure(tiny_spec, pipeline_cache, monkeypatch):
    import engine.pipeline.generator as generator_module

    def load_out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(generator_module, "load_pipeline", load_out_of_memory)
    gen = Generator(device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    with pytest.raises(JobFailedError, match="ran out of memory"):
        gen.ensure_checkpoint(tiny_spec)
    assert gen.pipe is None and gen.loaded is None
