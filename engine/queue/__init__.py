"""The GPU job queue: fair scheduling, one worker thread, jobs that survive a crash.

    queue = JobQueue(runner, per_user_cap=3, affinity_limit=4, store=JobStore(tldb))
    await queue.start()
    for row in store.recover().requeue:             # before new submissions
        queue.resubmit(row.to_job(payload=rebuild(row.request)))
    handle = queue.submit(QueuedJob(user_id="42", checkpoint=sha, request={...}, payload=p))
    async for event in handle.events():  # Queued, Started, Step..., then Done/Failed/Cancelled
        ...
    result = await handle.result()
"""

from engine.queue.failures import as_job_failure, default_summary
from engine.queue.handle import (
    Cancelled,
    Done,
    Failed,
    JobEvent,
    JobHandle,
    Loading,
    Queued,
    Started,
    Step,
)
from engine.queue.job import Progress, QueuedJob, Runner, new_job_id
from engine.queue.job_queue import JobQueue, QueueEntry
from engine.queue.scheduler import Pick, Scheduler, count_switches
from engine.queue.store import JobRow, JobStore, RecoveryReport

__all__ = [
    "Cancelled",
    "Done",
    "Failed",
    "JobEvent",
    "JobHandle",
    "JobQueue",
    "JobRow",
    "JobStore",
    "Loading",
    "Pick",
    "Progress",
    "QueueEntry",
    "Queued",
    "QueuedJob",
    "RecoveryReport",
    "Runner",
    "Scheduler",
    "Started",
    "Step",
    "as_job_failure",
    "count_switches",
    "default_summary",
    "new_job_id",
]
