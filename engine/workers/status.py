"""The workers' status for `loracle cluster status` and `/admin cluster`, in either mode."""

from __future__ import annotations

import socket
import time
from typing import Any

from engine.queue.lanes import ClusterStatus, WorkerStatus


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
