from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from engine.civitai.models import (
    FileHashes,
    Image,
    ModelVersion,
    air_architecture,
    parse_model,
    parse_version,
)
from engine.kinds import Architecture
from tests.engine.civitai.conftest import FLUX_AUTOV2, FLUX_BLAKE3, FLUX_SHA, IL_SHA
from tests.fakes.civitai import load_sample


def test_model_version_body_parses_every_documented_field():
    v = parse_version(load_sample("flux1d-lora-model-version-1387174"))
    assert (v.id, v.model_id, v.name) == (1387174, 1231067, "v1.0")
    assert v.base_model == "Flux.1 D" and v.base_model_type is None
    assert v.air == "urn:air:flux1:lora:civitai:1231067@1387174"
    assert v.trained_words == ["ppstorybook"]
    assert v.published_at == datetime(2025, 2, 8, 11, 29, 4, 487000, tzinfo=UTC)
    assert v.model is not None and v.model.type == "LORA" and v.model.nsfw is False
    assert v.stats is not None and v.stats.download_count == 1436
    f = v.primary_file
    assert f is not None and f.name == "pp-storybook_rank2_bf16.safetensors"
    assert f.size_kb == pytest.approx(18829.1484375) and f.size_bytes == 19281048
    assert f.metadata.format == "SafeTensor" and f.is_safetensors and not f.is_pickle
    assert f.hashes.sha256 == FLUX_SHA and f.hashes.autov3 == "34A22376739D"
    assert f.pickle_scan_result == "Success" and f.virus_scan_result == "Success"
    assert f.download_url == "https://civitai.com/api/download/models/1387174"
    assert v.images[0].nsfw_level == 1 and v.images[0].width == 832


def test_civitai_info_sidecar_with_empty_strings_parses():
    v = parse_version(load_sample("illustrious-lora-civitai-info-1421739"))
    assert v.air is None  # "" in the sidecar
    assert v.base_model == "Illustrious" and v.base_model_type == "Standard"
    assert v.primary_file is not None and v.primary_file.hashes.sha256 == IL_SHA
    assert v.air_architecture is Architecture.UNKNOWN


def test_2022_body_without_air_autov3_or_base_model_type_parses():
    v = parse_version(load_sample("sd15-checkpoint-model-version-1318"))
    assert v.base_model == "SD 1.5" and v.base_model_type is None and v.air is None
    assert v.published_at is None
    f = v.primary_file
    assert f is not None and f.hashes.autov3 is None and f.is_pickle and not f.is_safetensors
    # Legacy images say "nsfw": false instead of a level.
    assert all(img.nsfw_level == 1 for img in v.images)


def test_model_body_fills_each_version_with_its_parent():
    m = parse_model(load_sample("flux1d-lora-model-1231067"))
    assert (m.id, m.type, m.tags) == (1231067, "LORA", ["style", "illustration", "storybook"])
    assert m.creator is not None and m.creator.username == "PixelPawsAI"
    v = m.version(1387174)
    assert v is not None and v.model_id == 1231067 and v.base_model_type == "Standard"
    assert v.model is not None and v.model.name == "Vivid Impressions Storybook Style"
    assert v.page_url() == "https://civitai.com/models/1231067?modelVersionId=1387174"
    assert m.version(1) is None


def test_2022_model_body_with_tag_objects_and_two_file_formats():
    m = parse_model(load_sample("sd15-checkpoint-model-1102"))
    assert m.tags == ["punk", "synthwave", "style"]
    v = m.version(1292)
    assert v is not None and [f.metadata.format for f in v.files] == ["PickleTensor", "SafeTensor"]
    assert v.primary_file is not None and v.primary_file.name == "synthwavepunk_v3Alpha.safetensors"


def test_illustrious_model_body_keeps_both_versions():
    m = parse_model(load_sample("illustrious-lora-model-1580878"))
    assert [v.id for v in m.model_versions] == [1967584, 1788945]
    assert all(v.base_model == "Illustrious" for v in m.model_versions)


def test_all_hashes_are_upper_case_and_cover_every_file():
    body = load_sample("flux1d-lora-model-version-1387174")
    body["files"][0]["hashes"]["SHA256"] = FLUX_SHA.lower()
    v = parse_version(body)
    assert FLUX_SHA in v.all_hashes() and FLUX_AUTOV2 in v.all_hashes() and FLUX_BLAKE3 in v.all_hashes()
    assert len(v.all_hashes()) == 6
    assert v.file_by_hash(FLUX_AUTOV2.lower()) is v.files[0]
    two = parse_model(load_sample("sd15-checkpoint-model-1102")).version(1292)
    assert two is not None and len(two.all_hashes()) == 10


def test_hash_keys_keep_civitai_names_and_accept_python_names_and_pair_lists():
    by_alias = FileHashes.model_validate({"AutoV2": "abc", "SHA256": "def"})
    by_name = FileHashes(autov2="ABC", sha256="DEF")
    pairs = FileHashes.model_validate([{"type": "AutoV2", "hash": "abc"}, {"type": "SHA256", "hash": "def"}])
    assert by_alias == by_name == pairs
    assert by_alias.model_dump(by_alias=True)["AutoV2"] == "ABC"


def test_only_the_version_id_is_required_and_bad_fields_become_none():
    with pytest.raises(ValidationError):
        parse_version({"name": "no id"})
    v = parse_version(
        {
            "id": 7,
            "createdAt": "",
            "publishedAt": "not a date",
            "baseModel": 12,
            "trainedWords": ["ok", None, {"x": 1}],
            "files": [None, "junk", {"sizeKB": "big", "hashes": None, "metadata": None}],
            "images": "none",
            "model": "bad",
            "unknownField": {"deep": True},
        }
    )
    assert v.published_at is None and v.base_model is None and v.model is None
    assert v.trained_words == ["ok"]
    assert len(v.files) == 1 and v.files[0].size_kb is None and v.files[0].hashes.values() == set()
    assert v.images == [] and v.primary_file is v.files[0]


def test_camel_case_aliases_and_python_names_both_populate():
    assert ModelVersion(id=1, model_id=2, base_model="Pony").model_id == 2
    assert parse_version({"id": 1, "modelId": 2, "baseModel": "Pony"}).base_model == "Pony"


@pytest.mark.parametrize(
    ("air", "arch"),
    [
        ("urn:air:sdxl:lora:civitai:1@2", Architecture.SDXL),
        ("urn:air:pony:lora:civitai:1@2", Architecture.SDXL),  # pre-2025 AIRs
        ("urn:air:illustrious:checkpoint:civitai:1@2", Architecture.SDXL),
        ("urn:air:sd1:checkpoint:civitai:1@2", Architecture.SD1),
        ("urn:air:sd2:lora:civitai:1@2", Architecture.SD2),
        ("urn:air:flux1:lora:civitai:1231067@1387174", Architecture.FLUX),
        ("urn:air:sd3:lora:civitai:1@2", Architecture.SD3),
        ("urn:air:auraflow:lora:civitai:1@2", Architecture.AURAFLOW),
        ("urn:air:wanvideo14b_t2v:lora:civitai:1@2", Architecture.OTHER),
        ("urn:air:flux2:lora:civitai:1@2", Architecture.OTHER),
        ("urn:air:other:lora:civitai:1@2", Architecture.UNKNOWN),
        ("URN:AIR:SDXL:LORA:CIVITAI:1@2", Architecture.SDXL),
        ("", Architecture.UNKNOWN),
        (None, Architecture.UNKNOWN),
        ("sdxl", Architecture.UNKNOWN),
    ],
)
def test_air_architecture(air, arch):
    assert air_architecture(air) is arch


def test_preview_image_respects_nsfw_level_and_skips_videos():
    v = parse_version(
        {
            "id": 1,
            "images": [
                {"url": "https://x/video.mp4", "nsfwLevel": 1, "type": "video"},
                {"url": "https://x/r.jpeg", "nsfwLevel": 4, "type": "image"},
                {"url": "https://x/unknown.jpeg", "type": "image"},
                {"url": "https://x/pg.jpeg", "nsfwLevel": 1, "type": "image"},
            ],
        }
    )
    assert v.preview_image().url == "https://x/pg.jpeg"
    assert v.preview_image(4).url == "https://x/r.jpeg"
    assert v.preview_image(None).url == "https://x/r.jpeg"
    assert parse_version(load_sample("illustrious-lora-civitai-info-1421739")).preview_image(1) is None


def test_legacy_nsfw_words_map_to_levels_and_unknown_true_is_strictest():
    assert Image.model_validate({"nsfw": "Soft"}).nsfw_level == 2
    assert Image.model_validate({"nsfw": True}).nsfw_level == 16
    assert Image.model_validate({"nsfw": "None"}).nsfw_level == 1
    assert Image.model_validate({"nsfw": True, "nsfwLevel": 4}).nsfw_level == 4


def test_thumbnail_url_rewrites_the_cdn_width():
    img = Image(url="https://image.civitai.com/a/b/width=832/1.jpeg")
    assert img.thumbnail_url(320) == "https://image.civitai.com/a/b/width=320/1.jpeg"
    assert Image(url="https://image.civitai.com/a/b/original=true/1.jpeg").thumbnail_url(64).endswith("/width=64/1.jpeg")
    assert Image().thumbnail_url() is None


def test_page_url_uses_the_given_base():
    v = parse_version({"id": 5, "modelId": 4})
    assert v.page_url("http://mirror.local/") == "http://mirror.local/models/4?modelVersionId=5"


def test_new_air_ecosystems_map_to_their_architecture():
    # CivitAI writes its root ecosystem key lower-cased: Chroma is its own root (a
    # FLUX.1 schnell derivative), Playground v2 too (SDXL layout).
    assert air_architecture("urn:air:chroma:checkpoint:civitai:1@2") is Architecture.FLUX
    assert air_architecture("urn:air:playgroundv2:checkpoint:civitai:1@2") is Architecture.SDXL
    assert air_architecture("urn:air:sdxl:lora:civitai:1@2+3") is Architecture.SDXL  # with a file id


def test_an_archived_model_version_body_parses_without_files():
    body = load_sample("flux1d-lora-model-version-1387174")
    body = {**body, "files": [], "model": {**body["model"], "mode": "Archived"}}
    del body["downloadUrl"]
    v = parse_version(body)
    assert v.files == [] and v.primary_file is None and v.all_hashes() == set()
    assert v.model is not None and v.model.archived and v.download_url is None
    assert not parse_version(load_sample("flux1d-lora-model-version-1387174")).model.archived


def test_nsfw_comes_from_the_creator_flag_or_civitai_rating():
    sfw = load_sample("flux1d-lora-model-version-1387174")
    assert parse_version(sfw).is_nsfw is False  # nsfw: false, no level (2025 body)
    assert parse_version({**sfw, "nsfwLevel": 1}).is_nsfw is False
    assert parse_version({**sfw, "nsfwLevel": 3}).is_nsfw is False  # PG + PG-13
    # The creator left nsfw false, but CivitAI rates the version R (4) or X (8).
    assert parse_version({**sfw, "nsfwLevel": 5}).is_nsfw is True
    assert parse_version({**sfw, "nsfwLevel": 28}).is_nsfw is True
    assert parse_version(load_sample("illustrious-lora-civitai-info-1421739")).is_nsfw is True  # nsfw: true
    m = parse_model(load_sample("illustrious-lora-model-1580878"))
    assert m.nsfw is False and [v.nsfw_level for v in m.model_versions] == [5, 6]
    assert all(v.is_nsfw for v in m.model_versions)


@pytest.mark.parametrize("size_kb", [1e308, float("inf"), float("nan"), -5.0])
def test_an_unbelievable_file_size_is_no_size(size_kb):
    # found by tests/fuzz: sizeKB 1e308 (or 1e999, read as inf) raised OverflowError
    v = parse_version({"id": 1, "files": [{"sizeKB": size_kb, "name": "a.safetensors"}]})
    assert v.files[0].size_bytes is None


@pytest.mark.parametrize("size", [1.7e308, -5, 1e15])
def test_an_absurd_file_size_is_no_size(size: float):
    from engine.civitai.models import parse_version

    version = parse_version({"id": 1, "files": [{"name": "a.safetensors", "sizeKB": size}]})
    assert version.files[0].size_bytes is None


def test_checkpoint_type_from_a_model_body_reaches_its_versions():
    # CivitAI's own checkpoint picker carries `checkpointType` at the model level.
    import json

    from tests.samples import CIVITAI_SAMPLES

    items = json.loads((CIVITAI_SAMPLES / "internal-trpc-checkpoint-picker-page-sdxl-illustrious.json").read_text())["json"]["items"]
    assert sorted(item["checkpointType"] for item in items) == ["Merge", "Merge", "Merge", "Trained", "Trained"]
    model = parse_model({"id": 7, "name": "Nova", "type": "Checkpoint", "checkpointType": "Merge", "modelVersions": [{"id": 8}]})
    assert model.checkpoint_type == "Merge"
    assert model.model_versions[0].model is not None and model.model_versions[0].model.checkpoint_type == "Merge"
    version = parse_version({"id": 9, "model": {"name": "X", "type": "Checkpoint", "checkpointType": "Trained"}})
    assert version.model is not None and version.model.checkpoint_type == "Trained"
    assert parse_version({"id": 10, "model": {"checkpointType": 5}}).model.checkpoint_type is None  # type: ignore[union-attr]
