"""Talking to CivitAI politely and safely, over any `Transport`.

The API key travels only in the Authorization header, only to the configured CivitAI
origin or CivitAI's own domains (civitai.com, and civitai.red / civitai.green, which
redirect downloads to civitai.com), and never follows a redirect anywhere else: CivitAI
answers downloads with a redirect to signed storage URLs on other hosts. Redirects are
followed here, by hand, so that this rule does not depend on the HTTP library.

CivitAI sits behind Cloudflare, whose refusals are HTML pages (403 "Attention Required",
503 challenges, sometimes a 200 page): an HTML answer is never read as "CivitAI does not
know this file" nor as "our API key is wrong".
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from yarl import URL

from engine import metrics
from engine.civitai.body import BadBody, decode_json
from engine.civitai.notes import (
    ARCHIVED,
    BAD_ANSWER,
    BLOCKED,
    DOWNLOADS_DISABLED,
    EARLY_ACCESS,
    KEY_NEEDED,
    KEY_REFUSED,
    NO_SUCH_FILE,
    OFFLINE,
    RATE_LIMITED,
    RATE_LIMITED_LONG,
    REFUSED,
    SERVER_ERROR,
    TIMEOUT,
    UNREACHABLE,
    WEB_PAGE,
    Trouble,
    num,
)
from engine.civitai.refs import KNOWN_HOSTS
from engine.civitai.transport import (
    Request,
    Response,
    Timeout,
    TooLarge,
    Transport,
    TransportError,
    read_limited,
)
from engine.errors import CivitaiError
from engine.settings import Settings

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
# Real answers run to a few hundred KB (a model with dozens of versions and their example
# prompts); anything far beyond that is not an answer we want to hold in memory.
MAX_BODY_BYTES = 4 * 1024 * 1024
# The REST API answers on all of CivitAI's domains; downloads on the others redirect to
# civitai.com.
CIVITAI_HOSTS = KNOWN_HOSTS
_PEEK_BYTES = 16 * 1024  # enough of an error body to read CivitAI's {"error": ...}
_REDIRECTS = (301, 302, 303, 307, 308)


class BadRedirect(TransportError):
    pass


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = ""

    @property
    def is_html(self) -> bool:
        return is_html(self.content_type, self.body)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value or not value.strip():
        return None
    text = value.strip()[:100]
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None  # NaN, inf: no answer
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def user_agent() -> str:
    import aiohttp

    try:
        from importlib.metadata import version

        ours = version("loracle")
    except Exception:  # not installed as a distribution (running from a checkout)
        ours = "dev"
    return f"loracle/{ours} (Discord image bot) aiohttp/{aiohttp.__version__}"


class CivitaiHttp:
    """Redirects, retries and refusals over a transport; knows nothing of caching."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        *,
        sleep: Callable[[float], Awaitable[Any]],
        max_retry_wait_s: float,
        backoff_s: float,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.base_url = settings.civitai_base_url.rstrip("/")
        self.max_retry_wait_s = max_retry_wait_s
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._user_agent = user_agent()

    def api_key(self) -> str | None:
        secret = self.settings.civitai_api_key
        key = secret.get_secret_value().strip() if secret is not None else ""
        return key or None

    def api_timeout(self) -> Timeout:
        return Timeout(total=self.settings.civitai_timeout_s)

    def is_civitai_url(self, url: str | URL) -> bool:
        """Whether `url` is CivitAI itself (the configured base URL's origin or civitai.com)."""
        target = URL(str(url))
        if not target.absolute or target.scheme not in ("http", "https"):
            return False
        if target.origin() == URL(self.base_url).origin():
            return True
        return target.scheme == "https" and (target.host or "").lower() in CIVITAI_HOSTS

    def _headers(self, with_auth: bool) -> dict[str, str]:
        headers = {"User-Agent": self._user_agent}
        key = self.api_key() if with_auth else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def send(self, method: str, url: str, *, timeout: Timeout, json_body: Any = None) -> Response:
        """Send, following redirects by hand; the caller releases the response."""
        try:
            current = URL(url)
        except (ValueError, TypeError) as exc:
            raise BadRedirect() from exc
        key_allowed = True
        for _ in range(MAX_REDIRECTS + 1):
            # The key goes only to CivitAI itself (civitai.red and civitai.green send
            # downloads on to civitai.com, which needs the key), never to another host a
            # redirect names (signed storage URLs need no key and must not see it), and
            # once a redirect has left CivitAI it stays off for the rest of the chain.
            key_allowed = key_allowed and self.is_civitai_url(current)
            request = Request(method, current, self._headers(key_allowed), json_body, timeout)
            resp = await self.transport.send(request)
            location = resp.headers.get("Location")
            if resp.status not in _REDIRECTS or not location:
                return resp
            resp.release()
            try:
                target = current.join(URL(location))
            except (ValueError, TypeError) as exc:
                raise BadRedirect() from exc
            if target.scheme not in ("http", "https"):
                raise BadRedirect()
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, json_body = "GET", None
            log.debug("redirect %s -> %s", safe_url(current), safe_url(target))
            current = target
        raise BadRedirect()

    async def with_retries(
        self,
        method: str,
        url: str,
        *,
        timeout: Timeout,
        accept: tuple[int, ...],
        json_body: Any = None,
        download: bool = False,
    ) -> Response | Trouble:
        """A response whose status is in `accept` (caller releases it), or the trouble."""
        attempts = self.settings.civitai_max_retries + 1
        trouble = Trouble(UNREACHABLE)
        # Every attempt is counted (retries too): a rate limit shows as 429s per minute.
        kind = "download" if download else "api"
        for attempt in range(attempts):
            last = attempt == attempts - 1
            wait = self._backoff(attempt)
            try:
                resp = await self.send(method, url, timeout=timeout, json_body=json_body)
            except TimeoutError:
                metrics.civitai_attempt(kind, metrics.civitai_outcome(None, error="timeout"))
                trouble = Trouble(TIMEOUT, {"seconds": num(self.settings.civitai_timeout_s)})
                log.info("CivitAI %s %s timed out (attempt %d)", method, safe_url(url), attempt + 1)
            except TransportError as exc:
                metrics.civitai_attempt(kind, metrics.civitai_outcome(None, error="unreachable"))
                trouble = Trouble(UNREACHABLE)
                log.info("CivitAI %s %s failed: %s (attempt %d)", method, safe_url(url), exc, attempt + 1)
            else:
                status = resp.status
                log.debug("CivitAI %s %s -> %s", method, safe_url(url), status)
                metrics.civitai_attempt(kind, metrics.civitai_outcome(status, accepted=status in accept))
                if status in accept:
                    return resp
                retry_after = resp.headers.get("Retry-After")
                content_type = resp.headers.get("Content-Type", "")
                detail = await resp.read_at_most(_PEEK_BYTES) if status in (401, 403, 410) else b""
                resp.release()
                if status in (401, 403):
                    return self._refusal(status, content_type, detail, resp.url)
                if status in (429, 503) and retry_after is not None:
                    asked = parse_retry_after(retry_after)
                    if asked is not None and asked > self.max_retry_wait_s:
                        log.warning("CivitAI asks us to wait %.0f s; giving up", asked)
                        if status == 503:
                            return Trouble(SERVER_ERROR, {"status": status}, status)
                        return Trouble(RATE_LIMITED_LONG, {"seconds": num(asked)}, status)
                    wait = asked if asked is not None else wait
                if status == 429:
                    trouble = Trouble(RATE_LIMITED, status=status)
                elif status >= 500:
                    trouble = Trouble(SERVER_ERROR, {"status": status}, status)
                elif download and status == 404:
                    return Trouble(NO_SUCH_FILE, status=status)
                elif download and status == 410:
                    return Trouble(ARCHIVED, status=status)
                else:
                    return Trouble(REFUSED, {"status": status}, status)
            if not last:
                await self._sleep(wait)
        return trouble

    def _refusal(self, status: int, content_type: str, body: bytes, where: URL) -> Trouble:
        """What a 401/403 means: CivitAI names its reason in JSON; Cloudflare sends HTML;
        a storage host (after CivitAI's redirect) never saw our key, so it is not that."""
        if is_html(content_type, body):
            return Trouble(BLOCKED, {"status": status}, status)
        if not self.is_civitai_url(where):
            return Trouble(REFUSED, {"status": status}, status)
        error = json_error(body)
        if error.get("error", "").strip().lower() == "early access":
            until = _date(error.get("deadline"))
            params = {"until": f" until {until}" if until else "", "until_zh": f"（至 {until} 為止）" if until else ""}
            return Trouble(EARLY_ACCESS, params, status)
        if "disabled download" in error.get("message", "").lower():
            return Trouble(DOWNLOADS_DISABLED, status=status)
        return Trouble(KEY_REFUSED if self.api_key() else KEY_NEEDED, {"status": status}, status)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff_s * 2.0**attempt, self.max_retry_wait_s))

    async def call(self, method: str, path: str, *, json_body: Any = None) -> Reply | Trouble:
        """One API call: the status (200 or 404) and the body, or the trouble."""
        url = f"{self.base_url}{path}"
        got = await self.with_retries(
            method, url, timeout=self.api_timeout(), accept=(200, 404), json_body=json_body
        )
        if isinstance(got, Trouble):
            return got
        try:
            body = await read_limited(got, MAX_BODY_BYTES)
        except TimeoutError:
            return Trouble(TIMEOUT, {"seconds": num(self.settings.civitai_timeout_s)})
        except TransportError:
            return Trouble(UNREACHABLE)
        except TooLarge:
            log.warning("CivitAI sent more than %d bytes for %s", MAX_BODY_BYTES, path)
            return Trouble(BAD_ANSWER)
        finally:
            got.release()
        return Reply(got.status, body, got.headers.get("Content-Type", ""))

    @asynccontextmanager
    async def open_download(self, url: str) -> AsyncIterator[Response]:
        """A 200 response streaming the file at `url`; raises CivitaiError otherwise.

        Retries happen only before the body starts; a body cut short is the caller's to
        report, since half a file cannot be resumed safely without range support.
        """
        if self.settings.offline:
            raise CivitaiError(OFFLINE)
        timeout = Timeout(connect=self.settings.civitai_timeout_s, read=self.settings.civitai_timeout_s)
        resp = await self.with_retries("GET", url, timeout=timeout, accept=(200,), download=True)
        if isinstance(resp, Trouble):
            raise resp.error()
        try:
            if is_html(resp.headers.get("Content-Type", ""), b""):
                raise self._web_page_instead_of_file(resp.url).error()
            yield resp
        finally:
            resp.release()

    def _web_page_instead_of_file(self, final: URL) -> Trouble:
        # Browsers (and clients CivitAI takes for one) are sent to the login page when the
        # creator requires a login, or to the version page during early access; both are
        # 200 HTML on civitai.com. Saving that page as a .safetensors helps nobody.
        if final.path.rstrip("/").endswith("/login"):
            return Trouble(KEY_REFUSED if self.api_key() else KEY_NEEDED, {"status": 401}, 401)
        return Trouble(WEB_PAGE)


def is_html(content_type: str, body: bytes) -> bool:
    """A web page (Cloudflare, a login page, a proxy's 404) rather than an API answer."""
    if "html" in content_type.lower():
        return True
    return body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))


def json_error(body: bytes) -> dict[str, str]:
    """CivitAI's {"error": ..., "message": ...}, as strings; {} for anything else."""
    try:
        data = decode_json(body) if body else None
    except BadBody:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v[:1000] for k, v in data.items() if isinstance(v, str)}


def _date(value: str | None) -> str | None:
    """'2026-03-01T12:00:00.000Z' -> '2026-03-01' (an early-access deadline)."""
    match = re.match(r"\s*(\d{4}-\d{2}-\d{2})", value or "")
    return match.group(1) if match else None


def safe_url(url: str | URL) -> str:
    # Signed storage URLs carry credentials in their query; logs get the path only.
    try:
        parsed = URL(str(url))
        return str(parsed.with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<bad url>"
