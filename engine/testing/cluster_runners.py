"""Runners of a known duration for the cluster tests and benchmarks: they measure the
dispatch (Ray, the queue, the scheduler), not the two shared CPU cores of a test machine.

Importable by Ray worker processes (a runner factory is pickled by reference).
"""

from __future__ import annotations

import os
import time
from typing import Any

from engine.queue.job import Progress, QueuedJob
from engine.workers.ray_actor import WorkerConfig


class FixedRunner:
    """Each job sleeps `seconds`; switching checkpoints sleeps `load_s` more (a load).

    `job.request` may say {"seconds": s} to last longer (a job to kill mid-way).
    """

    def __init__(self, config: WorkerConfig | None = None, *, seconds: float = 0.0, load_s: float = 0.0, steps: int = 2) -> None:
        self.worker = config.worker_id if config is not None else "local"
        self.seconds = seconds
        self.load_s = load_s
        self.steps = steps
        self.loaded: str | None = None
        self.loads = 0

    def loaded_checkpoint(self) -> str | None:
        return self.loaded

    def __call__(self, job: QueuedJob, progress: Progress) -> dict[str, Any]:
        loaded = self.loaded != job.checkpoint
        if loaded:
            progress.loading(job.checkpoint)
            if self.load_s:
                time.sleep(self.load_s)
            self.loaded = job.checkpoint
            self.loads += 1
        seconds = float(job.request.get("seconds", self.seconds))
        for i in range(1, self.steps + 1):
            progress.check_cancelled()
            if seconds:
                time.sleep(seconds / self.steps)
            progress.step(i, self.steps)
        return {"worker": self.worker, "pid": os.getpid(), "checkpoint": job.checkpoint, "loaded": loaded, "job": job.id}
