"""Drawing through the Engine facade on the tiny demo library: the weight policy and the
correctness properties the issue names, proven on real diffusers pipelines."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import Engine
from engine.errors import (
    IncompatibleError,
    LibraryError,
    LimitError,
    LoracleError,
    RequestError,
    UnknownNameError,
    WeightError,
)
from engine.pipeline.loader import CheckpointSpec, load_pipeline
from engine.planning.lora_weights import LoraRequest
from engine.png_info import read_parameters
from engine.requests import DrawRequest
from engine.settings import Settings
from engine.testing.lora_files import assert_bit_identical, snapshot_weights

pytestmark = pytest.mark.slow

CKPT = "loracleDemoXL_v10"


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def request(*loras: tuple[str, float | None], seed: int = 7, **kw) -> DrawRequest:
    base = dict(prompt="1girl, smile, flower", negative="lowres", seed=seed, steps=2, width=64, height=64)
    base.update(kw)
    return DrawRequest(loras=[LoraRequest(n, w) for n, w in loras], **base)


@pytest.fixture
async def engine(demo_settings: Settings):
    engine = Engine(demo_settings)
    await engine.scan(civitai=False)
    engine.set_entry(CKPT, base_model="Illustrious")
    await engine.start()
    yield engine
    await engine.close()


async def test_weight_zero_is_bit_identical_to_no_lora(engine: Engine) -> None:
    none = await engine.draw(request())
    zero = await engine.draw(request(("demo_exact_style", 0.0)))
    assert zero.plan.loras[0].status == "not_applied"
    assert np.array_equal(pixels(none.images[0]), pixels(zero.images[0]))


async def test_same_seed_same_image_and_plus_minus_none_differ(engine: Engine) -> None:
    plus = await engine.draw(request(("demo_exact_style", 1.0)))
    again = await engine.draw(request(("demo_exact_style", 1.0)))
    minus = await engine.draw(request(("demo_exact_style", -1.0)))
    none = await engine.draw(request())
    a, b, c, d = (pixels(r.images[0]) for r in (plus, again, minus, none))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d) and not np.array_equal(c, d)


async def test_base_weights_are_pristine_after_50_random_jobs(engine: Engine, demo_dir: Path) -> None:
    rng = random.Random(1234)
    names = ["demo_exact_style", "demo_noob_character", "demo_pony_style", "demo_mystery"]
    for _ in range(50):
        chosen = rng.sample(names, rng.randint(0, 3))
        loras = [(n, rng.choice([0.0, rng.uniform(-2, 2), 1.0])) for n in chosen]
        await engine.draw(request(*loras, seed=rng.randint(0, 99), steps=1))
    await engine.draw(request(steps=1))  # an empty set puts every touched weight back

    fresh = load_pipeline(
        CheckpointSpec(name=CKPT, path=demo_dir / "models" / f"{CKPT}.safetensors"),
        device="cpu",
        dtype=torch.float32,
        cache_dir=demo_dir / "cache",
    )
    assert_bit_identical(snapshot_weights(fresh), snapshot_weights(engine.runner.generator.pipe))


async def test_png_carries_a1111_parameters(engine: Engine) -> None:
    result = await engine.draw(request(("demo_exact_style", 0.8), seed=99))
    text = read_parameters(result.images[0])
    lora = engine.find("demo_exact_style")
    ckpt = engine.find(CKPT)
    assert text.startswith("1girl, smile, flower <lora:demo_exact_style:0.8>")
    assert "Seed: 99" in text and "Size: 64x64" in text and "Steps: 2" in text
    assert f"Model hash: {ckpt.autov2.lower()}" in text
    assert f'Lora hashes: "demo_exact_style: {lora.autov3.lower()}"' in text


async def test_a_pasted_civitai_prompt_draws_with_its_weights(engine: Engine) -> None:
    # A1111 attention syntax, BREAK, more than 75 tokens and a <lora:> tag, as pasted from
    # CivitAI: drawn through the embeddings, weight 0 still changes nothing, and the PNG
    # says the prompt as written.
    tags = ", ".join(["masterpiece"] * 40)
    prompt = f"((masterpiece)), (1girl:1.2), [blurry], {tags} BREAK smile <lora:demo_exact_style:0>"
    written = prompt.replace(" <lora:demo_exact_style:0>", "")
    none = await engine.draw(request(prompt=written, negative="(lowres:1.3)"))
    zero = await engine.draw(request(prompt=prompt, negative="(lowres:1.3)"))
    assert zero.plan.loras[0].status == "not_applied"
    assert np.array_equal(pixels(none.images[0]), pixels(zero.images[0]))
    text = read_parameters(zero.images[0])
    assert text.startswith(f"{prompt}\nNegative prompt: (lowres:1.3)\n")  # the tag stays where it was written
    plain = await engine.draw(request(prompt=written.replace("(1girl:1.2)", "1girl"), negative="(lowres:1.3)"))
    assert not np.array_equal(pixels(none.images[0]), pixels(plain.images[0]))


async def test_incompatible_lora_is_refused_before_gpu_work(engine: Engine) -> None:
    with pytest.raises(IncompatibleError) as info:
        engine.plan(request(("demo_sd15_detail", 1.0)))
    message = str(info.value)
    assert "“demo_sd15_detail” is a SD 1.x LoRA" in message and "SDXL checkpoint" in message
    # the library's checkpoints that suit it are named, best verdict first; here none does
    assert "No checkpoint in the library suits it." in message
    assert "模型庫中沒有適合它的模型" in info.value.localized("zh-TW")
    with pytest.raises(IncompatibleError):
        await engine.submit(request(("demo_sd15_detail", None)))  # the default weight is nonzero
    assert engine.runner.lora_cache.stats.loads == 0  # never read from disk
    assert engine.runner.loaded_checkpoint() is None
    # weight 0 means "not applied": no reason to refuse
    plan = engine.plan(request(("demo_sd15_detail", 0)))
    assert plan.loras[0].status == "not_applied" and plan.applied_loras == []


def test_weight_policy(engine: Engine) -> None:
    engine.set_entry("demo_pony_style", weight=0.6)
    plan = engine.plan(request(("demo_pony_style", None), ("demo_exact_style", 1e9), ("demo_mystery", -0.5)))
    pony, exact, mystery = plan.loras
    assert (pony.requested_weight, pony.applied_weight, pony.status) == (None, 0.6, "applied")
    assert (exact.applied_weight, exact.status) == (2.0, "clamped")
    assert (mystery.applied_weight, mystery.status) == (-0.5, "applied")
    # what each file is was decided by the scan and travels with the plan to the parser
    assert pony.kind == engine.find("demo_pony_style").kind and pony.kind is not None
    assert any("outside" in w.render() for w in exact.warnings)
    with pytest.raises(WeightError):
        engine.plan(request(("demo_pony_style", float("nan"))))
    with pytest.raises(WeightError):
        engine.plan(request(("demo_pony_style", float("inf"))))


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"steps": 10_000}, LimitError),
        ({"width": 100}, LimitError),
        ({"count": 99}, LimitError),
        ({"cfg": float("nan")}, LimitError),
        ({"prompt": "x" * 10_000}, LimitError),
        ({"prompt": "\u200b\u200f"}, RequestError),
        ({"checkpoint": "demo_exact_style"}, LibraryError),
    ],
)
def test_bad_requests_are_refused_with_a_message(engine: Engine, kw, error) -> None:
    with pytest.raises(error) as err:
        engine.plan(request(**kw))
    assert str(err.value)


def test_one_lora_named_twice_is_refused(engine: Engine) -> None:
    # By file name and display name: applied twice, 2 + 2 would be 4, past the clamp range.
    engine.set_entry("demo_pony_style", display_name="Ink Pony")
    with pytest.raises(WeightError, match="same LoRA") as err:
        engine.plan(request(("Ink Pony", 2.0), ("demo_pony_style", 2.0)))
    assert "Ink Pony" in str(err.value) and "同一個 LoRA" in err.value.localized("zh-TW")
    with pytest.raises(WeightError, match="same LoRA"):
        engine.plan(request(("demo_pony_style", 1.0), ("demo_pony_style", -1.0)))


def test_lora_tags_pasted_into_the_prompt_are_applied_not_drawn_as_words(engine: Engine) -> None:
    plan = engine.plan(request(("demo_exact_style", 0.5), prompt="1girl, <lora:demo_pony_style:-0.4>, smile"))
    assert plan.params.prompt == "1girl, smile"
    assert [(lora.name, lora.applied_weight) for lora in plan.loras] == [("demo_exact_style", 0.5), ("demo_pony_style", -0.4)]
    with pytest.raises(UnknownNameError, match="demo_pony_styl"):
        engine.plan(request(prompt="1girl <lora:demo_pony_styl:1>"))
    with pytest.raises(WeightError, match="same LoRA"):
        engine.plan(request(("demo_pony_style", 1.0), prompt="1girl <lora:demo_pony_style:0.5>"))


def test_the_blocklist_sees_through_case_and_full_width_letters(engine: Engine) -> None:
    engine.admin.set_blocklist("42", ["Gore"])
    for prompt in ("GORE everywhere", "ｇｏｒｅ", "go\u200bre"):
        with pytest.raises(RequestError, match="gore"):
            engine.plan(request(prompt=prompt, scope="42"))
    assert engine.plan(request(prompt="gore", scope="7")).params.prompt == "gore"  # another server


def test_a_long_negative_prompt_is_called_the_negative_prompt(engine: Engine) -> None:
    with pytest.raises(LimitError, match="negative prompt is 10000 characters") as err:
        engine.plan(request(negative="x" * 10_000))
    assert "負面提示詞" in err.value.localized("zh-TW")


def test_prompt_lint_warns_about_pony_tags_on_illustrious(engine: Engine) -> None:
    plan = engine.plan(request(prompt="score_9, score_8_up, 1girl"))
    assert any("score_9" in w.render() for w in plan.warnings)


async def test_a_failing_job_fails_alone(engine: Engine, demo_dir: Path) -> None:
    victim = demo_dir / "loras" / "demo_mystery.safetensors"
    good = await engine.draw(request(seed=3))
    victim.write_bytes(b"not a safetensors file any more")  # changed after the scan
    with pytest.raises(LoracleError) as err:
        await engine.draw(request(("demo_mystery", 1.0), seed=3))
    assert "demo_mystery" in str(err.value) or "safetensors" in str(err.value).lower()
    after = await engine.draw(request(seed=3))
    assert np.array_equal(pixels(good.images[0]), pixels(after.images[0]))


async def test_progress_events_and_cancel(engine: Engine) -> None:
    handle = await engine.submit(request(steps=3))
    kinds = []
    async for event in handle.events():
        kinds.append(type(event).__name__)
    assert kinds[-1] == "Done" and "Step" in kinds and "Started" in kinds

    blocker = await engine.submit(request(steps=3, user_id="a"))
    queued = await engine.submit(request(steps=3, user_id="b"))
    assert engine.cancel(queued.id, user_id="b")
    with pytest.raises(Exception) as err:
        await queued.result()
    assert "cancel" in str(err.value).lower()
    await blocker.result()


async def test_only_the_owner_or_an_admin_may_cancel(engine: Engine) -> None:
    blocker = await engine.submit(request(user_id="bob", steps=3))
    handle = await engine.submit(request(user_id="alice"))
    with pytest.raises(RequestError):
        engine.cancel(handle.id, user_id="mallory")
    assert engine.cancel(handle.id, user_id="root", is_admin=True)
    await blocker.result()


async def test_jobs_queued_at_a_crash_run_after_restart(demo_settings: Settings) -> None:
    first = Engine(demo_settings)
    await first.scan(civitai=False)
    await first.start()
    plan_request = request(seed=11)
    # Simulate the process dying with this job queued: write the row as submit would.
    from engine.queue.job import QueuedJob

    plan = first.plan(plan_request)
    job = QueuedJob(user_id="cli", checkpoint=plan.checkpoint.sha256, request=plan_request.to_json(), payload=plan)
    first.job_store.insert(job)
    await first.close()

    second = Engine(demo_settings)
    try:
        await second.start()
        assert [h.id for h in second.recovered] == [job.id]
        result = await second.recovered[0].result()
        assert result.images[0].exists()
        row = second.job_store.get(job.id)
        assert row.status == "done"
    finally:
        await second.close()


async def test_job_request_is_read_back_for_reroll(engine: Engine) -> None:
    result = await engine.draw(request(("demo_exact_style", 0.5), seed=1234))
    again = engine.job_request(result.job_id)
    assert again is not None and again.seed == 1234
    assert again.loras == [LoraRequest("demo_exact_style", 0.5)]
    assert engine.job_request("no-such-job") is None


async def test_per_user_cap_changes_while_running(engine: Engine) -> None:
    from engine.errors import QueueFullError

    engine.set_limits(queue_per_user=1)
    blocker = await engine.submit(request(user_id="other", steps=3))
    first = await engine.submit(request(user_id="alice"))
    with pytest.raises(QueueFullError):
        await engine.submit(request(user_id="alice"))
    engine.set_limits(queue_per_user=2)
    second = await engine.submit(request(user_id="alice"))
    for handle in (blocker, first, second):
        await handle.result()


def test_autocomplete_hides_nsfw_loras_outside_age_restricted_channels(engine: Engine) -> None:
    engine.set_entry("demo_pony_style", nsfw=True)
    everywhere = [e.name for e, _ in engine.suggest_loras(CKPT, "demo")]
    sfw = [e.name for e, _ in engine.suggest_loras(CKPT, "demo", allow_nsfw=False)]
    assert "demo_pony_style" in everywhere and "demo_pony_style" not in sfw
    assert "demo_sd15_detail" not in everywhere  # incompatible with the checkpoint
    assert everywhere[0] == "demo_exact_style"  # exact first
    with pytest.raises(RequestError, match="NSFW"):
        engine.plan(request(("demo_pony_style", 1.0), allow_nsfw=False))


async def test_png_names_sampler_and_schedule_as_a1111_does(engine: Engine) -> None:
    # A1111 >= 1.9 (and CivitAI's reader of it) splits "DPM++ 2M Karras" in two.
    from engine.png_info import parse_parameters

    result = await engine.draw(request(sampler="DPM++ 2M Karras"))
    parsed = parse_parameters(read_parameters(result.images[0]))
    assert (parsed["Sampler"], parsed["Schedule type"]) == ("DPM++ 2M", "Karras")
    assert result.to_json()["sampler"] == "DPM++ 2M Karras"  # what the user asked for


async def test_switching_checkpoints_frees_the_old_pipeline_before_loading(
    demo_settings: Settings, demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The LoRA patcher holds the pipeline and its pristine copies: kept until after the
    # next load, two SDXLs would sit on the GPU at once.
    import gc
    import weakref

    from engine.pipeline import generator as generator_module
    from engine.testing.tiny_sdxl import write_tiny_checkpoint

    write_tiny_checkpoint(demo_dir / "models" / "otherXL_v10.safetensors", seed=5)
    engine = Engine(demo_settings)
    await engine.scan(civitai=False)
    await engine.start()
    try:
        await engine.draw(request(("demo_exact_style", 0.8), steps=1))
        old = weakref.ref(engine.runner.generator.pipe)
        alive: list[bool] = []
        real_load = generator_module.load_pipeline

        def spy(*args, **kwargs):
            gc.collect()
            alive.append(old() is not None)
            return real_load(*args, **kwargs)

        monkeypatch.setattr(generator_module, "load_pipeline", spy)
        result = await engine.draw(request(("demo_exact_style", 0.8), steps=1, checkpoint="otherXL_v10"))
        assert alive == [False]
        assert result.plan.loras[0].matched_modules > 0  # a fresh patcher on the new pipeline
    finally:
        await engine.close()


async def test_checkpoint_pruned_of_its_vae_borrows_one_from_the_library(engine: Engine, demo_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(demo_dir / "models" / f"{CKPT}.safetensors")
    save_file({k: v for k, v in tensors.items() if not k.startswith("first_stage_model.")},
              str(demo_dir / "models" / "prunedXL_noVAE.safetensors"))
    await engine.scan(civitai=False)
    borrowed = await engine.draw(request(checkpoint="prunedXL_noVAE", seed=21))
    assert borrowed.plan.checkpoint.vae_from == CKPT
    assert any("no VAE of its own" in w.render() for w in borrowed.warnings)
    original = await engine.draw(request(seed=21))  # same UNet and text encoders, same VAE
    assert np.array_equal(pixels(borrowed.images[0]), pixels(original.images[0]))

    engine.set_entry(CKPT, enabled=False)  # nothing left to borrow from: refused at once
    engine.set_entry("tinyIllustriousBase_v10", enabled=False)  # the demo merge's parent has a VAE too
    with pytest.raises(LibraryError, match="no other SDXL checkpoint") as err:
        engine.plan(request(checkpoint="prunedXL_noVAE"))
    assert "沒有內建 VAE" in err.value.localized("zh-TW")


@pytest.mark.parametrize("prompt", ["1girl, (smile:1.2.3)", "(x:.)", "(smile:50)", "(" * 11 + "x", "a BREAK " * 32 + "b"])
async def test_what_would_fail_on_the_worker_is_refused_at_plan_time(engine: Engine, prompt: str) -> None:
    # before: planned, queued, the checkpoint loaded, then "unexpected problem (ValueError)"
    with pytest.raises(RequestError) as info:
        engine.plan(request(prompt=prompt))
    assert "“" in str(info.value) or "BREAK" in str(info.value)
    with pytest.raises(RequestError):
        await engine.submit(request(prompt=prompt))
    assert engine.runner.loaded_checkpoint() is None  # no GPU work


async def test_a_huge_prompt_of_unterminated_tags_is_refused_at_once(engine: Engine) -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(LimitError, match="characters long"):
        engine.plan(request(prompt="<lora:a:" * 15_000))  # 117 KB: 44 s in the tag pattern before
    assert time.perf_counter() - start < 2.0


async def test_png_prompt_is_the_prompt_as_written(engine: Engine) -> None:
    written = "1girl, <lora:demo_exact_style:0.8>, smile"
    result = await engine.draw(request(("demo_pony_style", 0.5), prompt=written))
    assert result.plan.params.prompt == "1girl, smile"  # what the text encoders read
    text = read_parameters(result.images[0])
    # the pasted tag stays where it was; only the LoRA given as an option is appended
    assert text.startswith(f"{written} <lora:demo_pony_style:0.5>\nNegative prompt: lowres\n")
