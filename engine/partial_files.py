"""The part files a download writes before renaming them into place, and when one left
behind by a killed process may be removed. One home for both the downloader, which
creates them, and the library scan, which sweeps them.

A live download writes at least every `civitai_timeout_s` (its socket read timeout) or
gives up and deletes its file, so one untouched for an hour belongs to no live download,
on this machine or another sharing the folder. Only that exact name pattern is removed.
"""

from __future__ import annotations

import re
import stat
import time
from pathlib import Path

PART_PREFIX, PART_SUFFIX = ".loracle-", ".part"
STALE_PART_S = 3600.0
_PART_NAME = re.compile(re.escape(PART_PREFIX) + r"[^/]+" + re.escape(PART_SUFFIX))


def is_part_name(filename: str) -> bool:
    return _PART_NAME.fullmatch(filename) is not None


def is_stale_part(path: Path, *, older_than: float = STALE_PART_S) -> bool:
    """A regular file (not a link) with a part file's name, untouched for `older_than` seconds."""
    if not is_part_name(path.name):
        return False
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime > older_than


def remove_stale_parts(folder: Path, *, older_than: float = STALE_PART_S) -> list[Path]:
    """Delete the stale part files directly in `folder`; returns the ones removed."""
    removed: list[Path] = []
    for part in folder.glob(PART_PREFIX + "*" + PART_SUFFIX):
        if not is_stale_part(part, older_than=older_than):
            continue
        try:
            part.unlink()
        except OSError:
            continue  # gone already, or not ours to delete
        removed.append(part)
    return removed
