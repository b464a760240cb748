"""Pointing discord.py at another REST base URL and gateway (LORACLE_DISCORD_API_BASE,
LORACLE_DISCORD_GATEWAY_URL): REST proxies such as twilight-http-proxy or nirn-proxy sit
there in large deployments, and tests put a loopback fake of Discord there.

discord.py builds every REST URL, interaction webhooks included, from `Route.BASE`, and
opens the gateway at `DiscordWebSocket.DEFAULT_GATEWAY` (it also falls back to that
after an invalidated session). Both are class attributes, so this is process-wide:
one bot per process, as `loracle run` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import yarl
from discord import http
from discord.gateway import DiscordWebSocket


@dataclass(frozen=True)
class Endpoints:
    api_base: str
    gateway: yarl.URL


def current() -> Endpoints:
    return Endpoints(http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)


def api_base_url(base: str) -> str:
    """"http://proxy:8080" -> "http://proxy:8080/api/v10"; a base that already names an
    API version is kept as given (without a trailing slash)."""
    base = base.rstrip("/")
    if "/api/v" in base:
        return base
    if base.endswith("/api"):
        return f"{base}/v{http.INTERNAL_API_VERSION}"
    return f"{base}/api/v{http.INTERNAL_API_VERSION}"


def apply(api_base: str | None, gateway_url: str | None) -> Endpoints:
    """Use the given endpoints (None keeps discord.py's); returns the previous ones."""
    previous = current()
    if api_base:
        http.Route.BASE = api_base_url(api_base)
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    return previous


def restore(endpoints: Endpoints) -> None:
    http.Route.BASE = endpoints.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = endpoints.gateway
