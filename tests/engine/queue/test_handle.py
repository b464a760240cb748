from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from engine.errors import JobCancelledError, JobFailedError
from engine.queue import Cancelled, Done, Failed, JobHandle, Queued, Started, Step

from .conftest import collect, make_job, outcome


def new_handle(cancelled: list[str] | None = None) -> JobHandle:
    calls = cancelled if cancelled is not None else []
    loop = asyncio.get_running_loop()
    return JobHandle(make_job(), loop, lambda job_id: calls.append(job_id) or True)


async def test_events_from_another_thread_arrive_in_order_with_steps_coalesced():
    handle = new_handle()

    def worker():
        handle._post(Queued(3))
        handle._post(Queued(2))
        handle._post(Started())
        for i in range(1, 101):
            handle._post(Step(i, 100))
        handle._post(Done("image"))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()  # the loop is not running meanwhile: everything waits in the outbox
    assert await collect(handle) == [Queued(2), Started(), Step(100, 100), Done("image")]
    assert await outcome(handle) == "image"


async def test_a_consumer_that_keeps_up_sees_every_step():
    handle = new_handle()
    seen = []

    async def consume():
        async for event in handle.events():
            seen.append(event)

    task = asyncio.create_task(consume())
    handle._post(Started())
    for i in range(1, 4):
        handle._post(Step(i, 3))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    handle._post(Done(None))
    await asyncio.wait_for(task, 5)
    assert seen == [Started(), Step(1, 3), Step(2, 3), Step(3, 3), Done(None)]


async def test_position_tracks_the_job_and_unchanged_positions_are_not_repeated():
    handle = new_handle()
    assert handle.position is None
    handle._post(Queued(2))
    assert handle.position == 2
    assert [e async for e in _take(handle, 1)] == [Queued(2)]
    handle._post(Queued(2))
    handle._post(Queued(1))
    assert [e async for e in _take(handle, 1)] == [Queued(1)]
    handle._post(Started())
    assert handle.position == 0 and not handle.finished
    handle._post(Cancelled())
    assert handle.position is None and handle.finished
    handle._post(Step(1, 2))  # nothing after the end
    assert await collect(handle) == [Started(), Cancelled()]
    with pytest.raises(JobCancelledError):
        await outcome(handle)


async def _take(handle: JobHandle, n: int):
    events = handle.events()
    for _ in range(n):
        yield await asyncio.wait_for(events.__anext__(), 5)


async def test_failure_reaches_every_awaiter_and_an_unawaited_one_is_silent():
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        handle = new_handle()
        error = JobFailedError()
        handle._post(Failed(error))
        results = await asyncio.gather(handle.result(), handle.result(), return_exceptions=True)
        assert results == [error, error]

        ignored = new_handle()
        ignored._post(Failed(JobFailedError()))
        await asyncio.sleep(0)
        del ignored
        gc.collect()
        await asyncio.sleep(0)
        assert reported == []
    finally:
        loop.set_exception_handler(None)


async def test_a_cancelled_awaiter_does_not_cancel_the_job_result():
    handle = new_handle()
    waiter = asyncio.create_task(handle.result())
    await asyncio.sleep(0)
    waiter.cancel()
    handle._post(Done(7))
    assert await outcome(handle) == 7


async def test_cancel_delegates_to_the_queue():
    calls: list[str] = []
    handle = new_handle(calls)
    assert handle.cancel() is True
    assert calls == [handle.id]
    assert handle.id in repr(handle)


def test_posting_after_the_loop_closed_is_harmless():
    loop = asyncio.new_event_loop()
    handle = JobHandle(make_job(), loop, lambda job_id: False)
    loop.close()
    handle._post(Started())
    assert handle.position == 0
