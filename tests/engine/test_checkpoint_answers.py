"""`Engine.checkpoint_info` end to end: real files (an A1111 merge among them), real SQLite,
a fake CivitAI on loopback serving bodies with `checkpointType`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from engine.api import Engine
from engine.errors import LibraryError, RequestError
from tests.factories.merges import a1111_merge
from tests.factories.model_files import kohya_metadata, write_checkpoint, write_kohya_lora
from tests.fakes.civitai import FakeCivitai, fake_civitai, settings_for, version_body  # noqa: F401

JSON_KEYS = {
    "name", "checkpoint_type", "checkpoint_type_source", "base_model", "family", "evidence", "parents",
    "siblings", "loras", "prompt_conventions", "civitai_url",
}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest().upper()


def checkpoint_model(fake: FakeCivitai, path: Path, *, model_id: int, version_id: int, base_model: str, kind: str | None, name: str) -> None:
    """CivitAI knows the file by hash; its model body (as /models/{id} serves it) says Merge or Trained."""
    body = version_body(sha(path), base_model=base_model, model_type="Checkpoint", model_id=model_id, version_id=version_id, model_name=name)
    fake.add_version(body)
    model: dict[str, Any] = {
        "id": model_id, "name": name, "description": "<p>A checkpoint.</p>", "type": "Checkpoint", "nsfw": False, "poi": False,
        "tags": ["base model"], "modelVersions": [{k: v for k, v in body.items() if k not in ("model", "modelId")}],
    }
    if kind is not None:
        model["checkpointType"] = kind
    fake.models[model_id] = model


@pytest.fixture
async def world(tmp_path: Path, fake_civitai: tuple[FakeCivitai, str]):
    fake, base_url = fake_civitai
    models, loras, outside = tmp_path / "models", tmp_path / "loras", tmp_path / "elsewhere"
    for folder in (models, loras, outside):
        folder.mkdir()
    base = write_checkpoint(models / "illustriousBase_v10.safetensors", "sdxl", metadata={"modelspec.title": "base"})
    pony = write_checkpoint(outside / "ponyDiffusionV6XL.safetensors", "sdxl", metadata={"modelspec.title": "pony"})
    merge = a1111_merge(models / "myMerge_v1.safetensors", base, pony)
    write_checkpoint(models / "plainModel.safetensors", "sdxl", metadata={"modelspec.title": "plain"})
    # A stranger's file: merge keys that are broken JSON, absurdly nested, or name no real hash.
    write_checkpoint(models / "garbledMerge.safetensors", "sdxl", metadata={
        "sd_merge_recipe": "{" + '"a":' * 20_000 + "1" + "}" * 20_000,
        "sd_merge_models": json.dumps({"@everyone": {"name": "x"}, "12ab": {"name": "y"}}),
        "modelspec.merged_from": "\u200b, ,",
    })
    write_checkpoint(models / "otherIllustrious.safetensors", "sdxl", metadata={"modelspec.title": "other"})

    checkpoint_model(fake, base, model_id=501, version_id=5010, base_model="Illustrious", kind="Trained", name="Illustrious Base")
    checkpoint_model(fake, merge, model_id=502, version_id=5020, base_model="Illustrious", kind="Merge", name="My Merge")
    checkpoint_model(fake, models / "otherIllustrious.safetensors", model_id=503, version_id=5030, base_model="NoobAI", kind=None, name="Other")
    fake.register_hash(sha(pony), base_model="Pony", model_type="Checkpoint", model_name="Pony Diffusion V6 XL", version_id=290640, model_id=257749)

    meta = kohya_metadata("sdxl", sd_model_name=None)  # type: ignore[arg-type]
    lo = {
        name: write_kohya_lora(loras / f"{name}.safetensors", arch, seed=seed, metadata=kohya_metadata(arch, sd_model_name=None) if arch != "sdxl" else meta)  # type: ignore[arg-type]
        for seed, (name, arch) in enumerate([("il_style", "sdxl"), ("pony_style", "sdxl"), ("sd15_style", "sd1"), ("spicy", "sdxl"), ("mystery", "sdxl")], 1)
    }
    fake.register_hash(sha(lo["il_style"]), base_model="Illustrious", version_id=601)
    fake.register_hash(sha(lo["pony_style"]), base_model="Pony", version_id=602)
    fake.register_hash(sha(lo["sd15_style"]), base_model="SD 1.5", version_id=603)
    fake.register_hash(sha(lo["spicy"]), base_model="Illustrious", version_id=604, nsfw=True)

    engine = Engine(settings_for(base_url, tmp_path))
    await engine.scan()
    yield engine, fake, {"base": base, "pony": pony, "merge": merge}
    await engine.close()


async def test_a_merge_names_its_type_base_model_parents_and_loras(world) -> None:
    engine, fake, files = world
    info = await engine.checkpoint_info("myMerge_v1")
    data = info.to_json()
    assert set(data) >= JSON_KEYS
    assert (data["checkpoint_type"], data["checkpoint_type_source"]) == ("merge", "civitai")
    assert (data["base_model"], data["family"]) == ("Illustrious", "illustrious")
    assert data["evidence"][0] == "CivitAI lists “myMerge_v1” as a Checkpoint Merge."
    assert "A1111 checkpoint merger" in data["evidence"][1]
    in_lib, elsewhere = data["parents"]
    assert (in_lib["name"], in_lib["sha256"], in_lib["in_library"], in_lib["library_name"], in_lib["match"]) == (
        "illustriousBase_v10.safetensors", sha(files["base"]), True, "illustriousBase_v10", "sha256",
    )
    assert (elsewhere["in_library"], elsewhere["base_model"], elsewhere["role"]) == (False, "Pony", "B")
    assert elsewhere["civitai_url"].endswith("/models/257749?modelVersionId=290640")
    assert data["merge"] == {"tool": "A1111 checkpoint merger", "method": "Weighted sum", "multiplier": 0.3}
    assert [s["name"] for s in data["siblings"]] == ["illustriousBase_v10", "otherIllustrious"]
    assert [(x["name"], x["verdict"]) for x in data["loras"]] == [
        ("il_style", "same_family"), ("spicy", "same_family"), ("pony_style", "other_family"), ("mystery", "unknown"),
    ]
    assert data["incompatible_loras"] == 1
    assert data["prompt_conventions"][0]["tags"] == ["masterpiece", "best quality", "very aesthetic", "absurdres"]
    assert all(c["base_model"] is None for c in data["prompt_conventions"])  # no NoobAI tags on plain Illustrious
    assert data["civitai_url"].endswith("/models/502?modelVersionId=5020")
    assert fake.count("model", 502) == 1  # the model body (checkpointType) was asked for once...
    await engine.checkpoint_info("myMerge_v1")
    assert fake.count("model", 502) == 1  # ...and then came from the cache


async def test_trained_by_civitai_unknown_without_either(world) -> None:
    engine, _, _ = world
    trained = (await engine.checkpoint_info("illustriousBase_v10")).to_json("zh-TW")
    assert (trained["checkpoint_type"], trained["checkpoint_type_source"], trained["parents"]) == ("trained", "civitai", [])
    assert trained["evidence"][0].startswith("CivitAI 將「illustriousBase_v10」列為訓練模型")
    plain = (await engine.checkpoint_info("plainModel")).to_json()
    assert (plain["checkpoint_type"], plain["checkpoint_type_source"], plain["family"]) == ("unknown", None, None)
    assert plain["evidence"][0] == "Neither CivitAI nor the file says whether “plainModel” was merged or trained."
    assert plain["siblings"] == [] and plain["prompt_conventions"] == []
    # CivitAI knows it (NoobAI) but its body has no checkpointType: not guessed.
    noob = (await engine.checkpoint_info("otherIllustrious")).to_json()
    assert (noob["checkpoint_type"], noob["base_model"]) == ("unknown", "NoobAI")
    assert {"newest", "year 2024"} <= {t for c in noob["prompt_conventions"] for t in c["tags"]}


async def test_offline_the_file_alone_says_merge(tmp_path: Path, world) -> None:
    _, _, files = world
    offline = Engine(settings_for("http://127.0.0.1:9", tmp_path / "fresh", offline=True))
    (tmp_path / "fresh" / "models").mkdir(parents=True, exist_ok=True)  # the engine made it
    (tmp_path / "fresh" / "models" / "myMerge_v1.safetensors").write_bytes(files["merge"].read_bytes())
    (tmp_path / "fresh" / "models" / "illustriousBase_v10.safetensors").write_bytes(files["base"].read_bytes())
    try:
        await offline.scan()
        data = (await offline.checkpoint_info("myMerge_v1")).to_json()
        assert (data["checkpoint_type"], data["checkpoint_type_source"]) == ("merge", "file")
        assert [p["in_library"] for p in data["parents"]] == [True, False]
        assert data["civitai_url"] is None and data["base_model"] is None
    finally:
        await offline.close()


async def test_hostile_merge_metadata_names_no_parents(world) -> None:
    engine, _, _ = world
    data = (await engine.checkpoint_info("garbledMerge")).to_json()
    assert (data["checkpoint_type"], data["parents"], data["merge"]) == ("unknown", [], None)


async def test_nsfw_rules_and_names(world) -> None:
    engine, _, _ = world
    data = (await engine.checkpoint_info("myMerge_v1", allow_nsfw=False)).to_json()
    assert "spicy" not in [x["name"] for x in data["loras"]]
    with pytest.raises(LibraryError):
        await engine.checkpoint_info("il_style")  # a LoRA, not a checkpoint
    engine.set_entry("myMerge_v1", nsfw=True)
    with pytest.raises(RequestError):
        await engine.checkpoint_info("myMerge_v1", allow_nsfw=False)
