"""The workers' status for `loracle cluster status` and `/admin cluster`, in either mode."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

from engine.atomic import write_text_atomic
from engine.queue.lanes import ClusterStatus, WorkerStatus

log = logging.getLogger(__name__)


def cluster_status(queue: Any, cluster: Any = None, *, local_gpu: str | None = None) -> ClusterStatus:
    """Per worker: node, GPU, loaded checkpoint, jobs done, busy share, last error.

    `queue` is the started JobQueue (None before Engine.start); `cluster` the RayCluster in
    cluster mode. Reads only cached figures: safe to call from the event loop.
    """
    mode = "ray" if cluster is not None else "local"
    if queue is None:
        return ClusterStatus(mode, False, [], note="the GPU worker is not started in this process")
    running = {lane: job.id for lane, job in queue.running_jobs().items()}
    now = time.monotonic()
    workers = []
    for lane in queue.lanes:
        described: dict[str, Any] = {}
        if lane.describe is not None:
            try:
                described = lane.describe()
            except Exception:  # a status view must show what it can
                described = {}
        state = described.get("state", "up")
        if state == "up":
            state = "busy" if lane.id in running else "idle"
        loaded = None
        if lane.loaded_checkpoint is not None:
            try:
                loaded = lane.loaded_checkpoint()
            except Exception:
                loaded = None
        workers.append(
            WorkerStatus(
                id=lane.id,
                node=str(described.get("node") or socket.gethostname()),
                gpu=described.get("gpu", local_gpu),
                loaded=loaded or lane.last_checkpoint,
                jobs_done=lane.jobs_done,
                busy_share=lane.busy_share(now),
                last_error=lane.last_error,
                state=state,
                running=running.get(lane.id),
                missing=tuple(sorted(lane.missing)),
            )
        )
    available = cluster.available() if cluster is not None else True
    note = cluster.describe() if cluster is not None else None
    return ClusterStatus(mode, available, workers, queued=queue.size, note=note)


# The bot owns the queue and the workers; other processes (the CLI) read what it last wrote.
STATUS_FILE = "cluster-status.json"
PUBLISH_EVERY_S = 5.0


def status_path(root: Path) -> Path:
    return root / STATUS_FILE


def write_status(path: Path, status: ClusterStatus, *, now: float | None = None) -> None:
    data = {"time": time.time() if now is None else now, **status.to_json()}
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=1))


def read_status(path: Path) -> dict[str, Any] | None:
    """What the running bot last wrote (with its `time`); None when there is nothing."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def publish_status(engine: Any, path: Path, every_s: float = PUBLISH_EVERY_S) -> None:
    """Keep `path` current while the bot runs (a task Engine.start makes for the bot)."""
    while True:
        try:
            await asyncio.to_thread(write_status, path, engine.cluster_status())
        except Exception:  # a status file is a convenience: never stop the bot for it
            log.debug("could not write %s", path, exc_info=True)
        await asyncio.sleep(every_s)
