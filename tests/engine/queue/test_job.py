from __future__ import annotations

import time

import pytest

from engine.errors import JobCancelledError
from engine.queue import Progress, QueuedJob


def test_job_ids_are_unique_uuid_hex_and_created_now():
    a = QueuedJob(user_id="1", checkpoint="c", request={})
    b = QueuedJob(user_id="1", checkpoint="c", request={})
    assert a.id != b.id and len(a.id) == 32 and int(a.id, 16) >= 0
    assert abs(a.created_at - time.time()) < 5
    assert a.payload is None and a.origin is None


def test_progress_reports_steps_and_cancellation():
    seen = []
    progress = Progress(lambda i, n, note: seen.append((i, n, note)))
    progress.step(1, 4)
    progress.step(2, 4, "decoding")
    assert seen == [(1, 4, None), (2, 4, "decoding")] and progress.last == (2, 4)
    assert not progress.cancelled
    progress.check_cancelled()
    progress.request_cancel()
    assert progress.cancelled
    with pytest.raises(JobCancelledError):
        progress.check_cancelled()


def test_progress_without_listener():
    progress = Progress()
    progress.step(1, 1)
    assert progress.last == (1, 1)
