from __future__ import annotations

import sqlite3
import threading

import pytest
import sqlite_utils

from engine import db as dbmod
from engine.queue import JobStore, QueuedJob
from engine.queue.store import INTERRUPTED

from .conftest import make_job


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mem_store(clock) -> JobStore:
    return JobStore(dbmod.memory(), clock=clock)


def test_insert_records_a_queued_job_with_its_request(mem_store):
    job = QueuedJob(user_id="42", checkpoint="sha-a", request={"prompt": "貓", "steps": 20},
                    origin={"where": ["g", "c"]}, created_at=5.0)
    mem_store.insert(job)
    row = mem_store.get(job.id)
    assert row.status == "queued" and row.attempts == 0
    assert row.request == {"prompt": "貓", "steps": 20}
    assert (row.user_id, row.checkpoint, row.origin) == ("42", "sha-a", {"where": ["g", "c"]})
    assert row.created_at == 5.0 and row.started_at is None and row.result is None
    assert row["request"] == row.get("request") == {"prompt": "貓", "steps": 20}
    assert row.get("started_at", 0.0) == 0.0 and row.get("nope") is None
    with pytest.raises(KeyError):
        row["nope"]
    assert row.to_job(payload="p") == QueuedJob(
        id=job.id, user_id="42", checkpoint="sha-a", request=job.request, payload="p",
        origin={"where": ["g", "c"]}, created_at=5.0)
    with pytest.raises(sqlite3.IntegrityError):
        mem_store.insert(job)  # ids are unique
    assert mem_store.insert_if_missing(job) is False
    assert mem_store.insert_if_missing(make_job()) is True


def test_transitions_carry_timestamps_results_and_errors(mem_store, clock):
    done, failed, cancelled = make_job(), make_job(), make_job()
    for job in (done, failed, cancelled):
        mem_store.insert(job)
    assert mem_store.mark_running(done.id)
    started = clock.now
    assert mem_store.mark_done(done.id, {"images": 2, "seed": 7})
    row = mem_store.get(done.id)
    assert row.status == "done" and row.started_at == started and row.finished_at > started
    assert row.result == {"images": 2, "seed": 7}

    assert mem_store.mark_running(failed.id)
    assert mem_store.mark_failed(failed.id, "The graphics card ran out of memory.")
    assert mem_store.get(failed.id).error == "The graphics card ran out of memory."

    assert mem_store.mark_cancelled(cancelled.id)
    assert mem_store.get(cancelled.id).status == "cancelled"


def test_finished_jobs_cannot_be_moved_again(mem_store):
    job = make_job()
    mem_store.insert(job)
    assert not mem_store.mark_done(job.id)  # never ran
    mem_store.mark_running(job.id)
    assert not mem_store.mark_running(job.id)
    mem_store.mark_done(job.id, None)
    assert not mem_store.mark_cancelled(job.id)
    assert not mem_store.mark_failed(job.id, "late")
    assert mem_store.get(job.id).status == "done"
    assert not mem_store.mark_running("missing")
    assert mem_store.get("missing") is None


def test_rows_filter_by_status_and_user_oldest_first(mem_store):
    jobs = [QueuedJob(user_id=u, checkpoint="c", request={}, created_at=t)
            for u, t in (("a", 3.0), ("b", 1.0), ("a", 2.0))]
    for job in jobs:
        mem_store.insert(job)
    mem_store.mark_cancelled_many([jobs[0].id, jobs[1].id, "missing"])
    assert [r.id for r in mem_store.rows()] == [jobs[1].id, jobs[2].id, jobs[0].id]
    assert [r.id for r in mem_store.rows(status="queued")] == [jobs[2].id]
    assert [r.id for r in mem_store.rows(status=("cancelled",), user_id="a")] == [jobs[0].id]
    assert len(mem_store.rows(limit=1)) == 1


def test_result_summary_that_is_not_json_is_stored_as_text(mem_store):
    job = make_job()
    mem_store.insert(job)
    mem_store.mark_running(job.id)
    mem_store.mark_done(job.id, {"path": object()})
    assert mem_store.get(job.id).result["path"].startswith("<object object")


def _left_by_a_crash(store: JobStore, attempts: dict[str, int]) -> dict[str, QueuedJob]:
    """Rows as a killed process leaves them: some running, some queued, some finished."""
    jobs = {name: QueuedJob(user_id="u", checkpoint="c", request={"n": name},
                            created_at=float(i))
            for i, name in enumerate(["done", "running_fresh", "queued", "running_old"])}
    for job in jobs.values():
        store.insert(job)
    store.mark_running(jobs["done"].id)
    store.mark_done(jobs["done"].id, {})
    for name in ("running_fresh", "running_old"):
        store.mark_running(jobs[name].id)
        store.db.execute("UPDATE jobs SET attempts = ? WHERE id = ?",
                         [attempts[name], jobs[name].id])
    return jobs


def test_recover_requeues_interrupted_and_waiting_jobs_and_fails_repeat_offenders(mem_store):
    jobs = _left_by_a_crash(mem_store, {"running_fresh": 0, "running_old": 1})
    report = mem_store.recover(max_attempts=2)

    assert [row.id for row in report.requeue] == [jobs["running_fresh"].id, jobs["queued"].id]
    assert [row.id for row in report.failed] == [jobs["running_old"].id]
    fresh = mem_store.get(jobs["running_fresh"].id)
    assert fresh.status == "queued" and fresh.attempts == 1 and fresh.started_at is None
    assert mem_store.get(jobs["queued"].id).attempts == 0
    old = mem_store.get(jobs["running_old"].id)
    assert old.status == "failed" and old.attempts == 2
    assert old.error == INTERRUPTED.format(attempts=2) and "restart" in old.error
    assert mem_store.get(jobs["done"].id).status == "done"
    # Nothing vanished: every job is finished, or queued to run again.
    statuses = {row.id: row.status for row in mem_store.rows()}
    assert set(statuses.values()) <= {"done", "failed", "queued"}
    assert len(statuses) == 4
    # A second recovery (no crash in between) changes nothing more.
    again = mem_store.recover(max_attempts=2)
    assert [row.id for row in again.requeue] == [row.id for row in report.requeue]
    assert again.failed == []


def test_recover_with_max_attempts_one_fails_every_interrupted_job(mem_store):
    jobs = _left_by_a_crash(mem_store, {"running_fresh": 0, "running_old": 0})
    report = mem_store.recover(max_attempts=1)
    assert {row.id for row in report.failed} == {jobs["running_fresh"].id, jobs["running_old"].id}
    assert [row.id for row in report.requeue] == [jobs["queued"].id]


def test_thread_local_source_works_from_many_threads(tmp_path):
    store = JobStore(dbmod.ThreadLocalDB(tmp_path / "x.db"))
    jobs = [make_job(user=f"u{i}") for i in range(8)]
    errors: list[BaseException] = []

    def work(job: QueuedJob) -> None:
        try:
            store.insert(job)
            store.mark_running(job.id)
            store.mark_done(job.id, {"ok": True})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [row.status for row in store.rows()] == ["done"] * 8


def test_path_source_and_migration_adds_the_checkpoint_column(tmp_path):
    store = JobStore(tmp_path / "y.db")
    job = make_job(checkpoint="sha-z")
    store.insert(job)
    assert store.get(job.id).checkpoint == "sha-z"
    assert "checkpoint" in sqlite_utils.Database(tmp_path / "y.db")["jobs"].columns_dict
