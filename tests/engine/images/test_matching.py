"""A picture's resources against a real library: by hash first (AutoV1/V2/V3, SHA-256,
CivitAI version), then by name (ComfyUI's file names with folders), else missing with
the CivitAI page a fake CivitAI on loopback gives for its hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.api import Engine
from engine.images.matching import by_hash, name_candidates
from engine.images.types import ImageParameters, ResourceRef
from tests.factories.model_files import kohya_metadata, write_checkpoint, write_kohya_lora
from tests.fakes.civitai import FakeCivitai, fake_civitai, settings_for  # noqa: F401


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest().upper()


@pytest.fixture
async def world(tmp_path: Path, fake_civitai: tuple[FakeCivitai, str]):
    fake, base_url = fake_civitai
    (tmp_path / "models").mkdir()
    (tmp_path / "loras" / "styles").mkdir(parents=True)
    ckpt = write_checkpoint(tmp_path / "models" / "novaMerge_v1.safetensors", "sdxl")
    fake.register_hash(sha(ckpt), base_model="Illustrious", model_type="Checkpoint", version_id=9001, model_id=900)
    meta = kohya_metadata("sdxl", sd_model_name=None)  # type: ignore[arg-type]
    write_kohya_lora(tmp_path / "loras" / "styles" / "watercolor.safetensors", "sdxl", seed=1, metadata=meta)
    write_kohya_lora(tmp_path / "loras" / "detail.safetensors", "sdxl", seed=2, metadata=meta)
    write_kohya_lora(tmp_path / "loras" / "old15.safetensors", "sd1", seed=3, metadata=kohya_metadata("sd1"))
    # files the library lacks but CivitAI knows
    elsewhere = hashlib.sha256(b"a LoRA on CivitAI only").hexdigest().upper()
    fake.register_hash(elsewhere, base_model="Illustrious", version_id=555, model_id=55)
    engine = Engine(settings_for(base_url, tmp_path))
    await engine.scan()
    yield engine, fake, elsewhere
    await engine.close()


def params(*refs: ResourceRef) -> ImageParameters:
    checkpoint = next((r for r in refs if r.kind == "checkpoint"), None)
    return ImageParameters("a1111", "a cat", checkpoint=checkpoint, loras=[r for r in refs if r.kind == "lora"])


async def _info(engine: Engine, p: ImageParameters, checkpoint: str | None = None):
    resolved = await engine.pictures.resolve(p, checkpoint)
    return [r.match for r in resolved]


async def test_every_hash_kind_finds_its_file(world) -> None:
    engine, _, _ = world
    ckpt = engine.find("novaMerge_v1")
    lora = engine.find("detail")
    for digest in (ckpt.autov2.lower(), ckpt.sha256, ckpt.sha256[:12].lower(), ckpt.autov1):
        if digest:
            assert by_hash(engine.entries("checkpoint"), digest) == ckpt, digest
    for digest in (lora.autov3.lower(), lora.sha256.lower()):
        assert by_hash(engine.entries("lora"), digest) == lora
    assert by_hash(engine.entries("lora"), "0123") is None  # too short to mean anything


async def test_hash_beats_name_and_names_are_found_as_comfyui_writes_them(world) -> None:
    engine, _, _ = world
    lora = engine.find("detail")
    matches = await _info(
        engine,
        params(
            ResourceRef("checkpoint", "novaMerge_v1.safetensors"),
            # the hash says "detail" whatever the name says
            ResourceRef("lora", "watercolor", lora.autov3.lower(), 0.5),
            ResourceRef("lora", "styles\\watercolor.safetensors", None, 0.8),
            ResourceRef("lora", "other/folder/detail.safetensors", None, 0.3),
        ),
    )
    assert [(m.how, m.matched) for m in matches] == [
        ("name", "novaMerge_v1"),
        ("hash", "detail"),
        ("name", "watercolor"),
        ("name", "detail"),
    ]
    assert all(m.verdict is not None for m in matches[1:])


async def test_missing_ones_get_their_civitai_page_when_civitai_knows_the_hash(world) -> None:
    engine, _fake, elsewhere = world
    matches = await _info(
        engine,
        params(
            ResourceRef("checkpoint", "gone", "FFFFFFFFFF"),
            ResourceRef("lora", "on_civitai", elsewhere[:10].lower(), 1.0),
            ResourceRef("lora", "by_version", None, 1.0, civitai_version=555),
            ResourceRef("lora", "nameonly.safetensors", None, 1.0),
        ),
        checkpoint="novaMerge_v1",
    )
    assert [m.how for m in matches] == ["missing"] * 4
    base = engine.settings.civitai_base_url.rstrip("/")
    assert [m.civitai_url for m in matches] == [
        None,
        f"{base}/models/55?modelVersionId=555",
        f"{base}/models/55?modelVersionId=555",
        None,
    ]


async def test_civitai_down_means_no_link_and_no_failure(world) -> None:
    engine, fake, elsewhere = world
    fake.add_fault("by-hash", status=503, times=None)
    matches = await _info(engine, params(ResourceRef("lora", "on_civitai", elsewhere[:10], 1.0)))
    assert matches[0].how == "missing" and matches[0].civitai_url is None


async def test_a_civitai_version_id_matches_the_file_civitai_says_it_is(world) -> None:
    engine, _, _ = world
    matches = await _info(engine, params(ResourceRef("checkpoint", "Nova Merge (CivitAI's name)", None, civitai_version=9001)))
    assert (matches[0].how, matches[0].matched) == ("hash", "novaMerge_v1")


async def test_verdicts_are_against_the_checkpoint_that_will_draw(world) -> None:
    engine, _, _ = world
    matches = await _info(engine, params(ResourceRef("lora", "old15")), checkpoint="novaMerge_v1")
    assert matches[0].verdict == "incompatible"


def test_name_candidates() -> None:
    assert name_candidates("sub\\dir\\foo.safetensors") == ["sub/dir/foo.safetensors", "foo.safetensors"]
    assert name_candidates("foo") == ["foo"]
    assert name_candidates(None) == [] and name_candidates("") == []


async def test_with_the_pictures_checkpoint_missing_verdicts_are_against_the_default(world) -> None:
    engine, _, _ = world
    matches = await _info(engine, params(ResourceRef("checkpoint", "gone.safetensors"), ResourceRef("lora", "old15")))
    assert [(m.how, m.verdict) for m in matches] == [("missing", None), ("name", "incompatible")]
