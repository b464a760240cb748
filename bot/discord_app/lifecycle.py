"""The bot's start and stop as users see them.

Start: the library scan runs in the background after login (bot/discord_app/launch.py),
and the engine makes requests that name files it has not indexed yet wait for it
(engine/indexing.py). `while_indexing` tells the user why their request waits, and how
far the indexing is, instead of a silent "thinking…".

Stop: a request that arrives while the bot stops is told so, and the bot closes only
once every request it started answering has been answered (`InFlight`): a refusal sent
after the HTTP session closed reaches nobody and ends as a traceback in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import discord
from discord import app_commands

from bot.discord_app import limits
from bot.discord_app.port import EnginePort
from bot.discord_app.replies import Reply
from engine.errors import QueueFullError
from engine.i18n import Text
from engine.queue.failures import STOPPING as STOPPING

T = TypeVar("T")

INDEXING_HEADERS = Text(
    "⏳ The library is being indexed (reading the files); your request waits for it.",
    "⏳ 模型庫正在建立索引（讀取檔案中）；您的請求會等它完成。",
)
INDEXING_HASHES = Text(
    "⏳ The library is being indexed ({hashed} of {to_hash} new files done); your request waits for it.",
    "⏳ 模型庫正在建立索引（新檔案已完成 {hashed}／{to_hash}）；您的請求會等它完成。",
)
INDEXING_NOTE = Text(
    "⏳ The library is being indexed: more names soon",
    "⏳ 模型庫正在建立索引：稍後會有更多名稱",
)
FIRST_NOTICE_S = 0.5  # a request that waits less than this is not told anything
POLL_S = 0.5  # the notice is edited only when its text changes


def indexing_text(engine: EnginePort, locale: str) -> str | None:
    """What the library's indexing looks like now, or None when no scan runs."""
    progress = engine.indexing.progress()
    if not progress.running:
        return None
    if not progress.listed:
        return INDEXING_HEADERS.render(locale)
    return INDEXING_HASHES.render(locale, hashed=progress.hashed, to_hash=progress.to_hash)


def with_indexing_note(
    engine: EnginePort, locale: str, current: str, choices: list[app_commands.Choice[str]]
) -> list[app_commands.Choice[str]]:
    """Autocomplete while the library is being indexed: what is indexed so far, after a
    first line that says more is coming (choosing it keeps what was typed)."""
    if not engine.indexing.running:
        return choices
    value = current.strip()[: limits.CHOICE_VALUE] or "…"
    note = app_commands.Choice(name=limits.clip(INDEXING_NOTE.render(locale), limits.CHOICE_NAME), value=value)
    return [note, *choices[: limits.CHOICES - 1]]


async def while_indexing(
    engine: EnginePort,
    reply: Reply,
    locale: str,
    work: Awaitable[T],
    *,
    stopping: Callable[[], bool] = lambda: False,
) -> T:
    """Await `work`; while it waits for the library's indexing, say so in `reply`. When
    `stopping()` turns true meanwhile, `work` is dropped with QueueFullError(STOPPING):
    a bot that stops must not wait for a scan to answer a request it will refuse anyway."""
    if not engine.indexing.running:
        # The usual case: no scan, nothing to wait for or say. No watcher task and no timer
        # per request, so a burst of /draw costs the event loop nothing extra.
        return await work
    task = asyncio.ensure_future(work)
    delay = FIRST_NOTICE_S
    shown: str | None = None
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=delay)
            if done:
                return task.result()
            if stopping():
                raise QueueFullError(STOPPING)
            text = indexing_text(engine, locale)
            if text is not None and text != shown:  # one edit per step, not one per poll
                with contextlib.suppress(discord.HTTPException):
                    await reply.progress(text, None)
                shown = text
            delay = POLL_S
    finally:
        if not task.done():
            task.cancel()


class InFlight:
    """Requests being answered now, so stopping can wait for their answers."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def count(self) -> int:
        return self._count

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if not self._count:
                self._idle.set()

    async def wait(self, timeout: float) -> bool:
        """True once nothing is being answered; False on timeout (nothing is cancelled)."""
        if timeout <= 0:
            return not self._count
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
