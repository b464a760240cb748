"""Which front-end process a job belongs to, and whether that process still lives.

The bot and a one-off `loracle draw` share the job table. A job is only any use to the
process that can deliver its result: a CLI job cut off by Ctrl-C or `kill` has nobody left
to print it to, so re-running it in the bot would draw for no one. Each job row records
its owner — the front end's kind plus enough to recognise the very process (host, boot,
pid and the pid's start time, since pids are reused) — and start-up recovery re-runs only
the jobs of its own kind and fails those of a dead process of another kind.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Owner:
    kind: str  # "bot", "cli", ...: the front end, which alone can deliver the result
    pid: int
    host: str
    boot: str | None  # Linux boot id; None where there is no /proc
    started: int | None  # the process's start time in clock ticks since boot, if known
    # A file this process holds an flock on for its whole life. The kernel drops the lock
    # when the process dies, however it dies, and the data dir is shared: so this works
    # across containers (`docker compose run loracle draw` beside the bot), where hostnames
    # and pid namespaces differ and the pid says nothing.
    lock: str | None = None

    @classmethod
    def current(cls, kind: str, lock_dir: Path | None = None) -> Owner:
        pid = os.getpid()
        lock = None if lock_dir is None else _hold_lock(kind, Path(lock_dir).resolve())
        return cls(
            kind=kind, pid=pid, host=socket.gethostname(), boot=_boot_id(), started=_proc_stat(pid)[1], lock=lock
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Owner | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                kind=str(data["kind"]),
                pid=int(data["pid"]),
                host=str(data.get("host") or ""),
                boot=data.get("boot"),
                started=data.get("started"),
                lock=data.get("lock"),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def is_alive(self) -> bool:
        """False only when this process is known to be gone. A process on another host
        (or a pid namespace we cannot see into) counts as alive: not ours to judge."""
        if self.lock is not None:
            held = _lock_held(Path(self.lock))
            if held is not None:
                return held
        if self.host != socket.gethostname():
            return True
        boot = _boot_id()
        if self.boot is not None and boot is not None and self.boot != boot:
            return False  # the machine rebooted since
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, under another user
        state, started = _proc_stat(self.pid)
        if state in ("Z", "X"):
            return False  # killed, only not yet reaped by its parent
        # A different start time: the pid was reused by a newer process.
        return self.started is None or started is None or started == self.started


_HELD: dict[tuple[str, Path], tuple[str, int]] = {}  # this process's locks: path, fd


def _hold_lock(kind: str, lock_dir: Path) -> str | None:
    """Create and lock this process's owner file (once per kind and folder); None if the
    platform or the folder does not allow it."""
    try:
        import fcntl
    except ImportError:  # Windows: the pid checks alone
        return None
    held = _HELD.get((kind, lock_dir))
    if held is not None:
        return held[0]
    path = lock_dir / f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}.lock"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        for old in lock_dir.glob("*.lock"):  # of processes gone since: unlocked, so removed
            _lock_held(old)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return None
    _HELD[(kind, lock_dir)] = (str(path), fd)  # kept open until the process ends
    return str(path)


def _lock_held(path: Path) -> bool | None:
    """True while the owner holds `path`; False once it is gone (the file, left behind by a
    killed process, is removed); None where it cannot be told."""
    if any(held == str(path) for held, _ in _HELD.values()):
        return True
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False  # removed by whoever found its owner dead
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None
        with contextlib.suppress(OSError):
            path.unlink()
        return False
    finally:
        os.close(fd)


@functools.cache
def _boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str | None, int | None]:
    """The process's state letter and start time (clock ticks since boot), where /proc has them."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime)
    except (IndexError, ValueError):
        return None, None
