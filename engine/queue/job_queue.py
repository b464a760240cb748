"""JobQueue: the fair queue in front of the GPU workers, and one thread per worker.

Each worker is a `Lane` (engine.queue.lanes): the in-process GPU (the default, one lane) or
a proxy for a Ray actor. diffusers pipelines are not thread-safe, so exactly one dedicated
thread ever calls a lane's runner; with several lanes, each thread asks the scheduler for
the next job *for its lane* (its loaded checkpoint first). Fairness, persistence,
cancellation and recovery stay here, in the process that owns the queue. The event loop only touches in-memory state under a short lock (plus the SQLite
insert of a new job, so a job is on disk before anyone is told it is queued); every other
database write happens in the worker thread or in the loop's default executor.

A runner's exception fails its own job and nothing else: a LoracleError reaches the
submitter as it is; anything else becomes a plain-language JobFailedError (see
engine.queue.failures).

A runner may also return a `concurrent.futures.Future`: the GPU part is done and the rest
(encoding and writing images) finishes on another thread. The worker then starts the next
job at once and the job is settled when the future is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine import metrics
from engine.errors import JobError, JobFailedError, QueueFullError
from engine.queue.failures import (
    PAUSED,
    SHUTDOWN_DROPPED,
    SHUTDOWN_KEPT,
    STOPPING,
    UNEXPECTED,
    default_summary,
)
from engine.queue.handle import Cancelled, Failed, JobEvent, JobHandle, Loading, Queued, Started, Step
from engine.queue.job import Progress, QueuedJob, Runner
from engine.queue.lanes import (
    Lane,
    ModelMissingError,
    RetryBook,
    WorkerLostError,
    book,
    job_kind,
)
from engine.queue.placement import Placement
from engine.queue.scheduler import Scheduler
from engine.queue.store import JobStore

log = logging.getLogger(__name__)

# How often a lane that is down, or that may take none of the queued jobs, looks again.
_LANE_RECHECK_S = 0.5


def _step_poster(handle: JobHandle) -> Callable[[int, int, str | None], None]:
    def post(i: int, n: int, note: str | None) -> None:
        handle._post(Step(i, n, note))

    return post


def _loading_poster(handle: JobHandle) -> Callable[[str], None]:
    def post(checkpoint: str) -> None:
        handle._post(Loading(checkpoint))

    return post


@dataclass(frozen=True)
class QueueEntry:
    """A job of one user and where it stands: 0 = running, 1 = next, ..."""

    job: QueuedJob
    position: int


@dataclass
class _Running:
    job: QueuedJob
    handle: JobHandle
    progress: Progress


class JobQueue(Placement):
    """Fair, checkpoint-aware job queue with one thread per worker. Use from the event loop.

    `runner(job, progress)` runs in the worker thread (it makes the one lane "local");
    `lanes` are further workers (engine.queue.lanes), and `add_lane()` adds one later. `per_user_cap` and `affinity_limit`
    are the scheduler's (see engine.queue.scheduler). `store` persists every job.
    `loaded_checkpoint()` names the checkpoint the pipeline holds now (the affinity key);
    it is called under the queue's lock from both threads, so it must be a cheap,
    thread-safe read; without it the queue assumes the last job's checkpoint is loaded.
    `summarize(result)` is the JSON value stored for a finished job.
    """

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        per_user_cap: int,
        affinity_limit: int,
        store: JobStore | None = None,
        loaded_checkpoint: Callable[[], str | None] | None = None,
        summarize: Callable[[Any], Any] = default_summary,
        lanes: Sequence[Lane] = (),
    ) -> None:
        self._lanes: list[Lane] = list(lanes)
        if runner is not None:
            self._lanes.insert(0, Lane("local", runner, loaded_checkpoint))
        self._retries = RetryBook()
        self._store = store
        self._loaded_checkpoint = loaded_checkpoint
        self._summarize = summarize
        self._scheduler: Scheduler[QueuedJob] = Scheduler(
            per_user_cap=per_user_cap, affinity_limit=affinity_limit
        )
        # Guards everything below; held only for in-memory work, never around SQLite.
        self._cond = threading.Condition()
        self._handles: dict[str, JobHandle] = {}  # queued and running jobs
        self._running: dict[str, _Running] = {}  # by lane id
        self._last_checkpoint: str | None = None
        self._paused = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._started = False
        self._exited: asyncio.Future[None] | None = None
        self._writes: set[asyncio.Future[Any]] = set()
        self._finishing: set[concurrent.futures.Future[Any]] = set()  # deferred results

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Start one thread per lane (once)."""
        if self._started or self._stopping:
            raise RuntimeError("a JobQueue starts once")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._exited = self._loop.create_future()
        with self._cond:
            for lane in self._lanes:
                self._start_lane(lane)

    def add_lane(self, lane: Lane) -> None:
        """A worker joined (a new GPU, a reconnected cluster): it takes jobs at once."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the queue is stopping")
            if any(existing.id == lane.id for existing in self._lanes):
                raise ValueError(f"worker {lane.id} is already in the queue")
            self._lanes.append(lane)
            if self._started:
                self._start_lane(lane)
            self._cond.notify_all()

    def _start_lane(self, lane: Lane) -> None:
        name = "loracle-gpu-worker" if lane.id == "local" else f"loracle-worker-{lane.id}"
        metrics.worker_started(lane.id)  # its busy ratio is measured from now
        thread = threading.Thread(target=self._work, args=(lane,), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    @property
    def lanes(self) -> list[Lane]:
        with self._cond:
            return list(self._lanes)

    async def stop(self) -> None:
        """Refuse new jobs, let the running job finish, end the worker thread.

        Jobs still waiting are failed with a message; with a store their rows stay
        `queued`, so `JobStore.recover()` brings them back on the next start.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._threads and self._exited is not None:
            await self._exited
            # The threads have posted their last word; let them actually end before the
            # interpreter does (a daemon thread inside torch at exit aborts the process).
            for thread in list(self._threads):
                await asyncio.to_thread(thread.join, 10.0)
        else:
            self._drop_waiting()
        with self._cond:
            finishing = list(self._finishing)
        if finishing:
            await asyncio.to_thread(concurrent.futures.wait, finishing, 60.0)
        await self.flush()

    async def flush(self) -> None:
        """Wait until database writes started by cancel()/clear() have finished."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    def set_per_user_cap(self, cap: int) -> None:
        """An admin changed the limit: jobs already queued stay, new ones obey it."""
        if cap < 1:
            raise ValueError("per_user_cap must be at least 1")
        with self._cond:
            self._scheduler.per_user_cap = cap

    # -- submitting --------------------------------------------------------------------

    def submit(self, job: QueuedJob) -> JobHandle:
        """Queue a job. Raises QueueFullError at the user's cap, when paused or stopping.

        The job's row is written before the job joins the queue (the worker may mark it
        running at once), but outside the lock: SQLite may wait for another writer, and the
        event loop takes this lock for cancel(), size() and the heartbeat.
        """
        loop = self._bind_loop()
        with self._cond:
            self._admit(job)
        if self._store is not None:
            self._store.insert(job)
        try:
            with self._cond:
                self._admit(job)  # the queue may have filled, paused or stopped meanwhile
                return self._enqueue(job, loop)
        except QueueFullError:
            if self._store is not None:
                self._store.mark_cancelled(job.id)  # refused: it must not run after a restart
            raise

    def _admit(self, job: QueuedJob) -> None:
        if self._stopping:
            raise QueueFullError(STOPPING)
        if self._paused:
            raise QueueFullError(PAUSED)
        self._check_new(job)
        self._scheduler.check_room(job.user_id)

    def resubmit(self, job: QueuedJob) -> JobHandle:
        """Queue a job recovered after a restart: no per-user cap, accepted while paused."""
        loop = self._bind_loop()
        with self._cond:
            if self._stopping:
                raise QueueFullError(STOPPING)
            self._check_new(job)
            if self._store is not None:
                self._store.insert_if_missing(job)
            return self._enqueue(job, loop)

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        # Once started, submit() may also be called from a helper thread (the engine does,
        # so that the job's database insert never holds up the event loop).
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _check_new(self, job: QueuedJob) -> None:
        if job.id in self._handles:
            raise ValueError(f"job {job.id} is already in the queue")

    def _enqueue(self, job: QueuedJob, loop: asyncio.AbstractEventLoop) -> JobHandle:
        handle = JobHandle(job, loop, self.cancel)
        self._scheduler.add(job, bypass_cap=True)
        self._handles[job.id] = handle
        self._announce_positions()
        self._cond.notify_all()
        return handle

    # -- control -----------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Queued: removed at once. Running: asked to stop at its next step (the runner
        decides; a job that finishes anyway ends Done). False if unknown or finished."""
        with self._cond:
            for running in self._running.values():
                if running.job.id == job_id:
                    running.progress.request_cancel()
                    return True
            job = self._scheduler.remove(job_id)
            if job is None:
                return False
            self._handles.pop(job_id)._post(Cancelled())
            self._announce_positions()
        self._write_later(self._store_cancel, [job_id])
        return True

    def clear(self) -> int:
        """Cancel every waiting job (the running one continues); returns how many."""
        with self._cond:
            jobs = self._scheduler.clear()
            for job in jobs:
                self._handles.pop(job.id)._post(Cancelled())
        if jobs:
            self._write_later(self._store_cancel, [job.id for job in jobs])
        return len(jobs)

    def pause(self) -> None:
        """Start no new job and accept none; the running job finishes."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    # -- questions ---------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def busy(self) -> bool:
        """True while a job is running."""
        return bool(self._running)

    @property
    def size(self) -> int:
        """Jobs waiting (not counting the running one)."""
        with self._cond:
            return len(self._scheduler)

    @property
    def running(self) -> QueuedJob | None:
        """The running job (with several workers, the one started first)."""
        with self._cond:
            jobs = [running.job for running in self._running.values()]
        return jobs[0] if jobs else None

    def running_jobs(self) -> dict[str, QueuedJob]:
        """Lane id -> the job it runs now."""
        with self._cond:
            return {lane: running.job for lane, running in self._running.items()}

    def handle(self, job_id: str) -> JobHandle | None:
        with self._cond:
            return self._handles.get(job_id)

    def owner_of(self, job_id: str) -> str | None:
        """The user id of a waiting or running job; None when not queued."""
        with self._cond:
            handle = self._handles.get(job_id)
            return handle.job.user_id if handle is not None else None

    def position(self, job_id: str) -> int | None:
        """0 = running, 1 = next, ...; None when not queued (finished or unknown)."""
        with self._cond:
            handle = self._handles.get(job_id)
            return handle.position if handle is not None else None

    def jobs_of(self, user_id: str) -> list[QueueEntry]:
        """The user's running and waiting jobs, in the order they will run."""
        entries: list[QueueEntry] = []
        with self._cond:
            for handle in self._handles.values():
                position = handle.position
                if handle.job.user_id == user_id and position is not None:
                    entries.append(QueueEntry(handle.job, position))
        return sorted(entries, key=lambda entry: entry.position)

    # -- internals (call with self._cond held) -----------------------------------------

    def _loaded(self, lane: Lane | None = None) -> str | None:
        lane = lane if lane is not None else (self._lanes[0] if self._lanes else None)
        if lane is None:
            return self._last_checkpoint
        if lane.loaded_checkpoint is not None:
            try:
                return lane.loaded_checkpoint()
            except Exception:
                # Only a scheduling hint: a broken one must not stop the queue.
                log.exception("loaded_checkpoint() failed; using the last job's checkpoint")
        return lane.last_checkpoint if len(self._lanes) > 1 else self._last_checkpoint

    def _announce_positions(self) -> None:
        # After the running job, its checkpoint is the loaded one: predict from that.
        first = next(iter(self._running.values()), None)
        loaded = first.job.checkpoint if first is not None else self._loaded()
        for position, job in enumerate(self._scheduler.order(loaded), start=1):
            self._handles[job.id]._post(Queued(position))  # unchanged positions are dropped

    def _drop_waiting(self) -> None:
        text = SHUTDOWN_KEPT if self._store is not None else SHUTDOWN_DROPPED
        with self._cond:
            for job in self._scheduler.clear():
                self._handles.pop(job.id)._post(Failed(JobError(text)))

    # -- the worker thread -------------------------------------------------------------

    def _work(self, lane: Lane) -> None:
        try:
            while True:
                with self._cond:
                    while not self._stopping and (self._paused or not len(self._scheduler)):
                        self._cond.wait()
                    if self._stopping:
                        return
                # Asked outside the lock: both may be a call to another process.
                up = lane.is_available()
                loaded = self._loaded(lane) if up else None
                with self._cond:
                    if self._stopping:
                        return
                    lane.up = up
                    picked = None
                    if up and not self._paused:
                        if len(self._lanes) == 1 and not lane.missing:
                            picked = self._scheduler.pick(loaded)  # exactly the one-worker queue
                        else:
                            can_run = functools.partial(self._can_run, lane)
                            elsewhere = self._held_elsewhere(lane)
                            picked = self._scheduler.pick(loaded, can_run, worker=lane.id, elsewhere=elsewhere)
                    if picked is None:
                        if not self._paused and len(self._scheduler):
                            # Down, or nothing here it may take: look again on any change.
                            self._cond.wait(_LANE_RECHECK_S)
                        continue
                    job = picked.job
                    handle = self._handles[job.id]
                    progress = Progress(on_step=_step_poster(handle), on_loading=_loading_poster(handle))
                    self._running[lane.id] = _Running(job, handle, progress)
                    lane.running_since = time.monotonic()
                    handle._post(Started())
                    self._announce_positions()
                metrics.job_started(job_kind(job), time.time() - job.created_at)
                outcome, fatal = self._run(lane, job, progress)
                with self._cond:
                    self._running.pop(lane.id, None)
                    book(lane, job, outcome)
                    self._last_checkpoint = job.checkpoint
                    final: JobEvent | concurrent.futures.Future[Any] | None
                    if isinstance(outcome, (WorkerLostError, ModelMissingError)):
                        final = self._put_back(lane, job, outcome)
                    else:
                        final = outcome
                    if final is not None:
                        self._handles.pop(job.id, None)
                        if isinstance(final, concurrent.futures.Future):
                            self._finishing.add(final)
                        else:
                            handle._post(final)
                    self._announce_positions()
                    self._cond.notify_all()
                if isinstance(final, concurrent.futures.Future):
                    final.add_done_callback(functools.partial(self._finish_later, job, handle))
                if fatal is not None:
                    log.error("worker stopped by %r while running job %s", fatal, job.id)
                    return
        except BaseException:
            log.exception("the GPU worker stopped on an unexpected error")
        finally:
            with self._cond:
                self._stopping = True
                running = self._running.pop(lane.id, None)
                if running is not None:
                    self._handles.pop(running.job.id, None)
                self._cond.notify_all()
                last = all(thread is threading.current_thread() or not thread.is_alive() for thread in self._threads)
            if running is not None:  # only if the loop itself broke mid-job
                running.handle._post(Failed(JobFailedError(UNEXPECTED, kind="worker stopped")))
            if last:
                self._drop_waiting()
                self._signal_exit()

    def _run(
        self, lane: Lane, job: QueuedJob, progress: Progress
    ) -> tuple[JobEvent | concurrent.futures.Future[Any] | WorkerLostError | ModelMissingError, BaseException | None]:
        """Run one job; returns its terminal event (or the future that will settle it, or
        the worker's failure that sends it back to the queue) and, rarely, an exception
        that must end the worker (SystemExit and the like)."""
        self._store_call(lambda store: store.mark_running(job.id))
        try:
            progress.check_cancelled()
            value = lane.runner(job, progress)
        except (WorkerLostError, ModelMissingError) as exc:
            return exc, None
        except BaseException as exc:
            error = exc

            def reraise() -> Any:
                raise error

            return self._settle(job, reraise)
        self._retries.forget(job.id)
        return self._settle(job, lambda: value)

    def _signal_exit(self) -> None:
        loop, exited = self._loop, self._exited
        if loop is None or exited is None:
            return

        def settle() -> None:
            if not exited.done():
                exited.set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop is closed already
            loop.call_soon_threadsafe(settle)
