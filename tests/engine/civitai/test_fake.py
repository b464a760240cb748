"""The fake CivitAI itself behaves like the real routes it stands in for."""

from __future__ import annotations

import aiohttp
import pytest

from tests.engine.civitai.conftest import FLUX_AUTOV2, FLUX_SHA
from tests.fakes.civitai import FakeCivitai, air_for, version_body


async def test_routes_answer_like_civitai(fake_civitai):
    fake, base = fake_civitai
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/v1/model-versions/by-hash/{FLUX_AUTOV2.lower()}") as r:
            body = await r.json()
            assert r.status == 200 and body["id"] == 1387174
            # Download links point at the host that was asked, as CivitAI's do.
            assert body["downloadUrl"] == f"{base}/api/download/models/1387174"
        async with http.get(f"{base}/api/v1/model-versions/by-hash/{'0' * 64}") as r:
            assert r.status == 404 and (await r.json()) == {"error": "Model not found"}
        async with http.post(f"{base}/api/v1/model-versions/by-hash", json=["short"]) as r:
            assert r.status == 400
        async with http.post(f"{base}/api/v1/model-versions/by-hash", json=["A" * 64] * 101) as r:
            assert r.status == 400
        async with http.post(f"{base}/api/v1/model-versions/by-hash", json=[FLUX_SHA.lower()]) as r:
            assert [v["id"] for v in await r.json()] == [1387174]
        async with http.get(f"{base}/api/download/models/1387174", allow_redirects=False) as r:
            assert r.status == 307 and r.headers["Location"].startswith(fake.storage_url + "/files/")


async def test_faults_apply_per_key_and_run_out(fake_civitai):
    fake, base = fake_civitai
    fake.add_fault("by-hash", key=FLUX_SHA, status=503, times=2)
    async with aiohttp.ClientSession() as http:
        statuses = []
        for h in (FLUX_SHA, FLUX_AUTOV2, FLUX_SHA, FLUX_SHA):
            async with http.get(f"{base}/api/v1/model-versions/by-hash/{h}") as r:
                statuses.append(r.status)
    assert statuses == [503, 200, 503, 200]
    assert fake.count("by-hash", FLUX_SHA.lower()) == 3


def test_unknown_routes_are_refused():
    with pytest.raises(ValueError):
        FakeCivitai(load_samples=False).add_fault("nope")


def test_version_body_names_the_architecture_like_civitai():
    body = version_body("ab" * 32, base_model="Pony", version_id=2, model_id=1)
    assert body["air"] == "urn:air:sdxl:lora:civitai:1@2"
    assert body["files"][0]["hashes"] == {"AutoV2": "ABABABABAB", "SHA256": "AB" * 32}
    assert air_for("Flux.1 D", "LORA", 1, 2) == "urn:air:flux1:lora:civitai:1@2"
    assert air_for("Pony V7", "LoCon", 1, 2) == "urn:air:auraflow:lycoris:civitai:1@2"


async def test_refusals_follow_civitais_download_handler(fake_civitai):
    fake, base = fake_civitai
    body = fake.register_hash("ab" * 32, version_id=77, model_id=76)
    fake.download_requires_key = True
    async with aiohttp.ClientSession() as http:
        url = f"{base}/api/download/models/77"
        async with http.get(url, allow_redirects=False, headers={"User-Agent": "curl/8"}) as r:
            assert r.status == 401 and "logged in" in (await r.json())["message"]
        async with http.get(url, allow_redirects=False, headers={"User-Agent": "Mozilla/5.0"}) as r:
            assert r.status == 307 and r.headers["Location"].startswith("/login?")
        async with http.get(f"{base}/login") as r:
            assert r.status == 200 and r.content_type == "text/html"
        fake.archive(77)
        async with http.get(url, allow_redirects=False) as r:
            assert r.status == 410
        async with http.get(f"{base}/api/v1/model-versions/by-hash/{'AB' * 32}") as r:
            served = await r.json()
            assert served["id"] == 77 and served["files"] == [] and served["model"]["mode"] == "Archived"
            assert "downloadUrl" not in served
        async with http.post(f"{base}/api/v1/model-versions/by-hash", json=["AB" * 32]) as r:
            assert [v["files"] for v in await r.json()] == [[]]
    assert body["files"]  # the stored body keeps its files: hashes still match
