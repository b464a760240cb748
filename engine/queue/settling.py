"""How a job's outcome is settled and written down; shared by every worker thread of
the JobQueue (engine.queue.job_queue), which inherits it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

from engine.errors import JobCancelledError, LoracleError
from engine.queue.failures import as_job_failure
from engine.queue.handle import Cancelled, Done, Failed, JobEvent, JobHandle
from engine.queue.job import QueuedJob
from engine.queue.store import JobStore

log = logging.getLogger("engine.queue.job_queue")


class StoreWrites:
    _store: JobStore | None
    _summarize: Callable[[Any], Any]
    _loop: asyncio.AbstractEventLoop | None
    _writes: set[asyncio.Future[Any]]
    _cond: threading.Condition
    _finishing: set[concurrent.futures.Future[Any]]

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

