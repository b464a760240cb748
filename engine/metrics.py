"""Prometheus metrics, the same in local and cluster mode.

One registry per process (prometheus-client's default). The bot process owns the queue, so
job, queue and worker figures are counted there whatever runs the jobs; figures from inside
a Ray worker process (its LoRA cache) reach the bot through the cluster status instead.
Served over HTTP only when LORACLE_METRICS_PORT is set (see serve()).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Waits run from seconds (an idle GPU) to many minutes (a busy server's queue).
_WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
# An SDXL picture takes seconds on a big GPU and minutes on a small one (or a CPU).
_RUN_BUCKETS = (1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300, 600)

QUEUE_DEPTH = Gauge("loracle_queue_depth", "Jobs waiting for a GPU worker")
JOB_WAIT = Histogram(
    "loracle_job_wait_seconds", "Time from submission to a worker starting the job", ["kind"], buckets=_WAIT_BUCKETS
)
JOB_DURATION = Histogram(
    "loracle_job_duration_seconds",
    "Time a worker spent on a job, by kind and outcome (done, failed, cancelled)",
    ["kind", "outcome"],
    buckets=_RUN_BUCKETS,
)
CHECKPOINT_LOADS = Counter("loracle_checkpoint_loads_total", "Checkpoints loaded onto a GPU", ["worker"])
WORKER_BUSY = Counter("loracle_worker_busy_seconds_total", "Seconds each worker spent running jobs", ["worker"])
WORKER_BUSY_RATIO = Gauge("loracle_worker_busy_ratio", "Share of its lifetime each worker spent on jobs", ["worker"])


def job_started(kind: str, waited_s: float) -> None:
    JOB_WAIT.labels(kind=kind).observe(max(0.0, waited_s))


def job_finished(kind: str, outcome: str, seconds: float, *, worker: str, checkpoint_loaded: bool = False) -> None:
    seconds = max(0.0, seconds)
    JOB_DURATION.labels(kind=kind, outcome=outcome).observe(seconds)
    WORKER_BUSY.labels(worker=worker).inc(seconds)
    if checkpoint_loaded:
        CHECKPOINT_LOADS.labels(worker=worker).inc()


def worker_busy_share(worker: str, share: float) -> None:
    """A worker's share of its lifetime spent on jobs (the queue sets it after each job)."""
    WORKER_BUSY_RATIO.labels(worker=worker).set(min(1.0, max(0.0, share)))
