"""engine.civitai.http counts every HTTP attempt to CivitAI in engine.metrics, by kind and
outcome: driven through the real client against the loopback fake, read back by scraping
the real metrics endpoint."""

from __future__ import annotations

import asyncio

import pytest

from engine.civitai.download import download_version
from engine.civitai.models import parse_version
from engine.errors import CivitaiError
from tests.engine.civitai.conftest import FLUX_SHA, IL_SHA
from tests.fakes.civitai import FakeCivitai
from tests.scrape import Samples, Scrape, metrics_endpoint, value  # noqa: F401

NAME = "loracle_civitai_requests_total"


def _deltas(before: Samples, after: Samples) -> dict[tuple[str, str], float]:
    """(kind, outcome) -> how much it moved."""
    moved = {}
    for (name, labels), now in after.items():
        if name != NAME:
            continue
        labels_dict = dict(labels)
        change = now - value(before, NAME, **labels_dict)
        if change:
            moved[(labels_dict["kind"], labels_dict["outcome"])] = change
    return moved


async def test_a_429_and_a_500_then_an_answer_are_three_attempts(
    fake: FakeCivitai, make_client, metrics_endpoint: Scrape
):
    fake.add_fault("by-hash", status=429, retry_after=1)
    fake.add_fault("by-hash", status=500)
    client = await make_client(civitai_max_retries=3)
    before = await asyncio.to_thread(metrics_endpoint)
    assert (await client.version_by_hash(FLUX_SHA)).found
    after = await asyncio.to_thread(metrics_endpoint)
    assert fake.count("by-hash") == 3
    assert _deltas(before, after) == {("api", "rate_limited"): 1, ("api", "5xx"): 1, ("api", "ok"): 1}


async def test_errors_beyond_the_retry_budget_are_each_counted(
    fake: FakeCivitai, make_client, metrics_endpoint: Scrape
):
    fake.add_fault("version", status=502, times=None)
    client = await make_client(civitai_max_retries=1)
    before = await asyncio.to_thread(metrics_endpoint)
    got = await client.model_version(1387174)
    after = await asyncio.to_thread(metrics_endpoint)
    assert got.status == "unavailable"
    assert _deltas(before, after) == {("api", "5xx"): 2}


async def test_a_timeout_and_a_refused_connection(fake: FakeCivitai, make_client, metrics_endpoint: Scrape):
    fake.add_fault("by-hash", delay_s=2.0, times=1)
    slow = await make_client(civitai_timeout_s=0.1, civitai_max_retries=1)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    gone = await make_client(base_url=f"http://127.0.0.1:{port}", civitai_max_retries=0)

    before = await asyncio.to_thread(metrics_endpoint)
    assert (await slow.version_by_hash(FLUX_SHA)).found
    assert (await gone.version_by_hash(IL_SHA)).status == "unavailable"  # not cached
    after = await asyncio.to_thread(metrics_endpoint)
    assert _deltas(before, after) == {("api", "timeout"): 1, ("api", "ok"): 1, ("api", "unreachable"): 1}


async def test_downloads_are_their_own_kind(fake: FakeCivitai, make_client, metrics_endpoint: Scrape, tmp_path):
    version = parse_version(fake.register_hash(content=b"x" * 1000, base_url=fake.base_url))
    gone = parse_version(fake.register_hash(content=b"y" * 1000, base_url=fake.base_url))
    fake.archive(gone.id)
    client = await make_client()
    before = await asyncio.to_thread(metrics_endpoint)
    await download_version(client, version, tmp_path / "loras", max_bytes=10**6)
    with pytest.raises(CivitaiError):  # 410: archived
        await download_version(client, gone, tmp_path / "loras", max_bytes=10**6)
    after = await asyncio.to_thread(metrics_endpoint)
    # One attempt each: the redirect to storage is part of the first.
    assert _deltas(before, after) == {("download", "ok"): 1, ("download", "4xx"): 1}
