"""`loracle run`: start the engine's GPU worker and the Discord bot in one process.

Without a token it stops at once with a message saying how to get one. SIGTERM (what
`docker stop` sends) or Ctrl-C stops the queue, lets the running picture finish and
reach its channel while the bot is still connected, then closes the bot and the engine;
queued jobs stay in the database and run again after the restart. A second signal closes
the bot at once, without waiting to post that picture.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
from discord import http

from bot.discord_app import endpoints, limits
from bot.discord_app.client import LoracleBot, create_bot
from bot.discord_app.port import EnginePort
from bot.settings import BotSettings
from engine import metrics
from engine.errors import LoracleError, SettingsError
from engine.i18n import Text

log = logging.getLogger("loracle.bot")

NO_TOKEN = Text(
    "LORACLE_DISCORD_TOKEN is not set, so the bot cannot log in to Discord. "
    "Create an application at https://discord.com/developers/applications, open “Bot”, "
    "press “Reset Token”, and put the token in .env as LORACLE_DISCORD_TOKEN=... "
    "(the README section “Run it on Discord” walks through it).",
    "尚未設定 LORACLE_DISCORD_TOKEN，機器人無法登入 Discord。請到 "
    "https://discord.com/developers/applications 建立應用程式，打開「Bot」，按「Reset Token」，"
    "再把 token 寫進 .env：LORACLE_DISCORD_TOKEN=...（README 的「Run it on Discord」一節有逐步說明）。",
)
BAD_TOKEN = Text(
    "Discord refused LORACLE_DISCORD_TOKEN. Reset the token in the developer portal under “Bot” "
    "and put the new one in .env.",
    "Discord 拒絕了 LORACLE_DISCORD_TOKEN。請到開發者平台的「Bot」重設 token，並把新的 token 寫進 .env。",
)


UNREACHABLE = Text(
    "Could not reach Discord at {where} ({reason}). Check the network connection, and "
    "LORACLE_DISCORD_API_BASE / LORACLE_DISCORD_GATEWAY_URL if a proxy is set.",
    "無法連線到 Discord（{where}）：{reason}。請檢查網路連線；若有設定代理，也請檢查 "
    "LORACLE_DISCORD_API_BASE / LORACLE_DISCORD_GATEWAY_URL。",
)
DISCORD_ERROR = Text(
    "Discord answered the login with an error ({reason}) at {where}. It may be a passing "
    "outage (see https://discordstatus.com); try again in a few minutes.",
    "Discord 回應登入時發生錯誤（{reason}，{where}）。可能是暫時性的故障（見 https://discordstatus.com），請幾分鐘後再試。",
)
# Connection failures at start-up: the network, DNS, a proxy or Discord itself.
_NETWORK_ERRORS = (OSError, TimeoutError, aiohttp.ClientError, discord.GatewayNotFound, discord.ConnectionClosed)


class StartupError(LoracleError):
    """The bot could not start; the message says what, where and what to check."""


def _reason(exc: BaseException) -> str:
    # One line, short: aiohttp's messages name host and port, never the token.
    text = " ".join(str(exc).split()) or type(exc).__name__
    return limits.clip(text, 200)


def token_of(settings: BotSettings) -> str:
    token = settings.discord_token.get_secret_value().strip() if settings.discord_token else ""
    if not token:
        raise SettingsError(NO_TOKEN)
    return token


def run_bot(settings: BotSettings) -> None:
    """Run until stopped (Ctrl-C, SIGTERM). Raises SettingsError for a missing or refused token."""
    token = token_of(settings)
    discord.utils.setup_logging(level=getattr(logging, settings.log_level), root=True)
    endpoints.apply(settings.discord_api_base, settings.discord_gateway_url)
    try:
        asyncio.run(_main(settings, token))
    except discord.LoginFailure:
        raise SettingsError(BAD_TOKEN) from None
    except KeyboardInterrupt:
        log.info("stopped")


async def _main(settings: BotSettings, token: str) -> None:
    from engine.api import Engine

    engine = Engine(settings)
    # Before the engine starts: a busy metrics port stops start-up before models load.
    metrics_server = start_metrics(settings, engine)
    try:
        await engine.start()
        # Catch up with files copied in while the bot was down, without holding up the login
        # (hashing a new 6 GB checkpoint takes a while); /admin scan does the same on demand.
        # Requests naming files it has not indexed yet wait for it (engine/indexing.py).
        scan = asyncio.create_task(_startup_scan(engine))
        try:
            await serve(settings, token, engine)
        finally:
            scan.cancel()
            await engine.close()
    finally:
        if metrics_server is not None:
            metrics_server.close()


def start_metrics(settings: BotSettings, engine: EnginePort) -> metrics.MetricsServer | None:
    """The Prometheus endpoint when LORACLE_METRICS_PORT is set; the queue depth is read
    from the engine's queue on each scrape (0 before the worker starts)."""

    def depth() -> int:
        queue = engine.queue
        return queue.size if queue is not None else 0

    metrics.track_queue(depth)
    return metrics.serve(settings.metrics_port, settings.metrics_host)


async def _startup_scan(engine: EnginePort) -> None:
    try:
        report = await engine.scan()
    except Exception:
        log.exception("start-up library scan failed")
        return
    log.info("library scan: %s", report.summary())
    for problem in report.problems:
        log.warning("skipped %s: %s", problem.rel_path, problem.message)


async def serve(
    settings: BotSettings,
    token: str,
    engine: EnginePort,
    *,
    started: Callable[[LoracleBot], None] | None = None,
    handle_signals: bool = True,
    **options: Any,
) -> None:
    """Log in, sync commands and stay connected until the bot is closed."""
    bot = create_bot(engine, settings, **options)
    if started is not None:
        started(bot)
    remove = _stop_on_signals(bot) if handle_signals else None
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure:
        raise
    except discord.HTTPException as exc:
        raise StartupError(DISCORD_ERROR, reason=f"HTTP {exc.status}", where=http.Route.BASE) from None
    except _NETWORK_ERRORS as exc:
        # discord.py retries the gateway by itself; what reaches here failed the login.
        raise StartupError(UNREACHABLE, where=http.Route.BASE, reason=_reason(exc)) from None
    finally:
        if remove is not None:
            remove()


def _stop_on_signals(bot: LoracleBot) -> Callable[[], None]:
    """SIGTERM (docker stop) and SIGINT (Ctrl-C) stop the bot gracefully; a second one
    closes it at once (`LoracleBot.request_stop`). Returns what removes the handlers."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, bot.request_stop, sig.name)
        except (NotImplementedError, RuntimeError, ValueError):
            # Not on the main thread, or no signals (Windows): Ctrl-C still works.
            continue
        installed.append(sig)

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove
