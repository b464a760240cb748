"""Malformed, oversized and hostile answers: each one failed lookup with a note, never an
exception out of the client, and never a worse answer over a better cached one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.civitai.cache import CivitaiCache
from engine.civitai.transport import Request, Response
from tests.engine.civitai.conftest import FLUX_SHA, Clock
from tests.engine.civitai.test_transport import client_for, ok
from tests.fakes.civitai import version_body

DEEP = b"[" * 100_000 + b"]" * 100_000


def _body_with(**fields: Any) -> dict[str, Any]:
    body = version_body(FLUX_SHA, version_id=77, base_model="Illustrious")
    body.update(fields)
    return body


HOSTILE_BODIES: dict[str, bytes] = {
    "deep list": DEEP,
    "deep object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep inside a real body": json.dumps(_body_with()).encode()[:-1] + b', "x": ' + DEEP + b"}",
    "just under the interpreter limit": b'{"id": 1, "x": ' + b"[" * 900 + b"]" * 900 + b"}",
    "NaN": b'{"id": 1, "baseModel": NaN}',
    "Infinity": b'{"id": Infinity}',
    "1e999": b'{"id": 1, "files": [{"sizeKB": 1e999}]}',
    "a very long integer": b'{"id": ' + b"9" * 4000 + b"}",
    "not UTF-8": b'{"id": 1, "name": "\xff\xfe"}',
    "over the size cap": b'{"id": 1, "description": "' + b"a" * (5 * 1024 * 1024) + b'"}',
    "a bare string": b'"hello"',
    "null": b"null",
    "id as a string of letters": b'{"id": "seven"}',
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
async def test_a_hostile_body_is_one_failed_lookup_with_a_note(
    name: str, cache: CivitaiCache, tmp_path: Path
):
    body = HOSTILE_BODIES[name]
    client, _ = client_for(lambda request: Response(200, content=body), cache, tmp_path)
    for got in (
        await client.version_by_hash(FLUX_SHA),
        await client.model_version(77),
        await client.model(77),
    ):
        assert got.status == "unavailable" and got.note is not None, name
        assert "could not read" in got.note.en
    assert cache.get(f"by-hash:{FLUX_SHA}") is None


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
async def test_a_hostile_batch_body_is_a_failed_lookup_per_hash(name: str, cache: CivitaiCache, tmp_path: Path):
    body = HOSTILE_BODIES[name]
    client, _ = client_for(lambda request: Response(200, content=body), cache, tmp_path)
    got = await client.versions_by_hashes([FLUX_SHA, "AB" * 32])
    assert {g.status for g in got.values()} == {"unavailable"}


async def test_deep_nesting_inside_a_batch_entry(cache: CivitaiCache, tmp_path: Path):
    text = b'[{"id": 5, "files": [{"hashes": {"SHA256": "' + FLUX_SHA.encode() + b'"}}], "x": ' + DEEP + b"}]"
    client, _ = client_for(lambda request: Response(200, content=text), cache, tmp_path)
    got = await client.versions_by_hashes([FLUX_SHA])
    assert got[FLUX_SHA].status == "unavailable"


async def test_a_deep_error_body_on_401_still_reads_as_a_refusal(cache: CivitaiCache, tmp_path: Path):
    client, _ = client_for(lambda request: Response(401, content=DEEP[:16 * 1024]), cache, tmp_path)
    got = await client.model(1)
    assert got.status == "unavailable" and got.note is not None and "API key" in got.note.en


WRONG_TYPES: dict[str, dict[str, Any]] = {
    "baseModel a number": {"baseModel": 7},
    "baseModel a list": {"baseModel": ["SDXL"]},
    "files not a list": {"files": "lots"},
    "files of numbers": {"files": [1, 2, None, "x"]},
    "hashes a string": {"files": [{"name": "a.safetensors", "hashes": "ABCDEF0123"}]},
    "hashes with non-hex values": {"files": [{"hashes": {"SHA256": "../../etc/passwd", "AutoV2": 12}}]},
    "a hash a mile long": {"files": [{"hashes": {"SHA256": "A" * 100_000}}]},
    "images an object": {"images": {"url": "x"}},
    "model a string": {"model": "LORA"},
    "trainedWords a string": {"trainedWords": "girl"},
    "trainedWords with huge entries": {"trainedWords": ["ok", "w" * 1_000_000]},
    "name a huge string": {"name": "n" * 3_000_000},
    "stats a list": {"stats": [1, 2]},
    "publishedAt nonsense": {"publishedAt": "yesterday-ish"},
    "nsfwLevel a float": {"nsfwLevel": 3.5},
}


@pytest.mark.parametrize("name", list(WRONG_TYPES))
async def test_wrong_types_cost_the_field_not_the_lookup(name: str, cache: CivitaiCache, tmp_path: Path):
    body = _body_with(**WRONG_TYPES[name])
    client, _ = client_for(lambda request: ok(body), cache, tmp_path)
    got = await client.model_version(77)
    assert got.found and got.value is not None and got.value.id == 77, name
    version = got.value
    assert all(isinstance(h, str) and len(h) <= 64 for h in version.all_hashes())
    assert version.base_model in (None, "Illustrious")
    assert version.name is None or len(version.name) <= 100_000
    assert all(len(w) <= 1000 for w in version.trained_words)


# -- a worse answer does not replace a better cached fact -----------------------------------


@pytest.mark.parametrize("broken", [{"baseModel": None}, {"baseModel": 12}, {"baseModel": ""}])
async def test_a_refresh_that_lost_the_base_model_keeps_the_cached_one(
    broken: dict[str, Any], cache: CivitaiCache, tmp_path: Path, clock: Clock
):
    answers = [ok(_body_with()), ok(_body_with(**broken))]
    client, _ = client_for(lambda request: answers.pop(0), cache, tmp_path)
    first = await client.version_by_hash(FLUX_SHA)
    assert first.value is not None and first.value.base_model == "Illustrious"
    clock.advance(3600)
    again = await client.version_by_hash(FLUX_SHA, refresh=True)
    assert again.found and again.value is not None and again.value.base_model == "Illustrious"
    assert again.note is not None and "base model" in again.note.en and "kept" in again.note.en
    assert again.source == "cache"
    later = client.cached_version_by_hash(FLUX_SHA)
    assert later.value is not None and later.value.base_model == "Illustrious"


async def test_a_refresh_missing_the_base_model_key_entirely(cache: CivitaiCache, tmp_path: Path):
    worse = _body_with()
    del worse["baseModel"]
    answers = [ok(_body_with()), ok(worse)]
    client, _ = client_for(lambda request: answers.pop(0), cache, tmp_path)
    await client.model_version(77)
    again = await client.model_version(77, refresh=True)
    assert again.value is not None and again.value.base_model == "Illustrious"


async def test_a_worse_batch_answer_keeps_the_cached_base_model(cache: CivitaiCache, tmp_path: Path):
    answers = [ok([_body_with()]), ok([_body_with(baseModel=3)])]
    client, _ = client_for(lambda request: answers.pop(0), cache, tmp_path)
    await client.versions_by_hashes([FLUX_SHA])
    again = await client.versions_by_hashes([FLUX_SHA], refresh=True)
    assert again[FLUX_SHA].value is not None and again[FLUX_SHA].value.base_model == "Illustrious"
    assert client.cached_version_by_hash(FLUX_SHA).value.base_model == "Illustrious"  # type: ignore[union-attr]


async def test_a_refresh_with_a_new_base_model_is_news_and_replaces_the_old(
    cache: CivitaiCache, tmp_path: Path
):
    answers = [ok(_body_with()), ok(_body_with(baseModel="NoobAI"))]
    client, _ = client_for(lambda request: answers.pop(0), cache, tmp_path)
    await client.model_version(77)
    again = await client.model_version(77, refresh=True)
    assert again.value is not None and again.value.base_model == "NoobAI" and again.source == "network"
    assert again.note is None


async def test_a_refresh_that_lost_the_files_keeps_them_unless_archived(cache: CivitaiCache, tmp_path: Path):
    archived = _body_with(files=[])
    archived["model"] = {**archived["model"], "mode": "Archived"}
    answers = [ok(_body_with()), ok(_body_with(files="none")), ok(archived)]
    client, _ = client_for(lambda request: answers.pop(0), cache, tmp_path)
    await client.model_version(77)
    kept = await client.model_version(77, refresh=True)
    assert kept.value is not None and FLUX_SHA in kept.value.all_hashes()
    news = await client.model_version(77, refresh=True)
    assert news.value is not None and news.value.files == [] and news.source == "network"


async def test_a_model_refresh_that_lost_its_versions_keeps_the_cached_model(
    cache: CivitaiCache, tmp_path: Path
):
    good = {"id": 9, "name": "m", "modelVersions": [_body_with()]}
    answers = [ok(good), ok({"id": 9, "name": "m", "modelVersions": "gone"})]
    client, _ = client_for(lambda request: answers.pop(0), cache, tmp_path)
    await client.model(9)
    again = await client.model(9, refresh=True)
    assert again.value is not None and len(again.value.model_versions) == 1


def test_request_is_plain_data():
    from yarl import URL

    request = Request("GET", URL(f"https://x/{FLUX_SHA}"))
    assert request.json is None and dict(request.headers) == {}


@pytest.mark.parametrize("size", [1.7e308, -5, 1e15])
def test_an_absurd_file_size_is_no_size(size: float):
    from engine.civitai.models import parse_version

    version = parse_version(_body_with(files=[{"name": "a.safetensors", "sizeKB": size}]))
    assert version.files[0].size_bytes is None


def test_a_cache_row_that_looks_like_a_reference_but_nests_deep_is_no_answer(cache: CivitaiCache):
    cache.put("by-hash:ABCDEF12", 200, '{"$ref": ' + "[" * 100_000 + "]" * 100_000 + "}", ttl_s=100)
    assert cache.get("by-hash:ABCDEF12") is not None  # a body, not a reference; reading it fails later
    from engine.civitai.body import BadBody

    with pytest.raises(BadBody):
        cache.get("by-hash:ABCDEF12").json()  # type: ignore[union-attr]
