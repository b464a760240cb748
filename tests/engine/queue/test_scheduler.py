from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from engine.errors import QueueFullError
from engine.queue.scheduler import Scheduler, count_switches

_ids = iter(range(10**9))


@dataclass
class J:
    user_id: str
    checkpoint: str
    id: str = field(default_factory=lambda: f"j{next(_ids)}")


def sched(cap: int = 100, limit: int = 2) -> Scheduler[J]:
    return Scheduler(per_user_cap=cap, affinity_limit=limit)


def drain(s: Scheduler[J], loaded: str | None = None) -> list[J]:
    out = []
    while (picked := s.pick(loaded)) is not None:
        out.append(picked.job)
        loaded = picked.job.checkpoint
    return out


# -- round-robin and FIFO ------------------------------------------------------------


def test_round_robin_alternates_users_and_keeps_each_users_order():
    s = sched(limit=0)
    a1, a2, a3 = J("a", "X"), J("a", "X"), J("a", "X")
    b1, b2 = J("b", "X"), J("b", "X")
    for job in (a1, a2, a3, b1, b2):
        s.add(job)
    assert drain(s) == [a1, b1, a2, b2, a3]


def test_user_served_least_recently_goes_first():
    s = sched(limit=0)
    a1, a2 = J("a", "X"), J("a", "X")
    s.add(a1)
    s.add(a2)
    assert s.pick(None).job is a1
    b1 = J("b", "X")
    s.add(b1)  # b arrived after a2, but a was just served
    assert s.pick(None).job is b1
    assert s.pick(None).job is a2


def test_returning_user_outranks_users_served_since():
    s = sched(limit=0)
    a1, b1, b2, b3 = J("a", "X"), J("b", "X"), J("b", "X"), J("b", "X")
    s.add(a1)
    s.add(b1)
    assert [s.pick(None).job for _ in range(2)] == [a1, b1]
    s.add(b2)
    s.add(b3)
    a2 = J("a", "X")
    s.add(a2)  # a was served before b's last turn
    assert s.pick(None).job is a2


def test_never_served_users_go_in_submission_order():
    s = sched(limit=0)
    jobs = [J(user, "X") for user in ("c", "a", "b")]
    for job in jobs:
        s.add(job)
    assert drain(s) == jobs


# -- checkpoint affinity -------------------------------------------------------------


def test_job_on_loaded_checkpoint_overtakes():
    s = sched(limit=2)
    a, b = J("a", "X"), J("b", "Y")
    s.add(a)
    s.add(b)
    picked = s.pick("Y")
    assert picked.job is b and picked.overtook
    assert s.streak == 1
    assert s.pick("Y").job is a


def test_round_robin_choice_on_loaded_checkpoint_is_no_overtake():
    s = sched(limit=2)
    a, b = J("a", "X"), J("b", "X")
    s.add(a)
    s.add(b)
    picked = s.pick("X")
    assert picked.job is a and not picked.overtook and s.streak == 0


def test_affinity_overtakes_at_most_limit_times_in_a_row():
    s = sched(limit=2)
    a = J("a", "A")
    bs = [J("b", "B") for _ in range(5)]
    s.add(a)
    for job in bs:
        s.add(job)
    order = drain(s, loaded="B")
    # two overtakes, then a's job runs despite the switch, then b's rest
    assert order == [bs[0], bs[1], a, bs[2], bs[3], bs[4]]


def test_streak_resets_when_round_robin_choice_runs():
    s = sched(limit=1)
    a1, a2, b1, b2 = J("a", "A"), J("a", "A"), J("b", "B"), J("b", "B")
    for job in (a1, a2, b1, b2):
        s.add(job)
    assert s.pick("B").job is b1 and s.streak == 1
    assert s.pick("B").job is a1 and s.streak == 0  # limit reached: switch to A
    assert s.pick("A").job is a2 and s.streak == 1  # a2 overtakes b2 (b is next in turn)
    assert s.pick("A").job is b2 and s.streak == 0


def test_affinity_never_reorders_one_users_jobs():
    s = sched(limit=5)
    a1, a2 = J("a", "A"), J("a", "B")
    s.add(a1)
    s.add(a2)
    assert drain(s, loaded="B") == [a1, a2]


def test_limit_zero_is_plain_round_robin():
    s = sched(limit=0)
    a, b = J("a", "A"), J("b", "B")
    s.add(a)
    s.add(b)
    assert drain(s, loaded="B") == [a, b]


def test_nothing_loaded_means_round_robin():
    s = sched(limit=3)
    a, b = J("a", "A"), J("b", "B")
    s.add(a)
    s.add(b)
    assert s.pick(None).job is a


def test_among_several_affine_users_least_recently_served_wins():
    s = sched(limit=3)
    x = J("x", "A")
    c1, b1 = J("c", "B"), J("b", "B")
    for job in (x, c1, b1):
        s.add(job)
    assert s.pick("B").job is c1  # c and b never served: c submitted first


# -- per-user cap --------------------------------------------------------------------


def test_cap_counts_waiting_jobs_and_names_the_number():
    s = sched(cap=3)
    for _ in range(3):
        s.add(J("a", "X"))
    with pytest.raises(QueueFullError) as info:
        s.add(J("a", "X"))
    assert "3 jobs" in str(info.value) and "limit is 3" in str(info.value)
    assert "3 個工作" in info.value.localized("zh-TW")
    s.add(J("b", "X"))  # other users are unaffected
    s.pick(None)
    s.add(J("a", "X"))  # a started one, so there is room again


def test_cap_of_one_says_one_job():
    s = sched(cap=1)
    s.add(J("a", "X"))
    with pytest.raises(QueueFullError, match="1 job waiting"):
        s.check_room("a")


def test_bypass_cap_for_recovered_jobs():
    s = sched(cap=1)
    s.add(J("a", "X"))
    s.add(J("a", "X"), bypass_cap=True)
    assert s.count("a") == 2


def test_remove_clear_get_and_duplicates():
    s = sched()
    a1, a2, b1 = J("a", "X"), J("a", "X"), J("b", "X")
    for job in (a1, a2, b1):
        s.add(job)
    with pytest.raises(ValueError):
        s.add(a1)
    assert s.remove(a1.id) is a1
    assert s.remove(a1.id) is None
    assert a1.id not in s and a2.id in s
    assert s.get(a2.id) is a2 and s.get("nope") is None
    assert s.jobs_of("a") == [a2]
    assert list(s) == [a2, b1] and len(s) == 2
    assert s.clear() == [a2, b1]
    assert len(s) == 0 and s.pick("X") is None


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        Scheduler(per_user_cap=0, affinity_limit=1)
    with pytest.raises(ValueError):
        Scheduler(per_user_cap=1, affinity_limit=-1)


def test_count_switches():
    assert count_switches([]) == 0
    assert count_switches(["A", "A", "B", "A"]) == 3
    assert count_switches(["A", "B"], loaded="A") == 1


# -- properties over random job streams ----------------------------------------------


def random_stream(rng: random.Random):
    users = [f"u{i}" for i in range(rng.randint(1, 6))]
    checkpoints = [f"c{i}" for i in range(rng.randint(1, 3))]
    limit = rng.randint(0, 4)
    cap = rng.randint(1, 4)
    return users, checkpoints, limit, cap


@pytest.mark.parametrize("seed", range(150))
def test_every_job_runs_once_within_the_starvation_bound(seed):
    rng = random.Random(seed)
    users, checkpoints, limit, cap = random_stream(rng)
    s = sched(cap=cap, limit=limit)
    loaded: str | None = rng.choice([None, *checkpoints])
    submitted: dict[str, tuple[int, int]] = {}  # id -> (pick count at submit, q)
    ran: list[J] = []
    picks = 0
    overtakes_in_a_row = 0
    user_order: dict[str, list[str]] = {u: [] for u in users}

    def pick() -> None:
        nonlocal loaded, picks, overtakes_in_a_row
        picked = s.pick(loaded)
        if picked is None:
            return
        picks += 1
        job = picked.job
        at, q = submitted[job.id]
        bound = q * len(users) * (limit + 1)
        assert picks - at <= bound, (job, picks - at, bound)
        overtakes_in_a_row = overtakes_in_a_row + 1 if picked.overtook else 0
        assert overtakes_in_a_row <= limit and s.streak == overtakes_in_a_row
        loaded = job.checkpoint
        ran.append(job)

    for _ in range(rng.randint(10, 80)):
        if rng.random() < 0.55:
            user = rng.choice(users)
            job = J(user, rng.choice(checkpoints))
            try:
                s.add(job)
            except QueueFullError:
                assert s.count(user) == cap
                continue
            submitted[job.id] = (picks, s.count(user))
            user_order[user].append(job.id)
        else:
            pick()
    while len(s):
        pick()

    assert sorted(job.id for job in ran) == sorted(submitted)
    for user in users:  # each user's jobs ran in the order they were sent
        assert [job.id for job in ran if job.user_id == user] == user_order[user]


@pytest.mark.parametrize("seed", range(60))
def test_order_predicts_the_picks(seed):
    rng = random.Random(1000 + seed)
    users, checkpoints, limit, _ = random_stream(rng)
    s = sched(limit=limit)
    loaded = rng.choice([None, *checkpoints])
    for _ in range(rng.randint(0, 12)):  # some history, so ticks and streak matter
        s.add(J(rng.choice(users), rng.choice(checkpoints)))
        if rng.random() < 0.5 and (picked := s.pick(loaded)):
            loaded = picked.job.checkpoint
    for _ in range(rng.randint(0, 25)):
        s.add(J(rng.choice(users), rng.choice(checkpoints)))
    predicted = s.order(loaded)
    assert len(s) == len(predicted)
    assert drain(s, loaded) == predicted


def test_affinity_loads_checkpoints_less_often_than_fifo():
    fifo_total = affinity_total = 0
    for seed in range(40):
        rng = random.Random(seed)
        users = [f"u{i}" for i in range(6)]
        favourite = {u: rng.choice("ABC") for u in users}
        jobs = []
        for _ in range(30):
            user = rng.choice(users)
            checkpoint = favourite[user] if rng.random() < 0.7 else rng.choice("ABC")
            jobs.append(J(user, checkpoint))
        s = sched(limit=4)
        for job in jobs:
            s.add(job)
        affinity_total += count_switches(job.checkpoint for job in drain(s))
        fifo_total += count_switches(job.checkpoint for job in jobs)
    assert affinity_total < 0.75 * fifo_total, (affinity_total, fifo_total)


# -- several workers (engine.queue.lanes) ---------------------------------------------


def test_each_worker_prefers_its_own_checkpoint_and_keeps_its_own_streak():
    s = sched(limit=1)
    for user, checkpoint in [("a", "c1"), ("b", "c2"), ("c", "c1"), ("d", "c2")]:
        s.add(J(user, checkpoint))
    first = s.pick("c2", worker="w1")  # round-robin says a (c1); b's job on c2 overtakes
    assert first is not None and first.job.user_id == "b" and first.overtook
    second = s.pick("c1", worker="w0")  # w0's streak is its own: a's c1 job is round-robin
    assert second is not None and second.job.user_id == "a" and not second.overtook
    third = s.pick("c2", worker="w1")  # w1 has used its one overtake: round-robin (c)
    assert third is not None and third.job.user_id == "c" and not third.overtook
    assert s.streak == 0  # the one-worker streak is untouched


def test_can_run_hides_a_head_and_the_users_later_jobs():
    s = sched()
    a1, a2, b1 = J("a", "c1"), J("a", "c2"), J("b", "c2")
    for job in (a1, a2, b1):
        s.add(job)
    picked = s.pick("c2", lambda job: job.checkpoint != "c1", worker="w0")
    assert picked is not None and picked.job is b1  # a2 waits behind a1, which w0 may not run
    assert s.pick("c2", lambda job: job.checkpoint != "c1", worker="w0") is None


def test_add_front_puts_a_retry_before_the_users_later_jobs():
    s = sched()
    a1, a2 = J("a", "c1"), J("a", "c1")
    s.add(a1)
    s.add(a2)
    assert s.pick(None).job is a1
    s.add_front(a1)
    assert [job.id for job in drain(s)] == [a1.id, a2.id]


@pytest.mark.parametrize("seed", range(80))
def test_with_several_workers_every_job_starts_within_the_bound_of_each_worker(seed):
    rng = random.Random(seed)
    users, checkpoints, limit, _ = random_stream(rng)
    workers = [f"w{i}" for i in range(rng.randint(2, 4))]
    s = sched(cap=1000, limit=limit)
    loaded: dict[str, str | None] = {w: rng.choice([None, *checkpoints]) for w in workers}
    picks = {w: 0 for w in workers}
    submitted: dict[str, tuple[dict[str, int], int]] = {}
    ran = []

    def pick(worker: str) -> None:
        elsewhere = frozenset(ck for w, ck in loaded.items() if w != worker and ck is not None)
        picked = s.pick(loaded[worker], worker=worker, elsewhere=elsewhere)
        if picked is None:
            return
        picks[worker] += 1
        job = picked.job
        at, q = submitted[job.id]
        bound = q * len(users) * (limit + 1)
        # Within the bound in the picks of some one worker, and so of the whole queue.
        assert min(picks[w] - at[w] for w in workers) <= bound
        assert sum(picks[w] - at[w] for w in workers) <= len(workers) * bound
        loaded[worker] = job.checkpoint
        ran.append(job)

    for _ in range(rng.randint(10, 80)):
        if rng.random() < 0.55:
            user = rng.choice(users)
            job = J(user, rng.choice(checkpoints))
            s.add(job)
            submitted[job.id] = (dict(picks), s.count(user))
        else:
            pick(rng.choice(workers))
    while len(s):
        pick(rng.choice(workers))
    assert sorted(job.id for job in ran) == sorted(submitted)


def test_a_worker_that_must_load_leaves_another_workers_checkpoint_to_it():
    s = sched(limit=2)
    a, b = J("a", "c1"), J("b", "c3")  # a is round-robin's choice; w1 holds c1
    s.add(a)
    s.add(b)
    picked = s.pick("c2", worker="w0", elsewhere=frozenset({"c1"}))
    assert picked is not None and picked.job is b and picked.overtook  # c3: nobody holds it
    assert s.pick("c1", worker="w1").job is a  # the holder takes its own without a load
    s.add(J("c", "c1"))
    kept = sched(limit=1)  # overtakes used up, but the round-robin job's checkpoint is held
    for job in (J("a", "c1"), J("b", "c2"), J("c", "c2")):
        kept.add(job)
    assert kept.pick("c2", worker="w0").overtook  # b's c2 job overtakes a's c1 job
    left = kept.pick("c2", worker="w0", elsewhere=frozenset({"c1"}))
    assert left.job.user_id == "c" and left.overtook  # w1 holds c1: a's job is left to it
    assert kept.pick("c1", worker="w1").job.user_id == "a"
    strict = sched(limit=0)  # limit 0 stays plain round-robin
    strict.add(a2 := J("a", "c1"))
    strict.add(J("b", "c3"))
    assert strict.pick("c2", worker="w0", elsewhere=frozenset({"c1"})).job is a2
