from __future__ import annotations

import os
import time
from pathlib import Path

from engine.partial_files import STALE_PART_S, is_stale_part, remove_stale_parts


def _aged(path: Path, seconds: float) -> Path:
    path.write_bytes(b"x")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_only_old_regular_part_files_are_stale(tmp_path: Path) -> None:
    old = _aged(tmp_path / ".loracle-abc.part", STALE_PART_S + 60)
    fresh = _aged(tmp_path / ".loracle-def.part", 5)
    other = _aged(tmp_path / "model.part", STALE_PART_S + 60)  # not a name the downloader writes
    link = tmp_path / ".loracle-link.part"
    link.symlink_to(old)
    assert is_stale_part(old) and not is_stale_part(fresh) and not is_stale_part(other)
    assert not is_stale_part(link)
    assert remove_stale_parts(tmp_path) == [old]
    assert fresh.exists() and other.exists() and link.is_symlink()
