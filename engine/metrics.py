"""Prometheus metrics, the same in local and cluster mode.

One registry per process (prometheus-client's default). The bot process owns the queue, so
job, queue and worker figures are counted there whatever runs the jobs; figures from inside
a Ray worker process (its LoRA cache) reach the bot through the cluster status instead.
Served over HTTP only when LORACLE_METRICS_PORT is set (see serve()).

Labels stay few and bounded: job kind, outcome, worker name, CivitAI call kind and
outcome. Never a user, a prompt, a checkpoint or a URL: each distinct label value is a
series kept in memory for the life of the process (and in Prometheus for its retention).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from engine.errors import SettingsError
from engine.i18n import Text

log = logging.getLogger(__name__)

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
LORA_CACHE = Counter(
    "loracle_lora_cache_requests_total",
    "Parsed-LoRA cache look-ups in this process, by result (hit: no disk read; miss: file read)",
    ["result"],
)
CIVITAI_REQUESTS = Counter(
    "loracle_civitai_requests_total",
    "HTTP attempts to CivitAI (each retry counts), by kind (api, download) and outcome "
    "(ok, rate_limited, 3xx/4xx/5xx, timeout, unreachable)",
    ["kind", "outcome"],
)

CIVITAI_KINDS = ("api", "download")
CIVITAI_OUTCOMES = ("ok", "rate_limited", "3xx", "4xx", "5xx", "timeout", "unreachable")


def job_started(kind: str, waited_s: float) -> None:
    JOB_WAIT.labels(kind=kind).observe(max(0.0, waited_s))


def job_finished(kind: str, outcome: str, seconds: float, *, worker: str, checkpoint_loaded: bool = False) -> None:
    seconds = max(0.0, seconds)
    JOB_DURATION.labels(kind=kind, outcome=outcome).observe(seconds)
    WORKER_BUSY.labels(worker=worker).inc(seconds)
    _workers.add_busy(worker, seconds)
    if checkpoint_loaded:
        CHECKPOINT_LOADS.labels(worker=worker).inc()


# -- per-worker busy ratio ----------------------------------------------------------------
class _WorkerClocks:
    """Busy seconds and start time per worker; the ratio is computed when scraped, so an
    idle worker's share falls between jobs instead of freezing at its last value."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._since: dict[str, float] = {}
        self._busy: dict[str, float] = {}

    def start(self, worker: str) -> None:
        with self._lock:
            self._since[worker] = self.clock()
            self._busy[worker] = 0.0
        self._bind(worker)

    def add_busy(self, worker: str, seconds: float) -> None:
        with self._lock:
            new = worker not in self._since
            if new:
                # A worker nobody announced (worker_started) has lived at least since this job began.
                self._since[worker] = self.clock() - seconds
            self._busy[worker] = self._busy.get(worker, 0.0) + seconds
        if new:
            self._bind(worker)

    def _bind(self, worker: str) -> None:
        WORKER_BUSY_RATIO.labels(worker=worker).set_function(lambda: self.ratio(worker))

    def ratio(self, worker: str) -> float:
        with self._lock:
            since = self._since.get(worker)
            busy = self._busy.get(worker, 0.0)
        if since is None:
            return 0.0
        lived = self.clock() - since
        return min(1.0, busy / lived) if lived > 0 else 0.0

    def stop(self, worker: str) -> None:
        with self._lock:
            self._since.pop(worker, None)
            self._busy.pop(worker, None)
        for family in (WORKER_BUSY_RATIO, WORKER_BUSY, CHECKPOINT_LOADS):
            with contextlib.suppress(KeyError):  # no job finished there yet
                family.remove(worker)


_workers = _WorkerClocks()


def worker_started(worker: str) -> None:
    """A worker (the in-process one, or a Ray actor) is ready for jobs: its busy ratio is
    measured from now. Use stable names ("local", "gpu-0"): each name is a series."""
    _workers.start(worker)


def worker_stopped(worker: str) -> None:
    """A worker left for good: drop its series, so a cluster that replaces workers under
    new names does not keep dead ones forever."""
    _workers.stop(worker)


def worker_busy_ratio(worker: str) -> float:
    return _workers.ratio(worker)


# -- queue depth --------------------------------------------------------------------------
def track_queue(size: Callable[[], int] | None) -> None:
    """Read the queue depth from `size` on every scrape (None: stop, report 0). Whoever
    owns the queue registers it; a queue replaced later is read through the same call."""
    if size is None:
        QUEUE_DEPTH.set_function(lambda: 0.0)
        return

    def read() -> float:
        try:
            return float(size())
        except Exception:  # a stopped queue must not break the whole scrape
            log.debug("queue depth unavailable", exc_info=True)
            return 0.0

    QUEUE_DEPTH.set_function(read)


# -- LoRA cache and CivitAI ---------------------------------------------------------------
def lora_cache_lookup(hit: bool) -> None:
    LORA_CACHE.labels(result="hit" if hit else "miss").inc()


def civitai_outcome(status: int | None, *, accepted: bool = False, error: str | None = None) -> str:
    """The outcome label for one attempt: `error` ("timeout", "unreachable") when no answer
    came, else "ok" for a status the caller accepts, "rate_limited" for 429, or the class."""
    if error is not None:
        return error if error in CIVITAI_OUTCOMES else "unreachable"
    if status is None:
        return "unreachable"
    if accepted:
        return "ok"
    if status == 429:
        return "rate_limited"
    klass = f"{status // 100}xx"
    return klass if klass in CIVITAI_OUTCOMES else "5xx"


def civitai_attempt(kind: str, outcome: str) -> None:
    CIVITAI_REQUESTS.labels(kind=kind if kind in CIVITAI_KINDS else "api", outcome=outcome).inc()


# -- the HTTP endpoint --------------------------------------------------------------------
_CANNOT_LISTEN = Text(
    "Could not serve metrics on {host}:{port} ({reason}). Choose a free port in LORACLE_METRICS_PORT, "
    "or leave it empty to turn metrics off.",
    "無法在 {host}:{port} 提供監控指標（{reason}）。請在 LORACLE_METRICS_PORT 指定一個未被占用的連接埠，或留空以關閉指標。",
)


@dataclass
class MetricsServer:
    """The running endpoint (a daemon thread); `port` is the real one when 0 was asked."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(port: int | None, host: str = "127.0.0.1") -> MetricsServer | None:
    """Serve /metrics (Prometheus text format) on host:port from a daemon thread, or do
    nothing when `port` is None (metrics off). Raises SettingsError when it cannot listen.

    A thread, not the bot's event loop: a scrape renders every series under a lock, and a
    slow scraper must never hold up Discord's heartbeat."""
    if port is None:
        return None
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise SettingsError(_CANNOT_LISTEN, host=host, port=port, reason=exc.strerror or type(exc).__name__) from None
    real = MetricsServer(host, int(server.server_port), server, thread)
    log.info("serving Prometheus metrics at %s", real.url)
    return real
