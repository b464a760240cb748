"""Checkpoint affinity vs plain FIFO on a simulated queue (virtual time, no GPU, no sleeping).

A seeded stream of jobs from several users arrives over time; most users stick to a
favourite checkpoint. Running a job costs 1 unit, loading a different checkpoint first
costs `--switch-cost` more (an SDXL checkpoint load is several times a generation). The
same stream is run three ways: FIFO (arrival order), Loracle's scheduler (round-robin
between users with checkpoint affinity bounded by `--affinity-limit`), and plain
round-robin (affinity limit 0). Reported: checkpoint loads, the longest and mean wait
from arrival to start, and the time the last job ends.

    .venv/bin/python benchmarks/bench_scheduler.py [--seed 7] [--jobs 60] ...
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Run as a plain script from a checkout, where the project may not be pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.queue.scheduler import Scheduler


@dataclass
class SimJob:
    id: str
    user_id: str
    checkpoint: str
    arrival: float


@dataclass
class Outcome:
    loads: int = 0
    waits: list[float] = field(default_factory=list)
    waits_by_user: dict[str, float] = field(default_factory=dict)
    end: float = 0.0

    @property
    def longest_wait(self) -> float:
        return max(self.waits, default=0.0)

    @property
    def mean_wait(self) -> float:
        return sum(self.waits) / len(self.waits) if self.waits else 0.0


def make_stream(seed: int, jobs: int, users: int, checkpoints: int, gap: float,
                loyalty: float) -> list[SimJob]:
    rng = random.Random(seed)
    names = [f"ckpt{i}" for i in range(checkpoints)]
    people = [f"user{i}" for i in range(users)]
    favourite = {person: rng.choice(names) for person in people}
    stream, t = [], 0.0
    for i in range(jobs):
        t += rng.expovariate(1.0 / gap)
        person = rng.choice(people)
        checkpoint = favourite[person] if rng.random() < loyalty else rng.choice(names)
        stream.append(SimJob(f"j{i}", person, checkpoint, t))
    return stream


def simulate(stream: list[SimJob], pick_next: Callable[[list[SimJob], str | None], SimJob],
             switch_cost: float) -> Outcome:
    """One worker: whenever idle, take what has arrived and run `pick_next`'s choice."""
    pending = sorted(stream, key=lambda job: job.arrival)
    arrived: list[SimJob] = []
    out, t, loaded = Outcome(), 0.0, None
    while pending or arrived:
        while pending and pending[0].arrival <= t:
            arrived.append(pending.pop(0))
        if not arrived:
            t = pending[0].arrival
            continue
        job = pick_next(arrived, loaded)
        arrived.remove(job)
        wait = t - job.arrival
        out.waits.append(wait)
        out.waits_by_user[job.user_id] = max(out.waits_by_user.get(job.user_id, 0.0), wait)
        if job.checkpoint != loaded:
            out.loads += 1
            t += switch_cost
            loaded = job.checkpoint
        t += 1.0
    out.end = t
    return out


def fifo(arrived: list[SimJob], loaded: str | None) -> SimJob:
    return arrived[0]


def scheduler_policy(affinity_limit: int, cap: int) -> Callable[[list[SimJob], str | None], SimJob]:
    sched: Scheduler[SimJob] = Scheduler(per_user_cap=cap, affinity_limit=affinity_limit)
    known: set[str] = set()

    def pick_next(arrived: list[SimJob], loaded: str | None) -> SimJob:
        for job in arrived:
            if job.id not in known:
                known.add(job.id)
                sched.add(job)
        picked = sched.pick(loaded)
        assert picked is not None
        return picked.job

    return pick_next


def run(args: argparse.Namespace, seed: int) -> dict[str, Outcome]:
    stream = make_stream(seed, args.jobs, args.users, args.checkpoints, args.gap, args.loyalty)
    return {
        "FIFO": simulate(stream, fifo, args.switch_cost),
        f"affinity (limit {args.affinity_limit})": simulate(
            stream, scheduler_policy(args.affinity_limit, args.jobs), args.switch_cost),
        "round-robin only": simulate(stream, scheduler_policy(0, args.jobs), args.switch_cost),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--switch-cost", type=float, default=8.0)
    parser.add_argument("--affinity-limit", type=int, default=4)
    parser.add_argument("--gap", type=float, default=2.0, help="mean time between arrivals")
    parser.add_argument("--loyalty", type=float, default=0.7,
                        help="chance a job uses its user's favourite checkpoint")
    parser.add_argument("--seeds", type=int, default=200, help="streams in the summary line")
    args = parser.parse_args(argv)

    shown = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"$ .venv/bin/python benchmarks/bench_scheduler.py {shown}".rstrip())
    print(f"{args.jobs} jobs from {args.users} users over {args.checkpoints} checkpoints, "
          f"seed {args.seed}; a job costs 1, a checkpoint load {args.switch_cost:g} "
          f"(virtual time units); mean arrival gap {args.gap:g}\n")

    results = run(args, args.seed)
    print(f"{'policy':<22}{'loads':>7}{'longest wait':>14}{'mean wait':>11}{'all done':>10}")
    for name, out in results.items():
        print(f"{name:<22}{out.loads:>7}{out.longest_wait:>14.1f}{out.mean_wait:>11.1f}"
              f"{out.end:>10.1f}")
    base, aff = results["FIFO"], results[f"affinity (limit {args.affinity_limit})"]
    print(f"\naffinity / FIFO: loads {aff.loads / base.loads:.2f}x, "
          f"longest wait {aff.longest_wait / base.longest_wait:.2f}x, "
          f"mean wait {aff.mean_wait / base.mean_wait:.2f}x")
    print("longest wait per user (FIFO -> affinity): " + ", ".join(
        f"{user} {base.waits_by_user[user]:.0f}->{aff.waits_by_user[user]:.0f}"
        for user in sorted(aff.waits_by_user)))

    loads = longest = 0.0
    for seed in range(args.seeds):
        many = run(args, seed)
        fifo_out = many["FIFO"]
        aff_out = many[f"affinity (limit {args.affinity_limit})"]
        loads += aff_out.loads / fifo_out.loads
        longest += aff_out.longest_wait / max(fifo_out.longest_wait, 1e-9)
    print(f"over seeds 0..{args.seeds - 1}: mean ratio of loads {loads / args.seeds:.2f}x, "
          f"of longest wait {longest / args.seeds:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
