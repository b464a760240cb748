"""The queue over real Ray actors (engine.workers.ray_cluster) on a local CPU-only Ray:
spread, affinity per worker, a worker killed mid-job, a worker added later, files a node
lacks. Runners of a fixed duration (engine.testing.cluster_runners) keep it quick."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.errors import JobFailedError
from engine.queue import (
    Cancelled,
    Done,
    Failed,
    JobQueue,
    JobStore,
    Loading,
    Queued,
    QueuedJob,
    Started,
    Step,
)
from engine.testing.cluster_runners import FixedRunner
from engine.workers.ray_cluster import RayCluster, wait_until
from engine.workers.status import cluster_status
from tests.engine.queue.conftest import make_job

pytestmark = pytest.mark.slow

TIMEOUT = 60.0


@pytest.fixture
async def cluster(ray_local, tmp_path: Path):
    made: list[tuple[RayCluster, JobQueue]] = []

    async def make(workers: int = 3, store: JobStore | None = None, **runner: float) -> tuple[RayCluster, JobQueue]:
        factory = functools.partial(FixedRunner, **runner)
        cluster = RayCluster(address=None, workers=workers, outputs_dir=tmp_path / "outputs", factory=factory)
        lanes = await asyncio.to_thread(cluster.connect)
        assert len(lanes) == workers, cluster.error
        queue = JobQueue(per_user_cap=50, affinity_limit=4, lanes=lanes, store=store)
        await queue.start()
        made.append((cluster, queue))
        return cluster, queue

    yield make
    for cluster, queue in made:
        await asyncio.wait_for(queue.stop(), TIMEOUT)
        await asyncio.to_thread(cluster.close)


async def results(handles) -> list[dict]:
    return await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), TIMEOUT)


async def test_jobs_spread_over_workers_and_checkpoints_stay_on_their_worker(cluster) -> None:
    ray_cluster, queue = await cluster(workers=3, seconds=0.15, load_s=0.3)
    checkpoints = ["ckA", "ckB", "ckC"]
    handles = [queue.submit(make_job(f"u{i % 6}", checkpoints[i % 3])) for i in range(18)]
    done = await results(handles)
    assert len({r["pid"] for r in done}) == 3  # three worker processes did the work
    loads = sum(r["loaded"] for r in done)
    assert loads <= 6  # 3 first loads, and few switches: not one per job
    by_worker: dict[str, set[str]] = {}
    for r in done:
        by_worker.setdefault(r["worker"], set()).add(r["checkpoint"])
    assert sum(len(cks) == 1 for cks in by_worker.values()) >= 2  # most workers kept one checkpoint
    status = cluster_status(queue, ray_cluster)
    assert status.mode == "ray" and status.available
    assert sum(w.jobs_done for w in status.workers) == 18
    assert all(w.node and w.loaded in checkpoints for w in status.workers)


async def test_progress_reaches_the_bot_from_the_worker(cluster) -> None:
    _, queue = await cluster(workers=1, seconds=0.6)
    handle = queue.submit(make_job("u1", "ckA"))
    events = [e async for e in handle.events()]
    assert isinstance(events[-1], Done)
    assert any(isinstance(e, Step) for e in events)
    assert Loading("ckA") in events  # the worker's first job loads its checkpoint
    assert isinstance(next(e for e in events if not isinstance(e, Queued)), Started)


async def test_a_worker_killed_mid_job_costs_a_retry_not_the_job(cluster, tmp_path: Path) -> None:
    from engine.db import ThreadLocalDB

    store = JobStore(ThreadLocalDB(tmp_path / "jobs.db"))
    ray_cluster, queue = await cluster(workers=2, store=store, seconds=0.05)
    job = make_job("u1", "ckA", seconds=20.0)
    handle = queue.submit(job)
    assert await asyncio.to_thread(wait_until, lambda: bool(queue.running_jobs()), 20)
    (lane_id,) = queue.running_jobs()
    victim = next(p for p in ray_cluster.proxies if p.worker_id == lane_id)
    await asyncio.sleep(0.3)
    os.kill(victim.info["pid"], signal.SIGKILL)  # as the kernel's OOM killer would
    job.request["seconds"] = 0.1  # the retry need not take 20 s (the queue holds this object)
    events = await asyncio.wait_for(_collect(handle), TIMEOUT)
    done = [e for e in events if isinstance(e, Done)]
    assert len(done) == 1 and not [e for e in events if isinstance(e, Failed)]
    assert done[0].result["worker"] != lane_id
    assert store.get(job.id).status == "done"
    status = {w.id: w for w in cluster_status(queue, ray_cluster).workers}
    assert "WorkerLostError" in (status[lane_id].last_error or "")
    # Ray restarts the killed actor; once it answers it takes jobs again.
    assert await asyncio.to_thread(wait_until, victim.ping, 60, 0.5)
    assert victim.info["pid"] != done[0].result["pid"]


async def test_a_worker_added_later_takes_jobs_at_once(cluster) -> None:
    ray_cluster, queue = await cluster(workers=1, seconds=0.05, steps=50)
    blocker = queue.submit(make_job("u1", "ckA", seconds=25.0))
    assert await asyncio.to_thread(wait_until, lambda: bool(queue.running_jobs()), 20)
    lane = await asyncio.to_thread(ray_cluster.add_worker)
    queue.add_lane(lane)
    late = queue.submit(make_job("u2", "ckB"))
    result = await asyncio.wait_for(late.result(), TIMEOUT)
    assert result["worker"] == lane.id
    assert not blocker.finished  # it ran beside the first worker's long job
    assert blocker.cancel()  # reaches the worker, which stops at its next step
    events = await asyncio.wait_for(_collect(blocker), TIMEOUT)
    assert isinstance(events[-1], Cancelled)


def _plan(name: str, path: Path, sha256: str | None) -> SimpleNamespace:
    return SimpleNamespace(checkpoint=SimpleNamespace(name=name, path=path, sha256=sha256), applied_loras=[])


async def test_files_a_node_lacks_or_holds_differently_are_named(cluster, tmp_path: Path) -> None:
    _, queue = await cluster(workers=2, seconds=0.01)
    here = tmp_path / "model.safetensors"
    here.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()

    def job(user: str, checkpoint: str, path: Path, sha: str | None) -> QueuedJob:
        return QueuedJob(user_id=user, checkpoint=checkpoint, request={}, payload=_plan(checkpoint, path, sha))

    ok = queue.submit(job("u1", "good", here, good))
    assert (await asyncio.wait_for(ok.result(), TIMEOUT))["checkpoint"] == "good"
    for name, path, sha in (("gone", tmp_path / "absent.safetensors", good), ("other", here, "0" * 64)):
        handle = queue.submit(job("u2", name, path, sha))
        with pytest.raises(JobFailedError) as caught:
            await asyncio.wait_for(handle.result(), TIMEOUT)
        assert f"No GPU worker can read the model file “{name}”" in str(caught.value)
    assert all({"gone", "other"} <= lane.missing for lane in queue.lanes)


async def _collect(handle) -> list:
    return [event async for event in handle.events()]


async def test_workers_gone_for_good_make_drawing_unavailable_and_keep_jobs_queued(cluster) -> None:
    ray_cluster, queue = await cluster(workers=1, seconds=0.05)
    assert ray_cluster.available()
    (proxy,) = ray_cluster.proxies
    ray_cluster.ray.kill(proxy.actor, no_restart=True)  # as a lost node: nothing restarts it
    handle = queue.submit(make_job("u1", "ckA"))
    assert await asyncio.to_thread(wait_until, lambda: proxy.state == "dead", 30)
    assert not ray_cluster.available() and not ray_cluster.refresh()
    await asyncio.sleep(0.3)
    assert not handle.finished and queue.position(handle.id) == 1  # waits for a worker
    status = cluster_status(queue, ray_cluster)
    assert not status.available and status.workers[0].state == "dead"
    assert handle.cancel()


async def test_a_cluster_unreachable_at_start_is_joined_when_it_answers(ray_local, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    factory = functools.partial(FixedRunner, seconds=0.01)
    ray_cluster = RayCluster(address=f"127.0.0.1:{port}", workers=1, outputs_dir=tmp_path, factory=factory)
    assert await asyncio.to_thread(ray_cluster.connect) == []
    assert not ray_cluster.available() and "nothing answers" in (ray_cluster.error or "")
    queue = JobQueue(per_user_cap=5, affinity_limit=4, lanes=[])
    await queue.start()
    handle = queue.submit(make_job("u1", "ckA"))  # accepted before: it waits
    try:
        ray_cluster.address = None  # the cluster answers now (here: the test's local Ray)
        ray_cluster.reconnect_in_background(lambda lanes: [queue.add_lane(lane) for lane in lanes], every_s=0.2)
        result = await asyncio.wait_for(handle.result(), TIMEOUT)
        assert result["worker"] == "w0" and ray_cluster.available()
    finally:
        await queue.stop()
        await asyncio.to_thread(ray_cluster.close)
