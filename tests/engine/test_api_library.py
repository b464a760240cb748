"""Library administration through the Engine facade: adding models from CivitAI (a fake
CivitAI on loopback serving real bytes), end to end through download and scan."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.api import Engine
from engine.errors import LibraryError
from tests.factories.model_files import write_kohya_lora
from tests.fakes.civitai import FakeCivitai, fake_civitai, settings_for, version_body  # noqa: F401


def lora_bytes(tmp_path: Path, seed: int) -> bytes:
    return write_kohya_lora(tmp_path / f"src-{seed}.safetensors", "sdxl", seed=seed).read_bytes()


@pytest.fixture
async def engine_and_fake(tmp_path: Path, fake_civitai: tuple[FakeCivitai, str]):
    fake, base_url = fake_civitai
    data = tmp_path / "data"
    async with Engine(settings_for(base_url, data)) as engine:
        yield engine, fake, data


async def test_a_version_link_is_downloaded_verified_and_scanned(engine_and_fake, tmp_path: Path) -> None:
    engine, fake, data = engine_and_fake
    content = lora_bytes(tmp_path, 1)
    fake.register_hash(content=content, version_id=7001, model_id=700, base_model="NoobAI", file_name="noob_girl.safetensors")
    seen: list[tuple[int, int | None]] = []

    entry = await engine.add_from_civitai(
        "https://civitai.com/models/700/noob-girl?modelVersionId=7001", progress=lambda done, total: seen.append((done, total))
    )

    assert entry.rel_path == "loras/noob_girl.safetensors"
    assert (data / entry.rel_path).read_bytes() == content
    assert seen and seen[-1][0] == len(content)
    assert fake.count("download", 7001) == 1
    summary = engine.summary(engine.find("noob_girl"))
    assert (summary.base_model, summary.family) == ("NoobAI", "illustrious")


async def test_a_model_page_skips_a_newest_version_still_in_early_access(engine_and_fake, tmp_path: Path) -> None:
    engine, fake, _data = engine_and_fake
    old, new = lora_bytes(tmp_path, 2), lora_bytes(tmp_path, 3)
    public = fake.register_hash(content=old, version_id=8001, model_id=800, file_name="style_v1.safetensors")
    early = fake.register_hash(content=new, version_id=8002, model_id=800, file_name="style_v2.safetensors")
    for body in (public, early):
        fake.versions.pop(body["id"])  # served from the model body below, as CivitAI does
    early["availability"], public["availability"] = "EarlyAccess", "Public"
    fake.early_access[8002] = "2026-12-24T00:00:00.000Z"
    fake.models[800] = {"id": 800, "name": "Style", "type": "LORA", "nsfw": False, "modelVersions": [early, public]}

    entry = await engine.add_from_civitai("https://civitai.com/models/800/style")

    assert entry.rel_path == "loras/style_v1.safetensors"
    assert fake.count("download", 8002) == 0


@pytest.mark.parametrize("model_type", ["TextualInversion", "VAE", "Controlnet", "Upscaler"])
async def test_types_loracle_cannot_use_are_refused_before_downloading(engine_and_fake, tmp_path: Path, model_type: str) -> None:
    engine, fake, data = engine_and_fake
    fake.register_hash(content=lora_bytes(tmp_path, 4), version_id=9001, model_type=model_type, model_name="Easy Negative")

    with pytest.raises(LibraryError, match=rf"“Easy Negative” is a {model_type} on CivitAI"):
        await engine.add_from_civitai("9001")

    assert fake.count("download") == 0
    assert not (data / "loras").exists() or not any((data / "loras").iterdir())


async def test_closing_stops_a_scan_between_files_and_the_next_scan_goes_on(tmp_path: Path) -> None:
    from engine.settings import load_settings

    settings = load_settings(_env_file=None, data_dir=tmp_path, offline=True)
    for seed in (1, 2, 3):
        write_kohya_lora(tmp_path / "loras" / f"l{seed}.safetensors", "sdxl", seed=seed)
    engine = Engine(settings)
    seen: list[str] = []

    def progress(rel_path: str) -> None:
        seen.append(rel_path)
        if len(seen) == 1:
            engine._closing.set()  # what close() does while the scan thread works

    with pytest.raises(LibraryError, match="shutting down"):
        await engine.scan(civitai=False, progress=progress)
    await engine.close()
    # the file it was on is kept, its hash still pending (the scan stopped in its header pass)
    assert len(seen) == 1 and [e.hash_pending for e in engine.entries()] == [True]

    async with Engine(settings) as again:
        report = await again.scan(civitai=False)
    assert (len(report.added), report.updated, report.removed) == (2, ["loras/l1.safetensors"], [])
    assert all(e.sha256 and not e.hash_pending for e in again.entries())
