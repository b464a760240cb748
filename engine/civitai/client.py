"""The CivitAI API client: cache first, polite to the server, never raising for trouble.

Every lookup answers with a `Lookup`: what was found (or that CivitAI does not know the
file, which is an answer too and is cached), where the answer came from, and a note a user
can read when the answer is second-hand ("CivitAI is rate-limiting us; using data cached
3 days ago"). When CivitAI cannot be asked (offline mode, timeouts, rate limits, server
errors, nonsense bodies, a refused key) the last answer we had is used however old it is.

The API key travels only in the Authorization header, only to the configured CivitAI
origin or CivitAI's own domains (civitai.com, and civitai.red / civitai.green, which
redirect downloads to civitai.com), and never follows a redirect anywhere else: CivitAI
answers downloads with a redirect to signed storage URLs on other hosts. Redirects are
followed by hand rather than by aiohttp so that this rule does not depend on the aiohttp
version (3.x strips the header on cross-origin redirects today, but that is its choice).

CivitAI sits behind Cloudflare, whose refusals are HTML pages (403 "Attention Required",
503 challenges, sometimes a 200 page): an HTML answer is never read as "CivitAI does not
know this file" nor as "our API key is wrong".
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import aiohttp
from pydantic import ValidationError
from yarl import URL

from engine.civitai.cache import CacheEntry, CivitaiCache, by_hash_key, model_key, version_key
from engine.civitai.models import Model, ModelVersion, parse_model, parse_version
from engine.civitai.refs import KNOWN_HOSTS
from engine.errors import CivitaiError
from engine.i18n import Text
from engine.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Status = Literal["found", "not_found", "unavailable"]
Source = Literal["network", "cache", "stale_cache", "none"]

BATCH_SIZE = 100  # the by-hash POST endpoint refuses more than 100 hashes
MAX_REDIRECTS = 5
MAX_BODY_BYTES = 32 * 1024 * 1024
# The REST API answers on all of CivitAI's domains; downloads on the others redirect to
# civitai.com.
CIVITAI_HOSTS = KNOWN_HOSTS
_PEEK_BYTES = 16 * 1024  # enough of an error body to read CivitAI's {"error": ...}
_HASH_RE = re.compile(r"^[0-9A-F]{8,64}$")

# -- messages ---------------------------------------------------------------------------
OFFLINE = Text("Offline mode: CivitAI was not asked.", "離線模式：沒有向 CivitAI 查詢。")
NOT_ASKED = Text("CivitAI has not been asked about this yet.", "尚未向 CivitAI 查詢過這個檔案。")
NOT_A_HASH = Text("“{value}” is not a file hash.", "「{value}」不是檔案雜湊值。")
TIMEOUT = Text(
    "CivitAI did not answer within {seconds} seconds.", "CivitAI 在 {seconds} 秒內沒有回應。"
)
UNREACHABLE = Text("Could not reach CivitAI.", "無法連線到 CivitAI。")
RATE_LIMITED = Text("CivitAI is rate-limiting us.", "CivitAI 暫時限制了我們的查詢次數。")
RATE_LIMITED_LONG = Text(
    "CivitAI is rate-limiting us and asked us to wait {seconds} seconds, so we gave up for now.",
    "CivitAI 暫時限制了查詢次數，要求等待 {seconds} 秒，所以這次先放棄。",
)
SERVER_ERROR = Text(
    "CivitAI had a problem on its side (HTTP {status}).", "CivitAI 伺服器出了問題（HTTP {status}）。"
)
KEY_REFUSED = Text(
    "CivitAI refused our API key (HTTP {status}); an admin should check LORACLE_CIVITAI_API_KEY.",
    "CivitAI 拒絕了我們的 API 金鑰（HTTP {status}）；請管理員檢查 LORACLE_CIVITAI_API_KEY。",
)
KEY_NEEDED = Text(
    "CivitAI wants an API key for this (HTTP {status}); an admin can set LORACLE_CIVITAI_API_KEY.",
    "CivitAI 需要 API 金鑰才能取得（HTTP {status}）；管理員可以設定 LORACLE_CIVITAI_API_KEY。",
)
REFUSED = Text(
    "CivitAI refused the request (HTTP {status}).", "CivitAI 拒絕了這個請求（HTTP {status}）。"
)
NO_SUCH_FILE = Text("CivitAI has no such file (HTTP 404).", "CivitAI 上沒有這個檔案（HTTP 404）。")
BLOCKED = Text(
    "CivitAI's firewall turned the request away (HTTP {status}, a web page instead of an answer); "
    "this is not about the API key. Try again later.",
    "CivitAI 的防火牆擋下了這個請求（HTTP {status}，回傳的是網頁而不是資料）；這與 API 金鑰無關，請稍後再試。",
)
EARLY_ACCESS = Text(
    "This CivitAI version is in early access: only those who unlocked it can download it{until}.",
    "這個 CivitAI 版本仍在搶先體驗期：只有已解鎖的使用者可以下載{until_zh}。",
)
DOWNLOADS_DISABLED = Text(
    "The creator has turned off downloads of this file on CivitAI.",
    "作者已關閉這個檔案在 CivitAI 上的下載。",
)
ARCHIVED = Text(
    "This model is archived on CivitAI: its files are no longer offered for download.",
    "這個模型在 CivitAI 上已封存：檔案不再提供下載。",
)
WEB_PAGE = Text(
    "CivitAI sent a web page instead of the file; download it by hand from the CivitAI page and add it with its path.",
    "CivitAI 回傳的是網頁而不是檔案；請從 CivitAI 頁面手動下載，再以路徑加入。",
)
BAD_ANSWER = Text(
    "CivitAI sent an answer we could not read.", "CivitAI 回傳了我們無法解讀的內容。"
)
STALE = Text("{reason} Using data cached {age} ago.", "{reason}改用 {age}前快取的資料。")


def _fill(text: Text, **params: Any) -> Text:
    """A Text with its placeholders already filled, ready to hand to any renderer."""
    return Text(text.en.format(**params), text.zh_tw.format(**params)) if params else text


def _age(seconds: float) -> tuple[str, str]:
    minutes = seconds / 60
    if minutes < 90:
        n = max(1, round(minutes))
        return (f"{n} minute{'s' if n != 1 else ''}", f"{n} 分鐘")
    hours = minutes / 60
    if hours < 36:
        n = round(hours)
        return (f"{n} hours", f"{n} 小時")
    n = round(hours / 24)
    return (f"{n} days", f"{n} 天")


def _stale_note(reason: Text, age_s: float) -> Text:
    age_en, age_zh = _age(age_s)
    return Text(
        STALE.en.format(reason=reason.en, age=age_en),
        STALE.zh_tw.format(reason=reason.zh_tw, age=age_zh),
    )


@dataclass(frozen=True)
class Lookup(Generic[T]):
    """One answer from CivitAI or its cache; `note` explains a second-hand answer."""

    value: T | None
    status: Status
    source: Source
    note: Text | None = None
    fetched_at: float | None = None  # when CivitAI gave this answer (None: never)

    @property
    def found(self) -> bool:
        return self.status == "found"


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = ""

    @property
    def is_html(self) -> bool:
        return _is_html(self.content_type, self.body)


@dataclass(frozen=True)
class _Trouble:
    text: Text
    params: dict[str, Any] = field(default_factory=dict)
    status: int | None = None

    @property
    def note(self) -> Text:
        return _fill(self.text, **self.params)

    def error(self) -> CivitaiError:
        return CivitaiError(self.text, **self.params)


class _TooLarge(Exception):
    pass


class _BadRedirect(Exception):
    pass


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def normalize_hash(value: str) -> str:
    return value.strip().upper()


def _user_agent() -> str:
    try:
        from importlib.metadata import version

        ours = version("loracle")
    except Exception:  # not installed as a distribution (running from a checkout)
        ours = "dev"
    return f"loracle/{ours} (Discord image bot) aiohttp/{aiohttp.__version__}"


async def read_limited(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body, refusing (with _TooLarge) one longer than `max_bytes`."""
    length = resp.content_length
    if length is not None and length > max_bytes:
        raise _TooLarge()
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


class CivitaiClient:
    """Cache-first access to CivitAI's public API. Use as `async with CivitaiClient(...)`."""

    def __init__(
        self,
        settings: Settings,
        cache: CivitaiCache,
        *,
        session: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        image_dir: Path | None = None,
        max_retry_wait_s: float = 60.0,
        backoff_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.base_url = settings.civitai_base_url.rstrip("/")
        self.image_dir = image_dir if image_dir is not None else settings.root / "cache" / "civitai-images"
        self.max_retry_wait_s = max_retry_wait_s
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._session = session
        self._owns_session = session is None
        self._user_agent = _user_agent()
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    def __repr__(self) -> str:
        key = "set" if self._api_key() else "unset"
        return f"CivitaiClient(base_url={self.base_url!r}, api_key={key}, offline={self.settings.offline})"

    async def __aenter__(self) -> CivitaiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_session:
            if self._session is not None and not self._session.closed:
                await self._session.close()
            self._session = None

    # -- public lookups -----------------------------------------------------------------

    async def version_by_hash(self, value: str, *, refresh: bool = False) -> Lookup[ModelVersion]:
        """The version whose file has this hash (any of CivitAI's hash kinds)."""
        h = normalize_hash(value)
        if not _HASH_RE.match(h):
            return Lookup(None, "not_found", "none", _fill(NOT_A_HASH, value=value.strip()[:80]))
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
                results[h] = Lookup(None, "not_found", "none", _fill(NOT_A_HASH, value=h[:80]))
                continue
            entry = self.cache.get(by_hash_key(h))
            if entry is not None and entry.fresh and not refresh:
                hit = self._from_entry(entry, parse_version, "cache")
                if hit is not None:
                    results[h] = hit
                    continue
            pending.append((h, entry))

        if self.settings.offline:
            for h, entry in pending:
                results[h] = self._fallback(entry, parse_version, _Trouble(OFFLINE))
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
            hit = self._from_entry(entry, parse_version, "cache" if entry.fresh else "stale_cache")
            if hit is not None:
                return hit
        return Lookup(None, "unavailable", "none", NOT_ASKED)

    async def fetch_image(self, url: str, max_bytes: int) -> bytes | None:
        """A preview image's bytes, kept on disk so the bot can show it again offline."""
        path = self.image_dir / (hashlib.sha256(url.encode()).hexdigest()[:40] + ".img")
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError:
                data = b""
            if data and len(data) <= max_bytes:
                return data
        if self.settings.offline or URL(url).scheme not in ("http", "https"):
            return None
        try:
            resp = await self._send("GET", url, timeout=self._api_timeout())
            try:
                if resp.status != 200:
                    log.debug("image %s -> HTTP %s", _safe_url(url), resp.status)
                    return None
                data = await read_limited(resp, max_bytes)
            finally:
                resp.release()
        except (TimeoutError, aiohttp.ClientError, OSError, _TooLarge, _BadRedirect) as exc:
            log.debug("image %s failed: %s", _safe_url(url), type(exc).__name__)
            return None
        if not _looks_like_image(data):
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except OSError as exc:  # a full disk must not cost the user the preview
            log.warning("could not keep preview image: %s", type(exc).__name__)
        return data

    # -- downloads (used by engine.civitai.download) ----------------------------------

    def is_civitai_url(self, url: str | URL) -> bool:
        """Whether `url` is CivitAI itself (the configured base URL's origin or civitai.com)."""
        target = URL(str(url))
        if not target.absolute or target.scheme not in ("http", "https"):
            return False
        if target.origin() == URL(self.base_url).origin():
            return True
        return target.scheme == "https" and (target.host or "").lower() in CIVITAI_HOSTS

    @asynccontextmanager
    async def open_download(self, url: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """A 200 response streaming the file at `url`; raises CivitaiError otherwise.

        Retries happen only before the body starts; a body cut short is the caller's to
        report, since half a file cannot be resumed safely without range support.
        """
        if self.settings.offline:
            raise CivitaiError(OFFLINE)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.settings.civitai_timeout_s, sock_read=self.settings.civitai_timeout_s
        )
        resp = await self._with_retries("GET", url, timeout=timeout, accept=(200,), download=True)
        if isinstance(resp, _Trouble):
            raise resp.error()
        try:
            if _is_html(resp.headers.get("Content-Type", ""), b""):
                raise self._web_page_instead_of_file(resp.url).error()
            yield resp
        finally:
            resp.release()

    def _web_page_instead_of_file(self, final: URL) -> _Trouble:
        # Browsers (and clients CivitAI takes for one) are sent to the login page when the
        # creator requires a login, or to the version page during early access; both are
        # 200 HTML on civitai.com. Saving that page as a .safetensors helps nobody.
        if final.path.rstrip("/").endswith("/login"):
            return _Trouble(KEY_REFUSED if self._api_key() else KEY_NEEDED, {"status": 401}, 401)
        return _Trouble(WEB_PAGE)

    # -- internals ----------------------------------------------------------------------

    def _api_key(self) -> str | None:
        secret = self.settings.civitai_api_key
        key = secret.get_secret_value().strip() if secret is not None else ""
        return key or None

    def _api_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.settings.civitai_timeout_s)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the aiohttp session given to CivitaiClient is closed")
            self._session = aiohttp.ClientSession()
        return self._session

    def _headers(self, with_auth: bool) -> dict[str, str]:
        headers = {"User-Agent": self._user_agent}
        key = self._api_key() if with_auth else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _send(
        self,
        method: str,
        url: str,
        *,
        timeout: aiohttp.ClientTimeout,
        json_body: Any = None,
    ) -> aiohttp.ClientResponse:
        """Send, following redirects by hand; the caller releases the response."""
        session = self._get_session()
        current = URL(url)
        key_allowed = True
        for _ in range(MAX_REDIRECTS + 1):
            # The key goes only to CivitAI itself (civitai.red and civitai.green send
            # downloads on to civitai.com, which needs the key), never to another host a
            # redirect names (signed storage URLs need no key and must not see it), and
            # once a redirect has left CivitAI it stays off for the rest of the chain.
            key_allowed = key_allowed and self.is_civitai_url(current)
            resp = await session.request(
                method,
                current,
                json=json_body,
                headers=self._headers(key_allowed),
                timeout=timeout,
                allow_redirects=False,
            )
            location = resp.headers.get("Location")
            if resp.status not in (301, 302, 303, 307, 308) or not location:
                return resp
            resp.release()
            try:
                target = current.join(URL(location))
            except ValueError as exc:
                raise _BadRedirect() from exc
            if target.scheme not in ("http", "https"):
                raise _BadRedirect()
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, json_body = "GET", None
            log.debug("redirect %s -> %s", _safe_url(current), _safe_url(target))
            current = target
        raise _BadRedirect()

    async def _with_retries(
        self,
        method: str,
        url: str,
        *,
        timeout: aiohttp.ClientTimeout,
        accept: tuple[int, ...],
        json_body: Any = None,
        download: bool = False,
    ) -> aiohttp.ClientResponse | _Trouble:
        """A response whose status is in `accept` (caller releases it), or the trouble."""
        attempts = self.settings.civitai_max_retries + 1
        trouble = _Trouble(UNREACHABLE)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            wait = self._backoff(attempt)
            try:
                resp = await self._send(method, url, timeout=timeout, json_body=json_body)
            except TimeoutError:
                trouble = _Trouble(TIMEOUT, {"seconds": _num(self.settings.civitai_timeout_s)})
                log.info("CivitAI %s %s timed out (attempt %d)", method, _safe_url(url), attempt + 1)
            except (aiohttp.ClientError, OSError, _BadRedirect) as exc:
                trouble = _Trouble(UNREACHABLE)
                log.info("CivitAI %s %s failed: %s (attempt %d)", method, _safe_url(url), type(exc).__name__, attempt + 1)
            else:
                status = resp.status
                log.debug("CivitAI %s %s -> %s", method, _safe_url(url), status)
                if status in accept:
                    return resp
                retry_after = resp.headers.get("Retry-After")
                content_type = resp.headers.get("Content-Type", "")
                detail = await _peek(resp) if status in (401, 403, 410) else b""
                resp.release()
                if status in (401, 403):
                    return self._refusal(status, content_type, detail, resp.url)
                if status in (429, 503) and retry_after is not None:
                    asked = parse_retry_after(retry_after)
                    if asked is not None and asked > self.max_retry_wait_s:
                        log.warning("CivitAI asks us to wait %.0f s; giving up", asked)
                        if status == 503:
                            return _Trouble(SERVER_ERROR, {"status": status}, status)
                        return _Trouble(RATE_LIMITED_LONG, {"seconds": _num(asked)}, status)
                    wait = asked if asked is not None else wait
                if status == 429:
                    trouble = _Trouble(RATE_LIMITED, status=status)
                elif status >= 500:
                    trouble = _Trouble(SERVER_ERROR, {"status": status}, status)
                elif download and status == 404:
                    return _Trouble(NO_SUCH_FILE, status=status)
                elif download and status == 410:
                    return _Trouble(ARCHIVED, status=status)
                else:
                    return _Trouble(REFUSED, {"status": status}, status)
            if not last:
                await self._sleep(wait)
        return trouble

    def _refusal(self, status: int, content_type: str, body: bytes, where: URL) -> _Trouble:
        """What a 401/403 means: CivitAI names its reason in JSON; Cloudflare sends HTML;
        a storage host (after CivitAI's redirect) never saw our key, so it is not that."""
        if _is_html(content_type, body):
            return _Trouble(BLOCKED, {"status": status}, status)
        if not self.is_civitai_url(where):
            return _Trouble(REFUSED, {"status": status}, status)
        error = _json_error(body)
        if error.get("error", "").strip().lower() == "early access":
            until = _date(error.get("deadline"))
            params = {"until": f" until {until}" if until else "", "until_zh": f"（至 {until} 為止）" if until else ""}
            return _Trouble(EARLY_ACCESS, params, status)
        if "disabled download" in error.get("message", "").lower():
            return _Trouble(DOWNLOADS_DISABLED, status=status)
        return _Trouble(KEY_REFUSED if self._api_key() else KEY_NEEDED, {"status": status}, status)

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_s * (2**attempt), self.max_retry_wait_s)

    async def _call(self, method: str, path: str, *, json_body: Any = None) -> _Reply | _Trouble:
        url = f"{self.base_url}{path}"
        got = await self._with_retries(
            method, url, timeout=self._api_timeout(), accept=(200, 404), json_body=json_body
        )
        if isinstance(got, _Trouble):
            return got
        try:
            body = await read_limited(got, MAX_BODY_BYTES)
        except TimeoutError:
            return _Trouble(TIMEOUT, {"seconds": _num(self.settings.civitai_timeout_s)})
        except (aiohttp.ClientError, OSError):
            return _Trouble(UNREACHABLE)
        except _TooLarge:
            return _Trouble(BAD_ANSWER)
        finally:
            got.release()
        return _Reply(got.status, body, got.headers.get("Content-Type", ""))

    async def _lookup(
        self,
        key: str,
        path: str,
        parse: Callable[[Any], Any],
        refresh: bool,
        requested_hash: str | None,
    ) -> Lookup[Any]:
        entry = self.cache.get(key)
        if entry is not None and entry.fresh and not refresh:
            hit = self._from_entry(entry, parse, "cache")
            if hit is not None:
                return hit
        if self.settings.offline:
            return self._fallback(entry, parse, _Trouble(OFFLINE))
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
        parse: Callable[[Any], Any],
        entry: CacheEntry | None,
        requested_hash: str | None,
    ) -> Lookup[Any]:
        reply = await self._call("GET", path)
        if isinstance(reply, _Trouble):
            return self._fallback(entry, parse, reply)
        if reply.status == 404 and reply.is_html:
            # CivitAI's API says "not found" in JSON; an HTML 404 is a proxy's or a wrong
            # base URL's page, and caching it as a miss would hide the file for a day.
            log.warning("CivitAI answered %s with an HTML 404 page", key)
            return self._fallback(entry, parse, _Trouble(BAD_ANSWER))
        if reply.status == 404:
            stored = self.cache.put(key, 404, None, self._miss_ttl())
            return Lookup(None, "not_found", "network", fetched_at=stored.fetched_at)
        try:
            text = reply.body.decode("utf-8")
            value = parse(json.loads(text))
        except (ValueError, ValidationError) as exc:
            log.warning("CivitAI sent an unreadable body for %s: %s", key, type(exc).__name__)
            return self._fallback(entry, parse, _Trouble(BAD_ANSWER))
        if isinstance(value, ModelVersion):
            hashes = value.all_hashes() | ({requested_hash} if requested_hash else set())
            self.cache.put_version(value.id, hashes, text, self._hit_ttl())
        else:
            self.cache.put(key, 200, text, self._hit_ttl())
        return Lookup(value, "found", "network", fetched_at=self.cache.clock())

    async def _batch(self, chunk: list[tuple[str, CacheEntry | None]]) -> dict[str, Lookup[ModelVersion]]:
        reply = await self._call("POST", "/api/v1/model-versions/by-hash", json_body=[h for h, _ in chunk])
        if reply.status in (400, 404, 405):
            # CivitAI answers a valid batch with a list, never these: this is a mirror
            # without the batch endpoint, so ask one by one instead.
            return {h: await self.version_by_hash(h, refresh=True) for h, _ in chunk}
        if isinstance(reply, _Trouble):
            return {h: self._fallback(e, parse_version, reply) for h, e in chunk}
        try:
            items = json.loads(reply.body.decode("utf-8"))
            if not isinstance(items, list):
                raise ValueError("not a list")
        except ValueError:
            log.warning("CivitAI sent an unreadable by-hash batch body")
            return {h: self._fallback(e, parse_version, _Trouble(BAD_ANSWER)) for h, e in chunk}

        requested = {h for h, _ in chunk}
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
                out[h] = self._keep_batch_hit(version, item, h)
        missing = [(h, e) for h, e in chunk if h not in out]
        if unplaced and missing and not incomplete:
            if len(missing) == 1:
                version, item = unplaced[0]
                out[missing[0][0]] = self._keep_batch_hit(version, item, missing[0][0])
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
                out[h] = self._fallback(entry, parse_version, _Trouble(BAD_ANSWER))
            else:
                stored = self.cache.put(by_hash_key(h), 404, None, self._miss_ttl())
                out[h] = Lookup(None, "not_found", "network", fetched_at=stored.fetched_at)
        return out

    def _keep_batch_hit(self, version: ModelVersion, item: Any, requested: str) -> Lookup[ModelVersion]:
        hashes = version.all_hashes() | {requested}
        self.cache.put_version(version.id, hashes, json.dumps(item, ensure_ascii=False), self._hit_ttl())
        return Lookup(version, "found", "network", fetched_at=self.cache.clock())

    def _from_entry(
        self, entry: CacheEntry, parse: Callable[[Any], Any], source: Source, note: Text | None = None
    ) -> Lookup[Any] | None:
        if entry.status == 404:
            return Lookup(None, "not_found", source, note, entry.fetched_at)
        if entry.status != 200 or entry.body is None:
            return None
        try:
            value = parse(entry.json())
        except (ValueError, ValidationError):
            return None  # a cached body this version of the code cannot read is no answer
        return Lookup(value, "found", source, note, entry.fetched_at)

    def _fallback(
        self, entry: CacheEntry | None, parse: Callable[[Any], Any], trouble: _Trouble
    ) -> Lookup[Any]:
        if entry is not None:
            note = _stale_note(trouble.note, entry.age_s(self.cache.clock()))
            hit = self._from_entry(entry, parse, "cache" if entry.fresh else "stale_cache", note)
            if hit is not None:
                return hit
        return Lookup(None, "unavailable", "none", trouble.note)

    def _hit_ttl(self) -> float:
        return self.settings.civitai_cache_ttl_hours * 3600.0

    def _miss_ttl(self) -> float:
        return self.settings.civitai_miss_ttl_hours * 3600.0


def _num(value: float) -> str:
    return f"{value:g}" if value < 10 else f"{value:.0f}"


async def _peek(resp: aiohttp.ClientResponse) -> bytes:
    """The start of an error body, for the reason in it; b"" when it cannot be read."""
    chunks: list[bytes] = []
    size = 0
    try:
        while size < _PEEK_BYTES:
            chunk = await resp.content.read(_PEEK_BYTES - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (TimeoutError, aiohttp.ClientError, OSError):
        pass  # the status alone still says something
    return b"".join(chunks)


def _is_html(content_type: str, body: bytes) -> bool:
    """A web page (Cloudflare, a login page, a proxy's 404) rather than an API answer."""
    if "html" in content_type.lower():
        return True
    return body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))


def _json_error(body: bytes) -> dict[str, str]:
    """CivitAI's {"error": ..., "message": ...}, as strings; {} for anything else."""
    try:
        data = json.loads(body.decode("utf-8")) if body else None
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _date(value: str | None) -> str | None:
    """'2026-03-01T12:00:00.000Z' -> '2026-03-01' (an early-access deadline)."""
    match = re.match(r"\s*(\d{4}-\d{2}-\d{2})", value or "")
    return match.group(1) if match else None


def _safe_url(url: str | URL) -> str:
    # Signed storage URLs carry credentials in their query; logs get the path only.
    parsed = URL(str(url))
    return str(parsed.with_query(None).with_fragment(None))


def _looks_like_image(data: bytes) -> bool:
    return (
        data.startswith(b"\x89PNG\r\n\x1a\n")
        or data.startswith(b"\xff\xd8\xff")
        or data.startswith((b"GIF87a", b"GIF89a"))
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    )
