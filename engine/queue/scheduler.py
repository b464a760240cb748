"""Which queued job runs next: fair between users, thrifty with checkpoint switches.

This module is pure and deterministic (no threads, clocks or randomness), so every rule
below is unit-tested directly; `engine.queue.job_queue` wraps it with a lock.

The algorithm
-------------
Each user has a FIFO of queued jobs; only the *head* of a user's FIFO can ever be picked,
so a user's own jobs always run in the order they sent them.

1. **Round-robin.** Every pick advances a counter, the *tick*; a user remembers the tick
   at which they were last served (never served: -1). The round-robin choice is the head
   job of the user served least recently (smallest tick; ties, which only happen between
   users never served, go to the user whose head job was submitted first).
2. **Checkpoint affinity.** Switching checkpoints costs many seconds of GPU time, so when
   the round-robin choice needs a different checkpoint from the loaded one, and some other
   user's head job uses the loaded checkpoint, that job *overtakes* (among several such,
   the one whose user was served least recently).
3. **The bound on affinity.** At most `affinity_limit` overtakes may happen in a row; then
   the round-robin choice runs even though it means a switch. Any pick of the round-robin
   choice resets the count. `affinity_limit=0` is plain round-robin.
4. **Per-user cap.** A user may have at most `per_user_cap` jobs *waiting* (the running one
   does not count); one more raises QueueFullError saying how many they have. Jobs
   recovered after a restart bypass the cap, because they were accepted once already.

Starvation bound
----------------
Let N = affinity_limit and U = the number of distinct users with jobs queued while a job J
waits. Once J is at the head of its user's FIFO, it starts within U·(N+1) picks:
every user ranked ahead of J's user in round-robin order is served at most once before
J's user is (after being served their tick is newer), so at most U-1 round-robin picks go
to others, and each round-robin pick — J's own included — can be preceded by at most N
overtakes: (U-1) + 1 + U·N = U·(N+1). A job that is q-th in its user's FIFO when
submitted therefore starts within q·U·(N+1) picks. The property tests check exactly this.

Several workers
---------------
With W workers, each picks for itself (`pick(loaded, worker=...)`): `loaded` is its own
checkpoint and it keeps its own overtake streak, so a worker holding a popular checkpoint
keeps it without another worker's overtakes using up its allowance. When a worker must load
a checkpoint anyway and the round-robin choice's checkpoint is held by another worker
(`elsewhere`), a job for a checkpoint no worker holds overtakes instead: the other worker
takes that job without a load, and the workers keep different checkpoints. Likewise a
worker whose overtakes are used up keeps to its checkpoint while the round-robin choice is
for a checkpoint another worker holds: that worker's next pick is that very job (the
round-robin choice, on its own checkpoint). Users are still served in one round-robin
order (one tick, one `last_served`), and every user ranked ahead of J's is still served at
most once before J's; so the bound above holds in the picks of one worker: of any worker
that does not leave J, or of the worker holding J's checkpoint when J is left to it. The
queue passes `elsewhere` only for checkpoints of workers that are up, and never for the
checkpoint of a job being retried (its first worker may not take it back).

Positions shown to users come from `order()`, which replays the rules on a copy of the
state, assuming the loaded checkpoint follows the jobs as they run. New submissions can
still change the prediction (a job on the loaded checkpoint may overtake), which is why the
worker re-announces positions after every change.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from engine.errors import QueueFullError
from engine.i18n import Text

QUEUE_FULL_ONE = Text(
    "You already have 1 job waiting in the queue (the limit is {cap}). "
    "Please wait for it to start, or cancel it, before sending another.",
    "您已有 1 個工作在排隊（上限為 {cap} 個）。請等它開始執行或先取消，再送出新的工作。",
)
QUEUE_FULL_MANY = Text(
    "You already have {count} jobs waiting in the queue (the limit is {cap}). "
    "Please wait for one to start, or cancel one, before sending another.",
    "您已有 {count} 個工作在排隊（上限為 {cap} 個）。"
    "請等其中一個開始執行或先取消一個，再送出新的工作。",
)


class Schedulable(Protocol):
    """What the scheduler needs to know about a job."""

    @property
    def id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def checkpoint(self) -> str: ...


J = TypeVar("J", bound=Schedulable)


@dataclass(frozen=True)
class Pick(Generic[J]):
    """One scheduling decision; `overtook` is True when affinity beat round-robin."""

    job: J
    overtook: bool


class Scheduler(Generic[J]):
    """The queued jobs and the pick rule described in the module docstring."""

    def __init__(self, *, per_user_cap: int, affinity_limit: int) -> None:
        if per_user_cap < 1:
            raise ValueError("per_user_cap must be at least 1")
        if affinity_limit < 0:
            raise ValueError("affinity_limit must not be negative")
        self.per_user_cap = per_user_cap
        self.affinity_limit = affinity_limit
        self._fifos: dict[str, deque[J]] = {}
        self._seq: dict[str, int] = {}  # job id -> submission order
        self._next_seq = 0
        self._front_seq = 0  # requeued jobs count down from here: older than any other
        self._last_served: dict[str, int] = {}  # user -> tick of their last pick
        self._tick = 0
        self._streak = 0  # overtakes in a row so far
        self._streaks: dict[str, int] = {}  # the same, per worker, when several pick

    # -- state -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._seq)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._seq

    def __iter__(self) -> Iterator[J]:
        """Queued jobs in submission order (not run order; see `order()`)."""
        jobs = [job for fifo in self._fifos.values() for job in fifo]
        return iter(sorted(jobs, key=lambda job: self._seq[job.id]))

    @property
    def streak(self) -> int:
        """How many overtakes happened in a row up to now (never above affinity_limit)."""
        return self._streak

    def count(self, user_id: str) -> int:
        fifo = self._fifos.get(user_id)
        return len(fifo) if fifo else 0

    def jobs_of(self, user_id: str) -> list[J]:
        return list(self._fifos.get(user_id, ()))

    def get(self, job_id: str) -> J | None:
        for fifo in self._fifos.values():
            for job in fifo:
                if job.id == job_id:
                    return job
        return None

    # -- changes -----------------------------------------------------------------------

    def check_room(self, user_id: str) -> None:
        """Raise QueueFullError if `user_id` may not queue another job."""
        count = self.count(user_id)
        if count >= self.per_user_cap:
            text = QUEUE_FULL_ONE if count == 1 else QUEUE_FULL_MANY
            raise QueueFullError(text, count=count, cap=self.per_user_cap)

    def add(self, job: J, *, bypass_cap: bool = False) -> None:
        if job.id in self._seq:
            raise ValueError(f"job {job.id} is already queued")
        if not bypass_cap:
            self.check_room(job.user_id)
        self._fifos.setdefault(job.user_id, deque()).append(job)
        self._seq[job.id] = self._next_seq
        self._next_seq += 1

    def add_front(self, job: J) -> None:
        """Put a job back at the head of its user's FIFO (a retry after its worker died):
        it keeps its turn instead of queueing behind the user's later jobs."""
        if job.id in self._seq:
            raise ValueError(f"job {job.id} is already queued")
        self._fifos.setdefault(job.user_id, deque()).appendleft(job)
        self._front_seq -= 1
        self._seq[job.id] = self._front_seq

    def remove(self, job_id: str) -> J | None:
        """Take a queued job out (a cancellation); None if it is not queued."""
        if job_id not in self._seq:
            return None
        for user_id, fifo in self._fifos.items():
            for job in fifo:
                if job.id == job_id:
                    fifo.remove(job)
                    if not fifo:
                        del self._fifos[user_id]
                    del self._seq[job_id]
                    return job
        raise AssertionError("scheduler index out of sync")  # pragma: no cover

    def clear(self) -> list[J]:
        """Remove every queued job, returning them in submission order."""
        jobs = list(self)
        self._fifos.clear()
        self._seq.clear()
        return jobs

    def pick(
        self,
        loaded: str | None,
        can_run: Callable[[J], bool] | None = None,
        *,
        worker: str | None = None,
        elsewhere: frozenset[str] = frozenset(),
    ) -> Pick[J] | None:
        """Remove and return the job to run next, given the loaded checkpoint.

        With several workers each one picks for itself: `loaded` is that worker's
        checkpoint, and `can_run` (when given) hides the head jobs it must not take (a
        model file its node lacks, a retry that must go elsewhere). A hidden head hides
        the user's later jobs too, so a user's jobs still start in order. Each `worker`
        counts its own overtakes in a row, and `elsewhere` names the checkpoints other
        workers hold (see "Several workers" in the module docstring).
        """
        fifos = self._fifos
        if can_run is not None:
            fifos = {user: fifo for user, fifo in fifos.items() if can_run(fifo[0])}
        streak = self._streak if worker is None else self._streaks.get(worker, 0)
        choice = _choose(fifos, self._seq, self._last_served, streak, self.affinity_limit, loaded, elsewhere)
        if choice is None:
            return None
        user_id, overtook = choice
        fifo = self._fifos[user_id]
        job = fifo.popleft()
        if not fifo:
            del self._fifos[user_id]
        del self._seq[job.id]
        self._tick += 1
        self._last_served[user_id] = self._tick
        if worker is None:
            self._streak = self._streak + 1 if overtook else 0
        else:
            self._streaks[worker] = streak + 1 if overtook else 0
        return Pick(job, overtook)

    # -- prediction --------------------------------------------------------------------

    def order(self, loaded: str | None) -> list[J]:
        """Every queued job in the order `pick` would return them if nothing changed.

        The same rule as `pick`, replayed with heaps so that announcing positions after
        every submission stays cheap: O(n log n) for n queued jobs.
        """
        fifos = {user: list(fifo) for user, fifo in self._fifos.items()}
        served = dict.fromkeys(fifos, 0)  # how many of each user's jobs are placed
        rank = {user: (self._last_served.get(user, -1), self._seq[fifo[0].id])
                for user, fifo in fifos.items()}
        # Round-robin order of users, and the same per head-job checkpoint; entries whose
        # rank is out of date are skipped when they surface.
        everyone = [(r, user) for user, r in rank.items()]
        heapq.heapify(everyone)
        by_checkpoint: dict[str, list[tuple[tuple[int, int], str]]] = {}
        for user, fifo in fifos.items():
            by_checkpoint.setdefault(fifo[0].checkpoint, []).append((rank[user], user))
        for heap in by_checkpoint.values():
            heapq.heapify(heap)

        def first(heap: list[tuple[tuple[int, int], str]]) -> str | None:
            while heap:
                r, user = heap[0]
                if rank.get(user) == r:
                    return user
                heapq.heappop(heap)
            return None

        streak, tick = self._streak, self._tick
        out: list[J] = []
        while (rr_user := first(everyone)) is not None:
            user, overtook = rr_user, False
            if (
                loaded is not None
                and streak < self.affinity_limit
                and fifos[rr_user][served[rr_user]].checkpoint != loaded
            ):
                affine = first(by_checkpoint.get(loaded, []))
                if affine is not None:
                    user, overtook = affine, True
            job = fifos[user][served[user]]
            served[user] += 1
            tick += 1
            if served[user] == len(fifos[user]):
                del rank[user]
            else:
                head = fifos[user][served[user]]
                rank[user] = (tick, self._seq[head.id])
                heapq.heappush(everyone, (rank[user], user))
                heapq.heappush(by_checkpoint.setdefault(head.checkpoint, []), (rank[user], user))
            streak = streak + 1 if overtook else 0
            loaded = job.checkpoint
            out.append(job)
        return out


def _choose(
    fifos: dict[str, deque[J]],
    seq: dict[str, int],
    last_served: dict[str, int],
    streak: int,
    affinity_limit: int,
    loaded: str | None,
    elsewhere: frozenset[str] = frozenset(),
) -> tuple[str, bool] | None:
    """(user to serve, whether that is an overtake), or None when nothing is queued."""
    if not fifos:
        return None

    def rank(user_id: str) -> tuple[int, int]:
        return last_served.get(user_id, -1), seq[fifos[user_id][0].id]

    rr_user = min(fifos, key=rank)
    head = fifos[rr_user][0].checkpoint
    if loaded is not None and head == loaded:
        return rr_user, False
    matching = [user for user, fifo in fifos.items() if fifo[0].checkpoint == loaded] if loaded is not None else []
    if streak >= affinity_limit:
        # The allowance is used up, but the round-robin choice is for a checkpoint another
        # worker holds: that worker takes it at its next pick as its own round-robin choice
        # (no load), so this one may keep to its checkpoint.
        if affinity_limit and head in elsewhere and matching:
            return min(matching, key=rank), True
        return rr_user, False
    if matching:
        return min(matching, key=rank), True
    # A load it is. Another worker holds the round-robin choice's checkpoint: leave that
    # job to it and load one nobody holds, so the workers keep different checkpoints.
    if head in elsewhere:
        fresh = [user for user, fifo in fifos.items() if fifo[0].checkpoint not in elsewhere]
        if fresh:
            return min(fresh, key=rank), True
    return rr_user, False


def count_switches(checkpoints: Iterable[str], loaded: str | None = None) -> int:
    """How many checkpoint loads running jobs in this order needs (the first load counts)."""
    switches = 0
    for checkpoint in checkpoints:
        if checkpoint != loaded:
            switches += 1
            loaded = checkpoint
    return switches
