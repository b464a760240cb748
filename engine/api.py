"""The engine's one entry point: every front end (Discord, CLI) calls these methods.

`Engine` owns the database, the library, the CivitAI client, the family table and, once
started with a GPU worker, the job queue. Methods that may touch the disk or the network
are `async` and move blocking work off the event loop, so the bot can await them freely.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine import content_rules
from engine.admin_settings import AdminSettings, Limits
from engine.answers import FamilyCheck, LoraInfo, ModelSummary
from engine.checkpoint_types import CheckpointInfo
from engine.civitai.cache import CivitaiCache
from engine.civitai.client import CivitaiClient, Lookup
from engine.civitai.download import download_version
from engine.civitai.models import ModelVersion
from engine.civitai.refs import parse_civitai_ref
from engine.db import ThreadLocalDB
from engine.errors import DrawingUnavailableError, LibraryError, LimitError, RequestError
from engine.families import FamilyTable
from engine.i18n import EN, Message, Text
from engine.images.types import ImageInfo, LikeRequest, StoredImage
from engine.indexing import Indexing
from engine.kinds import Category
from engine.knowledge import Knowledge
from engine.knowledge_answers import Answers
from engine.library import Library, LibraryEntry, ScanReport
from engine.pictures import Pictures
from engine.planning.checkpoints import NO_CHECKPOINT
from engine.planning.params import OUT_OF_RANGE
from engine.planning.planner import Planner
from engine.requests import DrawPlan, DrawRequest, DrawResult
from engine.settings import Settings
from engine.text_input import clean_name
from engine.user_defaults import UserDefaults, UserDefaultsStore
from engine.verdicts import Verdict

if TYPE_CHECKING:
    from engine.queue.lanes import ClusterStatus

_NOT_A_MODEL_TYPE = Text(
    "“{name}” is a {type} on CivitAI; Loracle adds only checkpoints and LoRAs (LoRA, LoCon, DoRA).",
    "「{name}」在 CivitAI 上是 {type}；Loracle 只能加入模型（checkpoint）與 LoRA（LoRA、LoCon、DoRA）。",
)
# CivitAI's model types Loracle can use; anything else (TextualInversion, VAE, Controlnet,
# Upscaler, Workflows, ...) would land in loras/ and fail the scan after a long download.
_ADDABLE_TYPES = {"checkpoint", "lora", "locon", "dora", "lycoris"}
_SCAN_STOPPED = Text(
    "The library scan stopped because Loracle is shutting down; the next scan picks up where it left off.",
    "Loracle 正在關閉，模型庫掃描已停止；下次掃描會從中斷處繼續。",
)
_CANCEL_NOT_YOURS = Text(
    "Only the person who asked for this image (or an admin) can cancel it.",
    "只有提出這張圖的人（或管理員）可以取消。",
)


class Engine:
    def __init__(self, settings: Settings) -> None:
        settings.ensure_dirs()
        self.settings = settings
        self.dbs = ThreadLocalDB(settings.db_path)
        self.library = Library(settings.root, self.dbs)
        self.table = FamilyTable.load(extra=settings.root / "families.toml")
        self.civitai = CivitaiClient(settings, CivitaiCache(self.dbs))
        self.knowledge = Knowledge(self.library, self.civitai, self.table)
        self.admin = AdminSettings(self.dbs, settings)
        self.answers = Answers(self.library, self.knowledge, self.table, settings.civitai_base_url)
        self.planner = Planner(settings, self.library, self.knowledge, self.table, self.admin, self.answers)
        self.queue: Any = None  # engine.queue.job_queue.JobQueue once start() ran
        self.job_store: Any = None
        self.runner: Any = None
        self.recovered: list[Any] = []  # handles of jobs re-queued after a restart
        self.cluster: Any = None  # engine.workers.ray_cluster.RayCluster in LORACLE_CLUSTER=ray
        self._status_task: asyncio.Task[None] | None = None
        # Set by close(): a scan running in its thread stops before its next file (hashing
        # a new library can take minutes, longer than a container's stop grace period).
        self._closing = threading.Event()
        self.indexing = Indexing()  # a running scan, and requests waiting for it
        self.pictures = Pictures(self)

    # -- lifecycle -------------------------------------------------------------------
    async def start(
        self, *, generator: Any = None, recover: bool = True, front_end: str = "bot", cluster_options: dict[str, Any] | None = None
    ) -> None:
        """Start the GPU worker (imports torch/diffusers: only front ends that draw).

        `recover` re-queues the jobs a crash left in the database. Only the process that
        owns the queue (the bot) may do so: a one-off `loracle draw` next to a running bot
        would otherwise take over the bot's queued jobs and restart its running one.
        Every job is stamped with its `front_end` process (engine.queue.owner); either way,
        the jobs of a dead process that only it could deliver are failed.
        """
        from engine.queue.owner import Owner
        from engine.queue.store import JobStore

        store = self.job_store = JobStore(self.dbs, owner=Owner.current(front_end, self.settings.root / "locks"))
        if self.settings.cluster == "ray" and generator is None:
            await self._start_cluster(store, cluster_options or {})
        else:
            await self._start_local(generator, store)
        if recover:
            self.recovered = await self._recover(store)
        else:
            await asyncio.to_thread(store.recover, requeue=False)
        await asyncio.to_thread(self.pictures.clean_inputs, store)
        if front_end == "bot":  # `loracle cluster status` reads what the bot's workers do
            from engine.workers.status import publish_status, status_path

            self._status_task = asyncio.create_task(publish_status(self, status_path(self.settings.root)))

    async def _start_local(self, generator: Any, store: Any) -> None:
        from engine.lora.cache import LoraCache
        from engine.pipeline.device import pristine_on_cpu, pristine_read_back, resolve_device, resolve_dtype
        from engine.pipeline.generator import Generator
        from engine.queue.job_queue import JobQueue
        from engine.workers.local import GpuRunner

        if generator is None:
            device = resolve_device(self.settings)
            generator = Generator(
                device=device,
                dtype=resolve_dtype(self.settings, device),
                cache_dir=self.settings.root / "cache",
            )
        self.runner = GpuRunner(
            generator,
            LoraCache(self.settings.lora_cache_size),
            self.settings.outputs_dir,
            pristine_on_cpu=pristine_on_cpu(self.settings, generator.device),
            read_back=pristine_read_back(self.settings),
            inputs_dir=self.settings.inputs_dir,
        )
        self.queue = JobQueue(
            self.runner,
            per_user_cap=self.admin.limits().queue_per_user,
            affinity_limit=self.settings.affinity_limit,
            store=store,
            loaded_checkpoint=self.runner.loaded_checkpoint,
        )
        await self.queue.start()

    async def _recover(self, store: Any) -> list[Any]:
        report = await asyncio.to_thread(store.recover)
        handles = []
        for row in report.requeue:
            try:
                request = DrawRequest.from_json(row["request"])
                plan = await asyncio.to_thread(self.plan, request)
            except Exception as exc:  # names or files changed while we were down
                await asyncio.to_thread(store.mark_failed, row["id"], f"could not be re-run after a restart: {exc}")
                continue
            job = _queued_job(plan, id=row["id"], created_at=row.get("created_at") or time.time())
            handles.append(self.queue.resubmit(job))
        return handles

    async def close(self) -> None:
        self._closing.set()
        if self._status_task is not None:
            self._status_task.cancel()
        if self.queue is not None:
            await self.queue.stop()
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.close)
        if self.runner is not None:
            await asyncio.to_thread(self.runner.close)
        await self.civitai.aclose()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- library ---------------------------------------------------------------------
    async def scan(self, *, civitai: bool = True, progress: Callable[[str], None] | None = None) -> ScanReport:
        def next_file(rel_path: str) -> None:
            # Files already scanned are recorded; those not reached keep their old rows.
            if self._closing.is_set():
                raise LibraryError(_SCAN_STOPPED)
            if progress is not None:
                progress(rel_path)

        self.indexing.begin()
        try:
            report = await asyncio.to_thread(self.library.scan, next_file, self.indexing)
        finally:
            self.indexing.end()
        entries = await asyncio.to_thread(self.library.entries, None, include_broken=False)
        await asyncio.to_thread(self.knowledge.ingest_sidecars, entries)
        if civitai:
            # cache-first: only hashes CivitAI was never asked about (or whose answer
            # expired) reach the network, in batches of 100
            report.notes = await self.knowledge.ensure_known(entries)
        return report

    def entries(self, category: Category | str | None = None) -> list[LibraryEntry]:
        return self.library.entries(category)

    def find(self, name: str, category: Category | str | None = None) -> LibraryEntry:
        return self.library.find(clean_name(name), category)

    def summary(self, entry: LibraryEntry) -> ModelSummary:
        return self.answers.summary(entry)

    def set_entry(self, name: str, *, by: str | None = None, **values: Any) -> LibraryEntry:
        entry = self.find(name)
        if "weight" in values and values["weight"] is not None:
            low, high = self.settings.lora_weight_min, self.settings.lora_weight_max
            weight = float(values["weight"])
            if not low <= weight <= high or weight != weight:
                raise LimitError(OUT_OF_RANGE, what="weight", low=low, high=high, value=weight)
        if values.get("base_model"):
            values["base_model"] = clean_name(values["base_model"])
        return self.library.set_override(entry, by=by, **values)

    async def remove(self, name: str) -> LibraryEntry:
        entry = await asyncio.to_thread(self.find, name)
        await asyncio.to_thread(self.library.remove, entry)
        return entry

    async def refresh(self, name: str | None = None) -> list[Message]:
        """Ask CivitAI again, ignoring cached answers (for one file or all)."""
        if name:
            entries = [await asyncio.to_thread(self.find, name)]
        else:
            entries = await asyncio.to_thread(self.library.entries, None, include_broken=False)
        return await self.knowledge.ensure_known(entries, refresh=True)

    async def add_from_civitai(
        self, ref_text: str, *, progress: Callable[[int, int | None], None] | None = None
    ) -> LibraryEntry:
        ref = parse_civitai_ref(ref_text, base_url=self.settings.civitai_base_url)
        lookup: Lookup[Any]
        if ref.version_id:
            lookup = await self.civitai.model_version(ref.version_id)
        else:  # a model page: its newest version comes first; one still in early access
            # cannot be downloaded yet, so the newest public one is taken (or, with none,
            # the newest, whose download then says when early access ends)
            assert ref.model_id is not None  # a reference names a version or a model
            model = await self.civitai.model(ref.model_id)
            versions = model.value.model_versions if model.value else []
            versions = [v for v in versions if not v.early_access] or versions
            lookup = await self.civitai.model_version(versions[0].id) if versions else model
        if not isinstance(lookup.value, ModelVersion):
            raise LibraryError(
                Text("CivitAI has no such model version ({ref}).{note}", "CivitAI 找不到這個模型版本（{ref}）。{note}"),
                ref=ref_text,
                note=(" " + lookup.note.render(EN)) if lookup.note else "",
            )
        version = lookup.value
        kind = (version.model.type if version.model else "") or ""
        if kind and kind.lower() not in _ADDABLE_TYPES:
            name = version.model.name if version.model and version.model.name else ref_text
            raise LibraryError(_NOT_A_MODEL_TYPE, name=name, type=kind)
        dest = self.settings.models_dir if kind.lower() == "checkpoint" else self.settings.loras_dir
        path = await download_version(
            self.civitai,
            version,
            dest,
            max_bytes=self.settings.civitai_max_download_mb * 1024 * 1024,
            progress=progress,
        )
        await self.scan(civitai=False)
        rel = path.relative_to(self.settings.root).as_posix()
        return next(e for e in self.library.entries() if e.rel_path == rel)

    async def add_from_path(self, path_text: str) -> LibraryEntry:
        """Adopt a file an admin already copied somewhere under the data dir."""
        root = self.settings.root
        source = (root / path_text).resolve()
        if root not in source.parents or not source.exists():
            raise LibraryError(
                Text(
                    "“{path}” is not a file inside the data folder.",
                    "「{path}」不是資料夾內的檔案。",
                ),
                path=path_text,
            )
        from engine.files.modelfile import inspect_path

        info = await asyncio.to_thread(inspect_path, source)
        target_dir = self.settings.loras_dir if info.kind.is_lora else self.settings.models_dir
        target = source
        if target_dir not in source.parents:
            target = target_dir / source.name
            if target.exists():
                raise LibraryError(
                    Text("“{name}” already exists in the library.", "模型庫中已有「{name}」。"),
                    name=source.name,
                )
            await asyncio.to_thread(shutil.move, str(source), str(target))
        await self.scan(civitai=True)
        rel = target.relative_to(root).as_posix()
        return next(e for e in self.library.entries() if e.rel_path == rel)

    # -- knowledge -------------------------------------------------------------------
    # The async methods look names up in a thread: a lookup may read SQLite, and the
    # bot's event loop must never wait on the disk. `allow_nsfw` is False where the answer
    # is shown outside an age-restricted channel: NSFW models are refused there.
    async def lora_info(self, name: str, *, allow_nsfw: bool = True) -> LoraInfo:
        entry = await self.indexing.settle(lambda: self.find(name, Category.LORA), waiting=_pending)
        notes = await self.knowledge.ensure_known([entry])
        return await asyncio.to_thread(self.answers.lora_info, entry, notes, allow_nsfw=allow_nsfw)

    async def family_check(self, checkpoint: str, loras: list[str], *, allow_nsfw: bool = True) -> FamilyCheck:
        ckpt, entries = await self.indexing.settle(
            lambda: (self.find(checkpoint, Category.CHECKPOINT), [self.find(name, Category.LORA) for name in loras]),
            waiting=lambda found: _pending(found[0]) or any(map(_pending, found[1])),
        )
        notes = await self.knowledge.ensure_known([ckpt, *entries])
        return await asyncio.to_thread(self.answers.family_check, ckpt, entries, notes, allow_nsfw=allow_nsfw)

    def suggest_loras(
        self, checkpoint: str | None, text: str, limit: int = 25, *, allow_nsfw: bool = True
    ) -> list[tuple[LibraryEntry, Verdict | None]]:
        """LoRAs for autocomplete, best verdict first (cache-only, no network)."""
        ckpt = None
        name = checkpoint or self.admin.default_checkpoint()
        if name:
            try:
                ckpt = self.find(name, Category.CHECKPOINT)
            except LibraryError:
                ckpt = None
        return self.answers.suggest_loras(ckpt, clean_name(text), limit, allow_nsfw=allow_nsfw)

    def is_nsfw(self, entry: LibraryEntry) -> bool:
        """The content rule (engine.content_rules), for front ends that filter lists."""
        return content_rules.is_nsfw(entry, self.knowledge)

    def may_list(self, entry: LibraryEntry, *, allow_nsfw: bool) -> bool:
        """The content rule for lists (autocomplete): engine.content_rules.may_list."""
        return content_rules.may_list(entry, self.knowledge, allow_nsfw=allow_nsfw)

    # -- drawing ---------------------------------------------------------------------
    def plan(self, request: DrawRequest) -> DrawPlan:
        """Everything that can be refused is refused here, before any GPU work."""
        return self.planner.plan(request)

    async def submit(self, request: DrawRequest) -> Any:
        """Plan (refusing bad requests before any GPU work) and queue; returns a
        JobHandle whose events report queue position, steps and the DrawResult."""
        if self.queue is None:
            raise RuntimeError("Engine.start() must run before submit()")
        if not self.drawing_available() and not (
            self.cluster is not None and await asyncio.to_thread(self.cluster.refresh)
        ):
            raise DrawingUnavailableError()
        plan = await self.indexing.settle(lambda: self.plan(request), waiting=_plan_pending, not_yet=(NO_CHECKPOINT,))
        request.seed = plan.params.seed  # a re-run after a restart gives the same image
        # In a thread too: queuing writes the job to SQLite, which may wait for a lock.
        return await asyncio.to_thread(self.queue.submit, _queued_job(plan))

    async def draw(self, request: DrawRequest) -> DrawResult:
        handle = await self.submit(request)
        result: DrawResult = await handle.result()
        return result

    def job_request(self, job_id: str) -> DrawRequest | None:
        """The request a job was submitted with (for reroll), also after a restart."""
        row = self.job_store.get(job_id) if self.job_store is not None else None
        return DrawRequest.from_json(row.request) if row is not None and row.request else None

    def set_limits(self, **values: int | None) -> Limits:
        """Change limits at run time; the per-user queue cap applies to the next submit."""
        limits = self.admin.set_limits(**values)
        if self.queue is not None:
            self.queue.set_per_user_cap(limits.queue_per_user)
        return limits

    def cancel(self, job_id: str, *, user_id: str, is_admin: bool = False) -> bool:
        owner = self.queue.owner_of(job_id) if self.queue else None
        if owner is not None and owner != user_id and not is_admin:
            raise RequestError(_CANCEL_NOT_YOURS)
        return bool(self.queue and self.queue.cancel(job_id))

    # -- checkpoint lineage (engine.checkpoint_answers) -------------------------------
    async def checkpoint_info(self, name: str, *, allow_nsfw: bool = True) -> CheckpointInfo:
        """What a checkpoint is (merge or trained, base model, family, parents named by
        its file) and what suits it; CivitAI is asked first (cache first), the rest is
        read in a thread."""
        from engine.checkpoint_answers import CheckpointAnswers, civitai_checkpoint_type, lineage_of

        entry = await self.indexing.settle(lambda: self.find(name, Category.CHECKPOINT), waiting=_pending)
        lineage = await asyncio.to_thread(lineage_of, entry)
        parent_hashes = [p.sha256 for p in (*lineage.parents, *lineage.ancestors) if p.sha256]
        notes = await self.knowledge.ensure_known([entry])
        notes += [n for n in await self.knowledge.lookup_hashes(parent_hashes) if n not in notes]
        model_type = await civitai_checkpoint_type(self.knowledge, entry)
        answers = CheckpointAnswers(self.library, self.knowledge, self.table, self.settings.civitai_base_url)
        return await asyncio.to_thread(
            answers.checkpoint_info, entry, lineage, notes, model_checkpoint_type=model_type, allow_nsfw=allow_nsfw
        )


    # -- the image loop (engine.pictures) ----------------------------------------------
    async def store_image(self, data: bytes) -> StoredImage:
        """Check and keep a user's picture for image-to-image; ImageInputError if unusable."""
        return await self.pictures.store_image(data)

    def upscalers(self) -> list[str]:
        """Names valid for `hires_upscaler`: "latent", "lanczos", then upscaler models."""
        return self.pictures.upscalers()

    async def image_info(self, data: bytes, *, checkpoint: str | None = None, allow_nsfw: bool = True) -> ImageInfo:
        return await self.pictures.image_info(data, checkpoint=checkpoint, allow_nsfw=allow_nsfw)

    async def like_request(self, data: bytes, *, user_id: str, allow_nsfw: bool = True) -> LikeRequest:
        return await self.pictures.like_request(data, user_id=user_id, allow_nsfw=allow_nsfw)

    async def vary_request(self, data: bytes, *, strength: float, user_id: str, allow_nsfw: bool = True) -> LikeRequest:
        return await self.pictures.vary_request(data, strength=strength, user_id=user_id, allow_nsfw=allow_nsfw)

    async def upscale_request(
        self, data: bytes, *, user_id: str, scale: float | None = None, upscaler: str | None = None, allow_nsfw: bool = True
    ) -> LikeRequest:
        return await self.pictures.upscale_request(
            data, user_id=user_id, scale=scale, upscaler=upscaler, allow_nsfw=allow_nsfw
        )

    async def job_image(self, job_id: str, index: int = 0) -> bytes | None:
        return await self.pictures.job_image(job_id, index)

    # -- per-user defaults (engine.user_defaults; SQLite, so front ends call these in a thread)
    def user_defaults(self, user_id: str) -> UserDefaults:
        return UserDefaultsStore(self.dbs, self.settings).get(user_id)

    def set_user_defaults(self, user_id: str, **values: Any) -> UserDefaults:
        """Change some of a user's defaults (None clears one), each checked against the
        admin's limits; a checkpoint must be in the library and is kept by its name."""
        checkpoint = values.get("checkpoint")
        if isinstance(checkpoint, str) and clean_name(checkpoint):
            values["checkpoint"] = self.find(checkpoint, Category.CHECKPOINT).name
        return UserDefaultsStore(self.dbs, self.settings).set(user_id, self.admin.limits(), **values)

    def clear_user_defaults(self, user_id: str) -> None:
        UserDefaultsStore(self.dbs, self.settings).clear(user_id)

    # -- several GPUs (Ray) ------------------------------------------------------------
    async def _start_cluster(self, store: Any, options: dict[str, Any]) -> None:
        """LORACLE_CLUSTER=ray: the queue here, the GPU workers as Ray actors. An
        unreachable cluster does not stop the bot: drawing is refused (queued jobs stay)
        and the connection is retried in the background."""
        from engine.queue.job_queue import JobQueue
        from engine.workers.ray_cluster import RayCluster, worker_settings

        self.cluster = RayCluster(
            address=self.settings.ray_address,
            workers=self.settings.workers,
            outputs_dir=self.settings.outputs_dir,
            settings=worker_settings(self.settings),
            **options,
        )
        lanes = await asyncio.to_thread(self.cluster.connect)
        self.queue = JobQueue(
            per_user_cap=self.admin.limits().queue_per_user,
            affinity_limit=self.settings.affinity_limit,
            store=store,
            lanes=lanes,
        )
        await self.queue.start()
        if not lanes:
            self.cluster.reconnect_in_background(self._add_lanes)

    def _add_lanes(self, lanes: list[Any]) -> None:
        for lane in lanes:
            self.queue.add_lane(lane)

    def drawing_available(self) -> bool:
        """False while the GPU workers cannot be reached (cluster mode): /draw refuses."""
        return self.cluster is None or bool(self.cluster.available())

    def cluster_status(self) -> ClusterStatus:
        """engine.queue.lanes.ClusterStatus: each worker's node, GPU, loaded checkpoint,
        jobs done, busy share and last error (one worker in local mode)."""
        from engine.workers.status import cluster_status

        gpu = None
        generator = getattr(self.runner, "generator", None)
        if generator is not None and getattr(generator.device, "type", None) == "cuda":
            import torch

            gpu = torch.cuda.get_device_name(generator.device)
        return cluster_status(self.queue, self.cluster, local_gpu=gpu)

    async def add_worker(self) -> Any:
        """Cluster mode: start one more GPU worker; it takes jobs at once."""
        if self.cluster is None or self.queue is None or not self.cluster.connected:
            raise DrawingUnavailableError()
        lane = await asyncio.to_thread(self.cluster.add_worker)
        self.queue.add_lane(lane)
        return lane


def _queued_job(plan: DrawPlan, **identity: Any) -> Any:
    """The queue's view of a planned request: persisted as `request`, run from `payload`,
    grouped by checkpoint (content hash) for affinity."""
    from engine.queue.job import QueuedJob

    request = plan.request
    return QueuedJob(
        user_id=request.user_id,
        checkpoint=plan.checkpoint.sha256 or plan.checkpoint.name,
        request=request.to_json(),
        payload=plan,
        origin=request.origin,
        **identity,
    )


def _pending(entry: LibraryEntry) -> bool:
    return entry.hash_pending


def _plan_pending(plan: DrawPlan) -> bool:
    return plan.checkpoint.sha256 is None or any(lora.sha256 is None for lora in plan.loras)
