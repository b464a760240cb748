"""The real scheduler (engine.queue.scheduler) on a virtual clock, at internet scale on paper.

Jobs arrive as a Poisson stream from many users; each job's checkpoint follows a Zipf
popularity (a few checkpoints are asked for most). N GPU workers each hold one checkpoint;
a free worker asks the scheduler for its next job given its own loaded checkpoint, exactly
as the JobQueue's lanes do. A job costs `--job-s` (SDXL on an H100-class GPU: about 3 s per
image) plus `--load-s` when the worker must load another checkpoint first (about 10 s).

For N = 1, 4, 16, 64 workers, with the arrival rate scaled to N (`--load` of the workers'
capacity without switches), the same stream runs with affinity (limit `--affinity-limit`)
and without (limit 0: plain round-robin between users): p50/p99 wait from arrival to
start, and checkpoint loads per hour. Virtual time: no machine dependence, no sleeping.

    .venv/bin/python benchmarks/simulate_cluster.py [--hours 2] [--seed 7] ...
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.queue.scheduler import Scheduler


@dataclass
class SimJob:
    id: str
    user_id: str
    checkpoint: str
    arrival: float


@dataclass
class Figures:
    p50: float
    p99: float
    loads_per_hour: float
    done: int
    backlog: int


def stream(seed: int, rate: float, hours: float, users: int, checkpoints: int, zipf_s: float) -> list[SimJob]:
    rng = random.Random(seed)
    weights = [1.0 / (rank ** zipf_s) for rank in range(1, checkpoints + 1)]
    names = [f"ck{i}" for i in range(checkpoints)]
    jobs, t, horizon = [], 0.0, hours * 3600
    while True:
        t += rng.expovariate(rate)
        if t > horizon:
            return jobs
        jobs.append(SimJob(f"j{len(jobs)}", f"user{rng.randrange(users)}", rng.choices(names, weights)[0], t))


def simulate(jobs: list[SimJob], workers: int, affinity_limit: int, job_s: float, load_s: float, hours: float) -> Figures:
    sched: Scheduler[SimJob] = Scheduler(per_user_cap=1_000_000, affinity_limit=affinity_limit)
    loaded: list[str | None] = [None] * workers
    free = list(range(workers))  # idle workers, lowest first
    busy: list[tuple[float, int]] = []  # (finish time, worker)
    waits: list[float] = []
    loads, i, t = 0, 0, 0.0
    horizon = hours * 3600
    while t <= horizon:
        next_arrival = jobs[i].arrival if i < len(jobs) else float("inf")
        next_finish = busy[0][0] if busy else float("inf")
        t = min(next_arrival, next_finish)
        if t == float("inf") or t > horizon:
            break
        if next_finish <= next_arrival:
            _, worker = heapq.heappop(busy)
            free.append(worker)
        else:
            sched.add(jobs[i], bypass_cap=True)
            i += 1
        while free and len(sched):
            worker = free.pop(0)
            # As the JobQueue's lanes do: one worker picks as the in-process queue always did.
            if workers == 1:
                picked = sched.pick(loaded[worker])
            else:
                elsewhere = frozenset(ck for w, ck in enumerate(loaded) if w != worker and ck is not None)
                picked = sched.pick(loaded[worker], worker=f"w{worker}", elsewhere=elsewhere)
            assert picked is not None
            job = picked.job
            waits.append(t - job.arrival)
            cost = job_s
            if loaded[worker] != job.checkpoint:
                loads += 1
                cost += load_s
                loaded[worker] = job.checkpoint
            heapq.heappush(busy, (t + cost, worker))
    waits.sort()

    def pct(q: float) -> float:
        return waits[min(len(waits) - 1, int(q * len(waits)))] if waits else 0.0

    return Figures(pct(0.50), pct(0.99), loads / hours, len(waits), len(sched))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 4, 16, 64])
    parser.add_argument("--hours", type=float, default=2.0, help="virtual hours simulated")
    parser.add_argument("--job-s", type=float, default=3.0, help="seconds per image (SDXL, H100 class)")
    parser.add_argument("--load-s", type=float, default=10.0, help="seconds per checkpoint load")
    parser.add_argument("--load", type=float, default=0.3,
                        help="arrival rate as a share of the workers' capacity without any load")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--checkpoints", type=int, default=40)
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of checkpoint popularity")
    parser.add_argument("--affinity-limit", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    shown = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"$ .venv/bin/python benchmarks/simulate_cluster.py {shown}".rstrip())
    print(f"Poisson arrivals at {args.load:.0%} of N workers' capacity, {args.users} users, {args.checkpoints} "
          f"checkpoints (Zipf s={args.zipf}), {args.job_s:g} s per image, {args.load_s:g} s per load, "
          f"{args.hours:g} virtual hours\n")
    print(f"{'N':>3} {'jobs/h':>7} | {'affinity (limit ' + str(args.affinity_limit) + ')':^33} | "
          f"{'without affinity':^33} | loads per job")
    print(f"{'':>3} {'':>7} | {'p50 s':>8} {'p99 s':>9} {'loads/h':>9} {'left':>4} | "
          f"{'p50 s':>8} {'p99 s':>9} {'loads/h':>9} {'left':>4} | ratio")
    for n in args.workers:
        rate = args.load * n / args.job_s
        jobs = stream(args.seed, rate, args.hours, args.users, args.checkpoints, args.zipf)
        a = simulate(jobs, n, args.affinity_limit, args.job_s, args.load_s, args.hours)
        b = simulate(jobs, n, 0, args.job_s, args.load_s, args.hours)
        # Per job started: without affinity the workers fall behind and start fewer jobs.
        ratio = (a.loads_per_hour / a.done) / (b.loads_per_hour / b.done) if b.done and a.done and b.loads_per_hour else 0.0
        print(f"{n:>3} {rate * 3600:>7.0f} | {a.p50:>8.1f} {a.p99:>9.1f} {a.loads_per_hour:>9.0f} {a.backlog:>4} | "
              f"{b.p50:>8.1f} {b.p99:>9.1f} {b.loads_per_hour:>9.0f} {b.backlog:>4} | {ratio:.2f}x")
    print("\n(left: jobs still queued at the end; a growing backlog means the workers cannot keep up;"
          " loads per job: affinity / without)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
