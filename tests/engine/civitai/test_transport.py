"""The transport seam: the client driven by a plain function instead of a server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.civitai.cache import CivitaiCache
from engine.civitai.transport import Request, Response, TransportError, read_limited
from tests.engine.civitai.conftest import BASE, FLUX_SHA, SECRET, client_for, ok
from tests.fakes.civitai import version_body


async def test_429_with_retry_after_is_waited_out_then_answered(cache: CivitaiCache, tmp_path: Path):
    answers = [Response(429, headers={"Retry-After": "7"}), ok(version_body(FLUX_SHA, version_id=11))]
    sleeps: list[float] = []
    client, transport = client_for(lambda request: answers.pop(0), cache, tmp_path, sleeps)
    got = await client.version_by_hash(FLUX_SHA)
    assert got.found and got.value is not None and got.value.id == 11
    assert sleeps == [7.0] and len(transport.requests) == 2
    assert str(transport.requests[0].url) == f"{BASE}/api/v1/model-versions/by-hash/{FLUX_SHA}"


async def test_a_cloudflare_page_with_status_200_is_no_answer_and_not_cached(
    cache: CivitaiCache, tmp_path: Path
):
    page = "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>cf</body></html>"
    client, _ = client_for(
        lambda request: Response(200, headers={"Content-Type": "text/html; charset=UTF-8"}, content=page),
        cache,
        tmp_path,
    )
    got = await client.version_by_hash(FLUX_SHA)
    assert got.status == "unavailable" and got.note is not None and "could not read" in got.note.en
    assert cache.get(f"by-hash:{FLUX_SHA}") is None


async def test_a_cloudflare_403_page_blames_the_firewall_not_the_key(cache: CivitaiCache, tmp_path: Path):
    page = "<!DOCTYPE html><html><title>Attention Required! | Cloudflare</title></html>"
    client, transport = client_for(
        lambda request: Response(403, headers={"Content-Type": "text/html"}, content=page),
        cache,
        tmp_path,
        civitai_api_key=SECRET,
    )
    got = await client.model(5)
    assert got.status == "unavailable" and got.note is not None and "firewall" in got.note.en
    assert len(transport.requests) == 1
    assert transport.requests[0].headers["Authorization"] == f"Bearer {SECRET}"


async def test_an_async_handler_and_transport_errors(cache: CivitaiCache, tmp_path: Path):
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.method)
        await asyncio.sleep(0)
        if len(calls) == 1:
            raise TransportError("connection reset")
        if len(calls) == 2:
            raise TimeoutError()
        return ok({"id": 3, "name": "m", "modelVersions": []})

    sleeps: list[float] = []
    client, _ = client_for(handler, cache, tmp_path, sleeps, civitai_max_retries=2)
    got = await client.model(3)
    assert got.found and calls == ["GET"] * 3 and sleeps == [0.5, 1.0]


async def test_transport_errors_beyond_the_retries_are_unreachable(cache: CivitaiCache, tmp_path: Path):
    def handler(request: Request) -> Response:
        raise TransportError("refused")

    client, transport = client_for(handler, cache, tmp_path, civitai_max_retries=1)
    got = await client.model_version(9)
    assert got.status == "unavailable" and got.note is not None and got.note.en == "Could not reach CivitAI."
    assert len(transport.requests) == 2


async def test_a_redirect_to_a_non_http_scheme_is_refused(cache: CivitaiCache, tmp_path: Path):
    client, transport = client_for(
        lambda request: Response(302, headers={"Location": "file:///etc/passwd"}), cache, tmp_path,
        civitai_max_retries=0,
    )
    got = await client.model(1)
    assert got.status == "unavailable" and len(transport.requests) == 1


async def test_redirect_loops_stop(cache: CivitaiCache, tmp_path: Path):
    client, transport = client_for(
        lambda request: Response(302, headers={"Location": str(request.url)}), cache, tmp_path,
        civitai_max_retries=0,
    )
    assert (await client.model(1)).status == "unavailable"
    assert len(transport.requests) == 6  # the request and five redirects


async def test_a_batch_post_sends_json(cache: CivitaiCache, tmp_path: Path):
    client, transport = client_for(lambda request: ok([version_body(FLUX_SHA, version_id=12)]), cache, tmp_path)
    got = await client.versions_by_hashes([FLUX_SHA, "AB" * 32])
    assert got[FLUX_SHA].found and got["AB" * 32].status == "not_found"
    (request,) = transport.requests
    assert request.method == "POST" and request.json == [FLUX_SHA, "AB" * 32]


async def test_read_limited_refuses_a_long_body_by_header_or_by_count():
    from engine.civitai.transport import TooLarge

    with pytest.raises(TooLarge):
        await read_limited(Response(200, headers={"Content-Length": "100"}, content=b"x"), 10)
    with pytest.raises(TooLarge):
        await read_limited(Response(200, content=b"x" * 11), 10)
    assert await read_limited(Response(200, content=b"x" * 10), 10) == b"x" * 10
    assert await Response(200, content=b"abcdef").read_at_most(4) == b"abcd"


def test_request_is_plain_data():
    from yarl import URL

    request = Request("GET", URL(f"https://x/{FLUX_SHA}"))
    assert request.json is None and dict(request.headers) == {}
