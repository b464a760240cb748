"""The seam between the bot and the engine: exactly what the bot uses, as Protocols.

Every bot module types the engine as `EnginePort`, never as `engine.api.Engine`: the bot
depends on this list, not on the engine's whole surface. `engine.api.Engine` satisfies it
(mypy checks `_conformance` below); the tests' `tests.bot.fakes.FakeEngine` satisfies it
too (tests/bot/discord_app/test_port.py checks signatures and what the calls return).
The types named here are the engine's own value types (entries, answers, requests,
events); only the objects that do things are narrowed to Protocols.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from engine.admin_settings import Limits
    from engine.answers import FamilyCheck, LoraInfo, ModelSummary
    from engine.api import Engine
    from engine.checkpoint_types import CheckpointInfo
    from engine.i18n import Message
    from engine.images.types import ImageInfo, LikeRequest, StoredImage
    from engine.indexing import IndexProgress
    from engine.kinds import Category
    from engine.library import LibraryEntry, ScanReport
    from engine.queue.handle import JobEvent, JobHandle
    from engine.queue.job import QueuedJob
    from engine.queue.job_queue import JobQueue, QueueEntry
    from engine.queue.lanes import ClusterStatus
    from engine.requests import DrawRequest, DrawResult
    from engine.settings import Settings
    from engine.user_defaults import UserDefaults
    from engine.verdicts import Verdict


@runtime_checkable
class JobHandlePort(Protocol):
    """`engine.queue.handle.JobHandle`: one submitted job."""

    @property
    def id(self) -> str: ...

    @property
    def job(self) -> QueuedJob: ...  # .user_id, .request (JSON), .origin (the bot's own)

    @property
    def position(self) -> int | None: ...

    def events(self) -> AsyncIterator[JobEvent]: ...

    async def result(self) -> DrawResult: ...

    def cancel(self) -> bool: ...


@runtime_checkable
class QueuePort(Protocol):
    """`engine.queue.job_queue.JobQueue`, as far as admins, `/queue` and stopping need it."""

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

    def jobs_of(self, user_id: str) -> Sequence[QueueEntry]: ...


@runtime_checkable
class AdminPort(Protocol):
    """`engine.admin_settings.AdminSettings`."""

    def limits(self) -> Limits: ...

    def set_limits(self, **values: int | None) -> Limits: ...

    def default_checkpoint(self) -> str | None: ...

    def set_default_checkpoint(self, name: str | None) -> None: ...

    def blocklist(self, scope: str | None) -> list[str]: ...

    def set_blocklist(self, scope: str, words: list[str]) -> list[str]: ...


@runtime_checkable
class IndexingPort(Protocol):
    """`engine.indexing.Indexing`: whether the library is being scanned, and how far."""

    @property
    def running(self) -> bool: ...

    def progress(self) -> IndexProgress: ...


@runtime_checkable
class EnginePort(Protocol):
    """`engine.api.Engine`. Synchronous methods may touch SQLite: call them in a thread."""

    @property
    def settings(self) -> Settings: ...

    @property
    def admin(self) -> AdminPort: ...

    @property
    def queue(self) -> QueuePort | None: ...  # None until the engine's worker started

    @property
    def recovered(self) -> Sequence[JobHandlePort]: ...  # re-queued after a restart

    @property
    def indexing(self) -> IndexingPort: ...  # requests naming files not indexed yet wait for it

    # library (sync)
    def entries(self, category: Category | str | None = None) -> Sequence[LibraryEntry]: ...

    def find(self, name: str, category: Category | str | None = None) -> LibraryEntry: ...

    def summary(self, entry: LibraryEntry) -> ModelSummary: ...

    def is_nsfw(self, entry: LibraryEntry) -> bool: ...  # an admin's flag or CivitAI's (cached)

    def may_list(self, entry: LibraryEntry, *, allow_nsfw: bool) -> bool: ...

    def set_entry(self, name: str, *, by: str | None = None, **values: Any) -> LibraryEntry: ...

    def suggest_loras(
        self, checkpoint: str | None, text: str, limit: int = 25, *, allow_nsfw: bool = True
    ) -> Sequence[tuple[LibraryEntry, Verdict | None]]: ...

    def set_limits(self, **values: int | None) -> Limits: ...

    def job_request(self, job_id: str) -> DrawRequest | None: ...

    # library (async)
    async def scan(
        self, *, civitai: bool = True, progress: Callable[[str], None] | None = None
    ) -> ScanReport: ...

    async def remove(self, name: str) -> LibraryEntry: ...

    async def refresh(self, name: str | None = None) -> list[Message]: ...

    async def add_from_civitai(
        self, ref_text: str, *, progress: Callable[[int, int | None], None] | None = None
    ) -> LibraryEntry: ...

    async def add_from_path(self, path_text: str) -> LibraryEntry: ...

    # knowledge
    async def lora_info(self, name: str, *, allow_nsfw: bool = True) -> LoraInfo: ...

    async def family_check(self, checkpoint: str, loras: list[str], *, allow_nsfw: bool = True) -> FamilyCheck: ...

    async def checkpoint_info(self, name: str, *, allow_nsfw: bool = True) -> CheckpointInfo: ...

    # drawing
    async def submit(self, request: DrawRequest) -> JobHandlePort: ...

    def cancel(self, job_id: str, *, user_id: str, is_admin: bool = False) -> bool: ...

    # the image loop (issue 10): pictures in, requests out
    async def store_image(self, data: bytes) -> StoredImage: ...  # ImageInputError for unusable bytes

    def upscalers(self) -> list[str]: ...

    async def image_info(self, data: bytes, *, checkpoint: str | None = None, allow_nsfw: bool = True) -> ImageInfo: ...

    async def like_request(self, data: bytes, *, user_id: str, allow_nsfw: bool = True) -> LikeRequest: ...

    async def vary_request(self, data: bytes, *, strength: float, user_id: str, allow_nsfw: bool = True) -> LikeRequest: ...

    async def upscale_request(
        self,
        data: bytes,
        *,
        user_id: str,
        scale: float | None = None,
        upscaler: str | None = None,
        allow_nsfw: bool = True,
    ) -> LikeRequest: ...

    async def job_image(self, job_id: str, index: int = 0) -> bytes | None: ...

    # per-user defaults (sync: SQLite)
    def user_defaults(self, user_id: str) -> UserDefaults: ...

    def set_user_defaults(self, user_id: str, **values: Any) -> UserDefaults: ...

    def clear_user_defaults(self, user_id: str) -> None: ...

    # GPU workers (local or Ray)
    def drawing_available(self) -> bool: ...  # False while the cluster cannot be reached

    def cluster_status(self) -> ClusterStatus: ...


if TYPE_CHECKING:
    # mypy checks that the engine's own classes fit the seam; a changed engine signature
    # fails here, not in a Discord interaction.
    def _conformance(engine: Engine, queue: JobQueue, handle: JobHandle) -> tuple[EnginePort, QueuePort, JobHandlePort]:
        return engine, queue, handle
