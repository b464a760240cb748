"""Verdicts end to end: files on disk, a fake CivitAI on loopback, the Engine facade."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.api import Engine
from engine.errors import RequestError, UnknownNameError
from tests.factories.model_files import kohya_metadata, write_checkpoint, write_kohya_lora
from tests.fakes.civitai import FakeCivitai, fake_civitai, settings_for  # noqa: F401


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest().upper()


def no_name_metadata(base: str, **extra: object) -> dict[str, str]:
    # sd_model_name=None keeps file-name guesses out, so each case tests one source
    return kohya_metadata(base, sd_model_name=None, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def world(tmp_path: Path, fake_civitai: tuple[FakeCivitai, str]):
    fake, base_url = fake_civitai
    models, loras = tmp_path / "models", tmp_path / "loras"
    models.mkdir()
    loras.mkdir()
    merge = write_checkpoint(models / "novaOrangeMerge_v1.safetensors", "sdxl")
    fake.register_hash(sha(merge), base_model="Illustrious", model_type="Checkpoint", version_id=9001)

    lo = {
        "exact": write_kohya_lora(loras / "exact.safetensors", "sdxl", metadata=no_name_metadata("sdxl", new_sd_model_hash=sha(merge).lower())),
        "il_style": write_kohya_lora(loras / "il_style.safetensors", "sdxl", seed=1, metadata=no_name_metadata("sdxl")),
        "noob_char": write_kohya_lora(loras / "noob_char.safetensors", "sdxl", seed=2, metadata=no_name_metadata("sdxl")),
        "pony_style": write_kohya_lora(loras / "pony_style.safetensors", "sdxl", seed=3, metadata=no_name_metadata("sdxl")),
        "sd15_style": write_kohya_lora(loras / "sd15_style.safetensors", "sd1", seed=4, metadata=no_name_metadata("sd1")),
        "flux_style": write_kohya_lora(loras / "flux_style.safetensors", "flux", seed=5, metadata=no_name_metadata("flux")),
        "mystery": write_kohya_lora(loras / "mystery.safetensors", "sdxl", seed=6, metadata={}),
    }
    fake.register_hash(sha(lo["il_style"]), base_model="Illustrious", version_id=101)
    fake.register_hash(sha(lo["noob_char"]), base_model="NoobAI", version_id=102)
    fake.register_hash(sha(lo["pony_style"]), base_model="Pony", version_id=103)
    fake.register_hash(sha(lo["sd15_style"]), base_model="SD 1.5", version_id=104)
    fake.register_hash(sha(lo["flux_style"]), base_model="Flux.1 D", version_id=105)

    # A LoRA CivitAI does not know, trained on a checkpoint CivitAI does know (Pony).
    pony_ckpt_hash = hashlib.sha256(b"pony diffusion v6 xl").hexdigest().upper()
    fake.register_hash(pony_ckpt_hash, base_model="Pony", model_type="Checkpoint", version_id=290640)
    write_kohya_lora(
        loras / "via_training.safetensors", "sdxl", seed=7, metadata=no_name_metadata("sdxl", new_sd_model_hash=pony_ckpt_hash.lower())
    )

    engine = Engine(settings_for(base_url, tmp_path))
    await engine.scan()
    yield engine, fake
    await engine.close()


@pytest.mark.parametrize(
    ("lora", "verdict"),
    [
        ("exact", "exact"),
        ("il_style", "same_family"),
        ("noob_char", "same_family"),
        ("pony_style", "other_family"),
        ("sd15_style", "incompatible"),
        ("flux_style", "incompatible"),
        ("mystery", "unknown"),
        ("via_training", "other_family"),
    ],
)
async def test_family_check_verdicts(world, lora: str, verdict: str) -> None:
    engine, _ = world
    check = await engine.family_check("novaOrangeMerge_v1", [lora])
    data = check.to_json()
    assert data["checkpoint"]["family"] == "illustrious"
    item = data["loras"][0]
    assert item["verdict"] == verdict, item
    assert item["evidence"] and item["explanation"]
    assert check.loras[0].explanation["zh-TW"] != check.loras[0].explanation["en"]


async def test_answers_come_from_the_cache_the_second_time(world) -> None:
    engine, fake = world
    asked = len(fake.requests)
    await engine.family_check("novaOrangeMerge_v1", ["pony_style", "mystery"])
    await engine.lora_info("pony_style")
    assert len(fake.requests) == asked  # scan already asked; 404s are cached too


async def test_lora_info(world) -> None:
    engine, _ = world
    info = (await engine.lora_info("pony_style")).to_json()
    assert info["base_model"] == "Pony" and info["family"] == "pony"
    assert info["architecture"] == "sdxl" and info["autov2"] == info["sha256"][:10]
    assert info["autov3"] and len(info["autov3"]) == 12
    assert info["civitai_url"].endswith("modelVersionId=103")
    assert info["recommended_weight"] == 1.0
    assert {"checkpoint": "novaOrangeMerge_v1", "family": "illustrious", "family_label": "Illustrious", "verdict": "other_family"} in info["suits"]


async def test_admin_override_beats_civitai(world) -> None:
    engine, _ = world
    engine.set_entry("pony_style", base_model="Illustrious", weight=0.6)
    info = (await engine.lora_info("pony_style")).to_json()
    assert info["base_model"] == "Illustrious" and info["base_model_source"] == "admin"
    assert info["recommended_weight"] == 0.6
    check = await engine.family_check("novaOrangeMerge_v1", ["pony_style"])
    assert check.loras[0].verdict == "same_family"


async def test_unknown_names_suggest(world) -> None:
    engine, _ = world
    with pytest.raises(UnknownNameError) as err:
        await engine.family_check("novaOrangeMerge_v1", ["pony_styel"])
    assert "pony_style" in err.value.suggestions


async def test_civitai_down_degrades_to_file_knowledge(tmp_path: Path) -> None:
    # Nothing listens on this port: every lookup fails fast; the answer still comes.
    (tmp_path / "models").mkdir()
    (tmp_path / "loras").mkdir()
    merge = write_checkpoint(tmp_path / "models" / "illustriousXL_v01.safetensors", "sdxl")
    write_kohya_lora(
        tmp_path / "loras" / "trained_here.safetensors", "sdxl",
        metadata=no_name_metadata("sdxl", new_sd_model_hash=sha(merge).lower()),
    )
    engine = Engine(settings_for("http://127.0.0.1:9", tmp_path, civitai_max_retries=0))
    try:
        await engine.scan()
        check = await engine.family_check("illustriousXL_v01", ["trained_here"])
    finally:
        await engine.close()
    assert check.loras[0].verdict == "exact"
    assert check.notes  # says CivitAI could not be asked


async def test_civitai_info_sidecar_is_used_offline(tmp_path: Path) -> None:
    """A1111's Civitai Helper leaves `<name>.civitai.info` next to each model; a sidecar
    listing this file's SHA-256 answers offline, any other sidecar is ignored."""
    import json

    (tmp_path / "models").mkdir()
    (tmp_path / "loras").mkdir()
    write_checkpoint(tmp_path / "models" / "someIllustriousMerge.safetensors", "sdxl")
    lora = write_kohya_lora(tmp_path / "loras" / "choke_hold_rnc_ilxl.safetensors", "sdxl", metadata={})
    other = write_kohya_lora(tmp_path / "loras" / "stranger.safetensors", "sdxl", seed=9, metadata={})
    sample = json.loads((Path(__file__).parents[1] / "data" / "civitai" / "illustrious-lora-civitai-info-1421739.json").read_text())
    sample["files"][0]["hashes"]["SHA256"] = sha(lora)
    sample["files"][0]["hashes"]["AutoV2"] = sha(lora)[:10]
    lora.with_suffix(".civitai.info").write_text(json.dumps(sample))
    other.with_suffix(".civitai.info").write_text(json.dumps(sample))  # lists another file's hash

    engine = Engine(settings_for("http://127.0.0.1:9", tmp_path, offline=True))
    try:
        await engine.scan()
        info = (await engine.lora_info("choke_hold_rnc_ilxl")).to_json()
        stranger = (await engine.lora_info("stranger")).to_json()
    finally:
        await engine.close()
    assert info["base_model"] == "Illustrious" and info["base_model_source"] == "civitai"
    assert info["trigger_words"] == ["choke hold \\(rnc\\)"]
    assert info["civitai_url"].endswith("/models/902206?modelVersionId=1421739")
    assert stranger["base_model"] is None


async def test_a_hostile_civitai_info_sidecar_is_ignored_and_the_scan_goes_on(tmp_path: Path) -> None:
    """A sidecar is a stranger's file: deep nesting must not raise RecursionError out of
    the scan (it is read with the limits of a CivitAI answer)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "loras").mkdir()
    write_checkpoint(tmp_path / "models" / "someIllustriousMerge.safetensors", "sdxl")
    lora = write_kohya_lora(tmp_path / "loras" / "deep.safetensors", "sdxl", metadata={})
    lora.with_suffix(".civitai.info").write_text("[" * 100_000 + "]" * 100_000)
    engine = Engine(settings_for("http://127.0.0.1:9", tmp_path, offline=True))
    try:
        await engine.scan()
        info = (await engine.lora_info("deep")).to_json()
    finally:
        await engine.close()
    assert info["base_model"] is None


async def test_a_library_training_checkpoint_beats_score_tags_in_the_captions(tmp_path: Path) -> None:
    """Illustrious LoRAs trained on datasets captioned for Pony carry score_* tags; the
    checkpoint the LoRA names by SHA-256, found in the library, decides its family."""
    (tmp_path / "models").mkdir()
    (tmp_path / "loras").mkdir()
    base = write_checkpoint(tmp_path / "models" / "someBase_v1.safetensors", "sdxl")
    write_checkpoint(tmp_path / "models" / "someMerge_v2.safetensors", "sdxl", metadata={"merge": "v2"})
    tags = {"score_9": 40, "score_8_up": 40, "1girl": 30}
    write_kohya_lora(
        tmp_path / "loras" / "il_with_pony_captions.safetensors", "sdxl",
        metadata=no_name_metadata("sdxl", new_sd_model_hash=sha(base).lower(), tags=tags),
    )
    engine = Engine(settings_for("http://127.0.0.1:9", tmp_path, offline=True))
    try:
        await engine.scan()
        engine.set_entry("someBase_v1", base_model="Illustrious")
        engine.set_entry("someMerge_v2", base_model="Illustrious")
        check = await engine.family_check("someMerge_v2", ["il_with_pony_captions"])
    finally:
        await engine.close()
    item = check.to_json()["loras"][0]
    assert (item["verdict"], item["family"], item["base_model"]) == ("same_family", "illustrious", "Illustrious")


async def test_a_lora_filed_as_sdxl_follows_its_training_checkpoint_on_civitai(
    tmp_path: Path, fake_civitai: tuple[FakeCivitai, str]
) -> None:
    fake, base_url = fake_civitai
    (tmp_path / "models").mkdir()
    (tmp_path / "loras").mkdir()
    merge = write_checkpoint(tmp_path / "models" / "someIllustriousMerge.safetensors", "sdxl")
    fake.register_hash(sha(merge), base_model="Illustrious", model_type="Checkpoint", version_id=7001)
    training_ckpt = hashlib.sha256(b"illustrious-xl v0.1").hexdigest().upper()
    fake.register_hash(training_ckpt, base_model="Illustrious", model_type="Checkpoint", version_id=795765)
    old = write_kohya_lora(
        tmp_path / "loras" / "old_upload.safetensors", "sdxl",
        metadata=no_name_metadata("sdxl", new_sd_model_hash=training_ckpt.lower()),
    )
    fake.register_hash(sha(old), base_model="SDXL 1.0", version_id=7002)  # filed before "Illustrious" existed
    engine = Engine(settings_for(base_url, tmp_path))
    try:
        await engine.scan()
        check = await engine.family_check("someIllustriousMerge", ["old_upload"])
    finally:
        await engine.close()
    item = check.to_json()["loras"][0]
    assert (item["verdict"], item["family"], item["base_model"]) == ("same_family", "illustrious", "Illustrious")
    assert any("SDXL 1.0" in e for e in item["evidence"])


async def test_nsfw_follows_civitais_rating_unless_an_admin_says_otherwise(tmp_path: Path, fake_civitai) -> None:
    fake, base_url = fake_civitai
    (tmp_path / "loras").mkdir()
    rated = write_kohya_lora(tmp_path / "loras" / "rated.safetensors", "sdxl", seed=11, metadata=no_name_metadata("sdxl"))
    plain = write_kohya_lora(tmp_path / "loras" / "plain.safetensors", "sdxl", seed=12, metadata=no_name_metadata("sdxl"))
    # The creator left `nsfw` false, but CivitAI rates the version R and X (4 | 8), as it
    # does for many character LoRAs (sample 1580878: nsfw false, versions at levels 5, 6).
    fake.register_hash(sha(rated), version_id=301)["nsfwLevel"] = 12
    fake.register_hash(sha(plain), version_id=302)["nsfwLevel"] = 1
    async with Engine(settings_for(base_url, tmp_path)) as engine:
        await engine.scan()
        assert engine.is_nsfw(engine.find("rated")) is True
        assert engine.is_nsfw(engine.find("plain")) is False
        assert (await engine.lora_info("rated")).nsfw is True

        engine.set_entry("rated", nsfw=False)  # an admin has looked and says it is fine
        engine.set_entry("plain", nsfw=True)
        assert engine.is_nsfw(engine.find("rated")) is False
        assert engine.is_nsfw(engine.find("plain")) is True
        assert [e.name for e, _ in engine.suggest_loras(None, "", allow_nsfw=False)] == ["rated"]


async def test_lora_info_and_family_check_refuse_nsfw_models_where_not_allowed(tmp_path: Path, fake_civitai) -> None:
    # The content rule lives in the engine: the bot only says whether the channel is
    # age-restricted (allow_nsfw) and renders the refusal.
    fake, base_url = fake_civitai
    (tmp_path / "loras").mkdir()
    (tmp_path / "models").mkdir()
    write_checkpoint(tmp_path / "models" / "base.safetensors", "sdxl")
    write_checkpoint(tmp_path / "models" / "spicy.safetensors", "sdxl", metadata={"note": "another file"})
    rated = write_kohya_lora(tmp_path / "loras" / "rated.safetensors", "sdxl", seed=11, metadata=no_name_metadata("sdxl"))
    fake.register_hash(sha(rated), version_id=301)["nsfwLevel"] = 12
    async with Engine(settings_for(base_url, tmp_path)) as engine:
        await engine.scan()
        engine.set_entry("spicy", nsfw=True)
        with pytest.raises(RequestError, match="“rated” is marked NSFW"):
            await engine.lora_info("rated", allow_nsfw=False)
        with pytest.raises(RequestError, match="“rated” is marked NSFW"):
            await engine.family_check("base", ["rated"], allow_nsfw=False)
        with pytest.raises(RequestError, match="“spicy” is marked NSFW"):
            await engine.family_check("spicy", [], allow_nsfw=False)
        engine.set_entry("rated", nsfw=False)
        info = await engine.lora_info("rated", allow_nsfw=False)
        assert [s.checkpoint for s in info.suits] == ["base"]  # the NSFW checkpoint is left out
        assert {s.checkpoint for s in (await engine.lora_info("rated")).suits} == {"base", "spicy"}
        assert (await engine.family_check("base", ["rated"], allow_nsfw=False)).loras[0].lora.name == "rated"
