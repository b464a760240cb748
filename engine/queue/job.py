"""A queued job, the progress reporter its runner gets, and the runner's signature."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import JobCancelledError


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class QueuedJob:
    """One request waiting for (or holding) the GPU.

    `request` is JSON-serialisable and persisted, so the job can be rebuilt after a
    restart; `payload` is the resolved in-memory form (models, LoRA files) the runner
    uses, never persisted.
    """

    user_id: str
    checkpoint: str  # affinity key: the checkpoint's content hash (or name)
    request: dict[str, Any]
    payload: Any = None
    # The submitter's own note (a JSON object: where to answer, say): persisted and handed
    # back with the job, never read by the queue.
    origin: dict[str, Any] | None = None
    id: str = field(default_factory=new_job_id)
    created_at: float = field(default_factory=time.time)


class Progress:
    """Given to the runner in the worker thread; safe to use from any thread.

    The runner calls `step()` once per denoising step and polls `cancelled` (or calls
    `check_cancelled()`) there, because a GPU kernel cannot be interrupted from outside.
    """

    def __init__(
        self,
        on_step: Callable[[int, int, str | None], None] | None = None,
        on_loading: Callable[[str], None] | None = None,
    ) -> None:
        self._on_step = on_step
        self._on_loading = on_loading
        self._cancel = threading.Event()
        self.last: tuple[int, int] | None = None

    def step(self, i: int, n: int, note: str | None = None) -> None:
        self.last = (i, n)
        if self._on_step is not None:
            self._on_step(i, n, note)

    def loading(self, checkpoint: str) -> None:
        """The runner is about to load `checkpoint` (not called when it is loaded already)."""
        if self._on_loading is not None:
            self._on_loading(checkpoint)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelledError()

    def request_cancel(self) -> None:
        self._cancel.set()


Runner = Callable[[QueuedJob, Progress], Any]
"""Runs one job in the worker thread and returns its result (images, warnings, ...)."""
