"""The running bot's sign of life: <data dir>/heartbeat, rewritten every ~30 s.

`loracle health` (the container healthcheck) runs in another process and cannot ask the
bot anything, so the bot leaves a small JSON file whose age and content say whether it is
connected to Discord. It is written only while the gateway session is ready, so a bot
stuck reconnecting goes stale and the healthcheck reports it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.atomic import write_text_atomic

log = logging.getLogger(__name__)

FILENAME = "heartbeat"
INTERVAL_S = 30.0


def heartbeat_path(data_root: Path) -> Path:
    return data_root / FILENAME


def write_heartbeat(path: Path, state: dict[str, Any]) -> None:
    """Atomically replace the heartbeat file, so the reader never sees half of it."""
    write_text_atomic(path, json.dumps({**state, "time": time.time(), "pid": os.getpid()}))


def read_heartbeat(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Heartbeat:
    def __init__(self, path: Path, state: Callable[[], dict[str, Any] | None], interval: float = INTERVAL_S) -> None:
        self.path = path
        self._state = state
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        # The periodic beat and on_ready/on_resumed may beat at the same moment: one at a
        # time, so an older state never lands after a newer one.
        self._lock = asyncio.Lock()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loracle-heartbeat")

    async def beat(self) -> bool:
        """Write one heartbeat if the bot is ready; True if written."""
        async with self._lock:
            state = self._state()
            if state is None:
                return False
            try:
                await asyncio.to_thread(write_heartbeat, self.path, state)
            except OSError:
                log.warning("could not write the heartbeat file %s", self.path, exc_info=True)
                return False
            return True

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Stop beating and remove the file: a stopped bot is unhealthy at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            log.warning("could not remove the heartbeat file %s", self.path, exc_info=True)
