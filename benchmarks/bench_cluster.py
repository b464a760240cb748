"""Several workers through Ray (LORACLE_CLUSTER=ray) on loopback: what the dispatch costs.

A local CPU-only Ray; the workers run a runner of fixed duration
(engine.testing.cluster_runners.FixedRunner), so the figures measure dispatch (the queue,
the scheduler, Ray), not the two shared cores.

1. Per-job dispatch overhead, Ray vs in-process (target <= 15 ms): jobs that do nothing,
   one at a time, through the same JobQueue with one in-process lane, then one Ray actor.
2. Throughput 1 -> 3 workers (target >= 2.7x): jobs of `--job-s` each, all queued at once.
3. 60 mixed jobs (3 checkpoints, 6 users, all queued at once) on 3 workers: checkpoint
   loads with per-worker affinity (each worker picks for its own checkpoint) vs round-robin
   dispatch (affinity limit 0: the next fair job to whichever worker is free)
   (target <= 0.35x), and the longest wait.

    .venv/bin/python benchmarks/bench_cluster.py [--jobs 200] [--job-s 0.25] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.queue import JobQueue, QueuedJob, Started
from engine.queue.lanes import Lane
from engine.testing.cluster_runners import FixedRunner
from engine.workers.ray_cluster import RayCluster


def job(user: str, checkpoint: str, **request: Any) -> QueuedJob:
    return QueuedJob(user_id=user, checkpoint=checkpoint, request=dict(request))


async def one_at_a_time(queue: JobQueue, count: int) -> list[float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        await queue.submit(job(f"u{i % 3}", "ckA")).result()
        times.append(time.perf_counter() - started)
    return times


async def all_at_once(
    queue: JobQueue, jobs: list[QueuedJob], *, start: bool = False
) -> tuple[float, list[dict[str, Any]], float]:
    """Wall time until all are done, their results, and the longest submit-to-start wait.
    `start`: the queue starts only once every job is queued (none picked from a partial queue)."""
    started = time.perf_counter()
    handles = [queue.submit(j) for j in jobs]
    if start:
        await queue.start()
    waits: list[float] = []

    async def watch(handle: Any) -> dict[str, Any]:
        async for event in handle.events():
            if isinstance(event, Started):
                waits.append(time.perf_counter() - started)
        return dict(await handle.result())

    results = await asyncio.gather(*(watch(h) for h in handles))
    return time.perf_counter() - started, results, max(waits)


async def on_ray(
    cluster: RayCluster, workers: int, affinity_limit: int = 4, *, start: bool = True
) -> tuple[JobQueue, list[Lane]]:
    lanes = [await asyncio.to_thread(cluster.add_worker) for _ in range(workers)]
    queue = JobQueue(per_user_cap=1000, affinity_limit=affinity_limit, lanes=lanes)
    if start:
        await queue.start()
    return queue, lanes


def mixed_jobs(seed: int, loyalty: float) -> list[tuple[str, str]]:
    """60 (user, checkpoint) pairs: 6 users, 3 checkpoints; with `loyalty` a job uses its
    user's favourite checkpoint, else one at random (as benchmarks/bench_scheduler.py)."""
    rng = random.Random(seed)
    favourite = {f"user{i}": f"ck{rng.randrange(3)}" for i in range(6)}
    mix = []
    for _ in range(60):
        user = f"user{rng.randrange(6)}"
        mix.append((user, favourite[user] if rng.random() < loyalty else f"ck{rng.randrange(3)}"))
    return mix


async def main_async(args: argparse.Namespace) -> None:
    import ray

    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=100 * 1024 * 1024, log_to_driver=False,
             configure_logging=False)
    with TemporaryDirectory() as tmp:
        outputs = Path(tmp)

        def cluster(**runner: Any) -> RayCluster:
            made = RayCluster(address=None, workers=0, outputs_dir=outputs, factory=functools.partial(FixedRunner, **runner))
            made.ray = ray
            return made

        if 1 in args.parts:
            await dispatch_overhead(args, cluster)
        if 2 in args.parts:
            await throughput(args, cluster)
        if 3 in args.parts:
            await affinity(args, cluster)
    ray.shutdown()


async def dispatch_overhead(args: argparse.Namespace, cluster: Any) -> None:
    local = JobQueue(FixedRunner(), per_user_cap=1000, affinity_limit=4, loaded_checkpoint=None)
    await local.start()
    fast = cluster(seconds=0.0)
    remote, _ = await on_ray(fast, 1)
    await one_at_a_time(remote, 20)  # warm up both paths
    await one_at_a_time(local, 20)
    local_t: list[float] = []
    ray_t: list[float] = []
    for _ in range(4):  # alternate, so both see the same machine
        local_t += await one_at_a_time(local, args.jobs // 4)
        ray_t += await one_at_a_time(remote, args.jobs // 4)
    await local.stop()
    await remote.stop()
    fast.close()
    lm, rm = statistics.median(local_t) * 1000, statistics.median(ray_t) * 1000
    print(f"1. per-job round trip, {len(local_t)} empty jobs one at a time (median; mean):")
    print(f"   in-process {lm:6.2f} ms; {statistics.mean(local_t) * 1000:6.2f} ms")
    print(f"   Ray actor  {rm:6.2f} ms; {statistics.mean(ray_t) * 1000:6.2f} ms")
    print(f"   overhead of Ray per job: {rm - lm:.2f} ms (target <= 15 ms)\n")



async def throughput(args: argparse.Namespace, cluster: Any) -> None:
    walls = {}
    for workers in (1, 3):
        fixed = cluster(seconds=args.job_s)
        queue, _ = await on_ray(fixed, workers)
        await all_at_once(queue, [job("warm", "ckA") for _ in range(workers)])
        count = 12 * 3
        wall, _, _ = await all_at_once(queue, [job(f"u{i % 6}", "ckA") for i in range(count)])
        walls[workers] = count / wall
        await queue.stop()
        fixed.close()
    print(f"2. throughput, {12 * 3} jobs of {args.job_s:.2f} s queued at once:")
    for workers, rate in walls.items():
        print(f"   {workers} worker(s): {rate:5.2f} jobs/s (ideal {workers / args.job_s:5.2f})")
    print(f"   3 workers / 1 worker: {walls[3] / walls[1]:.2f}x (target >= 2.7x)\n")



async def affinity(args: argparse.Namespace, cluster: Any) -> None:
    print(f"3. 60 jobs, 6 users, 3 checkpoints (seed {args.seed}), all queued at once, 3 workers; "
          f"a job {args.mix_job_s} s, a load {args.mix_load_s} s:")
    for loyalty, what in ((0.7, "users mostly keep to a favourite checkpoint (bench_scheduler.py's stream)"),
                          (0.0, "every job's checkpoint drawn at random")):
        mix = mixed_jobs(args.seed, loyalty)
        figures = {}
        for label, limit in (("per-worker affinity (limit 4)", 4), ("round-robin dispatch", 0)):
            fixed = cluster(seconds=args.mix_job_s, load_s=args.mix_load_s)
            queue, _ = await on_ray(fixed, 3, affinity_limit=limit, start=False)
            wall, results, longest = await all_at_once(queue, [job(u, c) for u, c in mix], start=True)
            figures[label] = (sum(r["loaded"] for r in results), longest, wall)
            await queue.stop()
            fixed.close()
        print(f"   loyalty {loyalty}: {what}")
        for label, (loads, longest, wall) in figures.items():
            print(f"     {label:<30} loads {loads:3d}   longest wait {longest:5.2f} s   all done {wall:5.2f} s")
        (a_loads, a_wait, _), (r_loads, r_wait, _) = figures.values()
        print(f"     loads, affinity / round-robin: {a_loads / r_loads:.2f}x (target <= 0.35x); "
              f"longest wait {a_wait / r_wait:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="empty jobs per variant in part 1")
    parser.add_argument("--job-s", type=float, default=0.25, help="fixed job duration in part 2")
    parser.add_argument("--mix-job-s", type=float, default=0.05, help="job duration in part 3")
    parser.add_argument("--mix-load-s", type=float, default=0.2, help="checkpoint load in part 3")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--parts", type=int, nargs="*", default=[1, 2, 3], help="which of the three to run")
    args = parser.parse_args(argv)
    shown = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"$ .venv/bin/python benchmarks/bench_cluster.py {shown}".rstrip())
    print("Dispatch through a local CPU-only Ray vs in-process, with fixed-duration runners\n")
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
