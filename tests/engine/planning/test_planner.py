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
