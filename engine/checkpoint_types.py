"""The answer to `/checkpoint info` (and `loracle checkpoint info --json`): a checkpoint's
lineage and what suits it. Built by engine.checkpoint_answers; shared by every front end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.answers import ModelSummary
from engine.i18n import EN, Message, Text


@dataclass
class ParentInfo:
    """A model the checkpoint's file says it was merged from, and what we know of it."""

    name: str | None
    sha256: str | None
    legacy_hash: str | None
    role: str | None  # "A", "B", "C": the merger's primary, secondary, tertiary input
    library_name: str | None  # the library checkpoint it is, when found
    match: str | None  # how it was found in the library: sha256 | legacy_hash | name
    base_model: str | None = None
    family: str | None = None
    civitai_url: str | None = None
    civitai_name: str | None = None

    @property
    def in_library(self) -> bool:
        return self.library_name is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "in_library": self.in_library,
            "library_name": self.library_name,
            "match": self.match,
            "legacy_hash": self.legacy_hash,
            "role": self.role,
            "base_model": self.base_model,
            "family": self.family,
            "civitai_url": self.civitai_url,
            "civitai_name": self.civitai_name,
        }


@dataclass
class Sibling:
    name: str
    base_model: str | None
    family: str | None


@dataclass
class SuitedLora:
    name: str
    label: str
    verdict: str
    base_model: str | None
    family_label: str | None


@dataclass
class ConventionInfo:
    kind: str
    tags: list[str]
    text: Text
    source: str
    base_model: str | None

    def to_json(self, locale: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tags": list(self.tags),
            "text": self.text.render(locale),
            "source": self.source,
            "base_model": self.base_model,
        }


@dataclass
class CheckpointInfo:
    summary: ModelSummary
    checkpoint_type: str  # merge | trained | unknown
    checkpoint_type_source: str | None  # civitai | file | None (unknown: nothing says)
    sha256: str | None
    autov2: str | None
    file: str
    size: int
    evidence: list[Message]
    parents: list[ParentInfo]
    siblings: list[Sibling]
    loras: list[SuitedLora]
    prompt_conventions: list[ConventionInfo]
    civitai_url: str | None
    civitai_name: str | None
    v_prediction: bool
    zero_terminal_snr: bool
    has_vae: bool
    nsfw: bool
    ancestors: list[ParentInfo] = field(default_factory=list)
    merge_tool: str | None = None
    merge_method: str | None = None
    merge_multiplier: float | None = None
    incompatible_loras: int = 0
    notes: list[Message] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.summary.name

    def to_json(self, locale: str = EN) -> dict[str, Any]:
        s = self.summary
        return {
            "name": s.name,
            "label": s.label,
            "architecture": s.architecture,
            "checkpoint_type": self.checkpoint_type,
            "checkpoint_type_source": self.checkpoint_type_source,
            "base_model": s.base_model,
            "base_model_source": s.base_model_source,
            "family": s.family,
            "family_label": s.family_label,
            "evidence": [e.render(locale) for e in self.evidence],
            "parents": [p.to_json() for p in self.parents],
            "ancestors": [p.to_json() for p in self.ancestors],
            "merge": {"tool": self.merge_tool, "method": self.merge_method, "multiplier": self.merge_multiplier}
            if self.merge_tool
            else None,
            "siblings": [{"name": x.name, "base_model": x.base_model, "family": x.family} for x in self.siblings],
            "loras": [
                {"name": x.name, "label": x.label, "verdict": x.verdict, "base_model": x.base_model, "family_label": x.family_label}
                for x in self.loras
            ],
            "incompatible_loras": self.incompatible_loras,
            "prompt_conventions": [c.to_json(locale) for c in self.prompt_conventions],
            "civitai_url": self.civitai_url,
            "civitai_name": self.civitai_name,
            "v_prediction": self.v_prediction,
            "zero_terminal_snr": self.zero_terminal_snr,
            "has_vae": self.has_vae,
            "sha256": self.sha256,
            "autov2": self.autov2,
            "file": self.file,
            "size": self.size,
            "nsfw": self.nsfw,
            "notes": [n.render(locale) for n in self.notes],
        }
