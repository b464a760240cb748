"""GpuRunner (engine.workers.local), the job body: what it tells the user and what it writes into each PNG."""

from __future__ import annotations

import dataclasses
import gc
import weakref

import pytest
import torch

from engine.i18n import EN
from engine.kinds import Architecture
from engine.lora.cache import LoraCache
from engine.lora.patcher import LoraPatcher
from engine.pipeline.prompt_encoder import MAX_CHUNKS, MAX_TOKENS
from engine.png_info import parse_parameters, read_parameters
from engine.queue.job import Progress, QueuedJob
from engine.requests import DrawPlan, DrawRequest, PlannedCheckpoint
from engine.workers.local import GpuRunner


@pytest.fixture
def runner(generator, tmp_path):
    runner = GpuRunner(generator, LoraCache(4), tmp_path / "outputs")
    yield runner
    runner.close()


def run(runner, tiny_spec, params, job_id="job"):
    plan = DrawPlan(
        request=DrawRequest(prompt=params.prompt, negative=params.negative),
        checkpoint=PlannedCheckpoint(
            name=tiny_spec.name, label=tiny_spec.name, path=tiny_spec.path, format=tiny_spec.format,
            sha256=tiny_spec.sha256, autov2=None, architecture=Architecture.SDXL, base_model=None,
            family=None, family_label=None,
        ),
        loras=[],
        params=params,
    )
    job = QueuedJob(id=job_id, user_id="test", checkpoint=tiny_spec.name, request={}, payload=plan)
    return runner(job, Progress()).result()


def infotext(result, index=0):
    return parse_parameters(read_parameters(result.images[index]))


def warnings(result):
    return [w.render(EN) for w in result.warnings]


def test_a_prompt_past_clips_window_is_read_whole(runner, tiny_spec, params):
    # 37 tags and their commas fill CLIP's 75 tokens; the rest goes into a second chunk.
    prompt = ", ".join(["masterpiece"] * 37) + ", smile, blue hair, school uniform"
    result = run(runner, tiny_spec, dataclasses.replace(params, prompt=prompt, negative=prompt, steps=1))
    assert not [w for w in warnings(result) if "tokens Loracle reads" in w]


def test_a_prompt_past_the_chunk_ceiling_names_the_tags_that_were_dropped(runner, tiny_spec, params):
    prompt = "masterpiece BREAK " * MAX_CHUNKS + "blue hair, school"
    result = run(runner, tiny_spec, dataclasses.replace(params, prompt=prompt, steps=1))
    (warning,) = [w for w in result.warnings if "tokens Loracle reads" in w.render(EN)]
    assert warning.render(EN).startswith(f"The prompt is longer than the {MAX_TOKENS} tokens Loracle reads")
    assert "“blue hair , school”" in warning.render(EN)
    assert "「blue hair , school」" in warning.render("zh-TW")


def test_a_negative_prompt_past_the_chunk_ceiling_is_reported_too(runner, tiny_spec, params):
    negative = "lowres BREAK " * MAX_CHUNKS + "bad anatomy, watermark"
    result = run(runner, tiny_spec, dataclasses.replace(params, negative=negative, steps=1))
    (warning,) = [w for w in warnings(result) if w.startswith("The negative prompt is longer")]
    assert warning.endswith(", watermark”.")
    assert not [w for w in warnings(result) if w.startswith("The prompt is longer")]
    unguided = run(runner, tiny_spec, dataclasses.replace(params, negative=negative, steps=1, cfg=1.0))
    assert not [w for w in warnings(unguided) if "Loracle reads" in w]  # CFG 1 never reads it


def test_a_short_prompt_gets_no_length_warning(runner, tiny_spec, params):
    assert not [w for w in warnings(run(runner, tiny_spec, params)) if "Loracle reads" in w]


def test_the_png_keeps_the_prompt_as_written(runner, tiny_spec, params):
    # A1111 writes its attention syntax into the infotext, and CivitAI reads it from there.
    prompt = "((masterpiece)), (1girl:1.2), [blurry] BREAK \\(cosplay\\), smile"
    negative = "(lowres:1.4), [bad anatomy]"
    result = run(runner, tiny_spec, dataclasses.replace(params, prompt=prompt, negative=negative, steps=1))
    assert infotext(result)["Prompt"] == prompt and infotext(result)["Negative prompt"] == negative


@pytest.mark.parametrize("cfg", [0.0, 0.5])
def test_cfg_below_one_is_recorded_as_drawn(runner, tiny_spec, params, cfg):
    # diffusers draws it as CFG 1; "CFG scale: 0.5" in the PNG would reproduce another image.
    result = run(runner, tiny_spec, dataclasses.replace(params, cfg=cfg, steps=1))
    assert infotext(result)["CFG scale"] == "1"
    assert any("draws the same as 1" in w for w in warnings(result))


def test_cfg_above_one_is_recorded_unchanged(runner, tiny_spec, params):
    result = run(runner, tiny_spec, dataclasses.replace(params, cfg=6.5, steps=1))
    assert infotext(result)["CFG scale"] == "6.5"
    assert not any("CFG" in w for w in warnings(result))


def test_clip_skip_is_recorded_like_a1111(runner, tiny_spec, params):
    assert "Clip skip" not in infotext(run(runner, tiny_spec, dataclasses.replace(params, steps=1)))
    result = run(runner, tiny_spec, dataclasses.replace(params, steps=1, clip_skip=2))
    assert infotext(result)["Clip skip"] == "2"


def test_batch_images_record_their_own_seeds(runner, tiny_spec, params):
    result = run(runner, tiny_spec, dataclasses.replace(params, count=2, steps=1))
    assert result.seeds == [params.seed, params.seed + 1]
    assert [infotext(result, i)["Seed"] for i in range(2)] == [str(params.seed), str(params.seed + 1)]


def test_out_of_memory_while_applying_loras_gives_the_memory_back(runner, tiny_spec, params, monkeypatch):
    held = []

    def apply_out_of_memory(self, loras):
        copies = torch.empty(1_000_000)  # as if the pristine copies filled the GPU
        held.append(weakref.ref(copies))
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(LoraPatcher, "apply", apply_out_of_memory)
    with pytest.raises(torch.OutOfMemoryError) as err:
        run(runner, tiny_spec, params)
    gc.collect()
    assert held[0]() is None and err.value is not None


# -- an overflowed picture is a failure, never a black "success" --------------------------


def _with_lora(runner, tiny_spec, params, lora_path, weight=1.0):
    from engine.requests import LoraStatus, PlannedLora

    plan_lora = PlannedLora(
        name="boom", label="boom", path=lora_path, sha256=None, autov3=None, requested_weight=weight,
        applied_weight=weight, status=LoraStatus.APPLIED, verdict="ok",
    )
    plan = DrawPlan(
        request=DrawRequest(prompt=params.prompt, negative=params.negative),
        checkpoint=PlannedCheckpoint(
            name=tiny_spec.name, label=tiny_spec.name, path=tiny_spec.path, format=tiny_spec.format,
            sha256=tiny_spec.sha256, autov2=None, architecture=Architecture.SDXL, base_model=None,
            family=None, family_label=None,
        ),
        loras=[plan_lora],
        params=params,
    )
    job = QueuedJob(id="boom", user_id="test", checkpoint=tiny_spec.name, request={}, payload=plan)
    return runner(job, Progress()).result()


def _pixels(result):
    from PIL import Image

    with Image.open(result.images[0]) as image:
        return image.tobytes()


def test_a_lora_whose_huge_alpha_overflows_fails_the_job_and_names_it(
    runner, generator, tiny_spec, params, pipeline_cache, tmp_path
):
    from engine.errors import JobFailedError
    from engine.pipeline.generator import Generator
    from engine.testing.lora_files import write_tiny_lora

    # 6e4 is finite (even in float16), but alpha / rank = 15 000 times a LoRA's delta blows
    # every activation up: the latents turn NaN, which PIL would have saved as black.
    boom = write_tiny_lora(tmp_path / "boom.safetensors", generator.pipe, alpha=6e4, rank=4)
    with pytest.raises(JobFailedError) as err:
        _with_lora(runner, tiny_spec, params, boom, weight=0.8)
    message = str(err.value)
    assert "black" in message and "boom at weight 0.8" in message
    assert "boom" in err.value.localized("zh-TW")
    assert not list((runner.outputs_dir).rglob("*.png"))  # nothing was delivered

    # The next job on the same pipeline draws exactly what a fresh engine draws.
    after = _pixels(run(runner, tiny_spec, params, job_id="after"))
    fresh_generator = Generator(device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    fresh_generator.ensure_checkpoint(tiny_spec)
    fresh = GpuRunner(fresh_generator, LoraCache(4), tmp_path / "fresh")
    try:
        assert after == _pixels(run(fresh, tiny_spec, params, job_id="fresh"))
    finally:
        fresh.close()


def test_an_absurd_prompt_weight_fails_the_job_and_names_the_weight(runner, tiny_spec, params):
    from engine.errors import JobFailedError

    prompt = "(blue hair:" + "1" + "0" * 39 + ")"  # 1e39: infinite in float32
    with pytest.raises(JobFailedError) as err:
        run(runner, tiny_spec, dataclasses.replace(params, prompt=prompt))
    assert "prompt weight of" in str(err.value)
    assert "black" in str(err.value)


def test_nan_pixels_from_the_decoder_fail_the_job_too(runner, generator, tiny_spec, params, monkeypatch):
    from engine.errors import JobFailedError

    vae = generator.pipe.vae
    real_decode = vae.decode

    def nan_decode(latents, *args, **kwargs):
        out = real_decode(latents, *args, **kwargs)
        (out[0] if isinstance(out, tuple) else out.sample).fill_(float("nan"))  # what SDXL's VAE gives in float16 without the upcast
        return out

    monkeypatch.setattr(vae, "decode", nan_decode)
    with pytest.raises(JobFailedError) as err:
        run(runner, tiny_spec, params)
    assert "decoding the picture" in str(err.value)


def test_prompt_weights_near_one_are_not_named_as_a_cause():
    from engine.workers.local import _extreme_prompt_weight

    assert _extreme_prompt_weight("((blue hair)), [smile] BREAK (red:1.4)", "") is None
    assert _extreme_prompt_weight("(red:50)", "") == 50
    assert _extreme_prompt_weight("a", "(ugly:0.01)") == 0.01


def test_the_runner_announces_a_checkpoint_load_only_when_one_happens(tiny_spec, params, pipeline_cache, tmp_path):
    from engine.pipeline.generator import Generator

    fresh = GpuRunner(Generator(device="cpu", dtype=torch.float32, cache_dir=pipeline_cache), LoraCache(4), tmp_path)
    try:
        for expected in (["tiny"], []):
            loads: list[str] = []
            plan_job = QueuedJob(id=f"j{len(expected)}", user_id="t", checkpoint="tiny", request={}, payload=DrawPlan(
                request=DrawRequest(prompt=params.prompt, negative=params.negative),
                checkpoint=PlannedCheckpoint(
                    name=tiny_spec.name, label=tiny_spec.name, path=tiny_spec.path, format=tiny_spec.format,
                    sha256=tiny_spec.sha256, autov2=None, architecture=Architecture.SDXL, base_model=None,
                    family=None, family_label=None,
                ),
                loras=[],
                params=dataclasses.replace(params, steps=1),
            ))
            fresh(plan_job, Progress(on_loading=loads.append)).result()
            assert loads == expected
    finally:
        fresh.close()


def test_a_lora_that_matches_no_layer_is_reported_as_not_applied(runner, tiny_spec, params, tmp_path):
    from safetensors.torch import save_file

    from engine.planning.lora_weights import LoraStatus

    stranger = tmp_path / "stranger.safetensors"
    prefix = "lora_unet_no_such_block_attn"
    save_file(
        {
            f"{prefix}.lora_down.weight": torch.ones(4, 32),
            f"{prefix}.lora_up.weight": torch.ones(32, 4),
            f"{prefix}.alpha": torch.tensor(4.0),
        },
        str(stranger),
    )
    result = _with_lora(runner, tiny_spec, params, stranger)
    (lora,) = result.plan.loras
    assert lora.status == LoraStatus.NOT_APPLIED and lora.matched_modules == 0
    assert any("boom was not applied" in w for w in warnings(result))
    assert "boom" not in infotext(result).get("Lora hashes", "")
    assert result.to_json("en")["loras"][0]["status"] == "not_applied"
