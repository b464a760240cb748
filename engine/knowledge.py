"""What Loracle knows about a file, assembled from every source in order of trust:

1. an admin's explicit setting,
2. CivitAI, looked up by hash (cached; hits and 404s),
3. the file's own metadata (kohya `ss_*`, `modelspec.*`), including the checkpoint the
   LoRA was trained on (`ss_new_sd_model_hash`, itself looked up on CivitAI),
4. the file name, when it matches a well-known checkpoint naming pattern,
5. the tensors (architecture only, never the family).

`facts()` is synchronous and reads only the cache, so hot paths (autocomplete, planning a
draw) never wait on the network; `ensure_known()` asks CivitAI for what is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.civitai.body import decode_json
from engine.civitai.client import CivitaiClient, Lookup
from engine.civitai.models import ModelVersion, parse_version
from engine.families import FamilyTable
from engine.i18n import EN, Message, Text
from engine.kinds import Architecture, Category
from engine.library import Library, LibraryEntry
from engine.recommended_weight import LoraIdentity, RecommendedWeight, default_weight, recommended_weight
from engine.verdicts import BaseModelClaim, Evidence, ModelFacts, Source, VerdictResult, identify, judge

_FROM_TAGS = Text(
    "its training captions use Pony's score tags ({tags})",
    "訓練標註使用了 Pony 的 score 標籤（{tags}）",
)


_MAX_SIDECAR_BYTES = 4 * 1024 * 1024

_T = TypeVar("_T")


@dataclass
class Knowledge:
    """Facts about library entries, with CivitAI answers cached in SQLite."""

    library: Library
    civitai: CivitaiClient
    table: FamilyTable
    # facts and verdicts, valid while the library version (files, overrides, CivitAI
    # cache) stays the same: autocomplete ranks every LoRA on each keystroke
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    _memo_version: int = field(default=-1, repr=False)
    _memo_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _memoized(self, key: Any, compute: Callable[[], _T]) -> _T:
        version = self.library.version()
        with self._memo_lock:
            if version != self._memo_version:
                self._memo.clear()
                self._memo_version = version
            if key in self._memo:
                cached: _T = self._memo[key]
                return cached
        value = compute()
        with self._memo_lock:
            if version == self._memo_version:
                self._memo[key] = value
        return value

    # -- cache-only ------------------------------------------------------------------
    def civitai_version(self, sha256: str | None) -> ModelVersion | None:
        if not sha256:
            return None
        # Memoized like facts: NSFW checks ask it for every LoRA on every autocomplete
        # keystroke, and each miss of the memo is an SQLite read and a body parse.
        return self._memoized(("version", sha256.upper()), lambda: self.civitai.cached_version_by_hash(sha256).value)

    def trigger_words(self, entry: LibraryEntry) -> tuple[list[str], str | None]:
        """A LoRA's trigger words and where they come from: CivitAI's `trainedWords`,
        else the file's own training metadata; ([], None) when nothing says."""
        version = self.civitai_version(entry.sha256)
        if version and version.trained_words:
            return list(version.trained_words), "civitai"
        if entry.training.trigger_words:
            return list(entry.training.trigger_words), "metadata"
        return [], None

    def recommended_weight(self, entry: LibraryEntry) -> RecommendedWeight:
        """The weight a LoRA is drawn at when a user gives none, best source first: an
        admin's setting, CivitAI's own value, the author's words, the author's example
        images, else the default. Cache only, like `facts`."""
        if entry.weight_override is not None:
            return RecommendedWeight(entry.weight_override, None, None, "admin")
        found = self._memoized(("author_weight", entry.sha256 or entry.rel_path), lambda: self._author_weight(entry))
        if found is None:
            return default_weight()
        if found.value == 0:
            # A slider's "-2 to 2" has 0 for its midpoint, and 0 means "not applied": a
            # LoRA the user asked for would silently do nothing. Its range still stands.
            return RecommendedWeight(default_weight().value, found.low, found.high, "default")
        return found

    def _author_weight(self, entry: LibraryEntry) -> RecommendedWeight | None:
        version = self.civitai_version(entry.sha256)
        if version is None:
            return None
        # By-hash bodies carry no model description; the model body is used only when
        # something (adding a model from CivitAI) already cached it: no network here.
        model = self.civitai.cached_model(version.model_id) if version.model_id is not None else None
        identity = LoraIdentity(
            sha256=entry.sha256, autov2=entry.autov2, file_name=entry.path.name, name=entry.name, version_id=version.id
        )
        return recommended_weight(version, model, identity)

    def facts(self, entry: LibraryEntry) -> ModelFacts:
        return self._memoized(("facts", entry.rel_path), lambda: self._facts(entry))

    def _facts(self, entry: LibraryEntry) -> ModelFacts:
        version = self.civitai_version(entry.sha256)
        training = entry.training
        claims: list[BaseModelClaim] = []
        if entry.base_model_override:
            claims.append(BaseModelClaim(Source.ADMIN, entry.base_model_override))
        if version and version.base_model:
            claims.append(BaseModelClaim(Source.CIVITAI, version.base_model))
        notes: list[Evidence] = []
        trained_on: ModelVersion | None = None
        trained_base: str | None = None
        library_checkpoint: str | None = None
        if entry.category == Category.LORA:
            if training.new_sd_model_hash:
                trained_on = self.civitai_version(training.new_sd_model_hash)
                trained_base = trained_on.base_model if trained_on else None
                if trained_base is None:
                    trained_base, library_checkpoint = self._library_training_base(training.new_sd_model_hash)
            # Pony's captions carry its score tags; a LoRA trained on them is a Pony LoRA
            # even when nothing else says so (weak: only consulted after better claims).
            score_tags = [t for t in training.tag_frequency if t.replace(" ", "_").startswith("score_")]
            if len(score_tags) >= 2:
                claims.append(BaseModelClaim(Source.METADATA, "Pony"))
                notes.append(Evidence(Source.METADATA, _FROM_TAGS, {"tags": ", ".join(score_tags[:3])}))

        architecture, arch_source = entry.architecture, Source.TENSORS
        if architecture == Architecture.UNKNOWN:
            if training.architecture_hint not in (None, Architecture.UNKNOWN):
                architecture, arch_source = training.architecture_hint, Source.METADATA
            elif version and version.air_architecture not in (Architecture.UNKNOWN, Architecture.OTHER):
                architecture, arch_source = version.air_architecture, Source.CIVITAI

        first = claims[0] if claims else None
        return ModelFacts(
            name=entry.name,
            category=str(entry.category),
            sha256=entry.sha256,
            autov1=entry.autov1,
            architecture=architecture,
            architecture_source=arch_source,
            base_model=first.base_model if first else None,
            base_model_source=first.source if first else None,
            base_model_claims=claims[1:],
            civitai_model_id=version.model_id if version else None,
            civitai_version_id=version.id if version else None,
            trained_on_sha256=training.new_sd_model_hash,
            trained_on_autov1=training.sd_model_hash,
            trained_on_name=training.sd_model_name,
            trained_on_base_model=trained_base,
            trained_on_library_checkpoint=library_checkpoint,
            trained_on_civitai_model_id=trained_on.model_id if trained_on else None,
            trained_on_civitai_version_id=trained_on.id if trained_on else None,
            notes=notes,
        )

    def _library_training_base(self, sha256: str) -> tuple[str | None, str | None]:
        """The base model of the library checkpoint a LoRA was trained on, if we have it."""
        for checkpoint in self.library.by_sha256(sha256):
            if checkpoint.category == Category.CHECKPOINT:
                known = identify(self.facts(checkpoint), self.table)
                if known.base_model:
                    return known.base_model, checkpoint.name
        return None, None

    def verdict(self, lora: LibraryEntry, checkpoint: LibraryEntry) -> VerdictResult:
        return self._memoized(
            ("verdict", lora.rel_path, checkpoint.rel_path), lambda: judge(self.facts(lora), self.facts(checkpoint), self.table)
        )

    def ingest_sidecars(self, entries: Iterable[LibraryEntry]) -> int:
        """Adopt `<name>.civitai.info` files (written by A1111's Civitai Helper and similar
        tools next to each model): CivitAI answers already on disk, used offline.
        Only a sidecar that lists this very file's SHA-256 is trusted."""
        adopted = 0
        for entry in entries:
            if not entry.sha256 or entry.format != "safetensors":
                continue
            sidecar = entry.path.with_name(entry.path.name.rsplit(".", 1)[0] + ".civitai.info")
            if not sidecar.is_file() or self.civitai.cached_version_by_hash(entry.sha256).value is not None:
                continue
            try:
                if sidecar.stat().st_size > _MAX_SIDECAR_BYTES:
                    continue
                text = sidecar.read_text(encoding="utf-8")
                # A stranger's file, read with the same limits as a CivitAI answer.
                version = parse_version(decode_json(text))
            except (OSError, ValueError):  # unreadable or not a model-version body
                continue
            if entry.sha256.upper() not in version.all_hashes():
                continue
            ttl = self.civitai.settings.civitai_cache_ttl_hours * 3600
            self.civitai.cache.put_version(version.id, version.all_hashes(), text, ttl)
            adopted += 1
        return adopted

    # -- network ---------------------------------------------------------------------
    async def ensure_known(self, entries: Iterable[LibraryEntry], *, refresh: bool = False) -> list[Message]:
        """Ask CivitAI (through the cache) about these files and the checkpoints their
        LoRAs were trained on. Returns notes about anything that could not be asked."""
        hashes: list[str] = []
        for entry in entries:
            if entry.sha256:
                hashes.append(entry.sha256)
            if entry.category == Category.LORA and entry.training.new_sd_model_hash:
                hashes.append(entry.training.new_sd_model_hash)
        return await self.lookup_hashes(hashes, refresh=refresh)

    async def lookup_hashes(self, hashes: Iterable[str], *, refresh: bool = False) -> list[Message]:
        wanted = list(dict.fromkeys(h.upper() for h in hashes if h))
        if not wanted or self.civitai.settings.offline:
            return []  # offline by choice: cached answers only, nothing to report
        if len(wanted) == 1:
            results = {wanted[0]: await self.civitai.version_by_hash(wanted[0], refresh=refresh)}
        else:
            results = await self.civitai.versions_by_hashes(wanted, refresh=refresh)
        return _notes(results.values())


def _notes(lookups: Iterable[Lookup[Any]]) -> list[Message]:
    seen: dict[str, Message] = {}
    for lookup in lookups:
        if lookup.note is not None:
            msg = Message.of(lookup.note) if isinstance(lookup.note, Text) else lookup.note
            seen.setdefault(msg.render(EN), msg)
    return list(seen.values())
