"""Knowledge: the recommended weight and trigger words, from a real cached CivitAI body."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from engine.api import Engine
from tests.factories.model_files import kohya_metadata, write_checkpoint, write_kohya_lora
from tests.fakes.civitai import FakeCivitai, fake_civitai, settings_for  # noqa: F401


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest().upper()


SETTINGS = {"strength": 0.8, "minStrength": 0.6, "maxStrength": 1.0}
DESCRIPTION = "<p>Recommended weight 0.5-0.7</p>"


def example_images(autov2: str, *weights: float) -> list[dict[str, Any]]:
    return [
        {"url": f"https://image.civitai.com/x/{i}.jpeg", "nsfwLevel": 1, "type": "image",
         "meta": {"prompt": "1girl", "resources": [{"name": "some lora", "type": "lora", "weight": w, "hash": autov2}]}}
        for i, w in enumerate(weights)
    ]


@pytest.fixture
async def world(tmp_path: Path, fake_civitai: tuple[FakeCivitai, str]):
    """LoRAs whose CivitAI bodies each say a little less: every source, then one fewer."""
    fake, base_url = fake_civitai
    models, loras = tmp_path / "models", tmp_path / "loras"
    models.mkdir()
    loras.mkdir()
    merge = write_checkpoint(models / "novaOrangeMerge_v1.safetensors", "sdxl")
    fake.register_hash(sha(merge), base_model="Illustrious", model_type="Checkpoint", version_id=9001)
    bodies: dict[str, dict[str, Any]] = {}
    for seed, name in enumerate(["admin", "civitai", "description", "model_description", "examples", "default"]):
        path = write_kohya_lora(loras / f"{name}.safetensors", "sdxl", seed=seed, metadata=kohya_metadata("sdxl", sd_model_name=None))  # type: ignore[arg-type]
        h = sha(path)
        body = fake.register_hash(h, base_model="Illustrious", version_id=500 + seed, model_id=600 + seed)
        level = ["admin", "civitai", "description", "model_description", "examples"].index(name) if name != "default" else 9
        if level <= 1:
            body["settings"] = SETTINGS
        if level <= 2:
            body["description"] = DESCRIPTION
        if level <= 4:
            body["images"] = example_images(h[:10], 0.4, 0.5, 0.9)
        bodies[name] = body
    # The model body, cached only because something fetched it before (adding from CivitAI).
    fake.models[603] = {"id": 603, "name": "Model", "type": "LORA", "description": "<p>Strength: 0.45</p>", "modelVersions": []}
    engine = Engine(settings_for(base_url, tmp_path))
    await engine.civitai.model(603)
    await engine.scan()
    engine.set_entry("admin", weight=0.3)
    yield engine, fake, bodies
    await engine.close()


@pytest.mark.parametrize(
    ("name", "value", "source", "range_"),
    [
        ("admin", 0.3, "admin", None),
        ("civitai", 0.8, "civitai", [0.6, 1.0]),
        ("description", 0.6, "description", [0.5, 0.7]),
        ("model_description", 0.45, "description", None),
        ("examples", 0.5, "examples", [0.4, 0.9]),
        ("default", 1.0, "default", None),
    ],
)
async def test_admin_beats_civitai_beats_description_beats_examples_beats_default(
    world, name: str, value: float, source: str, range_: list[float] | None
) -> None:
    engine, _, _ = world
    info = (await engine.lora_info(name)).to_json()
    assert (info["recommended_weight"], info["recommended_weight_source"], info["recommended_range"]) == (value, source, range_)


async def test_the_authors_weight_is_memoized_and_asks_nothing(world) -> None:
    engine, fake, _ = world
    asked = len(fake.requests)
    entry = engine.find("civitai")
    first = engine.knowledge.recommended_weight(entry)
    assert engine.knowledge.recommended_weight(entry) is first
    assert len(fake.requests) == asked


async def test_trigger_words_come_from_civitai_then_the_files_metadata(tmp_path: Path, fake_civitai) -> None:
    fake, base_url = fake_civitai
    (tmp_path / "loras").mkdir()
    meta = {**kohya_metadata("sdxl", sd_model_name=None), "modelspec.trigger_phrase": "own word"}  # type: ignore[arg-type]
    both = write_kohya_lora(tmp_path / "loras" / "both.safetensors", "sdxl", seed=1, metadata=meta)
    write_kohya_lora(tmp_path / "loras" / "file_only.safetensors", "sdxl", seed=2, metadata=meta)
    fake.register_hash(sha(both), trained_words=["civitai word"])
    async with Engine(settings_for(base_url, tmp_path)) as engine:
        await engine.scan()
        assert engine.knowledge.trigger_words(engine.find("both")) == (["civitai word"], "civitai")
        assert engine.knowledge.trigger_words(engine.find("file_only")) == (["own word"], "metadata")


async def test_a_sliders_range_around_zero_does_not_turn_the_lora_off(tmp_path: Path, fake_civitai) -> None:
    fake, base_url = fake_civitai
    (tmp_path / "loras").mkdir()
    slider = write_kohya_lora(tmp_path / "loras" / "age_slider.safetensors", "sdxl", metadata=kohya_metadata("sdxl", sd_model_name=None))  # type: ignore[arg-type]
    fake.register_hash(sha(slider))["description"] = "<p>Recommended weight -2 to 2</p>"
    async with Engine(settings_for(base_url, tmp_path)) as engine:
        await engine.scan()
        info = (await engine.lora_info("age_slider")).to_json()
        assert (info["recommended_weight"], info["recommended_weight_source"], info["recommended_range"]) == (1.0, "default", [-2.0, 2.0])
