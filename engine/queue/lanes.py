"""Workers as the queue sees them: one `Lane` per GPU worker, whatever runs the jobs.

A lane is an in-process runner (the default, one lane) or a proxy for a Ray actor on some
GPU (engine.workers.ray_proxy). Each lane has its own thread in the JobQueue that asks the
scheduler for the next job *for that lane*: its loaded checkpoint is the affinity key, and
the model files its node lacks are never sent to it.

Two exceptions let a runner say that the job was not at fault:
- `WorkerLostError`: the worker died mid-job (actor crash, process killed for memory, node
  lost). The queue puts the job back at the head of its user's FIFO for another worker, at
  most MAX_RETRIES times; then it fails with a clear message. Never lost, never twice.
- `ModelMissingError`: this worker's node lacks a model file (or holds a different one):
  the lane stops taking that checkpoint and the job goes back to wait for another worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from engine import metrics
from engine.i18n import Text
from engine.queue.handle import Cancelled, Done, Failed
from engine.queue.job import QueuedJob, Runner

MAX_RETRIES = 2


def job_kind(job: QueuedJob) -> str:
    kind = job.request.get("kind") if isinstance(job.request, dict) else None
    return kind if isinstance(kind, str) else "draw"

WORKER_LOST = Text(
    "The GPU worker drawing this image stopped {attempts} times in a row (it crashed or ran out of "
    "memory), so Loracle gave up on this job. Try again, perhaps with a smaller size or fewer images.",
    "繪製這張圖的 GPU 工作程序連續中斷了 {attempts} 次（當機或記憶體不足），Loracle 已放棄這個工作。"
    "請再試一次，或改用較小的尺寸或較少的張數。",
)
NO_WORKER_HAS_FILE = Text(
    "No GPU worker can read the model file “{name}” (missing or different on every node). "
    "An admin should put the same library on every worker node (a shared volume).",
    "沒有任何 GPU 工作程序能讀取模型檔「{name}」（各節點上都缺少或內容不同）。"
    "請管理員讓每個工作節點使用同一份模型庫（共用磁碟區）。",
)


class WorkerLostError(Exception):
    """The worker running the job died; the job itself is not to blame."""


class ModelMissingError(Exception):
    """The worker's node lacks `name` (a checkpoint or LoRA file), or its hash differs."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name
        self.detail = detail


@dataclass
class Lane:
    """One worker: `runner(job, progress)` runs a job on it (in this lane's thread).

    `loaded_checkpoint()` is the affinity key (a cheap read; None: unknown, the queue then
    assumes the last job's checkpoint). `available()` is False while the worker cannot take
    jobs (restarting, gone); the lane then waits. `describe()` adds node and GPU to status.
    """

    id: str
    runner: Runner
    loaded_checkpoint: Callable[[], str | None] | None = None
    available: Callable[[], bool] | None = None
    describe: Callable[[], dict[str, Any]] | None = None
    # Bookkeeping, kept by the queue under its lock.
    missing: set[str] = field(default_factory=set)  # checkpoints its node lacks
    jobs_done: int = 0
    busy_seconds: float = 0.0
    last_error: str | None = None
    last_checkpoint: str | None = None
    running_since: float | None = None
    created: float = field(default_factory=time.monotonic)
    up: bool = True  # last seen available (set by its thread)

    def is_available(self) -> bool:
        if self.available is None:
            return True
        try:
            return bool(self.available())
        except Exception:
            return False

    def busy_share(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        busy = self.busy_seconds + (now - self.running_since if self.running_since is not None else 0.0)
        lifetime = max(now - self.created, 1e-9)
        return min(1.0, busy / lifetime)


def book(lane: Lane, job: QueuedJob, outcome: object) -> None:
    """Per-lane figures for the cluster status and the metrics (lock held)."""
    since, lane.running_since = lane.running_since, None
    seconds = time.monotonic() - since if since is not None else 0.0
    lane.busy_seconds += seconds
    if isinstance(outcome, (WorkerLostError, ModelMissingError)):
        lane.last_error = f"{type(outcome).__name__}: {outcome}"
        metrics.job_finished(job_kind(job), "retried", seconds, worker=lane.id)
        if isinstance(outcome, WorkerLostError):
            lane.last_checkpoint = None  # a restarted worker holds nothing
        return
    lane.last_checkpoint = job.checkpoint
    lane.jobs_done += 1
    if isinstance(outcome, Failed):
        lane.last_error = str(outcome.error)
    if isinstance(outcome, Future):  # the GPU part is done; the result settles later
        outcome.add_done_callback(lambda future: _record_deferred(lane.id, job, seconds, future))
        return
    outcome_name = {Done: "done", Failed: "failed", Cancelled: "cancelled"}.get(type(outcome), "done")
    loaded = bool(getattr(getattr(outcome, "result", None), "checkpoint_loaded", False))
    metrics.job_finished(job_kind(job), outcome_name, seconds, worker=lane.id, checkpoint_loaded=loaded)


def _record_deferred(worker: str, job: QueuedJob, seconds: float, future: Future[Any]) -> None:
    if future.cancelled() or future.exception() is not None:
        metrics.job_finished(job_kind(job), "failed", seconds, worker=worker)
        return
    loaded = bool(getattr(future.result(), "checkpoint_loaded", False))
    metrics.job_finished(job_kind(job), "done", seconds, worker=worker, checkpoint_loaded=loaded)



@dataclass(frozen=True)
class WorkerStatus:
    """One worker as `loracle cluster status` and `/admin cluster` show it."""

    id: str
    node: str
    gpu: str | None
    loaded: str | None
    jobs_done: int
    busy_share: float
    last_error: str | None
    state: str  # "idle", "busy", "unavailable"
    running: str | None = None  # the job id it runs now
    missing: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node,
            "gpu": self.gpu,
            "loaded": self.loaded,
            "jobs_done": self.jobs_done,
            "busy_share": round(self.busy_share, 4),
            "last_error": self.last_error,
            "state": self.state,
            "running": self.running,
            "missing": list(self.missing),
        }


@dataclass(frozen=True)
class ClusterStatus:
    mode: str  # "local" or "ray"
    available: bool  # whether /draw accepts jobs
    workers: list[WorkerStatus]
    queued: int = 0
    note: str | None = None  # why drawing is unavailable, or where the cluster is

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "available": self.available,
            "queued": self.queued,
            "note": self.note,
            "workers": [worker.to_json() for worker in self.workers],
        }


class RetryBook:
    """Per job: how many times its worker died under it, and the lanes it died on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lost: dict[str, list[str]] = {}

    def record(self, job_id: str, lane_id: str) -> int:
        with self._lock:
            lanes = self._lost.setdefault(job_id, [])
            lanes.append(lane_id)
            return len(lanes)

    def avoided(self, job_id: str) -> list[str]:
        with self._lock:
            return list(self._lost.get(job_id, ()))

    def jobs(self) -> set[str]:
        with self._lock:
            return set(self._lost)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._lost.pop(job_id, None)
