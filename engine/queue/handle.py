"""What a submitter holds on to: a job's events, its result, its place in the queue.

Events are produced in the worker thread and consumed on the event loop. They cross over
only through `loop.call_soon_threadsafe`, and at most one delivery callback per handle is
pending at a time: while it waits, new Step events replace the previous undelivered Step
(only the latest progress matters), so a slow consumer costs the worker nothing and the
loop never receives a backlog of stale steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, MutableSequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from engine.errors import JobCancelledError, LoracleError
from engine.queue.job import QueuedJob


@dataclass(frozen=True)
class Queued:
    """The job waits; `position` 1 means it runs next."""

    position: int


@dataclass(frozen=True)
class Started:
    pass


@dataclass(frozen=True)
class Loading:
    """The worker loads `checkpoint` (its display name) before drawing: seconds to minutes.

    Posted by the runner through `Progress.loading`, only when a load really happens; a job
    on the checkpoint already loaded goes from Started straight to its steps.
    """

    checkpoint: str


@dataclass(frozen=True)
class Step:
    i: int
    n: int
    note: str | None = None


@dataclass(frozen=True)
class Done:
    result: Any


@dataclass(frozen=True)
class Failed:
    error: LoracleError


@dataclass(frozen=True)
class Cancelled:
    pass


JobEvent: TypeAlias = Queued | Started | Loading | Step | Done | Failed | Cancelled
TERMINAL = (Done, Failed, Cancelled)


def _coalesce_into(buffer: MutableSequence[JobEvent], event: JobEvent) -> None:
    # Two progress reports (or two positions) in a row: the newer one says everything.
    if buffer and (
        (isinstance(event, Step) and isinstance(buffer[-1], Step))
        or (isinstance(event, Queued) and isinstance(buffer[-1], Queued))
    ):
        buffer[-1] = event
    else:
        buffer.append(event)


class JobHandle:
    """One submitted job as seen by its submitter (created by JobQueue, not by callers).

    `events()` is meant for one consumer; `result()` may be awaited by any number.
    """

    def __init__(
        self,
        job: QueuedJob,
        loop: asyncio.AbstractEventLoop,
        canceller: Callable[[str], bool],
    ) -> None:
        self.job = job
        self._loop = loop
        self._canceller = canceller
        # Written from any thread, guarded by _lock.
        self._lock = threading.Lock()
        self._outbox: list[JobEvent] = []
        self._delivery_pending = False
        self._position: int | None = None
        self._finished = False
        # Touched only on the loop thread.
        self._inbox: deque[JobEvent] = deque()
        self._wakeup = asyncio.Event()
        self._terminal: JobEvent | None = None
        self._terminal_seen = False
        self._future: asyncio.Future[Any] = loop.create_future()
        # A failed job whose result nobody awaits must not log "exception never retrieved".
        self._future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} user={self.job.user_id} position={self._position}>"

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def position(self) -> int | None:
        """0 while running, 1.. while queued (1 = next), None once finished."""
        with self._lock:
            return self._position

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._finished

    def cancel(self) -> bool:
        """Cancel the job: removed if queued, asked to stop if running. False if finished."""
        return self._canceller(self.id)

    async def result(self) -> Any:
        """The runner's result; raises the job's LoracleError, or JobCancelledError."""
        return await asyncio.shield(self._future)

    async def events(self) -> AsyncIterator[JobEvent]:
        """Events in order, ending after the terminal one (Done, Failed or Cancelled).

        Iterating again after the end yields just the terminal event.
        """
        while True:
            while not self._inbox:
                if self._terminal_seen and self._terminal is not None:
                    yield self._terminal
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            event = self._inbox.popleft()
            if isinstance(event, TERMINAL):
                self._terminal_seen = True
                yield event
                return
            yield event

    # -- producer side (any thread) ----------------------------------------------------

    def _post(self, event: JobEvent) -> None:
        with self._lock:
            if self._finished:
                return
            if isinstance(event, Queued):
                if event.position == self._position:
                    return
                self._position = event.position
            elif isinstance(event, (Started, Loading, Step)):
                self._position = 0
            else:
                self._position = None
                self._finished = True
            _coalesce_into(self._outbox, event)
            if self._delivery_pending:
                return
            self._delivery_pending = True
        # A closed loop raises RuntimeError: nobody is left to listen then.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._deliver)

    # -- consumer side (loop thread) ---------------------------------------------------

    def _deliver(self) -> None:
        with self._lock:
            events, self._outbox = self._outbox, []
            self._delivery_pending = False
        for event in events:
            _coalesce_into(self._inbox, event)
            if isinstance(event, TERMINAL):
                self._terminal = event
                self._settle(event)
        self._wakeup.set()

    def _settle(self, event: JobEvent) -> None:
        if self._future.done():
            return
        if isinstance(event, Done):
            self._future.set_result(event.result)
        elif isinstance(event, Failed):
            self._future.set_exception(event.error)
        else:
            self._future.set_exception(JobCancelledError())
