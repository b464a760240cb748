from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

from engine import db as dbmod
from engine.civitai.cache import CivitaiCache
from engine.civitai.client import CivitaiClient
from engine.civitai.transport import MockTransport, Request, Response
from tests.fakes.civitai import FakeCivitai, fake_civitai, settings_for  # noqa: F401

FLUX_SHA = "9753338AB693CA82BF89ED77A5D1912879E40051463EC6E330FB9866CE798668"
FLUX_AUTOV2 = "9753338AB6"
FLUX_BLAKE3 = "A5F8AB95AC2486345E4ACCAE541FF19D97ED53EFB0A7CC9226636975A0437591"
IL_SHA = "B76A1FC247DB893BC8C1290420F0E96B6F86129576A9FB885C20CB7EDBEFEEA5"
SD15_SHA = "0DF040C8CD48125174B54C251A87822E8ED61D529A92C42C1FA1BEF483B10B0D"
UNKNOWN_SHA = "AB" * 32
SECRET = "sk-test-9f8e7d6c5b4a-super-secret"


class Clock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_source() -> SimpleNamespace:
    return SimpleNamespace(db=dbmod.memory())


@pytest.fixture
def cache(db_source: SimpleNamespace, clock: Clock) -> CivitaiCache:
    return CivitaiCache(db_source, clock=clock)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def fake_sleep(sleeps: list[float]) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return sleep


MakeClient = Callable[..., Awaitable[CivitaiClient]]


@pytest_asyncio.fixture
async def make_client(
    fake_civitai: tuple[FakeCivitai, str],
    cache: CivitaiCache,
    fake_sleep: Callable[[float], Awaitable[None]],
    tmp_path: Path,
) -> AsyncIterator[MakeClient]:
    """Build clients against the fake; each is closed at the end of the test."""
    _, base_url = fake_civitai
    clients: list[CivitaiClient] = []

    async def make(**overrides: Any) -> CivitaiClient:
        base = overrides.pop("base_url", base_url)
        client = CivitaiClient(
            settings_for(base, tmp_path / "data", **overrides),
            cache,
            sleep=fake_sleep,
            image_dir=tmp_path / "images",
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def fake(fake_civitai: tuple[FakeCivitai, str]) -> FakeCivitai:
    return fake_civitai[0]


# -- clients on an in-process transport ----------------------------------------------------

BASE = "https://civitai.example"


def client_for(
    handler: Callable[[Request], Any],
    cache: CivitaiCache,
    tmp_path: Path,
    sleeps: list[float] | None = None,
    **overrides: Any,
) -> tuple[CivitaiClient, MockTransport]:
    transport = MockTransport(handler)

    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    settings = settings_for(BASE, tmp_path / "data", **overrides)
    return CivitaiClient(settings, cache, transport=transport, sleep=sleep, image_dir=tmp_path / "img"), transport


def ok(body: Any) -> Response:
    return Response(200, headers={"Content-Type": "application/json"}, content=json.dumps(body))
