"""Fakes for the queue tests: a runner the test can hold, release and inspect."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from engine.db import ThreadLocalDB
from engine.queue import JobEvent, JobHandle, JobQueue, JobStore, Progress, QueuedJob

TIMEOUT = 5.0


def make_job(user: str = "u1", checkpoint: str = "ckA", **request: Any) -> QueuedJob:
    return QueuedJob(user_id=user, checkpoint=checkpoint, request={"prompt": "a cat", **request})


class FakeRunner:
    """Stands in for the diffusers generator.

    Records which jobs ran, in which order and on which threads; `hold(job_id)` makes a
    job wait (polling cancellation, like the real generator does per step) until
    `release(job_id)`; `fail(job_id, exc)` makes it raise.
    """

    def __init__(self, steps: int = 3) -> None:
        self.steps = steps
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self.max_active = 0
        self._active = 0
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Event] = {}
        self._errors: dict[str, BaseException] = {}
        self._results: dict[str, Any] = {}

    def hold(self, job_id: str) -> None:
        self._gates[job_id] = threading.Event()

    def release(self, job_id: str) -> None:
        self._gates[job_id].set()

    def release_all(self) -> None:
        for gate in self._gates.values():
            gate.set()

    def fail(self, job_id: str, exc: BaseException) -> None:
        self._errors[job_id] = exc

    def returns(self, job_id: str, value: Any) -> None:
        self._results[job_id] = value

    def __call__(self, job: QueuedJob, progress: Progress) -> Any:
        with self._lock:
            self.calls.append(job.id)
            self.threads.add(threading.get_ident())
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        try:
            gate = self._gates.get(job.id)
            if gate is not None:
                while not gate.wait(0.001):
                    progress.check_cancelled()
            for i in range(1, self.steps + 1):
                progress.check_cancelled()
                progress.step(i, self.steps)
            if job.id in self._errors:
                raise self._errors[job.id]
            return self._results.get(job.id, {"images": 1, "job": job.id})
        finally:
            with self._lock:
                self._active -= 1


async def collect(handle: JobHandle) -> list[JobEvent]:
    """Every event of a job up to its terminal one."""

    async def run() -> list[JobEvent]:
        return [event async for event in handle.events()]

    return await asyncio.wait_for(run(), TIMEOUT)


async def until(handle: JobHandle, kind: type) -> list[JobEvent]:
    """Consume a job's events up to and including the first of type `kind`."""

    async def run() -> list[JobEvent]:
        seen: list[JobEvent] = []
        async for event in handle.events():
            seen.append(event)
            if isinstance(event, kind):
                return seen
        raise AssertionError(f"{kind.__name__} never came: {seen}")

    return await asyncio.wait_for(run(), TIMEOUT)


async def outcome(handle: JobHandle) -> Any:
    return await asyncio.wait_for(handle.result(), TIMEOUT)


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def store(tmp_path) -> JobStore:
    return JobStore(ThreadLocalDB(tmp_path / "loracle.db"))


MakeQueue = Callable[..., Awaitable[JobQueue]]


@pytest.fixture
async def make_queue(runner: FakeRunner) -> AsyncIterator[MakeQueue]:
    """`await make_queue(start=True, per_user_cap=3, affinity_limit=2, **kw)`; stopped after."""
    made: list[JobQueue] = []

    async def make(start: bool = True, **kwargs: Any) -> JobQueue:
        kwargs.setdefault("per_user_cap", 3)
        kwargs.setdefault("affinity_limit", 2)
        queue = JobQueue(kwargs.pop("runner", runner), **kwargs)
        made.append(queue)
        if start:
            await queue.start()
        return queue

    yield make
    runner.release_all()
    for queue in made:
        await asyncio.wait_for(queue.stop(), TIMEOUT)
