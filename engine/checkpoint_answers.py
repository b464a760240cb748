"""`/checkpoint info`: what a checkpoint is (merged or trained, base model and family),
what it was made from, and what suits it.

Each fact says where it comes from, and nothing is guessed:
- the type is CivitAI's `checkpointType` ("Checkpoint Merge" / "Checkpoint Trained") when a
  body carries it, else "merge" when the file itself names the models it was merged from
  (engine.files.merge_metadata), else unknown;
- base model and family are resolved exactly as verdicts resolve them (engine.verdicts);
- parents are matched to the library by SHA-256, by A1111's legacy hash, or (when the
  file gives no hash at all) by file name, and to CivitAI by hash (cached answers);
- the LoRAs are the library's, judged by the same verdicts as /family check.
Cache only: `Engine.checkpoint_info` asks CivitAI first, then calls this in a thread.
"""

from __future__ import annotations

import asyncio

from engine.answers import ModelSummary
from engine.checkpoint_types import CheckpointInfo, ConventionInfo, ParentInfo, Sibling, SuitedLora
from engine.civitai.models import ModelVersion
from engine.content_rules import is_nsfw, may_list, refuse_nsfw
from engine.families import FamilyTable
from engine.files.merge_metadata import (
    MergeLineage,
    MergeParent,
    merge_lineage,
    parent_stem,
    read_merge_lineage,
)
from engine.i18n import Message, Text
from engine.kinds import Category
from engine.knowledge import Knowledge
from engine.library import Library, LibraryEntry
from engine.verdicts import Verdict, identify

MERGE, TRAINED, UNKNOWN = "merge", "trained", "unknown"

_TYPE_CIVITAI = {
    MERGE: Text("CivitAI lists “{name}” as a Checkpoint Merge.", "CivitAI 將「{name}」列為融合模型（Checkpoint Merge）。"),
    TRAINED: Text(
        "CivitAI lists “{name}” as a Checkpoint Trained (trained itself, not merged).",
        "CivitAI 將「{name}」列為訓練模型（Checkpoint Trained，自行訓練而非融合）。",
    ),
}
_TYPE_FILE = Text(
    "The file's own metadata ({tool}) names {count} model(s) it was merged from.",
    "檔案本身的中繼資料（{tool}）列出了它融合自的 {count} 個模型。",
)
_TYPE_CONFLICT = Text(
    "CivitAI says it was trained, yet the file's metadata ({tool}) names models it was merged from; CivitAI's word is shown.",
    "CivitAI 說它是訓練模型，但檔案的中繼資料（{tool}）列出了融合來源；此處採用 CivitAI 的說法。",
)
_TYPE_UNKNOWN = Text(
    "Neither CivitAI nor the file says whether “{name}” was merged or trained.",
    "CivitAI 與檔案本身都沒有說明「{name}」是融合還是訓練而來。",
)
_PARENT_FAMILY = Text(
    "Parent “{parent}” is {base_model} ({source}).",
    "來源模型「{parent}」是 {base_model}（{source_zh}）。",
)
_SOURCE_WORDS = {"library": ("as the library knows it", "依模型庫的資料"), "civitai": ("says CivitAI", "依 CivitAI")}

_TOOLS = {
    "webui": "A1111 checkpoint merger",
    "sd-webui-supermerger": "SuperMerger",
    "sd-webui-model-mixer": "Model Mixer",
    "merge-models-chattiori": "chattiori merge script",
    "sd-mecha": "sd-mecha",
    "comfyui": "ComfyUI",
    "modelspec": "modelspec.merged_from",
}


def tool_label(tool: str | None) -> str:
    return _TOOLS.get(tool or "", tool or "?")


def lineage_of(entry: LibraryEntry) -> MergeLineage:
    """The merge lineage the file names: from the metadata the scan stored, else (values
    over the scan's size limit are not stored) from the file's header."""
    found = merge_lineage(entry.metadata)
    if found.is_merge or entry.format != "safetensors" or not entry.path.is_file():
        return found
    return read_merge_lineage(entry.path)


async def civitai_checkpoint_type(knowledge: Knowledge, entry: LibraryEntry) -> str | None:
    """CivitAI's `checkpointType` from the model body (by-hash version bodies do not carry
    it). Cache first; asked only when CivitAI knows the file and may be asked."""
    version = await asyncio.to_thread(knowledge.civitai_version, entry.sha256)
    if version is None or version.model_id is None:
        return None
    if version.model is not None and version.model.checkpoint_type:
        return version.model.checkpoint_type
    lookup = await knowledge.civitai.model(version.model_id)
    return lookup.value.checkpoint_type if lookup.value is not None else None


class CheckpointAnswers:
    def __init__(self, library: Library, knowledge: Knowledge, table: FamilyTable, civitai_base_url: str) -> None:
        self.library = library
        self.knowledge = knowledge
        self.table = table
        self.civitai_base_url = civitai_base_url

    def checkpoint_info(
        self,
        entry: LibraryEntry,
        lineage: MergeLineage,
        notes: list[Message],
        *,
        model_checkpoint_type: str | None = None,
        allow_nsfw: bool = True,
    ) -> CheckpointInfo:
        refuse_nsfw([entry], self.knowledge, allow_nsfw=allow_nsfw)
        who = identify(self.knowledge.facts(entry), self.table)
        version = self.knowledge.civitai_version(entry.sha256)
        evidence = [Message(e.text, e.params) for e in who.evidence]
        parents = [self._parent(p) for p in lineage.parents]
        ancestors = [self._parent(p) for p in lineage.ancestors]

        kind, source = _checkpoint_type(version, model_checkpoint_type, lineage, entry.label, evidence)
        for parent in parents:
            if parent.base_model:
                en, zh = _SOURCE_WORDS["library" if parent.in_library else "civitai"]
                name = parent.name or parent.library_name or "?"
                evidence.append(Message.of(_PARENT_FAMILY, parent=name, base_model=parent.base_model, source=en, source_zh=zh))

        family = who.family
        conventions = [
            ConventionInfo(c.kind, list(c.tags), c.text, c.source, c.base_model)
            for c in (family.prompt_conventions(who.base_model) if family else ())
        ]
        loras, incompatible = self._loras(entry, allow_nsfw)
        return CheckpointInfo(
            summary=_summary(entry, who.base_model, str(who.base_model_source) if who.base_model_source else None,
                             family.id if family else None, family.label if family else None, str(who.architecture)),
            checkpoint_type=kind,
            checkpoint_type_source=source,
            sha256=entry.sha256,
            autov2=entry.autov2,
            file=entry.rel_path,
            size=entry.size,
            evidence=evidence,
            parents=parents,
            ancestors=ancestors,
            merge_tool=tool_label(lineage.tool) if lineage.is_merge else None,
            merge_method=lineage.method,
            merge_multiplier=lineage.multiplier,
            siblings=self._siblings(entry, family.id if family else None, allow_nsfw),
            loras=loras,
            incompatible_loras=incompatible,
            prompt_conventions=conventions,
            civitai_url=version.page_url(self.civitai_base_url) if version else None,
            civitai_name=f"{version.model.name} — {version.name}" if version and version.model else None,
            v_prediction=entry.v_prediction,
            zero_terminal_snr=bool(entry.info.get("zero_terminal_snr")),
            has_vae=bool(entry.info.get("has_vae")),
            nsfw=is_nsfw(entry, self.knowledge),
            notes=notes,
        )

    # -- parts -----------------------------------------------------------------------
    def _parent(self, parent: MergeParent) -> ParentInfo:
        found, match = self._find_parent(parent)
        info = ParentInfo(parent.name, parent.sha256, parent.legacy_hash, parent.role, found.name if found else None, match)
        if found is not None:
            who = identify(self.knowledge.facts(found), self.table)
            info.base_model = who.base_model
            info.family = who.family.id if who.family else None
        version = self.knowledge.civitai_version(parent.sha256 or (found.sha256 if found else None))
        if version is not None:
            info.civitai_url = version.page_url(self.civitai_base_url)
            info.civitai_name = f"{version.model.name} — {version.name}" if version.model else version.name
            if info.base_model is None and version.base_model:
                looked = self.table.lookup(version.base_model)
                info.base_model = looked.name
                info.family = looked.family.id if looked.family else None
        return info

    def _find_parent(self, parent: MergeParent) -> tuple[LibraryEntry | None, str | None]:
        checkpoints = self.library.entries(Category.CHECKPOINT, include_broken=False)
        if parent.sha256:
            hits = [e for e in checkpoints if e.sha256 and e.sha256.upper() == parent.sha256]
            if hits:
                return hits[0], "sha256"
        if parent.legacy_hash:
            # A1111's old hash reads 64 KiB of the file: trusted only where no SHA-256
            # contradicts it.
            hits = [
                e
                for e in checkpoints
                if e.autov1 and e.autov1.upper() == parent.legacy_hash and (parent.sha256 is None or e.sha256 is None)
            ]
            if len(hits) == 1:
                return hits[0], "legacy_hash"
        if parent.sha256 is None and parent.legacy_hash is None and parent.name:
            # Names only (sd-mecha, ComfyUI, modelspec): the weakest match, and only when
            # exactly one library file has that name.
            wanted = parent_stem(parent.name)
            hits = [e for e in checkpoints if parent_stem(e.path.name) == wanted]
            if len(hits) == 1:
                return hits[0], "name"
        return None, None

    def _siblings(self, entry: LibraryEntry, family_id: str | None, allow_nsfw: bool) -> list[Sibling]:
        if family_id is None:
            return []
        found = []
        for other in self.library.entries(Category.CHECKPOINT, include_broken=False):
            if other.rel_path == entry.rel_path or not may_list(other, self.knowledge, allow_nsfw=allow_nsfw):
                continue
            who = identify(self.knowledge.facts(other), self.table)
            if who.family is not None and who.family.id == family_id:
                found.append(Sibling(other.name, who.base_model, who.family.id))
        return sorted(found, key=lambda s: s.name.lower())

    def _loras(self, entry: LibraryEntry, allow_nsfw: bool) -> tuple[list[SuitedLora], int]:
        order = list(Verdict)
        ranked: list[tuple[int, str, SuitedLora]] = []
        incompatible = 0
        for lora in self.library.entries(Category.LORA, include_broken=False):
            if not lora.enabled or not may_list(lora, self.knowledge, allow_nsfw=allow_nsfw):
                continue
            result = self.knowledge.verdict(lora, entry)
            if result.verdict == Verdict.INCOMPATIBLE:
                incompatible += 1
                continue
            fam = result.lora_family
            suited = SuitedLora(lora.name, lora.label, str(result.verdict), result.lora_base_model, fam.label if fam else None)
            ranked.append((order.index(result.verdict), lora.label.lower(), suited))
        ranked.sort(key=lambda item: item[:2])
        return [item[2] for item in ranked], incompatible


def _checkpoint_type(
    version: ModelVersion | None,
    model_checkpoint_type: str | None,
    lineage: MergeLineage,
    name: str,
    evidence: list[Message],
) -> tuple[str, str | None]:
    said = (version.model.checkpoint_type if version and version.model else None) or model_checkpoint_type
    civitai = {"merge": MERGE, "trained": TRAINED}.get((said or "").strip().lower())
    tool = tool_label(lineage.tool)
    if civitai is not None:
        evidence.insert(0, Message.of(_TYPE_CIVITAI[civitai], name=name))
        if lineage.is_merge:
            text = _TYPE_FILE if civitai == MERGE else _TYPE_CONFLICT
            evidence.insert(1, Message.of(text, tool=tool, count=len(lineage.parents)))
        return civitai, "civitai"
    if lineage.is_merge:
        evidence.insert(0, Message.of(_TYPE_FILE, tool=tool, count=len(lineage.parents)))
        return MERGE, "file"
    evidence.insert(0, Message.of(_TYPE_UNKNOWN, name=name))
    return UNKNOWN, None


def _summary(
    entry: LibraryEntry, base_model: str | None, source: str | None, family: str | None, label: str | None, arch: str
) -> ModelSummary:
    return ModelSummary(
        name=entry.name,
        label=entry.label,
        category=str(entry.category),
        kind=str(entry.kind),
        architecture=arch,
        base_model=base_model,
        base_model_source=source,
        family=family,
        family_label=label,
    )
