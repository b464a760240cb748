"""Answers to `/lora info` and `/family check`, shared by the CLI (--json) and the bot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.i18n import EN, Fix, Message


@dataclass
class ModelSummary:
    name: str
    label: str
    category: str
    kind: str
    architecture: str
    base_model: str | None
    base_model_source: str | None
    family: str | None
    family_label: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "kind": self.kind,
            "architecture": self.architecture,
            "base_model": self.base_model,
            "base_model_source": self.base_model_source,
            "family": self.family,
            "family_label": self.family_label,
        }


@dataclass
class LoraVerdict:
    lora: ModelSummary
    verdict: str
    evidence: list[Message]
    explanation: dict[str, str]
    warning: Message | None = None
    fix: Fix | None = None  # what an admin can do about an `unknown` verdict

    def to_json(self, locale: str = EN) -> dict[str, Any]:
        return {
            **self.lora.to_json(),
            "verdict": self.verdict,
            "evidence": [e.render(locale) for e in self.evidence],
            "explanation": self.explanation.get(locale) or self.explanation[EN],
            "explanations": self.explanation,
            "fix": {"code": self.fix.code, "params": self.fix.params} if self.fix else None,
        }


@dataclass
class FamilyCheck:
    checkpoint: ModelSummary
    loras: list[LoraVerdict]
    notes: list[Message] = field(default_factory=list)

    def to_json(self, locale: str = EN) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint.to_json(),
            "loras": [v.to_json(locale) for v in self.loras],
            "notes": [n.render(locale) for n in self.notes],
        }


@dataclass
class Suitability:
    checkpoint: str
    family: str | None  # the family id ("illustrious"), as everywhere else in JSON
    family_label: str | None
    verdict: str


@dataclass
class LoraInfo:
    summary: ModelSummary
    sha256: str | None
    autov2: str | None
    autov3: str | None
    size: int
    rank: int | None
    alpha: float | None
    file: str
    trigger_words: list[str]
    trigger_source: str | None
    recommended_weight: float
    recommended_weight_source: str  # admin | civitai | description | examples | default
    civitai_url: str | None
    civitai_name: str | None
    preview_url: str | None
    nsfw: bool
    enabled: bool
    trained_on: dict[str, Any] | None
    top_tags: list[tuple[str, int]]
    evidence: list[Message]
    suits: list[Suitability]
    notes: list[Message] = field(default_factory=list)
    recommended_range: tuple[float, float] | None = None  # the author's, when given as one

    def to_json(self, locale: str = EN) -> dict[str, Any]:
        return {
            **self.summary.to_json(),
            "sha256": self.sha256,
            "autov2": self.autov2,
            "autov3": self.autov3,
            "size": self.size,
            "rank": self.rank,
            "alpha": self.alpha,
            "file": self.file,
            "trigger_words": self.trigger_words,
            "trigger_source": self.trigger_source,
            "recommended_weight": self.recommended_weight,
            "recommended_weight_source": self.recommended_weight_source,
            "recommended_range": list(self.recommended_range) if self.recommended_range else None,
            "civitai_url": self.civitai_url,
            "civitai_name": self.civitai_name,
            "preview_url": self.preview_url,
            "nsfw": self.nsfw,
            "enabled": self.enabled,
            "trained_on": self.trained_on,
            "top_tags": [[tag, count] for tag, count in self.top_tags],
            "evidence": [e.render(locale) for e in self.evidence],
            "suits": [
                {"checkpoint": s.checkpoint, "family": s.family, "family_label": s.family_label, "verdict": s.verdict}
                for s in self.suits
            ],
            "notes": [n.render(locale) for n in self.notes],
        }
