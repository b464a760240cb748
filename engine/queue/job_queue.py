"""JobQueue: the fair queue in front of the GPU, and the one thread that uses the GPU.

diffusers pipelines are not thread-safe, so exactly one dedicated thread ever calls the
runner. The event loop only touches in-memory state under a short lock (plus the SQLite
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import JobCancelledError, JobError, JobFailedError, LoracleError, QueueFullError
from engine.queue.failures import (
    PAUSED,
    SHUTDOWN_DROPPED,
    SHUTDOWN_KEPT,
    STOPPING,
    UNEXPECTED,
    as_job_failure,
    default_summary,
)
from engine.queue.handle import Cancelled, Done, Failed, JobEvent, JobHandle, Loading, Queued, Started, Step
from engine.queue.job import Progress, QueuedJob, Runner
from engine.queue.scheduler import Scheduler
from engine.queue.store import JobStore

log = logging.getLogger(__name__)

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


class JobQueue:
    """Fair, checkpoint-aware job queue with one worker thread. Use from the event loop.

    `runner(job, progress)` runs in the worker thread. `per_user_cap` and `affinity_limit`
    are the scheduler's (see engine.queue.scheduler). `store` persists every job.
    `loaded_checkpoint()` names the checkpoint the pipeline holds now (the affinity key);
    it is called under the queue's lock from both threads, so it must be a cheap,
    thread-safe read; without it the queue assumes the last job's checkpoint is loaded.
    `summarize(result)` is the JSON value stored for a finished job.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        per_user_cap: int,
        affinity_limit: int,
        store: JobStore | None = None,
        loaded_checkpoint: Callable[[], str | None] | None = None,
        summarize: Callable[[Any], Any] = default_summary,
    ) -> None:
        self._runner = runner
        self._store = store
        self._loaded_checkpoint = loaded_checkpoint
        self._summarize = summarize
        self._scheduler: Scheduler[QueuedJob] = Scheduler(
            per_user_cap=per_user_cap, affinity_limit=affinity_limit
        )
        # Guards everything below; held only for in-memory work, never around SQLite.
        self._cond = threading.Condition()
        self._handles: dict[str, JobHandle] = {}  # queued and running jobs
        self._running: _Running | None = None
        self._last_checkpoint: str | None = None
        self._paused = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._exited: asyncio.Future[None] | None = None
        self._writes: set[asyncio.Future[Any]] = set()
        self._finishing: set[concurrent.futures.Future[Any]] = set()  # deferred results

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is not None or self._stopping:
            raise RuntimeError("a JobQueue starts once")
        self._loop = asyncio.get_running_loop()
        self._exited = self._loop.create_future()
        self._thread = threading.Thread(target=self._work, name="loracle-gpu-worker", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Refuse new jobs, let the running job finish, end the worker thread.

        Jobs still waiting are failed with a message; with a store their rows stay
        `queued`, so `JobStore.recover()` brings them back on the next start.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._exited is not None:
            await self._exited
            # The thread has posted its last word; let it actually end before the
            # interpreter does (a daemon thread inside torch at exit aborts the process).
            await asyncio.to_thread(self._thread.join, 10.0)
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
            running = self._running
            if running is not None and running.job.id == job_id:
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
        return self._running is not None

    @property
    def size(self) -> int:
        """Jobs waiting (not counting the running one)."""
        with self._cond:
            return len(self._scheduler)

    @property
    def running(self) -> QueuedJob | None:
        running = self._running
        return running.job if running is not None else None

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

    def _loaded(self) -> str | None:
        if self._loaded_checkpoint is not None:
            try:
                return self._loaded_checkpoint()
            except Exception:
                # Only a scheduling hint: a broken one must not stop the queue.
                log.exception("loaded_checkpoint() failed; using the last job's checkpoint")
        return self._last_checkpoint

    def _announce_positions(self) -> None:
        # After the running job, its checkpoint is the loaded one: predict from that.
        loaded = self._running.job.checkpoint if self._running is not None else self._loaded()
        for position, job in enumerate(self._scheduler.order(loaded), start=1):
            self._handles[job.id]._post(Queued(position))  # unchanged positions are dropped

    def _drop_waiting(self) -> None:
        text = SHUTDOWN_KEPT if self._store is not None else SHUTDOWN_DROPPED
        with self._cond:
            for job in self._scheduler.clear():
                self._handles.pop(job.id)._post(Failed(JobError(text)))

    # -- the worker thread -------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._stopping and (self._paused or not len(self._scheduler)):
                        self._cond.wait()
                    if self._stopping:
                        return
                # Asked outside the lock: the callable belongs to the pipeline, not to us.
                loaded = self._loaded()
                with self._cond:
                    if self._stopping:
                        return
                    picked = None if self._paused else self._scheduler.pick(loaded)
                    if picked is None:
                        continue
                    job = picked.job
                    handle = self._handles[job.id]
                    progress = Progress(on_step=_step_poster(handle), on_loading=_loading_poster(handle))
                    self._running = _Running(job, handle, progress)
                    handle._post(Started())
                    self._announce_positions()
                outcome, fatal = self._run(job, progress)
                with self._cond:
                    self._running = None
                    self._last_checkpoint = job.checkpoint
                    self._handles.pop(job.id, None)
                    if isinstance(outcome, concurrent.futures.Future):
                        self._finishing.add(outcome)
                    else:
                        handle._post(outcome)
                    self._announce_positions()
                if isinstance(outcome, concurrent.futures.Future):
                    outcome.add_done_callback(functools.partial(self._finish_later, job, handle))
                if fatal is not None:
                    log.error("worker stopped by %r while running job %s", fatal, job.id)
                    return
        except BaseException:
            log.exception("the GPU worker stopped on an unexpected error")
        finally:
            with self._cond:
                self._stopping = True
                running, self._running = self._running, None
                if running is not None:
                    self._handles.pop(running.job.id, None)
            if running is not None:  # only if the loop itself broke mid-job
                running.handle._post(Failed(JobFailedError(UNEXPECTED, kind="worker stopped")))
            self._drop_waiting()
            self._signal_exit()

    def _run(
        self, job: QueuedJob, progress: Progress
    ) -> tuple[JobEvent | concurrent.futures.Future[Any], BaseException | None]:
        """Run one job; returns its terminal event (or the future that will settle it)
        and, rarely, an exception that must end the worker (SystemExit and the like)."""
        self._store_call(lambda store: store.mark_running(job.id))

        def call() -> Any:
            progress.check_cancelled()
            return self._runner(job, progress)

        return self._settle(job, call)

    def _finish_later(self, job: QueuedJob, handle: JobHandle, future: concurrent.futures.Future[Any]) -> None:
        """A deferred result is ready (on whichever thread completed it): settle the job."""
        event, _ = self._settle(job, future.result)
        if isinstance(event, concurrent.futures.Future):  # a result is never a second future
            event = Failed(as_job_failure(TypeError("a deferred result resolved to another future")))
        handle._post(event)
        with self._cond:
            self._finishing.discard(future)

    def _settle(
        self, job: QueuedJob, call: Callable[[], Any]
    ) -> tuple[JobEvent | concurrent.futures.Future[Any], BaseException | None]:
        try:
            result = call()
        except JobCancelledError:
            self._store_call(lambda store: store.mark_cancelled(job.id))
            return Cancelled(), None
        except LoracleError as error:
            message = str(error)
            self._store_call(lambda store: store.mark_failed(job.id, message))
            return Failed(error), None
        except BaseException as exc:
            failure = as_job_failure(exc)
            log.error("job %s failed", job.id, exc_info=exc)
            detail = f"{failure} [{type(exc).__name__}: {exc}]"
            self._store_call(lambda store: store.mark_failed(job.id, detail))
            return Failed(failure), (None if isinstance(exc, Exception) else exc)
        if isinstance(result, concurrent.futures.Future):
            return result, None
        try:
            summary = self._summarize(result)
        except Exception:  # a bad summary must not turn a finished job into a failure
            log.exception("could not summarise the result of job %s", job.id)
            summary = {"type": type(result).__name__}
        self._store_call(lambda store: store.mark_done(job.id, summary))
        return Done(result), None

    def _store_call(self, write: Callable[[JobStore], Any]) -> None:
        if self._store is None:
            return
        try:
            write(self._store)
        except Exception:
            # The job itself is fine; losing its bookkeeping must not stop the GPU.
            log.exception("job store write failed")

    def _store_cancel(self, job_ids: list[str]) -> None:
        self._store_call(lambda store: store.mark_cancelled_many(job_ids))

    def _write_later(self, write: Callable[..., Any], *args: Any) -> None:
        if self._store is None:
            return
        loop = self._loop
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            running_loop = None
        if loop is None or running_loop is not loop:
            write(*args)
            return
        future = loop.run_in_executor(None, write, *args)
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)

    def _signal_exit(self) -> None:
        loop, exited = self._loop, self._exited
        if loop is None or exited is None:
            return

        def settle() -> None:
            if not exited.done():
                exited.set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop is closed already
            loop.call_soon_threadsafe(settle)
