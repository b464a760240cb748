"""Which worker may take which job, and what happens to a job whose worker failed it;
part of the JobQueue (engine.queue.job_queue), which inherits it (and through it
StoreWrites, whose job-store writes it uses). Call with its lock held."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from engine.errors import JobFailedError
from engine.queue.handle import Failed, JobEvent
from engine.queue.job import QueuedJob
from engine.queue.lanes import (
    MAX_RETRIES,
    NO_WORKER_HAS_FILE,
    WORKER_LOST,
    Lane,
    ModelMissingError,
    RetryBook,
    WorkerLostError,
)
from engine.queue.scheduler import Scheduler
from engine.queue.settling import StoreWrites

log = logging.getLogger("engine.queue.job_queue")


class Placement(StoreWrites):
    _lanes: list[Lane]
    _retries: RetryBook
    _running: dict[str, Any]
    _scheduler: Scheduler[QueuedJob]

    if TYPE_CHECKING:  # the JobQueue's own, read under its lock

        def _loaded(self, lane: Lane | None = None) -> str | None: ...

    def _can_run(self, lane: Lane, job: QueuedJob) -> bool:
        if job.checkpoint in lane.missing:
            return False
        avoided = self._retries.avoided(job.id)
        if lane.id not in avoided:
            return True
        # A retry goes to another worker, unless no other one is up and able.
        return not any(
            other.up and other.id not in avoided and job.checkpoint not in other.missing for other in self._lanes
        )

    def _held_elsewhere(self, lane: Lane) -> frozenset[str]:
        """Checkpoints the other workers that are up hold, or are loading for their job."""
        held = set()
        for other in self._lanes:
            if other is not lane and other.up:
                running = self._running.get(other.id)
                checkpoint = running.job.checkpoint if running is not None else self._loaded(other)
                if checkpoint is not None:
                    held.add(checkpoint)
        retrying = self._retries.jobs()  # a retried job's first worker may not take it back
        if retrying:
            held -= {job.checkpoint for job in self._scheduler if job.id in retrying}
        return frozenset(held)

    def _put_back(self, lane: Lane, job: QueuedJob, why: WorkerLostError | ModelMissingError) -> JobEvent | None:
        """The worker, not the job, failed: queue the job again at the head of its user's
        FIFO for another worker; None when it waits again, else its final event."""
        if isinstance(why, ModelMissingError):
            lane.missing.add(job.checkpoint)
            log.warning("worker %s lacks %s; it takes no more jobs for that checkpoint", lane.id, why)
            if all(job.checkpoint in other.missing for other in self._lanes):
                error = JobFailedError(NO_WORKER_HAS_FILE, name=why.name)
                self._store_call(lambda store: store.mark_failed(job.id, str(error)))
                return Failed(error)
        else:
            attempts = self._retries.record(job.id, lane.id)
            log.warning("worker %s died running job %s (attempt %d): %s", lane.id, job.id, attempts, why)
            if attempts > MAX_RETRIES:
                self._retries.forget(job.id)
                error = JobFailedError(WORKER_LOST, attempts=attempts)
                self._store_call(lambda store: store.mark_failed(job.id, str(error)))
                return Failed(error)
        self._store_call(lambda store: store.mark_requeued(job.id))
        self._scheduler.add_front(job)
        return None

