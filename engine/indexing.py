"""Whether the library is being indexed, how far, and answering requests meanwhile.

The bot scans at start-up without holding up the login, so a /draw can arrive before the
scan reached the checkpoint it names. Refusing it ("no checkpoint named …") would be
wrong, not just slow. `Indexing.settle` runs a lookup (a plan, /lora info, /family check)
and, while a scan runs, treats "unknown name" and "not hashed yet" as "not yet": it waits
for the scan to move on and tries again. Once the scan has ended, the lookup's answer is
final, so a name the scan never finds is refused as soon as it is done. A request naming
files already indexed does not wait at all.

Names are known early: the scan's first pass stores every new file's row from its header
(engine/library_scan.py), the second hashes them. A display name an admin gave a file is
keyed by its hash, so such a name waits for its file's hash (at most, the end of the scan).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from engine.errors import LibraryError, UnknownNameError
from engine.i18n import Text

T = TypeVar("T")

WAIT_LIMIT_S = 900.0
"""How long a request waits for a running scan before it is refused (hashing a big new
library on a slow disk can take longer; the user is told to try again)."""
_POLL_S = 0.1

STILL_INDEXING = Text(
    "The library is still being indexed ({progress}); try again in a few minutes.",
    "模型庫仍在建立索引（{progress}）；請幾分鐘後再試。",
)


@dataclass(frozen=True)
class IndexProgress:
    running: bool
    listed: bool  # the first pass (names, kinds, architectures) is done
    to_hash: int
    hashed: int

    def describe(self) -> str:
        if not self.running:
            return "done"
        if not self.listed:
            return "reading file headers"
        return f"{self.hashed} of {self.to_hash} new file(s) hashed"


class Indexing:
    """The state of the library's scans, shared by the scan's thread and the waiters."""

    def __init__(self, wait_limit_s: float = WAIT_LIMIT_S) -> None:
        self.wait_limit_s = wait_limit_s
        self._lock = threading.Lock()
        self._running = 0
        self._listed = False
        self._to_hash = 0
        self._hashed = 0
        self._changes = 0  # moves whenever a waiter might get another answer

    # -- told by the scan (engine.library_scan.ScanWatcher), from its thread -----------
    def begin(self) -> None:
        with self._lock:
            if not self._running:
                self._listed, self._to_hash, self._hashed = False, 0, 0
            self._running += 1
            self._changes += 1

    def end(self) -> None:
        with self._lock:
            self._running = max(0, self._running - 1)
            self._changes += 1

    def headers_stored(self, to_hash: int) -> None:
        with self._lock:
            self._listed = True
            self._to_hash += to_hash
            self._changes += 1

    def file_hashed(self) -> None:
        with self._lock:
            self._hashed += 1
            self._changes += 1

    # -- read by front ends ---------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running > 0

    def progress(self) -> IndexProgress:
        with self._lock:
            return IndexProgress(self._running > 0, self._listed, self._to_hash, self._hashed)

    async def settle(
        self,
        attempt: Callable[[], T],
        *,
        waiting: Callable[[T], bool] = lambda _: False,
        not_yet: tuple[Text, ...] = (),
    ) -> T:
        """`attempt()` (in a thread), answered as if the running scan had finished.

        While a scan runs, an attempt that fails for a name the library does not know
        (yet) or with one of the `not_yet` messages (e.g. "no checkpoint at all yet"), or
        whose answer `waiting` says rests on a file not hashed yet, is tried
        again after the scan moved on; an attempt that started after the scan ended is
        final. "Disabled", "broken" or "a LoRA, not a checkpoint" are answers about a file
        already read, final either way. Waits at most `wait_limit_s`, then refuses with STILL_INDEXING."""
        deadline = time.monotonic() + self.wait_limit_s
        while True:
            with self._lock:
                running, seen = self._running > 0, self._changes
            try:
                result = await asyncio.to_thread(attempt)
            except LibraryError as exc:
                if not running or not (isinstance(exc, UnknownNameError) or exc.text in not_yet):
                    raise
            else:
                if not running or not waiting(result):
                    return result
            await self._changed_since(seen, deadline)

    async def _changed_since(self, seen: int, deadline: float) -> None:
        while self._changes == seen:
            if time.monotonic() >= deadline:
                raise LibraryError(STILL_INDEXING, progress=self.progress().describe())
            await asyncio.sleep(_POLL_S)

