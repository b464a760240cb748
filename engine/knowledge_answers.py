"""The answers to `/lora info` and `/family check`, assembled from what `Knowledge` knows.

The content rules apply here as in planning a draw: outside age-restricted places
(`allow_nsfw=False`) an NSFW LoRA or checkpoint is refused, and NSFW checkpoints are
left out of the "suits" list.
"""

from __future__ import annotations

from typing import Any

from engine.answers import FamilyCheck, LoraInfo, LoraVerdict, ModelSummary, Suitability
from engine.content_rules import is_nsfw, may_list, refuse_nsfw
from engine.families import FamilyTable
from engine.i18n import Message
from engine.kinds import Category
from engine.knowledge import Knowledge
from engine.library import Library, LibraryEntry
from engine.verdicts import Identity, Verdict, VerdictResult, identify


class Answers:
    def __init__(self, library: Library, knowledge: Knowledge, table: FamilyTable, civitai_base_url: str) -> None:
        self.library = library
        self.knowledge = knowledge
        self.table = table
        self.civitai_base_url = civitai_base_url

    def summary(self, entry: LibraryEntry) -> ModelSummary:
        return _summary(entry, identify(self.knowledge.facts(entry), self.table))

    def family_check(
        self, ckpt: LibraryEntry, entries: list[LibraryEntry], notes: list[Message], *, allow_nsfw: bool = True
    ) -> FamilyCheck:
        refuse_nsfw([ckpt, *entries], self.knowledge, allow_nsfw=allow_nsfw)
        verdicts = [_lora_verdict(self.summary(e), self.knowledge.verdict(e, ckpt)) for e in entries]
        return FamilyCheck(self.summary(ckpt), verdicts, notes)

    def suits(self, entry: LibraryEntry, *, allow_nsfw: bool = True) -> list[Suitability]:
        """The library's checkpoints for a LoRA, best verdict first."""
        suits = []
        for checkpoint in self.library.entries(Category.CHECKPOINT, include_broken=False):
            if not may_list(checkpoint, self.knowledge, allow_nsfw=allow_nsfw):
                continue
            result = self.knowledge.verdict(entry, checkpoint)
            fam = result.checkpoint_family
            suits.append(Suitability(checkpoint.name, fam.id if fam else None, fam.label if fam else None, str(result.verdict)))
        order = [str(v) for v in Verdict]
        suits.sort(key=lambda s: (order.index(s.verdict), s.checkpoint.lower()))
        return suits

    def suggest_loras(
        self, ckpt: LibraryEntry | None, text: str, limit: int, *, allow_nsfw: bool = True
    ) -> list[tuple[LibraryEntry, Verdict | None]]:
        """LoRAs for autocomplete, best verdict first, incompatible (and, outside
        age-restricted channels, NSFW) ones left out. Cache-only (no network), so it
        answers well inside Discord's deadline."""
        key = text.lower()
        ranked: list[tuple[int, str, LibraryEntry, Verdict | None]] = []
        order = list(Verdict)
        for entry in self.library.entries(Category.LORA, include_broken=False):
            if not entry.enabled or not may_list(entry, self.knowledge, allow_nsfw=allow_nsfw):
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

    def lora_info(self, entry: LibraryEntry, notes: list[Message], *, allow_nsfw: bool = True) -> LoraInfo:
        refuse_nsfw([entry], self.knowledge, allow_nsfw=allow_nsfw)
        facts = self.knowledge.facts(entry)
        version = self.knowledge.civitai_version(entry.sha256)
        training = entry.training
        triggers, trigger_source = self.knowledge.trigger_words(entry)
        weight = self.knowledge.recommended_weight(entry)
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
            recommended_weight=weight.value,
            recommended_weight_source=weight.source,
            recommended_range=(weight.low, weight.high) if weight.low is not None and weight.high is not None else None,
            civitai_url=version.page_url(self.civitai_base_url) if version else None,
            civitai_name=(f"{version.model.name} — {version.name}" if version and version.model else None),
            preview_url=preview.url if preview else None,
            nsfw=is_nsfw(entry, self.knowledge),
            enabled=entry.enabled,
            trained_on=trained_on,
            top_tags=[(tag, training.tag_frequency.get(tag, 0)) for tag in training.top_tags(12)],
            evidence=_evidence_messages(list(identify(facts, self.table).evidence)),
            suits=self.suits(entry, allow_nsfw=allow_nsfw),
            notes=notes,
        )


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
        fix=result.fix,
    )
