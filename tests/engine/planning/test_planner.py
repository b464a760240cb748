"""The planner on real files: what is refused before any GPU work, and why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.api import Engine
from engine.errors import IncompatibleError
from engine.planning.lora_weights import LoraRequest
from engine.requests import DrawRequest
from tests.factories.model_files import kohya_metadata, write_checkpoint, write_kohya_lora
from tests.fakes.civitai import FakeCivitai, fake_civitai, settings_for  # noqa: F401


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest().upper()


@pytest.fixture
async def engine(tmp_path: Path, fake_civitai: tuple[FakeCivitai, str]):
    fake, base_url = fake_civitai
    models, loras = tmp_path / "models", tmp_path / "loras"
    models.mkdir()
    loras.mkdir()
    xl = write_checkpoint(models / "novaOrangeMerge_v1.safetensors", "sdxl")
    fake.register_hash(sha(xl), base_model="Illustrious", model_type="Checkpoint", version_id=9001)
    sd15 = write_checkpoint(models / "dreamy15.safetensors", "sd1")
    fake.register_hash(sha(sd15), base_model="SD 1.5", model_type="Checkpoint", version_id=9002)
    lora = write_kohya_lora(loras / "sd15_style.safetensors", "sd1", metadata=kohya_metadata("sd1", sd_model_name=None))  # type: ignore[arg-type]
    fake.register_hash(sha(lora), base_model="SD 1.5", version_id=104)
    async with Engine(settings_for(base_url, tmp_path)) as engine:
        await engine.scan()
        yield engine


def draw(weight: float | None) -> DrawRequest:
    return DrawRequest(prompt="1girl", checkpoint="novaOrangeMerge_v1", loras=[LoraRequest("sd15_style", weight)])


async def test_an_incompatible_lora_is_refused_naming_the_checkpoints_that_suit_it(engine: Engine) -> None:
    with pytest.raises(IncompatibleError) as info:
        engine.plan(draw(0.8))
    message = str(info.value)
    assert "“sd15_style” is a SD 1.x LoRA and “novaOrangeMerge_v1” is a SDXL checkpoint" in message
    assert message.endswith("Checkpoints in the library that suit it: “dreamy15”.")
    assert "「dreamy15」" in info.value.localized("zh-TW")
    assert info.value.params["suits"] == ["dreamy15"]


async def test_weight_zero_is_not_applied_and_not_refused(engine: Engine) -> None:
    plan = engine.plan(draw(0))
    assert [lora.status for lora in plan.loras] == ["not_applied"] and plan.applied_loras == []


@pytest.fixture
async def authored(tmp_path: Path, fake_civitai: tuple[FakeCivitai, str]):
    """An SDXL LoRA whose author recommends 0.6…0.8 and lists trigger words."""
    fake, base_url = fake_civitai
    (tmp_path / "models").mkdir()
    (tmp_path / "loras").mkdir()
    xl = write_checkpoint(tmp_path / "models" / "novaOrangeMerge_v1.safetensors", "sdxl")
    fake.register_hash(sha(xl), base_model="Illustrious", model_type="Checkpoint", version_id=9001)
    lora = write_kohya_lora(tmp_path / "loras" / "ink_style.safetensors", "sdxl", metadata=kohya_metadata("sdxl", sd_model_name=None))  # type: ignore[arg-type]
    body = fake.register_hash(sha(lora), base_model="Illustrious", version_id=201, trained_words=["ink_style", "sumi-e"])
    body["description"] = "<p>Recommended weight 0.6-0.8</p>"
    async with Engine(settings_for(base_url, tmp_path)) as engine:
        await engine.scan()
        yield engine


def ink(weight: float | None, prompt: str = "1girl, ink style") -> DrawRequest:
    return DrawRequest(prompt=prompt, checkpoint="novaOrangeMerge_v1", loras=[LoraRequest("ink_style", weight)])


async def test_a_lora_without_a_weight_is_drawn_at_its_authors_weight(authored: Engine) -> None:
    plan = authored.plan(ink(None))
    [lora] = plan.loras
    assert (lora.requested_weight, lora.applied_weight, lora.status) == (None, 0.7, "applied")
    assert plan.warnings == []


async def test_a_weight_outside_the_authors_range_stands_with_a_note(authored: Engine) -> None:
    plan = authored.plan(ink(1.2))
    assert plan.loras[0].applied_weight == 1.2
    [note] = plan.warnings
    assert note.render("en") == "ink_style: weight 1.2 is outside the author's recommended 0.6…0.8."
    assert note.render("zh-TW") == "ink_style：權重 1.2 超出作者建議的 0.6…0.8。"
    assert authored.plan(ink(0.65)).warnings == []


async def test_a_missing_trigger_word_is_named_once(authored: Engine) -> None:
    plan = authored.plan(ink(0.7, "1girl, watercolor"))
    [note] = plan.warnings
    assert "none of its trigger words is in the prompt" in note.render("en") and "ink_style, sumi-e" in note.render("en")
    assert "觸發詞" in note.render("zh-TW")
    assert authored.plan(ink(0.7, "1girl, (Sumi-E:1.2)")).warnings == []
    assert authored.plan(ink(0, "1girl, watercolor")).loras[0].status == "not_applied"
    assert all("trigger" not in w.render("en") for w in authored.plan(ink(0, "1girl, watercolor")).warnings)


async def test_clip_skip_reaches_the_generation_params(engine: Engine) -> None:
    # "draw like this" redraws a picture with the clip skip it was made with
    plan = engine.plan(DrawRequest(prompt="1girl", checkpoint="novaOrangeMerge_v1", clip_skip=3))
    assert plan.params.clip_skip == 3
    assert engine.plan(DrawRequest(prompt="1girl", checkpoint="novaOrangeMerge_v1")).params.clip_skip is None
