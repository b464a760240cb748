"""Exactly what the bot uses of the engine, written down as Protocols.

`engine.api.Engine` satisfies `EnginePort`; tests use `tests.bot.fakes.FakeEngine`.
Listing the surface here keeps the bot honest about its dependencies and lets it be built
and tested while engine modules are still being written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.admin_settings import Limits
    from engine.answers import FamilyCheck, LoraInfo, ModelSummary
    from engine.i18n import Message
    from engine.requests import DrawRequest
    from engine.settings import Settings


class EntryLike(Protocol):
    """The parts of `engine.library.LibraryEntry` the bot reads."""

    name: str
    category: Any  # engine.kinds.Category (a StrEnum)
    kind: Any  # engine.kinds.FileKind
    architecture: Any  # engine.kinds.Architecture
    rel_path: str
    size: int
    sha256: str | None
    error: str | None
    nsfw: bool
    enabled: bool
    weight_override: float | None

    @property
    def label(self) -> str: ...


class ScanReportLike(Protocol):
    added: list[str]
    updated: list[str]
    removed: list[str]
    unchanged: int
    problems: list[Any]  # items with .rel_path and .message

    def summary(self) -> str: ...


class JobHandlePort(Protocol):
    """`engine.queue.handle.JobHandle`."""

    @property
    def id(self) -> str: ...

    @property
    def position(self) -> int | None: ...

    def events(self) -> AsyncIterator[Any]: ...

    async def result(self) -> Any: ...

    def cancel(self) -> bool: ...


class QueueEntryLike(Protocol):
    job: Any  # engine.queue.job.QueuedJob: .id, .user_id, .request (dict)
    position: int


class QueuePort(Protocol):
    """`engine.queue.worker.JobQueue`, as far as admins, `/queue` and stopping need it."""

    @property
    def paused(self) -> bool: ...

    @property
    def busy(self) -> bool: ...

    @property
    def size(self) -> int: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    async def stop(self) -> None: ...  # no new jobs; the running one finishes; waiting ones kept

    def clear(self) -> int: ...

    def jobs_of(self, user_id: str) -> Sequence[QueueEntryLike]: ...


class AdminPort(Protocol):
    """`engine.admin_settings.AdminSettings`."""

    def limits(self) -> Limits: ...

    def set_limits(self, **values: int | None) -> Limits: ...

    def default_checkpoint(self) -> str | None: ...

    def set_default_checkpoint(self, name: str | None) -> None: ...

    def blocklist(self, guild_id: str | None) -> list[str]: ...

    def set_blocklist(self, guild_id: str, words: list[str]) -> list[str]: ...


class EnginePort(Protocol):
    """`engine.api.Engine`. Synchronous methods may touch SQLite: call them in a thread."""

    settings: Settings
    admin: AdminPort
    queue: QueuePort | None
    recovered: list[Any]  # JobHandles re-queued after a restart

    # library (sync)
    def entries(self, category: Any = None) -> list[Any]: ...

    def find(self, name: str, category: Any = None) -> Any: ...

    def summary(self, entry: Any) -> ModelSummary: ...

    def is_nsfw(self, entry: Any) -> bool: ...  # an admin's flag or CivitAI's (cached)

    def set_entry(self, name: str, *, by: str | None = None, **values: Any) -> Any: ...

    def suggest_loras(
        self, checkpoint: str | None, text: str, limit: int = 25, *, allow_nsfw: bool = True
    ) -> list[tuple[Any, Any]]: ...

    def set_limits(self, **values: int | None) -> Limits: ...

    def job_request(self, job_id: str) -> DrawRequest | None: ...

    # library (async)
    async def scan(self, *, civitai: bool = True, progress: Callable[[str], None] | None = None) -> Any: ...

    async def remove(self, name: str) -> Any: ...

    async def refresh(self, name: str | None = None) -> list[Message]: ...

    async def add_from_civitai(
        self, ref_text: str, *, progress: Callable[[int, int | None], None] | None = None
    ) -> Any: ...

    async def add_from_path(self, path_text: str) -> Any: ...

    # knowledge
    async def lora_info(self, name: str) -> LoraInfo: ...

    async def family_check(self, checkpoint: str, loras: list[str]) -> FamilyCheck: ...

    # drawing
    async def submit(self, request: DrawRequest) -> JobHandlePort: ...

    def cancel(self, job_id: str, *, user_id: str, is_admin: bool = False) -> bool: ...
