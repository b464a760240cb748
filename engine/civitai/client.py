"""The CivitAI API client: cache first, polite to the server, never raising for trouble.

Every lookup answers with a `Lookup`: what was found (or that CivitAI does not know the
file, which is an answer too and is cached), where the answer came from, and a note a user
can read when the answer is second-hand ("CivitAI is rate-limiting us; using data cached
3 days ago"). When CivitAI cannot be asked (offline mode, timeouts, rate limits, server
errors, nonsense or hostile bodies, a refused key) the last answer we had is used however
old it is.

The layers, each in its own module: `transport` sends one request (aiohttp, or a function
in tests); `http` follows redirects, keeps the API key on CivitAI, retries and reads
refusals; `body` decodes what came back without trusting it; `policy` decides what is
cached and what a failure falls back on; `images` keeps preview images.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from pydantic import ValidationError
from yarl import URL

from engine.civitai.body import decode_json
from engine.civitai.cache import CacheEntry, CivitaiCache, by_hash_key, model_key, version_key
from engine.civitai.http import CIVITAI_HOSTS, MAX_BODY_BYTES, CivitaiHttp, parse_retry_after
from engine.civitai.images import ImageCache
from engine.civitai.models import Model, ModelVersion, parse_model, parse_version
from engine.civitai.notes import (
    ARCHIVED,
    BAD_ANSWER,
    NOT_A_HASH,
    NOT_ASKED,
    OFFLINE,
    Lookup,
    Source,
    Status,
    Trouble,
    fill,
)
from engine.civitai.policy import CachePolicy, Parse
from engine.civitai.transport import AiohttpTransport, Response, Transport
from engine.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_SIZE = 100  # the by-hash POST endpoint refuses more than 100 hashes
_HASH_RE = re.compile(r"^[0-9A-F]{8,64}$")

# Names other modules imported from here before the split.
__all__ = [
    "ARCHIVED",
    "BATCH_SIZE",
    "CIVITAI_HOSTS",
    "MAX_BODY_BYTES",
    "CivitaiClient",
    "Lookup",
    "Source",
    "Status",
    "normalize_hash",
    "parse_retry_after",
]


def normalize_hash(value: str) -> str:
    return value.strip().upper()


class CivitaiClient:
    """Cache-first access to CivitAI's public API. Use as `async with CivitaiClient(...)`.

    `transport` is where requests go (default: aiohttp, on `session` when one is given).
    """

    def __init__(
        self,
        settings: Settings,
        cache: CivitaiCache,
        *,
        transport: Transport | None = None,
        session: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        image_dir: Path | None = None,
        max_retry_wait_s: float = 60.0,
        backoff_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.transport: Transport = transport if transport is not None else AiohttpTransport(session)
        self.http = CivitaiHttp(
            settings, self.transport, sleep=sleep, max_retry_wait_s=max_retry_wait_s, backoff_s=backoff_s
        )
        self.policy = CachePolicy(cache, settings)
        self.base_url = self.http.base_url
        self.image_dir = image_dir if image_dir is not None else settings.root / "cache" / "civitai-images"
        self.images = ImageCache(self.http, self.image_dir)
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    def __repr__(self) -> str:
        key = "set" if self.http.api_key() else "unset"
        return f"CivitaiClient(base_url={self.base_url!r}, api_key={key}, offline={self.settings.offline})"

    async def __aenter__(self) -> CivitaiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.transport.aclose()

    # -- public lookups -----------------------------------------------------------------

    async def version_by_hash(self, value: str, *, refresh: bool = False) -> Lookup[ModelVersion]:
        """The version whose file has this hash (any of CivitAI's hash kinds)."""
        h = normalize_hash(value)
        if not _HASH_RE.match(h):
            return Lookup(None, "not_found", "none", fill(NOT_A_HASH, value=value.strip()[:80]))
        return await self._lookup(
            by_hash_key(h), f"/api/v1/model-versions/by-hash/{h}", parse_version, refresh, h
        )

    async def versions_by_hashes(
        self, hashes: Iterable[str], *, refresh: bool = False
    ) -> dict[str, Lookup[ModelVersion]]:
        """Look many hashes up at once; keys of the answer are the upper-cased hashes.

        SHA256 hashes go to CivitAI's batch endpoint 100 at a time (it matches SHA256 only,
        so any 64-digit hash is taken to be one: ask for a BLAKE3 with `version_by_hash`);
        shorter hashes (AutoV2, ...) are asked one by one. The batch answer is a list of
        versions in no particular order, with nothing for unknown hashes.
        """
        wanted = list(dict.fromkeys(normalize_hash(h) for h in hashes if h and h.strip()))
        results: dict[str, Lookup[ModelVersion]] = {}
        pending: list[tuple[str, CacheEntry | None]] = []
        for h in wanted:
            if not _HASH_RE.match(h):
                results[h] = Lookup(None, "not_found", "none", fill(NOT_A_HASH, value=h[:80]))
                continue
            entry = self.cache.get(by_hash_key(h))
            if entry is not None and entry.fresh and not refresh:
                hit = self.policy.from_entry(entry, parse_version, "cache")
                if hit is not None:
                    results[h] = hit
                    continue
            pending.append((h, entry))

        if self.settings.offline:
            for h, entry in pending:
                results[h] = self.policy.fallback(entry, parse_version, Trouble(OFFLINE))
            return {h: results[h] for h in wanted}

        sha256 = [(h, e) for h, e in pending if len(h) == 64]
        others = [h for h, _ in pending if len(h) != 64]
        for start in range(0, len(sha256), BATCH_SIZE):
            results.update(await self._batch(sha256[start : start + BATCH_SIZE]))
        for h in others:
            results[h] = await self.version_by_hash(h, refresh=refresh)
        return {h: results[h] for h in wanted}

    async def model_version(self, version_id: int, *, refresh: bool = False) -> Lookup[ModelVersion]:
        vid = int(version_id)
        return await self._lookup(
            version_key(vid), f"/api/v1/model-versions/{vid}", parse_version, refresh, None
        )

    async def model(self, model_id: int, *, refresh: bool = False) -> Lookup[Model]:
        mid = int(model_id)
        return await self._lookup(model_key(mid), f"/api/v1/models/{mid}", parse_model, refresh, None)

    def cached_version_by_hash(self, value: str) -> Lookup[ModelVersion]:
        """Cache only, synchronous, for hot paths such as autocomplete."""
        h = normalize_hash(value)
        entry = self.cache.get(by_hash_key(h)) if _HASH_RE.match(h) else None
        if entry is not None:
            hit = self.policy.from_entry(entry, parse_version, "cache" if entry.fresh else "stale_cache")
            if hit is not None:
                return hit
        return Lookup(None, "unavailable", "none", NOT_ASKED)

    def cached_model(self, model_id: int) -> Model | None:
        """Cache only, synchronous: the model body, when something fetched it before."""
        entry = self.cache.get(model_key(int(model_id)))
        hit = self.policy.from_entry(entry, parse_model, "cache") if entry is not None else None
        return hit.value if hit is not None else None

    async def fetch_image(self, url: str, max_bytes: int) -> bytes | None:
        """A preview image's bytes, kept on disk so the bot can show it again offline."""
        return await self.images.fetch(url, max_bytes)

    # -- downloads (used by engine.civitai.download) ----------------------------------

    def is_civitai_url(self, url: str | URL) -> bool:
        """Whether `url` is CivitAI itself (the configured base URL's origin or civitai.com)."""
        return self.http.is_civitai_url(url)

    def open_download(self, url: str) -> AbstractAsyncContextManager[Response]:
        """A 200 response streaming the file at `url`; raises CivitaiError otherwise."""
        return self.http.open_download(url)

    # -- internals ----------------------------------------------------------------------

    async def _lookup(
        self,
        key: str,
        path: str,
        parse: Parse,
        refresh: bool,
        requested_hash: str | None,
    ) -> Lookup[Any]:
        entry = self.cache.get(key)
        if entry is not None and entry.fresh and not refresh:
            hit = self.policy.from_entry(entry, parse, "cache")
            if hit is not None:
                return hit
        if self.settings.offline:
            return self.policy.fallback(entry, parse, Trouble(OFFLINE))
        return await self._once(key, lambda: self._fetch(key, path, parse, entry, requested_hash))

    async def _once(self, key: str, start: Callable[[], Awaitable[T]]) -> T:
        # Two users asking about the same LoRA at once cost CivitAI one request.
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(start())
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _fetch(
        self,
        key: str,
        path: str,
        parse: Parse,
        entry: CacheEntry | None,
        requested_hash: str | None,
    ) -> Lookup[Any]:
        reply = await self.http.call("GET", path)
        if isinstance(reply, Trouble):
            return self.policy.fallback(entry, parse, reply)
        if reply.status == 404 and reply.is_html:
            # CivitAI's API says "not found" in JSON; an HTML 404 is a proxy's or a wrong
            # base URL's page, and caching it as a miss would hide the file for a day.
            log.warning("CivitAI answered %s with an HTML 404 page", key)
            return self.policy.fallback(entry, parse, Trouble(BAD_ANSWER))
        if reply.status == 404:
            return self.policy.keep_miss(key)
        try:
            text = reply.body.decode("utf-8")
            value = parse(decode_json(text))
        except (ValueError, ValidationError) as exc:  # BadBody and UnicodeDecodeError too
            log.warning("CivitAI sent an unreadable body for %s: %s", key, type(exc).__name__)
            return self.policy.fallback(entry, parse, Trouble(BAD_ANSWER))
        return self.policy.keep_found(key, value, text, entry, parse, requested_hash)

    async def _batch(self, chunk: list[tuple[str, CacheEntry | None]]) -> dict[str, Lookup[ModelVersion]]:
        reply = await self.http.call("POST", "/api/v1/model-versions/by-hash", json_body=[h for h, _ in chunk])
        if reply.status in (400, 404, 405):
            # CivitAI answers a valid batch with a list, never these: this is a mirror
            # without the batch endpoint, so ask one by one instead.
            return {h: await self.version_by_hash(h, refresh=True) for h, _ in chunk}
        if isinstance(reply, Trouble):
            return {h: self.policy.fallback(e, parse_version, reply) for h, e in chunk}
        try:
            items = decode_json(reply.body)
            if not isinstance(items, list):
                raise ValueError("not a list")
        except ValueError:
            log.warning("CivitAI sent an unreadable by-hash batch body")
            return {h: self.policy.fallback(e, parse_version, Trouble(BAD_ANSWER)) for h, e in chunk}

        entries = dict(chunk)
        requested = set(entries)
        out: dict[str, Lookup[ModelVersion]] = {}
        unplaced: list[tuple[ModelVersion, Any]] = []
        incomplete = False
        for item in items:
            if item is None:  # CivitAI nulls a version that has no usable file
                continue
            try:
                version = parse_version(item)
            except ValidationError:
                incomplete = True
                continue
            matched = requested & version.all_hashes()
            if not matched:
                # Every entry answers one of our hashes, but an archived model's version
                # comes without its files (CivitAI strips them), so it does not say which.
                unplaced.append((version, item))
                continue
            for h in matched:
                out[h] = self.policy.keep_batch_hit(version, item, h, entries[h])
        missing = [(h, e) for h, e in chunk if h not in out]
        if unplaced and missing and not incomplete:
            if len(missing) == 1:
                version, item = unplaced[0]
                h = missing[0][0]
                out[h] = self.policy.keep_batch_hit(version, item, h, entries[h])
                return out
            # Ask again in halves until each such entry is down to one hash: a few more
            # requests instead of caching "CivitAI does not know it" for a known file.
            half = len(missing) // 2
            out.update(await self._batch(missing[:half]))
            out.update(await self._batch(missing[half:]))
            return out
        for h, entry in missing:
            if incomplete:
                # An entry we could not read might have been this file's: do not claim
                # CivitAI does not know it.
                out[h] = self.policy.fallback(entry, parse_version, Trouble(BAD_ANSWER))
            else:
                out[h] = self.policy.keep_miss(by_hash_key(h))
        return out
