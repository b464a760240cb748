"""A worse answer from CivitAI does not replace a better cached fact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.civitai.cache import CivitaiCache
from tests.engine.civitai.conftest import FLUX_SHA, Clock, client_for, ok
from tests.fakes.civitai import version_body


def _body_with(**fields: Any) -> dict[str, Any]:
    body = version_body(FLUX_SHA, version_id=77, base_model="Illustrious")
    body.update(fields)
    return body


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
