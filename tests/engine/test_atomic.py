"""Atomic replacement of small text files (heartbeat, command-sync record, CLIP vocabulary)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.atomic import write_text_atomic


def test_replaces_the_file_and_leaves_no_temporary_behind(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old", encoding="utf-8")
    write_text_atomic(target, "新的")
    assert target.read_text(encoding="utf-8") == "新的"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_writers_at_the_same_moment_never_break_each_other(tmp_path: Path) -> None:
    target = tmp_path / "beat"
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(50):
                write_text_atomic(target, f"{n}:{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and target.read_text(encoding="utf-8").endswith(":49")
    assert [p.name for p in tmp_path.iterdir()] == ["beat"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    target.write_text("old", encoding="utf-8")

    def refuse(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("engine.atomic.os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
