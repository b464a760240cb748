"""A fake engine for bot tests: the `bot.discord_app.port.EnginePort` surface, answered
with the engine's real dataclasses (DrawRequest/DrawPlan/DrawResult, LoraInfo,
FamilyCheck), the real weight policy and the real admin settings (SQLite), over a small
in-memory library. Jobs are driven by the test (`FakeJob.start/step/finish/fail`) or run
to the end at once (`FakeEngine(auto=True)`).

The real Engine is used for end-to-end draws (tests/bot/discord_app/test_real_engine.py);
this fake covers what the real one cannot produce cheaply: a job that waits in the queue
until the test says so, a GPU failure, an unexpected exception.
"""

from __future__ import annotations

import asyncio
import difflib
import random
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from engine.admin_settings import AdminSettings
from engine.answers import FamilyCheck, LoraInfo, LoraVerdict, ModelSummary, Suitability
from engine.checkpoint_types import CheckpointInfo, ConventionInfo, ParentInfo, Sibling, SuitedLora
from engine.content_rules import NSFW_HERE
from engine.db import ThreadLocalDB
from engine.errors import (
    IncompatibleError,
    JobError,
    JobFailedError,
    LibraryError,
    LimitError,
    QueueFullError,
    RequestError,
    UnknownNameError,
)
from engine.families import default_table
from engine.i18n import Message, Text
from engine.indexing import Indexing
from engine.kinds import Architecture, Category, FileKind
from engine.planning.lora_weights import LoraStatus, decide_weight
from engine.planning.trigger_words import missing_trigger_warning, missing_triggers
from engine.png_info import LoraUse, format_parameters, save_png
from engine.queue.failures import OUT_OF_MEMORY, PAUSED, SHUTDOWN_KEPT, STOPPING
from engine.queue.handle import Cancelled, Done, Failed, Queued, Started, Step
from engine.queue.lanes import ClusterStatus, WorkerStatus
from engine.queue.scheduler import QUEUE_FULL_MANY, QUEUE_FULL_ONE
from engine.requests import (
    DrawPlan,
    DrawRequest,
    DrawResult,
    GenerationParams,
    PlannedCheckpoint,
    PlannedLora,
)
from engine.settings import Settings
from engine.text_input import clean_name, clean_prompt
from tests.bot.fake_images import FakeImageLoop

VERDICT_ORDER = ["exact", "same_family", "other_family", "unknown", "incompatible"]
FAMILIES = {"Illustrious": "Illustrious", "NoobAI": "Illustrious", "Pony": "Pony", "SDXL 1.0": "SDXL"}
ARCH_OF_BASE = {"SD 1.5": Architecture.SD1, "Flux.1 D": Architecture.FLUX}

_NSFW = Text("“{name}” is marked NSFW and can only be used in age-restricted channels.", "「{name}」僅限年齡限制頻道。")
_BLOCKED = Text("Your prompt contains “{word}”, which this server does not allow.", "您的提示詞包含「{word}」。")
_EMPTY = Text("The prompt is empty.", "提示詞是空的。")
_NOT_SDXL = Text("“{name}” is a {arch} checkpoint; Loracle draws with SDXL checkpoints only.", "「{name}」是 {arch} 模型。")
_INCOMPATIBLE = Text(
    "“{name}” is a {lora_arch} LoRA and “{checkpoint}” is a {ckpt_arch} checkpoint: it cannot be applied.",
    "「{name}」無法套用。",
)
_CANCEL_NOT_YOURS = Text("Only the person who asked for this image (or an admin) can cancel it.", "只有提出者可以取消。")
_OTHER = Text("{name}: trained on {lora_family}, this is a {ckpt_family} checkpoint; results may differ.", "{name}：不同系列。")
_BAD_WEIGHT = Text("weight must be between {low} and {high}", "權重必須介於 {low} 和 {high}")
_NOT_IN_DATA = Text("“{path}” is not a file inside the data folder.", "「{path}」不是資料夾內的檔案。")
_EXPLAIN = {
    "exact": {"en": "This LoRA was trained on this very checkpoint.", "zh-TW": "這個 LoRA 就是用這個模型訓練的。"},
    "same_family": {"en": "Same lineage: it should work well.", "zh-TW": "同一血統：效果應該很好。"},
    "other_family": {"en": "Same architecture, different lineage: it runs, results may differ.", "zh-TW": "架構相同但血統不同：可以跑，但效果可能不同。"},
    "unknown": {"en": "Not enough information; an admin can set the base model.", "zh-TW": "資訊不足；管理員可以設定基礎模型。"},
    "incompatible": {"en": "Different architectures: the layers do not fit.", "zh-TW": "架構不同：網路層對不上。"},
}
_EVIDENCE = Text("CivitAI says the base model is {base}.", "CivitAI 表示基礎模型是 {base}。")


@dataclass
class FakeEntry:
    name: str
    category: Category
    base_model: str | None
    architecture: Architecture = Architecture.SDXL
    kind: FileKind = FileKind.LORA
    trained_on: str | None = None
    nsfw: bool | None = None  # set by an admin (either way); None: CivitAI decides
    civitai_nsfw: bool = False  # CivitAI marks the model NSFW (the real engine's cached answer)
    enabled: bool = True
    hash_pending: bool = False  # listed by a running scan, not hashed yet
    weight_override: float | None = None
    display_name: str | None = None
    trigger_words: list[str] = field(default_factory=list)
    size: int = 144_000_000
    error: str | None = None

    @property
    def label(self) -> str:
        return self.display_name or self.name

    @property
    def rel_path(self) -> str:
        folder = "models" if self.category == Category.CHECKPOINT else "loras"
        return f"{folder}/{self.name}.safetensors"

    @property
    def sha256(self) -> str:
        return (self.name.encode().hex() * 8)[:64].upper()

    @property
    def family(self) -> str | None:
        return FAMILIES.get(self.base_model or "")


def default_library() -> list[FakeEntry]:
    C, L = Category.CHECKPOINT, Category.LORA
    return [
        FakeEntry("nova_orange", C, "Illustrious", kind=FileKind.CHECKPOINT, size=6_900_000_000),
        FakeEntry("autismmix", C, "Pony", kind=FileKind.CHECKPOINT, size=6_900_000_000),
        FakeEntry("dreamshaper8", C, "SD 1.5", architecture=Architecture.SD1, kind=FileKind.CHECKPOINT),
        FakeEntry("secret_mix", C, "Illustrious", kind=FileKind.CHECKPOINT, nsfw=True),
        FakeEntry("nova_style", L, "Illustrious", trained_on="nova_orange", trigger_words=["nova style"]),
        FakeEntry("detail_slider", L, "Illustrious", weight_override=0.8, trigger_words=["detailed"]),
        FakeEntry("pony_eyes", L, "Pony"),
        FakeEntry("mystery", L, None),
        FakeEntry("sd15_lineart", L, "SD 1.5", architecture=Architecture.SD1),
        FakeEntry("flux_glow", L, "Flux.1 D", architecture=Architecture.FLUX),
        FakeEntry("spicy", L, "Illustrious", nsfw=True),
        FakeEntry("retired", L, "Illustrious", enabled=False),
    ]


def verdict(lora: FakeEntry, checkpoint: FakeEntry) -> str:
    if lora.architecture != checkpoint.architecture:
        return "incompatible"
    if lora.trained_on == checkpoint.name:
        return "exact"
    if lora.family is None or checkpoint.family is None:
        return "unknown"
    return "same_family" if lora.family == checkpoint.family else "other_family"


@dataclass
class FakeScanReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    problems: list[Any] = field(default_factory=list)
    notes: list[Message] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.added)} added"


@dataclass
class FakeProblem:
    rel_path: str
    message: str


Waiter = Callable[..., Awaitable[Any]]  # (awaitable, *, reason) like simcord.Env.external_wait


async def _plain_wait(awaitable: Awaitable[Any], *, reason: str) -> Any:
    return await awaitable


class FakeHandle:
    """Like engine.queue.handle.JobHandle: events() ends after the terminal event."""

    def __init__(self, owner: FakeJob, waiter: Waiter) -> None:
        self.owner = owner
        self.job = owner.job  # the QueuedJob-like view: id, user_id, request (JSON), origin
        self._waiter = waiter
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._future: asyncio.Future[Any] = self._loop.create_future()
        self._future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.position: int | None = None

    @property
    def id(self) -> str:
        return self.owner.id

    def post(self, event: Any) -> None:
        if threading.get_ident() != self._loop_thread:
            # Like JobHandle: events may come from any thread (the bot cancels in one).
            self._loop.call_soon_threadsafe(self.post, event)
            return
        if isinstance(event, Queued):
            self.position = event.position
        elif isinstance(event, (Started, Step)):
            self.position = 0
        elif isinstance(event, (Done, Failed, Cancelled)):
            self.position = None
            if not self._future.done():
                if isinstance(event, Done):
                    self._future.set_result(event.result)
                elif isinstance(event, Failed):
                    self._future.set_exception(event.error)
                else:
                    from engine.errors import JobCancelledError

                    self._future.set_exception(JobCancelledError())
        self._events.put_nowait(event)

    async def events(self):
        while True:
            if self._events.empty():
                # Waiting for the test to move the job: tell SimCord this wait is intended.
                event = await self._waiter(self._events.get(), reason="fake engine job")
            else:
                event = self._events.get_nowait()
            yield event
            if isinstance(event, (Done, Failed, Cancelled)):
                return

    async def result(self) -> Any:
        return await asyncio.shield(self._future)

    def cancel(self) -> bool:
        return self.owner.engine.queue.cancel(self.id)


@dataclass
class FakeQueuedJob:
    id: str
    user_id: str
    request: dict[str, Any]
    origin: dict[str, Any] | None = None


class FakeJob:
    """One submitted job, moved along by the test."""

    def __init__(self, engine: FakeEngine, plan: DrawPlan, request: DrawRequest) -> None:
        self.engine = engine
        self.id = uuid.uuid4().hex
        self.plan = plan
        self.request = request
        self.user_id = request.user_id
        self.job = FakeQueuedJob(self.id, request.user_id, request.to_json(), request.origin)
        self.handle = FakeHandle(self, engine.waiter)
        self.state = "queued"

    @property
    def request_json(self) -> dict[str, Any]:
        return self.request.to_json()

    def start(self) -> None:
        self.engine.queue.start(self)

    def step(self, i: int, n: int | None = None) -> None:
        self.handle.post(Step(i, n or self.plan.params.steps))

    def finish(self, *, seconds: float = 1.25) -> DrawResult:
        result = self.engine.make_result(self, seconds=seconds)
        self.engine.queue.finished(self)
        self.state = "done"
        self.handle.post(Done(result))
        return result

    def fail(self, error: Exception | None = None) -> None:
        self.engine.queue.finished(self)
        self.state = "failed"
        self.handle.post(Failed(error or JobFailedError(OUT_OF_MEMORY)))

    def run_to_end(self) -> DrawResult:
        self.start()
        for i in range(1, self.plan.params.steps + 1):
            self.step(i)
        return self.finish()


class FakeQueue:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.waiting: list[FakeJob] = []
        self.current: FakeJob | None = None
        self.paused = False
        self.stopping = False
        self.cancelled: list[str] = []
        self._idle: asyncio.Event | None = None

    @property
    def busy(self) -> bool:
        return self.current is not None

    @property
    def size(self) -> int:
        return len(self.waiting)

    def add(self, job: FakeJob) -> None:
        if self.stopping:
            raise QueueFullError(STOPPING)
        if self.paused:
            raise QueueFullError(PAUSED)
        count = sum(1 for j in self.waiting if j.user_id == job.user_id)
        if count >= self.cap:
            raise QueueFullError(QUEUE_FULL_ONE if count == 1 else QUEUE_FULL_MANY, count=count, cap=self.cap)
        self.waiting.append(job)
        job.handle.post(Queued(len(self.waiting)))

    def start(self, job: FakeJob) -> None:
        self.waiting.remove(job)
        self.current = job
        job.state = "running"
        job.handle.post(Started())
        self._announce()

    def finished(self, job: FakeJob) -> None:
        if self.current is job:
            self.current = None
            if self._idle is not None:
                self._idle.set()
        elif job in self.waiting:
            self.waiting.remove(job)
            self._announce()

    def _announce(self) -> None:
        for index, waiting in enumerate(self.waiting, start=1):
            if waiting.handle.position != index:
                waiting.handle.post(Queued(index))

    def cancel(self, job_id: str) -> bool:
        for job in [self.current, *self.waiting]:
            if job is not None and job.id == job_id:
                self.finished(job)
                job.state = "cancelled"
                self.cancelled.append(job_id)
                job.handle.post(Cancelled())
                return True
        return False

    async def stop(self) -> None:
        """Like JobQueue.stop: refuse new jobs, fail the waiting ones (kept for the next
        start), wait for the running one (the test finishes it)."""
        self.stopping = True
        jobs, self.waiting = self.waiting, []
        for job in jobs:
            job.handle.post(Failed(JobError(SHUTDOWN_KEPT)))
        if self.current is not None:
            # A plain wait: stopping runs from a signal handler, outside SimCord's bot-owned work.
            self._idle = asyncio.Event()
            await self._idle.wait()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def clear(self) -> int:
        jobs, self.waiting = self.waiting, []
        for job in jobs:
            job.state = "cancelled"
            job.handle.post(Cancelled())
        return len(jobs)

    def jobs_of(self, user_id: str) -> list[Any]:
        entries = []
        if self.current is not None and self.current.user_id == user_id:
            entries.append(_Entry(self.current.job, 0))
        entries += [_Entry(j.job, i) for i, j in enumerate(self.waiting, start=1) if j.user_id == user_id]
        return entries


@dataclass(frozen=True)
class _Entry:
    job: Any
    position: int


class FakeEngine(FakeImageLoop):
    """Implements bot.discord_app.port.EnginePort (the image loop: tests/bot/fake_images.py)."""

    def __init__(self, settings: Settings, *, auto: bool = False, library: list[FakeEntry] | None = None) -> None:
        settings.ensure_dirs()
        self.settings = settings
        self.auto = auto
        self.library = library if library is not None else default_library()
        self.dbs = ThreadLocalDB(settings.db_path)
        self.admin = AdminSettings(self.dbs, settings)
        self.queue: FakeQueue | None = FakeQueue(settings.queue_per_user)
        self.jobs: list[FakeJob] = []
        self.recovered: list[Any] = []
        self.indexing = Indexing()
        self.waiter: Waiter = _plain_wait
        self.calls: list[tuple[str, Any]] = []
        self.failures: dict[str, BaseException] = {}
        self.download_steps = [(0, 300), (150, 300), (300, 300)]
        self.noisy_images = False  # incompressible pictures, for upload-limit tests
        self.civitai_by_hash: dict[str, str] = {}  # hash (lower case) -> CivitAI page, for missing resources

    def _maybe_fail(self, method: str) -> None:
        error = self.failures.get(method)
        if error is not None:
            raise error

    # -- library --------------------------------------------------------------------
    def entries(self, category: Category | str | None = None) -> list[FakeEntry]:
        self._maybe_fail("entries")
        return [e for e in self.library if category is None or e.category == Category(str(category))]

    def find(self, name: str, category: Category | str | None = None) -> FakeEntry:
        key = clean_name(name).lower()
        candidates = self.entries(category)
        for entry in candidates:
            if key in (entry.name.lower(), entry.label.lower()):
                return entry
        names = [e.name for e in candidates]
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
        raise UnknownNameError(str(category or "model"), clean_name(name), close)

    def usable(self, name: str, category: Category) -> FakeEntry:
        entry = self.find(name, category)
        if not entry.enabled:
            raise LibraryError(Text("“{name}” is disabled by an admin.", "「{name}」已被管理員停用。"), name=entry.name)
        return entry

    def _refuse_nsfw(self, entries: list[FakeEntry], allow_nsfw: bool) -> None:
        """Like engine.content_rules.refuse_nsfw."""
        for entry in entries:
            if not allow_nsfw and self.is_nsfw(entry):
                raise RequestError(NSFW_HERE, name=entry.label)

    def is_nsfw(self, entry: FakeEntry) -> bool:
        """Like Engine.is_nsfw: an admin's word, else CivitAI's."""
        return entry.nsfw if entry.nsfw is not None else entry.civitai_nsfw

    def may_list(self, entry: FakeEntry, *, allow_nsfw: bool) -> bool:
        """Like Engine.may_list: outside NSFW places, nothing NSFW or not hashed yet."""
        return allow_nsfw or not (entry.hash_pending or self.is_nsfw(entry))

    def summary(self, entry: FakeEntry) -> ModelSummary:
        return ModelSummary(
            name=entry.name,
            label=entry.label,
            category=str(entry.category),
            kind=str(entry.kind),
            architecture=str(entry.architecture),
            base_model=entry.base_model,
            base_model_source="civitai" if entry.base_model else None,
            family=entry.family.lower() if entry.family else None,
            family_label=entry.family,
        )

    def set_entry(self, name: str, *, by: str | None = None, **values: Any) -> FakeEntry:
        entry = self.find(name)
        self.calls.append(("set_entry", (name, by, values)))
        if values.get("weight") is not None:
            weight = float(values["weight"])
            low, high = self.settings.lora_weight_min, self.settings.lora_weight_max
            if not low <= weight <= high:
                raise LimitError(_BAD_WEIGHT, low=low, high=high)
        for key, value in values.items():
            attr = {"weight": "weight_override", "base_model": "base_model"}.get(key, key)
            setattr(entry, attr, value)
        return entry

    def suggest_loras(
        self, checkpoint: str | None, text: str, limit: int = 25, *, allow_nsfw: bool = True
    ) -> list[tuple[FakeEntry, str | None]]:
        self._maybe_fail("suggest_loras")
        ckpt = None
        name = checkpoint or self.admin.default_checkpoint()
        if name:
            try:
                ckpt = self.find(name, Category.CHECKPOINT)
            except LibraryError:
                ckpt = None
        key = clean_name(text).lower()
        ranked = []
        for entry in self.entries(Category.LORA):
            if not entry.enabled or not self.may_list(entry, allow_nsfw=allow_nsfw):
                continue
            if key and key not in entry.name.lower() and key not in entry.label.lower():
                continue
            v = verdict(entry, ckpt) if ckpt else None
            if v == "incompatible":
                continue
            ranked.append((VERDICT_ORDER.index(v) if v else len(VERDICT_ORDER), entry.label.lower(), entry, v))
        ranked.sort(key=lambda item: item[:2])
        return [(entry, v) for _, _, entry, v in ranked[:limit]]

    async def scan(self, *, civitai: bool = True, progress: Callable[[str], None] | None = None) -> FakeScanReport:
        self._maybe_fail("scan")
        for entry in self.library:
            if progress:
                progress(entry.rel_path)
        return FakeScanReport(
            added=["loras/new_one.safetensors"],
            unchanged=len(self.library),
            problems=[FakeProblem("loras/old.ckpt", "pickled files are refused, never loaded")],
        )

    async def remove(self, name: str) -> FakeEntry:
        entry = self.find(name)
        self.library.remove(entry)
        return entry

    async def refresh(self, name: str | None = None) -> list[Message]:
        if name:
            self.find(name)
        self.calls.append(("refresh", name))
        return [Message.of(Text("CivitAI was asked about {count} file(s).", "已向 CivitAI 查詢 {count} 個檔案。"), count=1)]

    async def add_from_civitai(self, ref_text: str, *, progress: Callable[[int, int | None], None] | None = None) -> FakeEntry:
        self._maybe_fail("add_from_civitai")
        for done, total in self.download_steps:
            if progress:
                progress(done, total)
            await asyncio.sleep(0)
        digits = "".join(ch for ch in ref_text if ch.isdigit())[-6:]
        entry = FakeEntry(f"civitai_{digits}", Category.LORA, "Illustrious")
        self.library.append(entry)
        return entry

    async def add_from_path(self, path_text: str) -> FakeEntry:
        source = (self.settings.root / path_text).resolve()
        if self.settings.root not in source.parents or not source.exists():
            raise LibraryError(_NOT_IN_DATA, path=path_text)
        entry = FakeEntry(source.stem, Category.LORA, None)
        self.library.append(entry)
        return entry

    # -- knowledge ------------------------------------------------------------------
    async def lora_info(self, name: str, *, allow_nsfw: bool = True) -> LoraInfo:
        self._maybe_fail("lora_info")
        entry = self.find(name, Category.LORA)
        self._refuse_nsfw([entry], allow_nsfw)
        suits = [
            Suitability(c.name, c.family.lower() if c.family else None, c.family, verdict(entry, c))
            for c in self.entries(Category.CHECKPOINT)
        ]
        suits.sort(key=lambda s: VERDICT_ORDER.index(s.verdict))
        return LoraInfo(
            summary=self.summary(entry),
            sha256=entry.sha256,
            autov2=entry.sha256[:10],
            autov3=entry.sha256[:12],
            size=entry.size,
            rank=32,
            alpha=16.0,
            file=entry.rel_path,
            trigger_words=list(entry.trigger_words),
            trigger_source="civitai" if entry.trigger_words else None,
            recommended_weight=entry.weight_override if entry.weight_override is not None else 1.0,
            recommended_weight_source="admin" if entry.weight_override is not None else "default",
            civitai_url=f"https://civitai.com/models/1?modelVersionId={len(entry.name)}",
            civitai_name=f"{entry.name} — v1.0",
            preview_url="https://image.civitai.com/preview.jpeg",
            nsfw=self.is_nsfw(entry),
            enabled=entry.enabled,
            trained_on={"name": entry.trained_on, "sha256": None, "base_model": "Illustrious", "in_library": [entry.trained_on]}
            if entry.trained_on
            else None,
            top_tags=[("1girl", 120), ("solo", 80)],
            evidence=[Message.of(_EVIDENCE, base=entry.base_model or "?")],
            suits=suits,
        )

    async def family_check(self, checkpoint: str, loras: list[str], *, allow_nsfw: bool = True) -> FamilyCheck:
        self._maybe_fail("family_check")
        ckpt = self.find(checkpoint, Category.CHECKPOINT)
        entries = [self.find(name, Category.LORA) for name in loras]
        self._refuse_nsfw([ckpt, *entries], allow_nsfw)
        return FamilyCheck(
            checkpoint=self.summary(ckpt),
            loras=[
                LoraVerdict(
                    lora=self.summary(e),
                    verdict=verdict(e, ckpt),
                    evidence=[Message.of(_EVIDENCE, base=e.base_model or "?")],
                    explanation=_EXPLAIN[verdict(e, ckpt)],
                )
                for e in entries
            ],
        )

    async def checkpoint_info(self, name: str, *, allow_nsfw: bool = True) -> CheckpointInfo:
        """Like Engine.checkpoint_info: nova_orange is a merge CivitAI lists (one parent in
        the library, one not); other checkpoints say nothing of their type."""
        self._maybe_fail("checkpoint_info")
        entry = self.find(name, Category.CHECKPOINT)
        self._refuse_nsfw([entry], allow_nsfw)
        parents = []
        if entry.name == "nova_orange":
            pony = self.find("autismmix", Category.CHECKPOINT)
            parents = [
                ParentInfo("illustriousXL_v01.safetensors", "AB" * 32, "1234ABCD", "A", None, None, "Illustrious", "illustrious",
                           "https://civitai.com/models/795765?modelVersionId=889818", "Illustrious-XL — v0.1"),
                ParentInfo("autismmix.safetensors", pony.sha256, None, "B", pony.name, "sha256", "Pony", "pony"),
            ]
        family = default_table().family(entry.family.lower()) if entry.family else None
        loras = [
            (VERDICT_ORDER.index(v), e.label.lower(), SuitedLora(e.name, e.label, v, e.base_model, e.family))
            for e in self.entries(Category.LORA)
            if e.enabled and self.may_list(e, allow_nsfw=allow_nsfw) and (v := verdict(e, entry)) != "incompatible"
        ]
        return CheckpointInfo(
            summary=self.summary(entry),
            checkpoint_type="merge" if parents else "unknown",
            checkpoint_type_source="civitai" if parents else None,
            sha256=entry.sha256,
            autov2=entry.sha256[:10],
            file=entry.rel_path,
            size=entry.size,
            evidence=[Message.of(_EVIDENCE, base=entry.base_model or "?")],
            parents=parents,
            merge_tool="A1111 checkpoint merger" if parents else None,
            merge_method="Weighted sum" if parents else None,
            merge_multiplier=0.4 if parents else None,
            siblings=[
                Sibling(c.name, c.base_model, c.family.lower())
                for c in self.entries(Category.CHECKPOINT)
                if c is not entry and c.family and c.family == entry.family and self.may_list(c, allow_nsfw=allow_nsfw)
            ],
            loras=[item[2] for item in sorted(loras, key=lambda item: item[:2])],
            incompatible_loras=sum(1 for e in self.entries(Category.LORA) if verdict(e, entry) == "incompatible"),
            prompt_conventions=[
                ConventionInfo(c.kind, list(c.tags), c.text, c.source, c.base_model)
                for c in (family.prompt_conventions(entry.base_model) if family else ())
            ],
            civitai_url=f"https://civitai.com/models/2?modelVersionId={len(entry.name)}" if parents else None,
            civitai_name=f"{entry.name} — v1.0" if parents else None,
            v_prediction=False,
            zero_terminal_snr=False,
            has_vae=True,
            nsfw=self.is_nsfw(entry),
        )

    # -- drawing --------------------------------------------------------------------
    def plan(self, request: DrawRequest) -> DrawPlan:
        prompt = clean_prompt(request.prompt)
        if not prompt:
            raise RequestError(_EMPTY)
        limits = self.admin.limits()
        if len(prompt) > self.settings.max_prompt_chars:
            raise LimitError(Text("too long", "太長"))
        for word in self.admin.blocklist(request.scope):
            if word in prompt.lower():
                raise RequestError(_BLOCKED, word=word)
        name = request.checkpoint or self.admin.default_checkpoint() or "nova_orange"
        ckpt = self.usable(name, Category.CHECKPOINT)
        if self.is_nsfw(ckpt) and not request.allow_nsfw:
            raise RequestError(_NSFW, name=ckpt.label)
        if ckpt.architecture != Architecture.SDXL:
            raise RequestError(_NOT_SDXL, name=ckpt.label, arch=ckpt.architecture.label)
        planned, warnings = [], []
        for req in request.loras:
            entry = self.usable(req.name, Category.LORA)
            if self.is_nsfw(entry) and not request.allow_nsfw:
                raise RequestError(_NSFW, name=entry.label)
            v = verdict(entry, ckpt)
            decision = decide_weight(
                entry.name, req.weight, entry.weight_override, self.settings.lora_weight_min, self.settings.lora_weight_max
            )
            lora = PlannedLora(
                name=entry.name,
                label=entry.label,
                path=None,
                sha256=entry.sha256,
                autov3=entry.sha256[:12],
                requested_weight=req.weight,
                applied_weight=decision.applied,
                status=decision.status,
                verdict=v,
            )
            if v == "incompatible" and decision.status != LoraStatus.NOT_APPLIED:
                # like the planner: refused before anything is queued
                raise IncompatibleError(
                    _INCOMPATIBLE, name=entry.label, lora_arch=entry.architecture.label, checkpoint=ckpt.label, ckpt_arch="SDXL"
                )
            if decision.note:
                lora.warnings.append(decision.note)
            if v == "other_family":
                lora.warnings.append(
                    Message.of(_OTHER, name=entry.name, lora_family=entry.family, ckpt_family=ckpt.family)
                )
            missing = missing_triggers(prompt, entry.trigger_words)
            if missing and decision.status != LoraStatus.NOT_APPLIED:  # like the planner
                lora.warnings.append(missing_trigger_warning(entry.name, missing))
            warnings.extend(lora.warnings)
            planned.append(lora)
        steps = request.steps or min(self.settings.default_steps, limits.max_steps)
        if steps > limits.max_steps:
            raise LimitError(Text("steps must be between 1 and {high}", "步數必須介於 1 和 {high}"), high=limits.max_steps)
        width, height = request.width, request.height
        source = self.stored_size(request.init_image) if request.init_image else None
        if source is not None and width is None:
            width, height = source  # image-to-image keeps the picture's size
        params = GenerationParams(
            prompt=prompt,
            negative=clean_prompt(request.negative or ""),
            seed=request.seed if request.seed is not None else random.randint(0, 2**32 - 1),
            steps=steps,
            cfg=request.cfg if request.cfg is not None else self.settings.default_cfg,
            width=width or 64,
            height=height or 64,
            count=request.count,
            sampler=request.sampler or "Euler a",
        )
        checkpoint = PlannedCheckpoint(
            name=ckpt.name,
            label=ckpt.label,
            path=Path(ckpt.rel_path),
            format="safetensors",
            sha256=ckpt.sha256,
            autov2=ckpt.sha256[:10],
            architecture=ckpt.architecture,
            base_model=ckpt.base_model,
            family=ckpt.family.lower() if ckpt.family else None,
            family_label=ckpt.family,
        )
        return DrawPlan(request=request, checkpoint=checkpoint, loras=planned, params=params, warnings=warnings)

    async def submit(self, request: DrawRequest) -> FakeHandle:
        self._maybe_fail("submit")
        self.calls.append(("submit", request))
        plan = await asyncio.to_thread(self.plan, request)
        request.seed = plan.params.seed
        assert self.queue is not None
        job = FakeJob(self, plan, request)
        self.queue.add(job)
        self.jobs.append(job)
        if self.auto:
            job.run_to_end()
        return job.handle

    def cancel(self, job_id: str, *, user_id: str, is_admin: bool = False) -> bool:
        self.calls.append(("cancel", (job_id, user_id, is_admin)))
        job = next((j for j in self.jobs if j.id == job_id), None)
        if job is not None and job.user_id != user_id and not is_admin:
            raise RequestError(_CANCEL_NOT_YOURS)
        return bool(self.queue and self.queue.cancel(job_id))

    def set_limits(self, **values: int | None) -> Any:
        return self.admin.set_limits(**values)

    def job_request(self, job_id: str) -> DrawRequest | None:
        job = next((j for j in self.jobs if j.id == job_id), None)
        return DrawRequest.from_json(job.request_json) if job else None

    def infotext(self, plan: DrawPlan, seed: int) -> str:
        """The A1111 parameters the fake writes into its pictures (as the engine does)."""
        return _infotext(plan, seed)

    # -- GPU workers (engine.workers.status) --------------------------------------------
    def drawing_available(self) -> bool:
        return "submit" not in self.failures

    def cluster_status(self) -> ClusterStatus:
        """One local worker, as the real engine in local mode reports it."""
        queue = self.queue
        running = queue.current if queue is not None else None
        done = sum(job.state in ("done", "failed", "cancelled") for job in self.jobs)
        worker = WorkerStatus(
            id="local", node="test-node", gpu=None, loaded=running.plan.checkpoint.name if running else None,
            jobs_done=done, busy_share=0.0, last_error=None, state="busy" if running else "idle",
            running=running.id if running else None,
        )
        return ClusterStatus("local", self.drawing_available(), [worker], queued=queue.size if queue else 0)

    def make_result(self, job: FakeJob, *, seconds: float) -> DrawResult:
        p = job.plan.params
        out = self.settings.outputs_dir
        images = []
        rng = random.Random(p.seed)
        # Hires: the picture comes out `hires` times the first pass, as A1111's does.
        scale = job.request.hires if job.request.hires and job.request.hires > 1 else 1.0
        size = (int(p.width * scale) // 8 * 8, int(p.height * scale) // 8 * 8)
        for index in range(p.count):
            path = out / f"{job.id}-{index}.png"
            if self.noisy_images:
                noisy_png(path, p.width, seed=p.seed + index)
            else:
                colour = tuple(rng.randrange(256) for _ in range(3))
                save_png(Image.new("RGB", size, colour), path, self.infotext(job.plan, p.seed + index))
            images.append(path)
        return DrawResult(
            job_id=job.id,
            images=images,
            seeds=[p.seed + i for i in range(p.count)],
            plan=job.plan,
            warnings=list(job.plan.warnings),
            parameters=f"{p.prompt}\nSteps: {p.steps}, Seed: {p.seed}",
            seconds=seconds,
            queued_seconds=0.0,
        )


def _infotext(plan: DrawPlan, seed: int) -> str:
    p = plan.params
    return format_parameters(
        prompt=p.prompt,
        negative=p.negative,
        steps=p.steps,
        sampler=p.sampler,
        cfg=p.cfg,
        seed=seed,
        width=p.width,
        height=p.height,
        model_name=plan.checkpoint.name,
        model_hash=plan.checkpoint.autov2,
        loras=[LoraUse(l.name, l.applied_weight, l.autov3) for l in plan.applied_loras],
    )


def noisy_png(path: Path, size: int, seed: int = 0) -> Path:
    """An incompressible PNG (random pixels), for upload-limit tests."""
    import numpy as np

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path

