"""JobQueue with several workers (engine.queue.lanes): each lane picks for itself, keeps
its checkpoint, and a worker's death or missing file costs the job a retry, not the job."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from engine.errors import JobFailedError
from engine.queue import Done, Failed, JobQueue, JobStore, Progress, Queued, QueuedJob, Started
from engine.queue.lanes import MAX_RETRIES, Lane, ModelMissingError, WorkerLostError
from tests.engine.queue.conftest import TIMEOUT, collect, make_job, outcome


class Worker:
    """A fake GPU worker: records what it ran, holds the loaded checkpoint, may die."""

    def __init__(self, name: str, *, lacks: set[str] | None = None) -> None:
        self.name = name
        self.ran: list[tuple[str, str]] = []  # (job id, checkpoint)
        self.loaded: str | None = None
        self.loads = 0
        self.lacks = lacks or set()
        self.die_on: set[str] = set()  # job ids on which this worker dies
        self.gate = threading.Event()
        self.gate.set()
        self.on_death: Callable[[], None] = lambda: None

    def __call__(self, job: QueuedJob, progress: Progress) -> Any:
        self.gate.wait(TIMEOUT)
        if job.checkpoint in self.lacks:
            raise ModelMissingError(job.checkpoint, "not on this node")
        if job.id in self.die_on:
            self.loaded = None
            self.on_death()
            raise WorkerLostError(f"{self.name} was killed")
        if self.loaded != job.checkpoint:
            self.loads += 1
            self.loaded = job.checkpoint
        self.ran.append((job.id, job.checkpoint))
        progress.step(1, 1)
        return {"worker": self.name, "job": job.id}

    def lane(self) -> Lane:
        return Lane(self.name, self, loaded_checkpoint=lambda: self.loaded)


async def queue_of(*workers: Worker, store: JobStore | None = None, affinity_limit: int = 4) -> JobQueue:
    queue = JobQueue(per_user_cap=50, affinity_limit=affinity_limit, lanes=[w.lane() for w in workers], store=store)
    await queue.start()
    return queue


async def test_jobs_spread_over_workers_and_each_checkpoint_stays_on_its_worker() -> None:
    workers = [Worker("w0"), Worker("w1"), Worker("w2")]
    for worker in workers:
        worker.gate.clear()
    queue = await queue_of(*workers)
    try:
        checkpoints = ["ckA", "ckB", "ckC"]
        handles = [queue.submit(make_job(f"u{i % 6}", checkpoints[i % 3])) for i in range(30)]
        await asyncio.sleep(0.3)  # each worker has picked its first job and waits at its gate
        for worker in workers:
            worker.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), TIMEOUT)
    finally:
        await queue.stop()
    assert {r["worker"] for r in results} == {"w0", "w1", "w2"}
    assert sum(len(w.ran) for w in workers) == 30
    # Each worker loaded few checkpoints: far fewer loads than the 30 a blind dispatch risks.
    assert sum(w.loads for w in workers) <= 8
    for worker in workers:
        assert worker.ran  # everyone worked


async def test_a_job_whose_worker_dies_runs_once_on_another_and_is_reported_once(store: JobStore) -> None:
    w0, w1 = Worker("w0"), Worker("w1")
    job = make_job("u1", "ckA")
    w0.die_on.add(job.id)
    died = threading.Event()
    w0.on_death = died.set
    # Only w0 can take the job first; once it died it is restarting (as a Ray actor would
    # be) and only w1 can take the retry.
    lanes = [
        Lane("w0", w0, loaded_checkpoint=lambda: w0.loaded, available=lambda: not died.is_set()),
        Lane("w1", w1, loaded_checkpoint=lambda: w1.loaded, available=died.is_set),
    ]
    queue = JobQueue(per_user_cap=50, affinity_limit=4, lanes=lanes, store=store)
    await queue.start()
    try:
        events = await collect(queue.submit(job))
    finally:
        await queue.stop()
    assert isinstance(events[-1], Done) and events[-1].result["worker"] == "w1"
    assert sum(isinstance(e, Done) for e in events) == 1 and not [e for e in events if isinstance(e, Failed)]
    first_start = next(i for i, e in enumerate(events) if isinstance(e, Started))
    assert any(isinstance(e, Queued) for e in events[first_start:])  # back in the queue between tries
    assert store.get(job.id).status == "done"
    assert w0.ran == [] and w1.ran == [(job.id, "ckA")]
    assert "was killed" in (next(lane for lane in queue.lanes if lane.id == "w0").last_error or "")


async def test_a_job_that_kills_every_worker_fails_clearly_after_two_retries(store: JobStore) -> None:
    workers = [Worker("w0"), Worker("w1")]
    queue = await queue_of(*workers, store=store)
    job = make_job("u1", "ckA")
    for worker in workers:
        worker.die_on.add(job.id)
    try:
        handle = queue.submit(job)
        events = await collect(handle)
    finally:
        await queue.stop()
    (failed,) = [e for e in events if isinstance(e, Failed)]
    assert isinstance(failed.error, JobFailedError)
    assert f"stopped {MAX_RETRIES + 1} times" in str(failed.error)
    assert "工作程序" in failed.error.localized("zh-TW")
    assert store.get(job.id).status == "failed"


async def test_a_node_lacking_a_checkpoint_stops_getting_it() -> None:
    w0, w1 = Worker("w0", lacks={"ckB"}), Worker("w1")
    w1.gate.clear()
    queue = await queue_of(w0, w1)
    try:
        handles = [queue.submit(make_job(f"u{i}", "ckB")) for i in range(4)]
        await asyncio.sleep(0.3)  # w1 holds one; w0 tried one, lacked it and gave it back
        w1.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), TIMEOUT)
    finally:
        await queue.stop()
    assert {r["worker"] for r in results} == {"w1"}
    assert "ckB" in next(lane for lane in queue.lanes if lane.id == "w0").missing


async def test_a_checkpoint_no_node_has_fails_with_a_message() -> None:
    queue = await queue_of(Worker("w0", lacks={"ckZ"}), Worker("w1", lacks={"ckZ"}))
    try:
        handle = queue.submit(make_job("u1", "ckZ"))
        events = await collect(handle)
    finally:
        await queue.stop()
    assert isinstance(events[-1], Failed)
    assert "No GPU worker can read the model file “ckZ”" in str(events[-1].error)


async def test_a_worker_added_later_takes_jobs_at_once() -> None:
    slow = Worker("w0")
    slow.gate.clear()
    queue = await queue_of(slow)
    try:
        first = queue.submit(make_job("u1", "ckA"))
        second = queue.submit(make_job("u2", "ckB"))
        await asyncio.sleep(0.1)
        late = Worker("late")
        queue.add_lane(late.lane())
        result = await outcome(second)
        assert result["worker"] == "late"
        slow.gate.set()
        assert (await outcome(first))["worker"] == "w0"
    finally:
        await queue.stop()


async def test_a_lane_that_is_down_waits_and_others_carry_on() -> None:
    w0, w1 = Worker("w0"), Worker("w1")
    up = threading.Event()
    lane0 = Lane("w0", w0, loaded_checkpoint=lambda: w0.loaded, available=up.is_set)
    queue = JobQueue(per_user_cap=50, affinity_limit=4, lanes=[lane0, w1.lane()])
    await queue.start()
    try:
        handles = [queue.submit(make_job(f"u{i}", "ckA")) for i in range(3)]
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), TIMEOUT)
        assert {r["worker"] for r in results} == {"w1"}
        w1.gate.clear()
        held = queue.submit(make_job("u8", "ckA"))  # only w1 is up: it takes it and holds
        await asyncio.sleep(0.1)
        up.set()
        handle = queue.submit(make_job("u9", "ckA"))
        assert (await outcome(handle))["worker"] == "w0"
        w1.gate.set()
        assert (await outcome(held))["worker"] == "w1"
    finally:
        await queue.stop()


async def test_a_queue_without_workers_keeps_jobs_queued(store: JobStore) -> None:
    queue = JobQueue(per_user_cap=5, affinity_limit=4, store=store)
    await queue.start()
    handle = queue.submit(make_job("u1", "ckA"))
    await asyncio.sleep(0.05)
    assert queue.position(handle.id) == 1 and store.get(handle.id).status == "queued"
    late = Worker("late")
    queue.add_lane(late.lane())
    assert (await outcome(handle))["worker"] == "late"
    await queue.stop()


async def test_each_worker_reports_its_jobs_to_the_metrics() -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, worker: str) -> float:
        return REGISTRY.get_sample_value(name, {"worker": worker}) or 0.0

    before = sample("loracle_worker_busy_seconds_total", "m0")
    w0 = Worker("m0")
    queue = await queue_of(w0)
    try:
        await outcome(queue.submit(make_job("u1", "ckA")))
    finally:
        await queue.stop()
    assert sample("loracle_worker_busy_seconds_total", "m0") > before
    assert 0.0 < sample("loracle_worker_busy_ratio", "m0") <= 1.0
