"""Progress messages and how often they may be edited.

Discord rate-limits message edits (about 5 per 5 s per channel), and a 28-step job reports
28 steps: editing on each would queue edits behind the rate limit and show stale progress.
`Throttle` allows one edit per interval and tells the caller how long to wait before the
latest pending state may be shown, so the last position or step is never lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.discord_app import texts as T
from engine.queue.handle import JobEvent, Loading, Queued, Started, Step

DEFAULT_INTERVAL = 1.5
BAR_WIDTH = 12


class Throttle:
    """At most one action per `interval` seconds (the first one is never delayed)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: float | None = None

    def wait_time(self) -> float:
        """Seconds until the next action is allowed (0: now)."""
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval - self._clock())

    def ready(self) -> bool:
        return self.wait_time() <= 0

    def mark(self) -> None:
        self._last = self._clock()


def bar(i: int, n: int, width: int = BAR_WIDTH) -> str:
    filled = 0 if n <= 0 else max(0, min(width, round(width * i / n)))
    return "▰" * filled + "▱" * (width - filled)


def event_text(event: JobEvent, locale: str) -> str | None:
    """The progress line for a non-terminal job event (None: nothing to show)."""
    match event:
        case Queued(position=position) if position <= 1:
            return T.QUEUED_NEXT.render(locale)
        case Queued(position=position):
            return T.QUEUED_AT.render(locale, position=position)
        case Started():
            return T.STARTING.render(locale)
        case Loading(checkpoint=name):
            return T.LOADING_CHECKPOINT.render(locale, name=name)
        case Step(i=i, n=n):
            return f"{T.DRAWING.render(locale, i=i, n=n)}\n{bar(i, n)}"
    return None


def download_text(done: int, total: int | None, locale: str) -> str:
    if total:
        percent = int(100 * done / total) if total else 0
        return T.DOWNLOADING.render(
            locale, done=T.human_size(done), total=T.human_size(total), percent=min(percent, 100)
        )
    return T.DOWNLOADING_UNKNOWN.render(locale, done=T.human_size(done))
