from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.db import ThreadLocalDB
from engine.errors import (
    IncompatibleError,
    JobCancelledError,
    JobError,
    JobFailedError,
    QueueFullError,
)
from engine.i18n import Text
from engine.queue import (
    Cancelled,
    Done,
    Failed,
    JobQueue,
    JobStore,
    Queued,
    QueuedJob,
    QueueEntry,
    Started,
    Step,
)

from .conftest import TIMEOUT, FakeRunner, collect, make_job, outcome, until

REPO = Path(__file__).resolve().parents[3]


async def test_jobs_run_one_at_a_time_on_one_thread_in_predicted_order(make_queue, runner):
    queue = await make_queue(start=False, per_user_cap=5, affinity_limit=2)
    jobs = [make_job("a", "A"), make_job("a", "B"), make_job("b", "B"), make_job("c", "A"),
            make_job("b", "B"), make_job("d", "C"), make_job("c", "C")]
    handles = [queue.submit(job) for job in jobs]
    predicted = [h.id for h in sorted(handles, key=lambda h: h.position)]
    assert sorted(h.position for h in handles) == list(range(1, len(jobs) + 1))
    assert queue.size == len(jobs) and not queue.busy

    await queue.start()
    for handle in handles:
        assert (await outcome(handle))["job"] == handle.id
    assert runner.calls == predicted
    assert runner.max_active == 1
    assert len(runner.threads) == 1 and threading.get_ident() not in runner.threads
    assert queue.size == 0 and all(h.position is None for h in handles)


async def test_many_concurrent_submissions_never_overlap(make_queue):
    runner = FakeRunner(steps=30)
    queue = await make_queue(runner=runner, per_user_cap=10)
    handles = []
    for i in range(40):
        handles.append(queue.submit(make_job(f"u{i % 5}", f"c{i % 3}")))
        if i % 7 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(*(outcome(h) for h in handles))
    assert runner.max_active == 1 and len(runner.calls) == 40 and len(runner.threads) == 1


async def test_events_tell_the_story_of_a_job(make_queue, runner):
    queue = await make_queue()
    handle = queue.submit(make_job())
    events = await collect(handle)
    assert events[0] == Queued(1)
    assert events[1] == Started()
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and steps[-1] == Step(3, 3)
    assert [s.i for s in steps] == sorted(s.i for s in steps)
    assert events[-1] == Done({"images": 1, "job": handle.id})
    assert await handle.result() == {"images": 1, "job": handle.id}
    # Iterating again after the end yields only the terminal event.
    assert await collect(handle) == [events[-1]]


async def test_a_runner_that_loads_a_checkpoint_says_so_between_started_and_the_steps(make_queue):
    from engine.queue.handle import Loading

    def runner(job, progress):
        if job.request["prompt"] == "load":
            progress.loading("ponyDiffusionV6XL")
        progress.step(1, 1)
        return "ok"

    queue = await make_queue(runner=runner)
    loads = await collect(queue.submit(make_job(prompt="load")))
    assert loads == [Queued(1), Started(), Loading("ponyDiffusionV6XL"), Step(1, 1), Done("ok")]
    plain = await collect(queue.submit(make_job()))
    assert not [e for e in plain if isinstance(e, Loading)]


async def test_slow_consumer_does_not_hold_up_the_worker_and_sees_latest_step(make_queue):
    finished = threading.Event()

    def runner(job, progress):
        for i in range(1, 501):
            progress.step(i, 500, "denoising")
        finished.set()
        return "ok"

    queue = await make_queue(runner=runner)
    handle = queue.submit(make_job())
    # Block the event loop itself: the worker must still get through all 500 steps.
    assert finished.wait(TIMEOUT)
    events = await collect(handle)
    assert events == [Queued(1), Started(), Step(500, 500, "denoising"), Done("ok")]


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError."""


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "ran out of memory"),
        (OutOfMemoryError("CUDA error"), "ran out of memory"),
        (MemoryError(), "ran out of memory"),
        (ValueError("mat1 and mat2 shapes cannot be multiplied"),
         "unexpected problem (ValueError)"),
    ],
)
async def test_runner_exception_fails_only_its_own_job(make_queue, runner, store, exc, message):
    queue = await make_queue(start=False, store=store)
    bad, good = make_job("a"), make_job("b")
    runner.fail(bad.id, exc)
    bad_handle, good_handle = queue.submit(bad), queue.submit(good)
    await queue.start()

    with pytest.raises(JobFailedError) as info:
        await outcome(bad_handle)
    assert message in str(info.value)
    assert info.value.__cause__ is exc
    assert info.value.localized("zh-TW") != str(info.value)
    assert isinstance((await collect(bad_handle))[-1], Failed)
    assert (await outcome(good_handle))["job"] == good.id  # the worker carried on

    row = store.get(bad.id)
    assert row.status == "failed" and message in row.error and type(exc).__name__ in row.error
    assert store.get(good.id).status == "done"


async def test_loracle_errors_reach_the_submitter_unchanged(make_queue, runner):
    queue = await make_queue(start=False)
    job = make_job()
    error = IncompatibleError(Text("SD 1.5 LoRA on SDXL", "SD 1.5 LoRA 用在 SDXL"))
    runner.fail(job.id, error)
    handle = queue.submit(job)
    await queue.start()
    with pytest.raises(IncompatibleError) as info:
        await outcome(handle)
    assert info.value is error


async def test_system_exit_fails_its_job_and_stops_the_worker(make_queue, runner):
    queue = await make_queue(start=False)
    fatal, after = make_job("a"), make_job("b")
    runner.fail(fatal.id, SystemExit(3))
    fatal_handle, after_handle = queue.submit(fatal), queue.submit(after)
    await queue.start()
    with pytest.raises(JobFailedError, match="SystemExit"):
        await outcome(fatal_handle)
    with pytest.raises(JobError, match="shutting down"):
        await outcome(after_handle)
    with pytest.raises(QueueFullError):
        queue.submit(make_job())


async def test_cancel_a_waiting_job_updates_everyone_behind_it(make_queue, runner, store):
    queue = await make_queue(store=store)
    first = make_job("a")
    runner.hold(first.id)
    first_handle = queue.submit(first)
    await until(first_handle, Started)
    assert queue.busy and queue.running is first and first_handle.position == 0

    second, third = queue.submit(make_job("b")), queue.submit(make_job("c"))
    assert (second.position, third.position) == (1, 2)
    assert await until(third, Queued) == [Queued(2)]

    assert queue.cancel(second.id) is True
    assert second.position is None and third.position == 1
    assert await until(third, Queued) == [Queued(1)]
    with pytest.raises(JobCancelledError):
        await outcome(second)
    assert (await collect(second))[-1] == Cancelled()
    assert queue.cancel(second.id) is False
    assert queue.cancel("no-such-job") is False

    runner.release(first.id)
    await outcome(first_handle)
    await outcome(third)
    await queue.flush()
    assert second.id not in runner.calls
    assert store.get(second.id).status == "cancelled"
    assert queue.cancel(first.id) is False  # finished


async def test_cancel_the_running_job_is_cooperative(make_queue, runner, store):
    queue = await make_queue(store=store)
    job = make_job()
    runner.hold(job.id)
    handle = queue.submit(job)
    await until(handle, Started)
    assert handle.cancel() is True
    with pytest.raises(JobCancelledError):
        await outcome(handle)
    assert (await collect(handle))[-1] == Cancelled()
    assert store.get(job.id).status == "cancelled"
    after = queue.submit(make_job())
    assert (await outcome(after))["job"] == after.id


async def test_per_user_cap_counts_waiting_jobs_only(make_queue, runner):
    queue = await make_queue(per_user_cap=2)
    first = make_job("a")
    runner.hold(first.id)
    first_handle = queue.submit(first)
    await until(first_handle, Started)
    queue.submit(make_job("a"))
    queue.submit(make_job("a"))
    with pytest.raises(QueueFullError, match="2 jobs waiting"):
        queue.submit(make_job("a"))
    other = queue.submit(make_job("b"))
    assert other.position == 1  # b has not been served yet; a just was
    assert queue.owner_of(first.id) == "a" and queue.owner_of(other.id) == "b"
    assert queue.owner_of("unknown") is None
    entries = queue.jobs_of("a")
    assert [entry.position for entry in entries] == [0, 2, 3]
    assert entries[0] == QueueEntry(first, 0)
    assert queue.jobs_of("nobody") == []


async def test_duplicate_job_ids_are_refused(make_queue, runner):
    queue = await make_queue(start=False)
    job = make_job()
    queue.submit(job)
    with pytest.raises(ValueError):
        queue.submit(job)


async def test_pause_holds_new_jobs_and_resume_runs_them(make_queue, runner):
    queue = await make_queue()
    queue.pause()
    assert queue.paused
    with pytest.raises(QueueFullError, match="paused") as info:
        queue.submit(make_job())
    assert "暫停" in info.value.localized("zh-TW")
    recovered = queue.resubmit(make_job())  # recovered jobs are still taken in
    await asyncio.sleep(0.02)
    assert runner.calls == [] and recovered.position == 1
    queue.resume()
    assert (await outcome(recovered))["job"] == recovered.id


async def test_clear_cancels_waiting_jobs_but_not_the_running_one(make_queue, runner, store):
    queue = await make_queue(store=store)
    first = make_job("a")
    runner.hold(first.id)
    first_handle = queue.submit(first)
    await until(first_handle, Started)
    waiting = [queue.submit(make_job(user)) for user in ("b", "c", "a")]
    assert queue.clear() == 3
    assert queue.size == 0
    for handle in waiting:
        with pytest.raises(JobCancelledError):
            await outcome(handle)
    runner.release(first.id)
    await outcome(first_handle)
    await queue.flush()
    assert [store.get(h.id).status for h in waiting] == ["cancelled"] * 3
    assert store.get(first.id).status == "done"
    assert queue.clear() == 0


async def test_loaded_checkpoint_callable_steers_the_first_pick(make_queue, runner):
    queue = await make_queue(start=False, loaded_checkpoint=lambda: "B")
    on_a, on_b = queue.submit(make_job("a", "A")), queue.submit(make_job("b", "B"))
    assert (on_b.position, on_a.position) == (1, 2)
    await queue.start()
    await outcome(on_a)
    assert runner.calls == [on_b.id, on_a.id]


async def test_results_are_summarised_into_the_store(make_queue, runner, store):
    class Result:
        def summary(self):
            return {"images": 4}

    class DrawResultLike:
        def to_json(self):
            return {"seed": 9}

    queue = await make_queue(start=False, store=store)
    plain, rich, opaque, drawn = make_job("a"), make_job("b"), make_job("c"), make_job("d")
    runner.returns(rich.id, Result())
    runner.returns(opaque.id, object())
    runner.returns(drawn.id, DrawResultLike())
    handles = [queue.submit(job) for job in (plain, rich, opaque, drawn)]
    await queue.start()
    results = [await outcome(h) for h in handles]
    assert isinstance(results[1], Result)  # the submitter gets the real object
    assert store.get(plain.id).result == {"images": 1, "job": plain.id}
    assert store.get(rich.id).result == {"images": 4}
    assert store.get(opaque.id).result == {"type": "object"}
    assert store.get(drawn.id).result == {"seed": 9}
    row = store.get(plain.id)
    assert row.status == "done" and row.started_at and row.finished_at >= row.started_at


async def test_stop_finishes_the_running_job_and_keeps_waiting_ones_for_restart(
    make_queue, runner, store
):
    queue = await make_queue(store=store)
    first = make_job("a")
    runner.hold(first.id)
    first_handle = queue.submit(first)
    await until(first_handle, Started)
    waiting = queue.submit(make_job("b"))

    stopping = asyncio.create_task(queue.stop())
    await asyncio.sleep(0)
    with pytest.raises(QueueFullError, match="shutting down"):
        queue.submit(make_job("c"))
    runner.release(first.id)
    await asyncio.wait_for(stopping, TIMEOUT)

    assert (await outcome(first_handle))["job"] == first.id
    with pytest.raises(JobError, match="saved") as info:
        await outcome(waiting)
    assert type(info.value) is JobError
    assert store.get(waiting.job.id).status == "queued"  # recover() brings it back
    with pytest.raises(RuntimeError):
        await queue.start()


async def test_stop_without_store_tells_waiting_users_to_send_again(make_queue, runner):
    queue = await make_queue(start=False)
    handle = queue.submit(make_job())
    await queue.stop()
    with pytest.raises(JobError, match="send it again"):
        await outcome(handle)


async def test_recovered_jobs_run_again_after_a_simulated_crash(make_queue, runner, store):
    interrupted, waiting, doomed = make_job("a"), make_job("b"), make_job("c")
    for job in (interrupted, waiting, doomed):
        store.insert(job)
    store.mark_running(interrupted.id)
    store.mark_running(doomed.id)
    store.db.execute("UPDATE jobs SET attempts = 1 WHERE id = ?", [doomed.id])

    report = store.recover(max_attempts=2)
    queue = await make_queue(start=False, store=store, per_user_cap=1)
    handles = [queue.resubmit(row.to_job(payload={"rebuilt": True})) for row in report.requeue]
    await queue.start()
    for handle in handles:
        await outcome(handle)

    assert [h.job.payload for h in handles] == [{"rebuilt": True}] * 2
    assert sorted(runner.calls) == sorted([interrupted.id, waiting.id])
    done = store.get(interrupted.id)
    assert done.status == "done" and done.attempts == 1
    assert store.get(waiting.id).status == "done"
    failed = store.get(doomed.id)
    assert failed.status == "failed" and "restart" in failed.error


CRASHING_PROCESS = """
import asyncio, sys, threading
from engine.db import ThreadLocalDB
from engine.queue import JobQueue, JobStore, QueuedJob

async def main(path):
    store = JobStore(ThreadLocalDB(path))
    def runner(job, progress):
        print("RUNNING", job.id, flush=True)
        threading.Event().wait()  # hangs until the process is killed
    queue = JobQueue(runner, per_user_cap=3, affinity_limit=2, store=store)
    for i in range(3):
        queue.submit(QueuedJob(user_id=f"u{i}", checkpoint="c", request={"i": i}))
    await queue.start()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


async def test_nothing_vanishes_when_the_process_is_killed_mid_job(make_queue, runner, tmp_path):
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_PROCESS, str(path),
        stdout=asyncio.subprocess.PIPE, env=env, cwd=str(REPO),
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
    finally:
        process.kill()
        await process.wait()
    assert line.startswith(b"RUNNING ")
    running_id = line.split()[1].decode()

    store = JobStore(ThreadLocalDB(path))
    assert [r.status for r in store.rows()].count("running") == 1
    report = store.recover()
    assert len(report.requeue) == 3 and report.failed == []
    assert {r.id: r.attempts for r in report.requeue}[running_id] == 1

    queue = await make_queue(start=False, store=store)
    handles = [queue.resubmit(row.to_job()) for row in report.requeue]
    await queue.start()
    for handle in handles:
        await outcome(handle)
    assert [r.status for r in store.rows()] == ["done"] * 3
    assert [r.request["i"] for r in store.rows()] == [0, 1, 2]


OWNED_PROCESS = """
import asyncio, sys, threading
from engine.db import ThreadLocalDB
from engine.queue import JobQueue, JobStore, QueuedJob
from engine.queue.owner import Owner

async def main(path, kind):
    store = JobStore(ThreadLocalDB(path), owner=Owner.current(kind))
    def runner(job, progress):
        print("RUNNING", job.id, flush=True)
        threading.Event().wait()  # hangs until the process is killed
    queue = JobQueue(runner, per_user_cap=3, affinity_limit=2, store=store)
    queue.submit(QueuedJob(user_id=kind, checkpoint="c", request={"kind": kind}))
    queue.submit(QueuedJob(user_id=kind, checkpoint="c", request={"kind": kind}))
    await queue.start()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _start_owned(path, kind):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNED_PROCESS, str(path), kind,
        stdout=asyncio.subprocess.PIPE, env=env, cwd=str(REPO),
    )
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    assert line.startswith(b"RUNNING "), line
    return process


async def test_a_killed_cli_leaves_no_job_running_and_the_bot_recovers_only_its_own(tmp_path):
    from engine.queue.owner import Owner

    path = tmp_path / "owned.db"
    cli = await _start_owned(path, "cli")
    bot_store = JobStore(ThreadLocalDB(path), owner=Owner.current("bot"))
    try:
        # While the CLI lives its jobs are its own: the bot starting beside it takes none.
        report = bot_store.recover()
        assert report.requeue == [] and report.failed == []
        assert sorted(r.status for r in bot_store.rows()) == ["queued", "running"]
    finally:
        cli.kill()
        await cli.wait()

    old_bot = await _start_owned(path, "bot")  # a bot that crashes with its own jobs
    old_bot.kill()
    await old_bot.wait()

    report = bot_store.recover()
    assert sorted(r.request["kind"] for r in report.requeue) == ["bot", "bot"]
    assert all(r.owner == Owner.current("bot").to_json() for r in report.requeue)  # now this bot's
    assert [r.request["kind"] for r in report.failed] == ["cli", "cli"]
    assert all(f"cli process (pid {cli.pid}) ended" in r.error for r in report.failed)
    assert not [r for r in bot_store.rows() if r.status == "running"]


async def test_a_cli_run_fails_the_jobs_of_a_killed_cli_and_leaves_the_bots_alone(tmp_path):
    from engine.queue.owner import Owner

    path = tmp_path / "owned.db"
    for kind in ("cli", "bot"):
        process = await _start_owned(path, kind)
        process.kill()
        await process.wait()
    report = JobStore(ThreadLocalDB(path), owner=Owner.current("cli")).recover(requeue=False)
    assert report.requeue == [] and [r.request["kind"] for r in report.failed] == ["cli", "cli"]
    rows = JobStore(ThreadLocalDB(path)).rows()
    assert sorted((r.request["kind"], r.status) for r in rows) == [
        ("bot", "queued"), ("bot", "running"), ("cli", "failed"), ("cli", "failed"),
    ]


async def test_queue_without_loop_binding_rejects_sync_use():
    queue = JobQueue(lambda job, progress: None, per_user_cap=1, affinity_limit=0)

    def submit_from_thread():
        with pytest.raises(RuntimeError):
            queue.submit(QueuedJob(user_id="a", checkpoint="c", request={}))

    await asyncio.to_thread(submit_from_thread)


async def test_a_broken_loaded_checkpoint_hint_does_not_stop_the_queue(make_queue, runner):
    def broken():
        raise OSError("pipeline gone")

    queue = await make_queue(loaded_checkpoint=broken)
    handle = queue.submit(make_job())
    assert (await outcome(handle))["job"] == handle.id


async def test_a_broken_worker_settles_the_running_job_and_the_waiting_ones(make_queue, runner):
    queue = await make_queue(start=False)

    def explode(job, progress):
        raise RuntimeError("bug in the worker loop")

    queue._run = explode  # the loop around the runner, not the runner, breaks
    running, waiting = queue.submit(make_job("a")), queue.submit(make_job("b"))
    await queue.start()
    with pytest.raises(JobFailedError, match="worker stopped"):
        await outcome(running)
    with pytest.raises(JobError, match="shutting down"):
        await outcome(waiting)
    with pytest.raises(QueueFullError):
        queue.submit(make_job("c"))


async def test_a_deferred_result_frees_the_worker_for_the_next_job(make_queue):
    """A runner returning a Future (images still being written on another thread) lets
    the next job start at once; each job settles when its own future does."""
    import concurrent.futures

    pending: dict[str, concurrent.futures.Future] = {}
    ran: list[str] = []

    def runner(job, progress):
        ran.append(job.id)
        pending[job.id] = concurrent.futures.Future()
        return pending[job.id]

    queue = await make_queue(runner=runner, per_user_cap=5)
    first, second = queue.submit(make_job("a")), queue.submit(make_job("b"))
    for _ in range(500):  # the second runs while the first is still unsettled
        if len(ran) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(ran) == 2
    assert not first.finished

    pending[second.id].set_result({"job": second.id})
    assert await asyncio.wait_for(second.result(), TIMEOUT) == {"job": second.id}
    pending[first.id].set_exception(RuntimeError("disk full"))
    with pytest.raises(JobFailedError):
        await asyncio.wait_for(first.result(), TIMEOUT)


class SlowStore(JobStore):
    """A store whose next insert waits, like SQLite behind another process's write lock."""

    def __init__(self, db: ThreadLocalDB) -> None:
        super().__init__(db)
        self.inserting = threading.Event()
        self.release = threading.Event()

    def insert(self, job: QueuedJob) -> None:
        self.inserting.set()
        self.release.wait(TIMEOUT)
        super().insert(job)


async def test_a_slow_insert_does_not_hold_the_queue_lock(make_queue, tmp_path):
    store = SlowStore(ThreadLocalDB(tmp_path / "loracle.db"))
    queue = await make_queue(store=store)
    submitting = asyncio.ensure_future(asyncio.to_thread(queue.submit, make_job("u1")))
    assert await asyncio.to_thread(store.inserting.wait, TIMEOUT)
    # The event loop's own calls answer while the write waits for SQLite (holding the lock
    # there, they would wait for the store's TIMEOUT).
    started = time.monotonic()
    assert queue.size == 0 and queue.jobs_of("u1") == [] and queue.cancel("nope") is False
    assert time.monotonic() - started < TIMEOUT / 5
    store.release.set()
    handle = await asyncio.wait_for(submitting, TIMEOUT)
    await outcome(handle)
    assert store.get(handle.id).status == "done"


async def test_a_job_refused_after_its_row_was_written_leaves_no_queued_row(make_queue, tmp_path):
    store = SlowStore(ThreadLocalDB(tmp_path / "loracle.db"))
    queue = await make_queue(store=store)
    job = make_job("u1")
    submitting = asyncio.ensure_future(asyncio.to_thread(queue.submit, job))
    assert await asyncio.to_thread(store.inserting.wait, TIMEOUT)
    queue.pause()  # an admin pauses the queue while the row is being written
    store.release.set()
    with pytest.raises(QueueFullError):
        await asyncio.wait_for(submitting, TIMEOUT)
    assert store.get(job.id).status == "cancelled"  # not re-run after a restart
