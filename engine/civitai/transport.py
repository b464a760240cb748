"""The seam between the CivitAI client and the network: one request in, one response out.

Modelled on httpx's BaseTransport/MockTransport: everything above this module (redirect
rules for the API key, retries, Cloudflare sniffing, caching) talks to a `Transport`, whose
only job is to send one request and hand back one response without following redirects.
`AiohttpTransport` is the real one; `MockTransport(handler)` answers in process from a plain
function, so a test can script CivitAI's behaviour without a server.

Failures cross the seam as two exceptions only: `TimeoutError` (the server was too slow)
and `TransportError` (anything else that kept an answer from arriving), so callers never
need to know which HTTP library sits underneath.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL


class TransportError(Exception):
    """The request got no answer: connection refused, reset, DNS failure, bad redirect..."""


class TooLarge(Exception):
    """A body longer than the caller was willing to read."""


@dataclass(frozen=True)
class Timeout:
    """Seconds allowed: for the whole exchange, to connect, and between two reads."""

    total: float | None = None
    connect: float | None = None
    read: float | None = None


@dataclass(frozen=True)
class Request:
    method: str
    url: URL
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    timeout: Timeout = Timeout()


class Response:
    """A status, headers and a body to stream; in-memory unless a transport says otherwise.

    `Response(200, content=b"...")` is what a MockTransport handler returns.
    """

    def __init__(
        self,
        status: int,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | str = b"",
        url: URL | str = "",
    ) -> None:
        self.status = status
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(headers or {}))
        self._content = content.encode("utf-8") if isinstance(content, str) else content
        self.url = URL(str(url))

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is not None and value.strip().isdigit():
            return int(value)
        return None

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(self._content), size):
            yield self._content[start : start + size]

    async def read_at_most(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` of the body; never fails (an error body is a hint, not news)."""
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in self.iter_chunks(max(1, max_bytes)):
                chunks.append(chunk[: max_bytes - size])
                size += len(chunks[-1])
                if size >= max_bytes:
                    break
        except (TimeoutError, TransportError):
            pass  # the status alone still says something
        return b"".join(chunks)

    def release(self) -> None:
        """Give the connection back; the body may not be read afterwards."""


async def read_limited(resp: Response, max_bytes: int) -> bytes:
    """The whole body, refusing (with TooLarge) one longer than `max_bytes`."""
    length = resp.content_length
    if length is not None and length > max_bytes:
        raise TooLarge()
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.iter_chunks(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


class Transport(Protocol):
    async def send(self, request: Request) -> Response:
        """One exchange, redirects not followed; raises TimeoutError or TransportError."""
        ...

    async def aclose(self) -> None: ...


# -- aiohttp ------------------------------------------------------------------------------


class _AiohttpResponse(Response):
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        super().__init__(resp.status, url=resp.url)
        self.headers = resp.headers
        self._resp = resp

    @property
    def content_length(self) -> int | None:
        return self._resp.content_length

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_chunked(size):
                yield chunk
        except TimeoutError:  # aiohttp's timeouts are ClientErrors too; keep them apart
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(type(exc).__name__) from exc

    def release(self) -> None:
        self._resp.release()


class AiohttpTransport:
    """Sends through an aiohttp session: its own (closed by `aclose`) or one it is given."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owns_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession | None:
        return self._session

    async def send(self, request: Request) -> Response:
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(
            total=request.timeout.total,
            sock_connect=request.timeout.connect,
            sock_read=request.timeout.read,
        )
        try:
            resp = await session.request(
                request.method,
                request.url,
                json=request.json,
                headers=dict(request.headers),
                timeout=timeout,
                allow_redirects=False,
            )
        except TimeoutError:  # aiohttp's timeouts are ClientErrors too; keep them apart
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(type(exc).__name__) from exc
        return _AiohttpResponse(resp)

    async def aclose(self) -> None:
        if self._owns_session:
            if self._session is not None and not self._session.closed:
                await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise TransportError("the aiohttp session given to the transport is closed")
            self._session = aiohttp.ClientSession()
        return self._session


# -- in process ---------------------------------------------------------------------------

Handler = Callable[[Request], Response | Awaitable[Response]]


class MockTransport:
    """Answers every request from `handler` (plain or async); records what was sent."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []

    async def send(self, request: Request) -> Response:
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if not str(answer.url):
            answer.url = request.url
        return answer

    async def aclose(self) -> None:
        pass
