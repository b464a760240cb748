"""The engine's one entry point: every front end (Discord, CLI) calls these methods.

`Engine` owns the database, the library, the CivitAI client, the family table and, once
started with a GPU worker, the job queue. Methods that may touch the disk or the network
are `async` and move blocking work off the event loop, so the bot can await them freely.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from engine.admin_settings import AdminSettings, Limits
from engine.answers import FamilyCheck, LoraInfo, LoraVerdict, ModelSummary, Suitability
from engine.civitai.cache import CivitaiCache
from engine.civitai.client import CivitaiClient
from engine.civitai.download import download_version
from engine.civitai.models import ModelVersion
from engine.civitai.refs import parse_civitai_ref
from engine.db import ThreadLocalDB
from engine.errors import (
    LibraryError,
    LimitError,
    RequestError,
    WeightError,
)
from engine.families import FamilyTable
from engine.i18n import EN, Message, Text
from engine.kinds import Architecture, Category
from engine.knowledge import Knowledge
from engine.library import Library, LibraryEntry, ScanReport
from engine.pipeline.samplers import get_sampler
from engine.prompt_lint import lint_prompt
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
from engine.verdicts import Identity, Verdict, VerdictResult, identify
from engine.weights import LoraStatus, decide_weight, split_prompt_loras

MAX_SEED = 2**32 - 1

_NO_CHECKPOINT = Text(
    "There is no usable checkpoint in the library yet. An admin can add one with "
    "/admin add or `loracle library scan` after copying a .safetensors into data/models/.",
    "模型庫裡還沒有可用的模型（checkpoint）。管理員可以用 /admin add 新增，或把 .safetensors "
    "放進 data/models/ 後執行 `loracle library scan`。",
)
_NOT_SDXL = Text(
    "“{name}” is a {arch} checkpoint; Loracle draws with SDXL checkpoints only.",
    "「{name}」是 {arch} 模型；Loracle 只能用 SDXL 模型繪圖。",
)
_NSFW_HERE = Text(
    "“{name}” is marked NSFW and can only be used in age-restricted channels.",
    "「{name}」被標記為成人內容，只能在年齡限制頻道中使用。",
)
_BLOCKED = Text(
    "Your prompt contains “{word}”, which this server does not allow.",
    "您的提示詞包含此伺服器不允許的「{word}」。",
)
_PROMPT_TOO_LONG = Text(
    "The prompt is {length} characters long; the limit is {limit}.",
    "提示詞長度為 {length} 個字元，上限是 {limit}。",
)
_NEGATIVE_TOO_LONG = Text(
    "The negative prompt is {length} characters long; the limit is {limit}.",
    "負面提示詞長度為 {length} 個字元，上限是 {limit}。",
)
_EMPTY_PROMPT = Text("The prompt is empty.", "提示詞是空的。")
_OUT_OF_RANGE = Text(
    "{what} must be between {low} and {high} (you asked for {value}).",
    "{what} 必須介於 {low} 和 {high} 之間（您給的是 {value}）。",
)
_SIZE_STEP = Text(
    "Width and height must be multiples of 8 (you asked for {width}×{height}).",
    "寬和高必須是 8 的倍數（您給的是 {width}×{height}）。",
)
_REFUSED = Text(
    "{name} was not applied: it is a {lora_arch} LoRA and “{checkpoint}” is an {ckpt_arch} checkpoint; their layers do not fit together.",
    "{name} 未套用：它是 {lora_arch} 的 LoRA，而「{checkpoint}」是 {ckpt_arch} 模型，兩者的網路層對不上。",
)
_SAME_LORA_TWICE = Text(
    "“{first}” and “{second}” are the same LoRA ({name}); give it once with one weight.",
    "「{first}」和「{second}」是同一個 LoRA（{name}）；請只列一次、給一個權重。",
)
_VAE_BORROWED = Text(
    "“{name}” has no VAE of its own; its images are decoded with the VAE of “{donor}” "
    "(SDXL checkpoints share one VAE design).",
    "「{name}」沒有自己的 VAE；它的圖片改用「{donor}」的 VAE 解碼（SDXL 主模型共用同一種 VAE 設計）。",
)
_NO_VAE = Text(
    "“{name}” has no VAE (the part that turns the result into pixels) baked in, and the library "
    "has no other SDXL checkpoint to borrow one from. Add any SDXL checkpoint that includes a "
    "VAE, or use a version of this one with the VAE included.",
    "「{name}」沒有內建 VAE（把結果轉成像素的部分），而模型庫裡也沒有其他 SDXL 主模型可以借用。"
    "請加入任何一個內含 VAE 的 SDXL 主模型，或改用此模型內含 VAE 的版本。",
)
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
        self.queue: Any = None  # engine.queue.job_queue.JobQueue once start() ran
        self.job_store: Any = None
        self.runner: Any = None
        self.recovered: list[Any] = []  # handles of jobs re-queued after a restart
        # Set by close(): a scan running in its thread stops before its next file (hashing
        # a new library can take minutes, longer than a container's stop grace period).
        self._closing = threading.Event()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self, *, generator: Any = None, recover: bool = True, front_end: str = "bot") -> None:
        """Start the GPU worker (imports torch/diffusers: only front ends that draw).

        `recover` re-queues the jobs a crash left in the database. Only the process that
        owns the queue (the bot) may do so: a one-off `loracle draw` next to a running bot
        would otherwise take over the bot's queued jobs and restart its running one.
        Every job is stamped with its `front_end` process (engine.queue.owner); either way,
        the jobs of a dead process that only it could deliver are failed.
        """
        from engine.lora.cache import LoraCache
        from engine.pipeline.device import pristine_on_cpu, resolve_device, resolve_dtype
        from engine.pipeline.generator import Generator
        from engine.queue.job_queue import JobQueue
        from engine.queue.owner import Owner
        from engine.queue.store import JobStore
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
        )
        limits = self.admin.limits()
        store = self.job_store = JobStore(self.dbs, owner=Owner.current(front_end, self.settings.root / "locks"))
        self.queue = JobQueue(
            self.runner,
            per_user_cap=limits.queue_per_user,
            affinity_limit=self.settings.affinity_limit,
            store=store,
            loaded_checkpoint=self.runner.loaded_checkpoint,
        )
        await self.queue.start()
        if recover:
            self.recovered = await self._recover(store)
        else:
            await asyncio.to_thread(store.recover, requeue=False)

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
        if self.queue is not None:
            await self.queue.stop()
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

        report = await asyncio.to_thread(self.library.scan, next_file)
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
        return _summary(entry, identify(self.knowledge.facts(entry), self.table))

    def set_entry(self, name: str, *, by: str | None = None, **values: Any) -> LibraryEntry:
        entry = self.find(name)
        if "weight" in values and values["weight"] is not None:
            low, high = self.settings.lora_weight_min, self.settings.lora_weight_max
            weight = float(values["weight"])
            if not low <= weight <= high or weight != weight:
                raise LimitError(_OUT_OF_RANGE, what="weight", low=low, high=high, value=weight)
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
        if ref.version_id:
            lookup = await self.civitai.model_version(ref.version_id)
        else:  # a model page: its newest version comes first; one still in early access
            # cannot be downloaded yet, so the newest public one is taken (or, with none,
            # the newest, whose download then says when early access ends)
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
    # bot's event loop must never wait on the disk.
    async def lora_info(self, name: str) -> LoraInfo:
        entry = await asyncio.to_thread(self.find, name, Category.LORA)
        notes = await self.knowledge.ensure_known([entry])
        return await asyncio.to_thread(self._lora_info, entry, notes)

    def _lora_info(self, entry: LibraryEntry, notes: list[Message]) -> LoraInfo:
        facts = self.knowledge.facts(entry)
        version = self.knowledge.civitai_version(entry.sha256)
        training = entry.training
        if version and version.trained_words:
            triggers, trigger_source = list(version.trained_words), "civitai"
        elif training.trigger_words:
            triggers, trigger_source = list(training.trigger_words), "metadata"
        else:
            triggers, trigger_source = [], None
        if entry.weight_override is not None:
            weight, weight_source = entry.weight_override, "admin"
        else:
            weight, weight_source = 1.0, "default"
        trained_on = None
        if training.new_sd_model_hash or training.sd_model_name:
            trained_on = {
                "name": training.sd_model_name,
                "sha256": training.new_sd_model_hash,
                "base_model": facts.trained_on_base_model,
                "in_library": [e.name for e in self.library.by_sha256(training.new_sd_model_hash)]
                if training.new_sd_model_hash
                else [],
            }
        suits = []
        for checkpoint in self.library.entries(Category.CHECKPOINT, include_broken=False):
            result = self.knowledge.verdict(entry, checkpoint)
            fam = result.checkpoint_family
            suits.append(Suitability(checkpoint.name, fam.id if fam else None, fam.label if fam else None, str(result.verdict)))
        order = [str(v) for v in Verdict]
        suits.sort(key=lambda s: (order.index(s.verdict), s.checkpoint.lower()))
        preview = version.preview_image(max_nsfw_level=1) if version else None
        return LoraInfo(
            summary=self.summary(entry),
            sha256=entry.sha256,
            autov2=entry.autov2,
            autov3=entry.autov3,
            size=entry.size,
            rank=entry.rank,
            alpha=entry.alpha,
            file=entry.rel_path,
            trigger_words=triggers,
            trigger_source=trigger_source,
            recommended_weight=weight,
            recommended_weight_source=weight_source,
            civitai_url=version.page_url(self.settings.civitai_base_url) if version else None,
            civitai_name=(f"{version.model.name} — {version.name}" if version and version.model else None),
            preview_url=preview.url if preview else None,
            nsfw=self.is_nsfw(entry),
            enabled=entry.enabled,
            trained_on=trained_on,
            top_tags=[(tag, training.tag_frequency.get(tag, 0)) for tag in training.top_tags(12)],
            evidence=_evidence_messages(list(identify(facts, self.table).evidence)),
            suits=suits,
            notes=notes,
        )

    async def family_check(self, checkpoint: str, loras: list[str]) -> FamilyCheck:
        ckpt, entries = await asyncio.to_thread(
            lambda: (self.find(checkpoint, Category.CHECKPOINT), [self.find(name, Category.LORA) for name in loras])
        )
        notes = await self.knowledge.ensure_known([ckpt, *entries])
        return await asyncio.to_thread(self._family_check, ckpt, entries, notes)

    def _family_check(self, ckpt: LibraryEntry, entries: list[LibraryEntry], notes: list[Message]) -> FamilyCheck:
        verdicts = []
        for entry in entries:
            result = self.knowledge.verdict(entry, ckpt)
            verdicts.append(_lora_verdict(self.summary(entry), result))
        return FamilyCheck(self.summary(ckpt), verdicts, notes)

    def suggest_loras(
        self, checkpoint: str | None, text: str, limit: int = 25, *, allow_nsfw: bool = True
    ) -> list[tuple[LibraryEntry, Verdict | None]]:
        """LoRAs for autocomplete, best verdict first, incompatible (and, outside
        age-restricted channels, NSFW) ones left out. Cache-only (no network), so it
        answers well inside Discord's deadline."""
        ckpt = None
        if checkpoint or self.admin.default_checkpoint():
            try:
                ckpt = self.find(checkpoint or self.admin.default_checkpoint() or "", Category.CHECKPOINT)
            except LibraryError:
                ckpt = None
        key = clean_name(text).lower()
        ranked: list[tuple[int, str, LibraryEntry, Verdict | None]] = []
        order = list(Verdict)
        for entry in self.library.entries(Category.LORA, include_broken=False):
            if not entry.enabled or (not allow_nsfw and self.is_nsfw(entry)):
                continue
            if key and key not in entry.name.lower() and key not in entry.label.lower():
                continue
            verdict = self.knowledge.verdict(entry, ckpt).verdict if ckpt else None
            if verdict == Verdict.INCOMPATIBLE:
                continue
            rank = order.index(verdict) if verdict else len(order)
            ranked.append((rank, entry.label.lower(), entry, verdict))
        ranked.sort(key=lambda item: item[:2])
        return [(entry, verdict) for _, _, entry, verdict in ranked[:limit]]

    # -- drawing ---------------------------------------------------------------------
    def plan(self, request: DrawRequest) -> DrawPlan:
        """Resolve names, check compatibility and weights, apply limits: everything that
        can be refused is refused here, before any GPU work."""
        limits = self.admin.limits()
        prompt, tagged = split_prompt_loras(clean_prompt(request.prompt))
        loras = [*request.loras, *tagged]
        negative = clean_prompt(request.negative or "")
        if not prompt:
            raise RequestError(_EMPTY_PROMPT)
        for text, too_long in ((prompt, _PROMPT_TOO_LONG), (negative, _NEGATIVE_TOO_LONG)):
            if len(text) > self.settings.max_prompt_chars:
                raise LimitError(too_long, length=len(text), limit=self.settings.max_prompt_chars)
        # Both sides in NFKC and case-folded: "ｇｏｒｅ" or "GORE" must not slip past "gore".
        folded = clean_name(f"{prompt}\n{negative}").casefold()
        for word in self.admin.blocklist(request.scope):
            if clean_name(word).casefold() in folded:
                raise RequestError(_BLOCKED, word=word)

        ckpt_entry = self._checkpoint_for(request.checkpoint)
        if not request.allow_nsfw and self.is_nsfw(ckpt_entry):
            raise RequestError(_NSFW_HERE, name=ckpt_entry.label)
        ckpt_summary = self.summary(ckpt_entry)
        if ckpt_entry.architecture not in (Architecture.SDXL,):
            raise RequestError(_NOT_SDXL, name=ckpt_entry.label, arch=Architecture(ckpt_summary.architecture).label)
        checkpoint = PlannedCheckpoint(
            name=ckpt_entry.name,
            label=ckpt_entry.label,
            path=ckpt_entry.path,
            format=ckpt_entry.format,
            sha256=ckpt_entry.sha256,
            autov2=ckpt_entry.autov2,
            architecture=ckpt_entry.architecture,
            base_model=ckpt_summary.base_model,
            family=ckpt_summary.family,
            family_label=ckpt_summary.family_label,
            v_prediction=ckpt_entry.v_prediction,
            facts=ckpt_entry.checkpoint_facts,
        )
        warnings: list[Message] = []
        if ckpt_entry.format == "safetensors" and not self._has_baked_vae(ckpt_entry):
            donor = self._vae_donor(ckpt_entry, ckpt_summary.family)
            if donor is None:
                raise LibraryError(_NO_VAE, name=ckpt_entry.label)
            checkpoint.vae_path, checkpoint.vae_from = donor.path, donor.name
            warnings.append(Message.of(_VAE_BORROWED, name=ckpt_entry.label, donor=donor.label))

        if len(loras) > self.settings.max_loras:
            raise LimitError(_OUT_OF_RANGE, what="LoRAs", low=0, high=self.settings.max_loras, value=len(loras))
        planned: list[PlannedLora] = []
        asked_as: dict[str, str] = {}  # file -> the name it was first asked for by
        for req in loras:
            entry = self.library.get_usable(clean_name(req.name), Category.LORA)
            # A file name and a display name (or two spellings) can reach the same file;
            # applied twice, its weights would add up past the clamp range.
            same = entry.sha256 or entry.rel_path  # two copies of one file count as one
            if same in asked_as:
                raise WeightError(_SAME_LORA_TWICE, first=asked_as[same], second=req.name, name=entry.name)
            asked_as[same] = req.name
            if not request.allow_nsfw and self.is_nsfw(entry):
                raise RequestError(_NSFW_HERE, name=entry.label)
            result = self.knowledge.verdict(entry, ckpt_entry)
            decision = decide_weight(
                entry.name, req.weight, entry.weight_override, self.settings.lora_weight_min, self.settings.lora_weight_max
            )
            lora = PlannedLora(
                name=entry.name,
                label=entry.label,
                path=entry.path,
                sha256=entry.sha256,
                autov3=entry.autov3,
                requested_weight=req.weight,
                applied_weight=decision.applied,
                status=decision.status,
                verdict=str(result.verdict),
            )
            if result.verdict == Verdict.INCOMPATIBLE:
                lora.status, lora.applied_weight = LoraStatus.REFUSED, 0.0
                lora.warnings.append(
                    Message.of(
                        _REFUSED,
                        name=entry.name,
                        lora_arch=result.lora_architecture.label,
                        checkpoint=ckpt_entry.label,
                        ckpt_arch=result.checkpoint_architecture.label,
                    )
                )
            else:
                if decision.note:
                    lora.warnings.append(decision.note)
                if result.warning_text is not None:
                    lora.warnings.append(Message(result.warning_text, result.params))
            warnings.extend(lora.warnings)
            planned.append(lora)

        family = self.table.family(checkpoint.family) if checkpoint.family else None
        for lint in lint_prompt(prompt, negative, family, self.table):
            warnings.append(Message(lint.text, lint.params))

        params = self._params(request, prompt, negative, limits)
        return DrawPlan(request=request, checkpoint=checkpoint, loras=planned, params=params, warnings=warnings)

    def _has_baked_vae(self, entry: LibraryEntry) -> bool:
        """Whether a single-file checkpoint carries its VAE, as the scan stored it."""
        return entry.checkpoint_facts.has_vae

    def _vae_donor(self, entry: LibraryEntry, family: str | None) -> LibraryEntry | None:
        """Another SDXL checkpoint whose VAE a checkpoint pruned of its own can use; one of
        the same family first. All SDXL fine-tunes keep the SDXL VAE's layout."""
        candidates = [
            e
            for e in self.library.entries(Category.CHECKPOINT, include_broken=False)
            if e.enabled and e.architecture == Architecture.SDXL and e.format == "safetensors"
            and e.path != entry.path and self._has_baked_vae(e)
        ]
        if not candidates:
            return None
        same_family = [e for e in candidates if family and self.summary(e).family == family]
        return (same_family or candidates)[0]

    def _checkpoint_for(self, name: str | None) -> LibraryEntry:
        if name:
            return self.library.get_usable(clean_name(name), Category.CHECKPOINT)
        default = self.admin.default_checkpoint()
        if default:
            return self.library.get_usable(default, Category.CHECKPOINT)
        usable = [
            e
            for e in self.library.entries(Category.CHECKPOINT, include_broken=False)
            if e.enabled and e.architecture == Architecture.SDXL
        ]
        if not usable:
            raise LibraryError(_NO_CHECKPOINT)
        return usable[0]

    def is_nsfw(self, entry: LibraryEntry) -> bool:
        """An admin's word (either way), else CivitAI's (cached answer): the creator's flag
        or CivitAI's rating of the version above PG-13."""
        if entry.nsfw is not None:
            return entry.nsfw
        version = self.knowledge.civitai_version(entry.sha256)
        return bool(version and version.is_nsfw)

    def _params(self, request: DrawRequest, prompt: str, negative: str, limits: Limits) -> GenerationParams:
        s = self.settings
        steps = request.steps if request.steps is not None else min(s.default_steps, limits.max_steps)
        cfg = request.cfg if request.cfg is not None else s.default_cfg
        width = request.width if request.width is not None else min(s.default_width, limits.max_size)
        height = request.height if request.height is not None else min(s.default_height, limits.max_size)
        _check_range("steps", steps, 1, limits.max_steps)
        _check_range("cfg", cfg, 0, 30)
        _check_range("width", width, 64, limits.max_size)
        _check_range("height", height, 64, limits.max_size)
        _check_range("count", request.count, 1, limits.max_images)
        if width % 8 or height % 8:
            raise LimitError(_SIZE_STEP, width=width, height=height)
        seed = request.seed if request.seed is not None else random.randint(0, MAX_SEED)
        _check_range("seed", seed, 0, MAX_SEED)
        return GenerationParams(
            prompt=prompt,
            negative=negative,
            seed=int(seed),
            steps=int(steps),
            cfg=float(cfg),
            width=int(width),
            height=int(height),
            count=int(request.count),
            sampler=get_sampler(request.sampler).name,
        )

    async def submit(self, request: DrawRequest) -> Any:
        """Plan (refusing bad requests before any GPU work) and queue; returns a
        JobHandle whose events report queue position, steps and the DrawResult."""
        if self.queue is None:
            raise RuntimeError("Engine.start() must run before submit()")
        plan = await asyncio.to_thread(self.plan, request)
        request.seed = plan.params.seed  # a re-run after a restart gives the same image
        # In a thread too: queuing writes the job to SQLite, which may wait for a lock.
        return await asyncio.to_thread(self.queue.submit, _queued_job(plan))

    async def draw(self, request: DrawRequest) -> DrawResult:
        handle = await self.submit(request)
        return await handle.result()

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


def _check_range(what: str, value: float, low: float, high: float) -> None:
    if value != value or not low <= value <= high:
        raise LimitError(_OUT_OF_RANGE, what=what, low=low, high=high, value=value)


def _evidence_messages(evidence: list[Any]) -> list[Message]:
    return [Message(e.text, e.params) for e in evidence]


def _summary(entry: LibraryEntry, who: Identity) -> ModelSummary:
    return ModelSummary(
        name=entry.name,
        label=entry.label,
        category=str(entry.category),
        kind=str(entry.kind),
        architecture=str(who.architecture),
        base_model=who.base_model,
        base_model_source=str(who.base_model_source) if who.base_model_source else None,
        family=who.family.id if who.family else None,
        family_label=who.family.label if who.family else None,
    )


def _lora_verdict(summary: ModelSummary, result: VerdictResult) -> LoraVerdict:
    return LoraVerdict(
        lora=summary,
        verdict=str(result.verdict),
        evidence=_evidence_messages(result.evidence),
        explanation=result.explanation,
    )
