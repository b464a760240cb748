from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.civitai.cache import CivitaiCache
from engine.civitai.client import CivitaiClient, Lookup, parse_retry_after
from engine.civitai.models import Model, ModelVersion
from engine.civitai.transport import MockTransport, Response
from engine.i18n import ZH_TW
from tests.engine.civitai.conftest import (
    FLUX_AUTOV2,
    FLUX_BLAKE3,
    FLUX_SHA,
    IL_SHA,
    SD15_SHA,
    SECRET,
    UNKNOWN_SHA,
    Clock,
    client_for,
    ok,
)
from tests.fakes.civitai import FakeCivitai, settings_for, version_body

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _note(lookup: Lookup) -> str:
    assert lookup.note is not None
    return lookup.note.en


# -- found, not found, and the cache ------------------------------------------------------


async def test_found_by_hash_then_answered_from_cache(fake: FakeCivitai, make_client):
    client = await make_client()
    first = await client.version_by_hash(FLUX_SHA.lower())
    assert (first.status, first.source, first.note) == ("found", "network", None)
    assert isinstance(first.value, ModelVersion) and first.value.id == 1387174
    assert fake.requests_for("by-hash")[0].path == f"/api/v1/model-versions/by-hash/{FLUX_SHA}"
    again = await client.version_by_hash(FLUX_SHA)
    assert (again.status, again.source) == ("found", "cache") and again.value == first.value
    assert fake.count("by-hash") == 1


async def test_a_version_is_cached_under_every_hash_of_its_files(fake: FakeCivitai, make_client):
    client = await make_client()
    await client.version_by_hash(FLUX_SHA)
    for other in (FLUX_AUTOV2, FLUX_BLAKE3, "34A22376739D", "F414C813"):
        hit = await client.version_by_hash(other)
        assert (hit.status, hit.source) == ("found", "cache") and hit.value.id == 1387174
    assert fake.count("by-hash") == 1
    by_id = await client.model_version(1387174)
    assert by_id.source == "cache" and fake.count("version") == 0


async def test_not_found_is_an_answer_and_is_cached_until_the_miss_ttl(
    fake: FakeCivitai, make_client, clock: Clock
):
    client = await make_client(civitai_miss_ttl_hours=1)
    miss = await client.version_by_hash(UNKNOWN_SHA)
    assert (miss.status, miss.source, miss.value) == ("not_found", "network", None)
    assert (await client.version_by_hash(UNKNOWN_SHA)).source == "cache"
    assert fake.count("by-hash") == 1
    clock.advance(3601)
    assert (await client.version_by_hash(UNKNOWN_SHA)).source == "network"
    assert fake.count("by-hash") == 2


async def test_hits_expire_after_the_hit_ttl(fake: FakeCivitai, make_client, clock: Clock):
    client = await make_client(civitai_cache_ttl_hours=2)
    await client.version_by_hash(IL_SHA)
    clock.advance(3600)
    assert (await client.version_by_hash(IL_SHA)).source == "cache"
    clock.advance(3601)
    assert (await client.version_by_hash(IL_SHA)).source == "network"


async def test_refresh_asks_again_despite_a_fresh_entry(fake: FakeCivitai, make_client):
    client = await make_client()
    await client.version_by_hash(FLUX_SHA)
    assert (await client.version_by_hash(FLUX_SHA, refresh=True)).source == "network"
    assert fake.count("by-hash") == 2


async def test_model_version_and_model_by_id(fake: FakeCivitai, make_client):
    client = await make_client()
    version = await client.model_version(1421739)
    assert version.found and version.value.base_model == "Illustrious"
    model = await client.model(1580878)
    assert model.found and isinstance(model.value, Model) and len(model.value.model_versions) == 2
    assert (await client.model(1580878)).source == "cache"
    missing = await client.model(42)
    assert missing.status == "not_found"
    assert fake.count("model") == 2 and fake.count("version") == 1


async def test_the_synthesised_version_of_a_model_body_is_served(make_client):
    client = await make_client()
    got = await client.model_version(1292)
    assert got.found and got.value.air == "urn:air:sd1:checkpoint:civitai:1102@1292"


async def test_a_garbage_hash_is_not_sent(fake: FakeCivitai, make_client):
    client = await make_client()
    got = await client.version_by_hash("../../etc/passwd")
    assert got.status == "not_found" and got.source == "none" and "not a file hash" in _note(got)
    assert fake.requests == []


async def test_a_cached_body_that_no_longer_parses_is_fetched_again(
    fake: FakeCivitai, make_client, cache: CivitaiCache
):
    cache.put(f"by-hash:{FLUX_SHA}", 200, '{"no": "id"}', ttl_s=1000)
    client = await make_client()
    got = await client.version_by_hash(FLUX_SHA)
    assert got.found and got.source == "network"


async def test_concurrent_lookups_of_one_hash_ask_once(fake: FakeCivitai, make_client):
    fake.add_fault("by-hash", delay_s=0.1)
    client = await make_client()
    results = await asyncio.gather(*(client.version_by_hash(FLUX_SHA) for _ in range(5)))
    assert all(r.found for r in results)
    assert fake.count("by-hash") == 1


# -- the batch endpoint -------------------------------------------------------------------


async def test_versions_by_hashes_posts_sha256_and_asks_short_hashes_singly(
    fake: FakeCivitai, make_client
):
    client = await make_client()
    answers = await client.versions_by_hashes(
        [FLUX_SHA.lower(), IL_SHA, SD15_SHA, UNKNOWN_SHA, "EE2AB6D872", FLUX_SHA]
    )
    assert list(answers) == [FLUX_SHA, IL_SHA, SD15_SHA, UNKNOWN_SHA, "EE2AB6D872"]
    assert answers[FLUX_SHA].value.id == 1387174
    assert answers[IL_SHA].value.id == 1421739
    assert answers[SD15_SHA].value.id == 1318
    assert answers[UNKNOWN_SHA].status == "not_found"
    assert answers["EE2AB6D872"].value.id == 1292  # an AutoV2, via GET by-hash
    (post,) = fake.requests_for("by-hash-batch")
    assert post.method == "POST" and post.json() == [FLUX_SHA, IL_SHA, SD15_SHA, UNKNOWN_SHA]
    assert post.headers["Content-Type"].startswith("application/json")
    assert [r.key for r in fake.requests_for("by-hash")] == ["EE2AB6D872"]
    # Everything is cached now, misses included.
    again = await client.versions_by_hashes([FLUX_SHA, UNKNOWN_SHA, "EE2AB6D872", FLUX_AUTOV2])
    assert {a.source for a in again.values()} == {"cache"}
    assert fake.count("by-hash-batch") == 1 and fake.count("by-hash") == 1


async def test_versions_by_hashes_sends_at_most_100_per_request(fake: FakeCivitai, make_client):
    client = await make_client()
    hashes = [f"{i:064X}" for i in range(1, 151)] + [FLUX_SHA]
    answers = await client.versions_by_hashes(hashes)
    assert sum(a.found for a in answers.values()) == 1
    assert [len(r.json()) for r in fake.requests_for("by-hash-batch")] == [100, 51]


async def test_batch_answer_with_duplicates_and_nulls(fake: FakeCivitai, make_client):
    fake.add_fault(
        "by-hash-batch",
        status=200,
        body=(
            "[null, "
            + '{"id": 5, "files": [{"hashes": {"SHA256": "' + "C" * 64 + '"}}]}, '
            + '{"id": 5, "files": [{"hashes": {"SHA256": "' + "C" * 64 + '"}}]}]'
        ),
    )
    client = await make_client()
    answers = await client.versions_by_hashes(["C" * 64, "D" * 64])
    assert answers["C" * 64].value.id == 5 and answers["D" * 64].status == "not_found"


async def test_batch_entry_that_cannot_be_read_does_not_become_a_cached_miss(
    fake: FakeCivitai, make_client, cache: CivitaiCache
):
    fake.add_fault("by-hash-batch", status=200, body='[{"name": "no id"}]')
    client = await make_client()
    answers = await client.versions_by_hashes(["D" * 64])
    assert answers["D" * 64].status == "unavailable"
    assert cache.get("by-hash:" + "D" * 64) is None


async def test_batch_failure_falls_back_per_hash_to_stale_cache(
    fake: FakeCivitai, make_client, clock: Clock
):
    client = await make_client(civitai_max_retries=0)
    await client.versions_by_hashes([FLUX_SHA])
    clock.advance(8 * 24 * 3600)  # past the 7-day hit TTL
    fake.add_fault("by-hash-batch", status=503)
    answers = await client.versions_by_hashes([FLUX_SHA, IL_SHA])
    assert (answers[FLUX_SHA].status, answers[FLUX_SHA].source) == ("found", "stale_cache")
    assert "cached 8 days ago" in _note(answers[FLUX_SHA])
    assert (answers[IL_SHA].status, answers[IL_SHA].source) == ("unavailable", "none")
    assert "HTTP 503" in _note(answers[IL_SHA])


@pytest.mark.parametrize("status", [404, 405])
async def test_a_mirror_without_the_batch_endpoint_is_asked_one_by_one(
    fake: FakeCivitai, make_client, status
):
    fake.add_fault("by-hash-batch", status=status)
    client = await make_client()
    answers = await client.versions_by_hashes([FLUX_SHA, UNKNOWN_SHA])
    assert answers[FLUX_SHA].found and answers[UNKNOWN_SHA].status == "not_found"
    assert fake.count("by-hash") == 2


# -- offline ------------------------------------------------------------------------------


async def test_offline_never_touches_the_network(fake: FakeCivitai, make_client):
    client = await make_client(offline=True)
    got = await client.version_by_hash(FLUX_SHA)
    assert (got.status, got.source) == ("unavailable", "none")
    assert _note(got) == "Offline mode: CivitAI was not asked."
    assert got.note.zh_tw.startswith("離線模式")
    many = await client.versions_by_hashes([FLUX_SHA, IL_SHA])
    assert {a.status for a in many.values()} == {"unavailable"}
    assert (await client.model(1)).status == "unavailable"
    assert await client.fetch_image(fake.add_image("a.png", PNG), 10_000) is None
    assert fake.requests == []


async def test_offline_answers_from_stale_cache_and_says_how_old(
    fake: FakeCivitai, make_client, clock: Clock
):
    online = await make_client()
    await online.version_by_hash(FLUX_SHA)
    await online.version_by_hash(UNKNOWN_SHA)
    clock.advance(30 * 24 * 3600)
    offline = await make_client(offline=True)
    got = await offline.version_by_hash(FLUX_SHA)
    assert (got.status, got.source) == ("found", "stale_cache") and got.value.id == 1387174
    assert _note(got) == "Offline mode: CivitAI was not asked. Using data cached 30 days ago."
    assert "30 天前" in got.note.render(ZH_TW)
    miss = await offline.version_by_hash(UNKNOWN_SHA)
    assert (miss.status, miss.source) == ("not_found", "stale_cache")
    assert fake.count("by-hash") == 2


# -- robustness ---------------------------------------------------------------------------


async def test_429_honours_retry_after_seconds(fake: FakeCivitai, make_client, sleeps):
    fake.add_fault("by-hash", status=429, retry_after=3)
    client = await make_client()
    got = await client.version_by_hash(FLUX_SHA)
    assert got.found and sleeps == [3.0] and fake.count("by-hash") == 2


async def test_429_honours_retry_after_http_date(fake: FakeCivitai, make_client, sleeps):
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    fake.add_fault("by-hash", status=429, retry_after=when)
    client = await make_client()
    assert (await client.version_by_hash(FLUX_SHA)).found
    assert len(sleeps) == 1 and 17 <= sleeps[0] <= 21


async def test_429_asking_too_long_a_wait_gives_up_at_once(fake: FakeCivitai, make_client, sleeps):
    fake.add_fault("by-hash", status=429, retry_after=3600)
    client = await make_client()
    got = await client.version_by_hash(FLUX_SHA)
    assert got.status == "unavailable" and sleeps == [] and fake.count("by-hash") == 1
    assert "rate-limiting" in _note(got) and "3600 seconds" in _note(got)


async def test_429_without_end_uses_the_stale_cache(
    fake: FakeCivitai, make_client, sleeps, clock: Clock
):
    client = await make_client(civitai_max_retries=2)
    await client.version_by_hash(FLUX_SHA)
    clock.advance(3 * 24 * 3600 + 8 * 24 * 3600)
    fake.add_fault("by-hash", status=429, times=None)
    got = await client.version_by_hash(FLUX_SHA, refresh=True)
    assert (got.status, got.source) == ("found", "stale_cache")
    assert _note(got) == "CivitAI is rate-limiting us. Using data cached 11 days ago."
    assert len(sleeps) == 2 and fake.count("by-hash") == 4


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried_with_exponential_backoff(
    fake: FakeCivitai, make_client, sleeps, status
):
    fake.add_fault("by-hash", status=status, times=2)
    client = await make_client(civitai_max_retries=3)
    assert (await client.version_by_hash(FLUX_SHA)).found
    assert sleeps == [0.5, 1.0] and fake.count("by-hash") == 3


async def test_server_errors_beyond_the_retry_budget_are_unavailable_and_not_cached(
    fake: FakeCivitai, make_client, sleeps, cache: CivitaiCache
):
    fake.add_fault("version", status=502, times=None)
    client = await make_client(civitai_max_retries=1)
    got = await client.model_version(1387174)
    assert (got.status, got.source) == ("unavailable", "none")
    assert _note(got) == "CivitAI had a problem on its side (HTTP 502)."
    assert fake.count("version") == 2 and sleeps == [0.5]
    assert cache.get("version:1387174") is None


async def test_a_slow_answer_times_out(fake: FakeCivitai, make_client):
    fake.add_fault("by-hash", delay_s=2.0, times=None)
    client = await make_client(civitai_timeout_s=0.1, civitai_max_retries=0)
    got = await client.version_by_hash(FLUX_SHA)
    assert got.status == "unavailable" and _note(got) == "CivitAI did not answer within 0.1 seconds."


async def test_a_timeout_is_retried(fake: FakeCivitai, make_client, sleeps):
    fake.add_fault("by-hash", delay_s=2.0, times=1)
    client = await make_client(civitai_timeout_s=0.1, civitai_max_retries=1)
    assert (await client.version_by_hash(FLUX_SHA)).found
    assert sleeps == [0.5]


async def test_connection_refused_is_unavailable_after_retries(make_client, sleeps):
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = await make_client(base_url=f"http://127.0.0.1:{port}", civitai_max_retries=2)
    got = await client.version_by_hash(FLUX_SHA)
    assert got.status == "unavailable" and _note(got) == "Could not reach CivitAI."
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize("body", ["{not json", '{"error": "oops"}', "[]", "\xff\xfe"])
async def test_an_unreadable_body_is_unavailable_and_not_cached(
    fake: FakeCivitai, make_client, cache: CivitaiCache, body
):
    fake.add_fault("by-hash", status=200, body=body)
    client = await make_client()
    got = await client.version_by_hash(FLUX_SHA)
    assert got.status == "unavailable" and "could not read" in _note(got)
    assert cache.get(f"by-hash:{FLUX_SHA}") is None
    assert (await client.version_by_hash(FLUX_SHA)).found  # next time it works


async def test_an_unreadable_body_falls_back_to_the_stale_entry(
    fake: FakeCivitai, make_client, clock: Clock
):
    client = await make_client()
    await client.model(1231067)
    clock.advance(10 * 3600 + 7 * 24 * 3600)
    fake.add_fault("model", status=200, body="<html>maintenance</html>")
    got = await client.model(1231067)
    assert got.found and got.source == "stale_cache" and "cached 7 days ago" in _note(got)


async def test_a_refused_key_is_reported_without_the_key(fake: FakeCivitai, make_client):
    fake.api_key = "the-right-key"
    client = await make_client(civitai_api_key=SECRET)
    got = await client.version_by_hash(FLUX_SHA)
    assert got.status == "unavailable" and fake.count("by-hash") == 1  # no retry
    assert "refused our API key (HTTP 401)" in _note(got)
    assert SECRET not in _note(got) and SECRET not in got.note.zh_tw


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_without_a_key_say_a_key_is_needed(fake: FakeCivitai, make_client, status):
    fake.add_fault("model", status=status)
    client = await make_client()
    got = await client.model(1231067)
    assert got.status == "unavailable" and f"wants an API key for this (HTTP {status})" in _note(got)


async def test_other_client_errors_are_not_retried(fake: FakeCivitai, make_client, sleeps):
    fake.add_fault("version", status=400)
    client = await make_client()
    got = await client.model_version(5)
    assert got.status == "unavailable" and "HTTP 400" in _note(got) and sleeps == []


# -- the API key and the headers ----------------------------------------------------------


async def test_no_authorization_header_without_a_key(fake: FakeCivitai, make_client):
    client = await make_client()
    await client.version_by_hash(FLUX_SHA)
    await client.versions_by_hashes([IL_SHA])
    await client.model(1102)
    assert fake.requests and all(r.authorization is None for r in fake.requests)
    assert all("loracle/" in r.headers["User-Agent"] for r in fake.requests)


async def test_the_key_is_sent_as_a_bearer_token(fake: FakeCivitai, make_client):
    client = await make_client(civitai_api_key=SECRET)
    await client.version_by_hash(FLUX_SHA)
    await client.versions_by_hashes([IL_SHA])
    assert [r.authorization for r in fake.requests] == [f"Bearer {SECRET}"] * 2


async def test_the_key_never_reaches_logs_reprs_or_notes(
    fake: FakeCivitai, make_client, caplog, tmp_path
):
    caplog.set_level(logging.DEBUG)
    fake.add_fault("by-hash", status=500)
    fake.add_fault("by-hash", delay_s=2.0)
    fake.add_fault("by-hash", status=429, retry_after=1)
    fake.add_fault("version", status=200, body="{bad")
    fake.add_fault("model", status=401)
    client = await make_client(civitai_api_key=SECRET, civitai_timeout_s=0.1, civitai_max_retries=3)
    texts = [repr(client), str(client), repr(client.settings)]
    for lookup in (
        await client.version_by_hash(FLUX_SHA),
        await client.model_version(1387174),
        await client.model(1231067),
        await client.versions_by_hashes([IL_SHA]),
    ):
        texts.append(repr(lookup))
    fake.api_key = "another"
    texts.append(repr(await client.model(1102)))
    assert "api_key=set" in repr(client)
    assert caplog.records, "the client should log at DEBUG"
    everything = caplog.text + "\n".join(texts)
    assert SECRET not in everything and SECRET[-12:] not in everything


# -- the synchronous cache-only lookup ----------------------------------------------------


async def test_cached_version_by_hash_never_asks(fake: FakeCivitai, make_client, clock: Clock):
    client = await make_client()
    nothing = client.cached_version_by_hash(FLUX_SHA)
    assert (nothing.status, nothing.source) == ("unavailable", "none") and nothing.note is not None
    await client.version_by_hash(FLUX_SHA)
    await client.version_by_hash(UNKNOWN_SHA)
    hit = client.cached_version_by_hash(FLUX_AUTOV2.lower())
    assert (hit.status, hit.source) == ("found", "cache") and hit.value.id == 1387174
    assert client.cached_version_by_hash(UNKNOWN_SHA).status == "not_found"
    clock.advance(365 * 24 * 3600)
    old = client.cached_version_by_hash(FLUX_SHA)
    assert (old.status, old.source) == ("found", "stale_cache")
    assert fake.count("by-hash") == 2


# -- preview images -----------------------------------------------------------------------


async def test_fetch_image_keeps_a_copy_on_disk(fake: FakeCivitai, make_client, tmp_path):
    url = fake.add_image("a.png", PNG)
    client = await make_client(civitai_api_key=SECRET)
    assert await client.fetch_image(url, 10_000) == PNG
    assert len(list((tmp_path / "images").iterdir())) == 1
    assert await client.fetch_image(url, 10_000) == PNG
    assert fake.count("image") == 1
    assert fake.requests_for("image")[0].authorization is None  # not a CivitAI origin
    offline = await make_client(offline=True)
    assert await offline.fetch_image(url, 10_000) == PNG


async def test_fetch_image_refuses_big_missing_and_non_images(fake: FakeCivitai, make_client, tmp_path):
    client = await make_client()
    assert await client.fetch_image(fake.add_image("big.png", PNG * 100), 1000) is None
    assert await client.fetch_image(fake.add_image("page.png", b"<html>"), 1000) is None
    assert await client.fetch_image(f"{fake.storage_url}/images/missing.png", 1000) is None
    assert await client.fetch_image("file:///etc/passwd", 1000) is None
    fake.add_fault("image", delay_s=2.0)
    slow = await make_client(civitai_timeout_s=0.1)
    assert await slow.fetch_image(fake.add_image("slow.png", PNG), 1000) is None
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").iterdir())


# -- plumbing -----------------------------------------------------------------------------


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(email.utils.formatdate(1000.0 + 30, usegmt=True), now=1000.0) == 30.0
    assert parse_retry_after(email.utils.formatdate(10.0, usegmt=True), now=1000.0) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("nan") is None and parse_retry_after("1e400") is None


async def test_a_given_session_is_used_and_left_open(fake_civitai, cache: CivitaiCache, tmp_path):
    _fake, base_url = fake_civitai
    async with aiohttp.ClientSession() as session:
        async with CivitaiClient(settings_for(base_url, tmp_path), cache, session=session) as client:
            assert (await client.version_by_hash(FLUX_SHA)).found
        assert not session.closed


async def test_an_owned_session_is_closed(fake_civitai, cache: CivitaiCache, tmp_path):
    _, base_url = fake_civitai
    async with CivitaiClient(settings_for(base_url, tmp_path), cache) as client:
        await client.version_by_hash(FLUX_SHA)
        session = client.transport.session
    assert session is not None and session.closed


# -- what real CivitAI and Cloudflare send back -------------------------------------------

CLOUDFLARE_403 = (
    "<!DOCTYPE html>\n<!--[if lt IE 7]> <html class=\"no-js ie6 oldie\" lang=\"en-US\"> <![endif]-->\n"
    "<head><title>Attention Required! | Cloudflare</title></head><body>Sorry, you have been blocked</body></html>"
)


@pytest.mark.parametrize("with_key", [False, True])
async def test_a_cloudflare_block_page_is_not_blamed_on_the_api_key(
    fake: FakeCivitai, make_client, sleeps, with_key
):
    fake.add_fault("by-hash", status=403, body=CLOUDFLARE_403, content_type="text/html", times=None)
    client = await make_client(civitai_api_key=SECRET if with_key else None)
    got = await client.version_by_hash(FLUX_SHA)
    assert got.status == "unavailable" and fake.count("by-hash") == 1 and sleeps == []
    assert "firewall" in _note(got) and "HTTP 403" in _note(got)
    assert "API key" not in _note(got).replace("not about the API key", "")
    assert "防火牆" in got.note.render(ZH_TW)


async def test_a_cloudflare_block_falls_back_to_the_stale_cache(
    fake: FakeCivitai, make_client, clock: Clock
):
    client = await make_client()
    await client.version_by_hash(FLUX_SHA)
    clock.advance(8 * 24 * 3600)
    fake.add_fault("by-hash", status=403, body=CLOUDFLARE_403, content_type="text/html")
    got = await client.version_by_hash(FLUX_SHA)
    assert (got.status, got.source) == ("found", "stale_cache") and "firewall" in _note(got)


async def test_an_html_404_page_is_not_cached_as_a_miss(
    fake: FakeCivitai, make_client, cache: CivitaiCache
):
    # A wrong base URL or a proxy answers with a web page; CivitAI's API says
    # {"error": "Model not found"} in JSON.
    fake.add_fault(
        "by-hash", status=404, body="<!DOCTYPE html><html><body>404: This page could not be found.</body></html>",
        content_type="text/html",
    )
    client = await make_client()
    got = await client.version_by_hash(UNKNOWN_SHA)
    assert got.status == "unavailable" and cache.get(f"by-hash:{UNKNOWN_SHA}") is None
    real = await client.version_by_hash(UNKNOWN_SHA)
    assert real.status == "not_found" and cache.get(f"by-hash:{UNKNOWN_SHA}").status == 404


async def test_503_honours_retry_after(fake: FakeCivitai, make_client, sleeps):
    fake.add_fault("by-hash", status=503, retry_after=4)
    client = await make_client()
    assert (await client.version_by_hash(FLUX_SHA)).found and sleeps == [4.0]


async def test_503_asking_for_a_long_wait_is_a_server_problem_not_a_rate_limit(
    fake: FakeCivitai, make_client, sleeps
):
    fake.add_fault("by-hash", status=503, retry_after=7200)
    client = await make_client()
    got = await client.version_by_hash(FLUX_SHA)
    assert got.status == "unavailable" and sleeps == [] and _note(got) == "CivitAI had a problem on its side (HTTP 503)."


async def test_an_archived_model_in_a_batch_is_found_not_cached_as_a_miss(
    fake: FakeCivitai, make_client, cache: CivitaiCache
):
    # CivitAI serves an archived model's version without its files, so a batch entry
    # does not say which of the hashes asked for it answers.
    archived_sha = "A1" * 32
    fake.register_hash(archived_sha, base_model="Pony", version_id=4242, model_id=4241)
    fake.archive(4242)
    unknown = [f"{i:064X}" for i in range(1, 8)]
    client = await make_client()
    answers = await client.versions_by_hashes([*unknown[:3], archived_sha, FLUX_SHA, *unknown[3:]])
    hit = answers[archived_sha]
    assert hit.found and hit.value.id == 4242 and hit.value.base_model == "Pony" and hit.value.files == []
    assert answers[FLUX_SHA].value.id == 1387174
    assert all(answers[h].status == "not_found" for h in unknown)
    assert fake.count("by-hash-batch") <= 1 + 2 * 3  # a few halvings, not one request per hash
    assert fake.count("by-hash") == 0
    assert client.cached_version_by_hash(archived_sha).value.id == 4242
    assert cache.get(f"by-hash:{unknown[0]}").status == 404


async def test_an_archived_model_alone_in_a_batch_needs_no_second_request(fake: FakeCivitai, make_client):
    archived_sha = "A2" * 32
    fake.register_hash(archived_sha, base_model="Illustrious", version_id=4343)
    fake.archive(4343)
    client = await make_client()
    answers = await client.versions_by_hashes([archived_sha, FLUX_SHA])
    assert answers[archived_sha].value.id == 4343 and answers[FLUX_SHA].found
    assert fake.count("by-hash-batch") == 1


async def test_an_archived_model_by_hash_is_found(fake: FakeCivitai, make_client):
    archived_sha = "A3" * 32
    fake.register_hash(archived_sha, base_model="Illustrious", version_id=4444)
    fake.archive(4444)
    client = await make_client()
    got = await client.version_by_hash(archived_sha)
    assert got.found and got.value.files == [] and got.value.model.mode == "Archived"
    assert client.cached_version_by_hash(archived_sha).found


async def test_the_key_follows_civitai_red_to_civitai_com_but_not_to_storage(
    cache: CivitaiCache, tmp_path
):
    # civitai.red and civitai.green send downloads on to civitai.com (CivitAI's
    # download handler redirects every non-blue domain), which needs the key.
    red = "https://civitai.red/api/download/models/7"
    com = "https://civitai.com/api/download/models/7"
    storage = "https://b2.civitai.com.example-storage.net/file.safetensors?X-Amz-Signature=s"
    script = {red: Response(307, headers={"Location": com}), com: Response(307, headers={"Location": storage})}
    transport = MockTransport(lambda request: script.get(str(request.url), Response(200)))
    settings = settings_for("https://civitai.red", tmp_path, civitai_api_key=SECRET)
    client = CivitaiClient(settings, cache, transport=transport)
    async with client.open_download(red) as resp:
        assert resp.status == 200
    sent = [(str(r.url), r.headers.get("Authorization")) for r in transport.requests]
    assert sent == [(red, f"Bearer {SECRET}"), (com, f"Bearer {SECRET}"), (storage, None)]


def test_civitai_own_domains_are_civitai(cache: CivitaiCache, tmp_path):
    client = CivitaiClient(settings_for("https://civitai.com", tmp_path), cache)
    for url in ("https://civitai.red/api/download/models/1", "https://civitai.green/x", "https://www.civitai.com/x"):
        assert client.is_civitai_url(url)
    for url in ("http://civitai.red/x", "https://civitai.red.evil.example/x", "https://notcivitai.com/x"):
        assert not client.is_civitai_url(url)


# -- malformed, oversized and hostile answers: one failed lookup with a note, never an
# exception out of the client ------------------------------------------------------------

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
