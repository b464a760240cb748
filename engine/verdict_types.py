"""The data a verdict is made of and answers with: what is known about one file
(`ModelFacts`), each fact behind a verdict (`Evidence`) and the verdict itself.
`engine.verdicts` decides; this module only describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.families import Family
from engine.i18n import EN, Fix, Text, normalize_locale
from engine.kinds import Architecture


class Verdict(StrEnum):
    EXACT = "exact"
    SAME_FAMILY = "same_family"
    OTHER_FAMILY = "other_family"
    INCOMPATIBLE = "incompatible"
    UNKNOWN = "unknown"


class Source(StrEnum):
    ADMIN = "admin"
    CIVITAI = "civitai"
    METADATA = "metadata"
    FILENAME = "filename"
    TENSORS = "tensors"

    @property
    def rank(self) -> int:
        """0 for the most trusted (admin) to 4 for the least (tensors)."""
        return _TRUST.index(self)


_TRUST = (Source.ADMIN, Source.CIVITAI, Source.METADATA, Source.FILENAME, Source.TENSORS)

# How each source is named inside a sentence ("... but {an admin's setting} is trusted more").


@dataclass(frozen=True)
class Evidence:
    """One fact behind a verdict, with where it came from."""

    source: Source
    text: Text
    params: dict[str, Any] = field(default_factory=dict)

    def render(self, locale: str | None = EN) -> str:
        return self.text.render(locale, **self.params)

    def __str__(self) -> str:
        return f"{self.source}: {self.render(EN)}"


@dataclass(frozen=True)
class BaseModelClaim:
    """A base model stated by one source, kept when a more trusted one overrides it
    (e.g. CivitAI's answer after an admin set another), so the verdict can show both."""

    source: Source
    base_model: str


@dataclass
class ModelFacts:
    """What is known about ONE file, built elsewhere (engine.knowledge)."""

    name: str
    category: str  # "checkpoint" | "lora"
    sha256: str | None  # upper-case hex
    autov1: str | None  # legacy A1111 8-hex hash
    architecture: Architecture
    architecture_source: Source  # usually TENSORS
    base_model: str | None  # CivitAI-style string, e.g. "Illustrious"
    base_model_source: Source | None
    civitai_model_id: int | None = None
    civitai_version_id: int | None = None
    # LoRA only: what the training metadata says about the training checkpoint
    trained_on_sha256: str | None = None  # ss_new_sd_model_hash
    trained_on_autov1: str | None = None  # ss_sd_model_hash
    trained_on_name: str | None = None  # ss_sd_model_name
    trained_on_base_model: str | None = None  # base model of that checkpoint, found on CivitAI by hash
    trained_on_civitai_model_id: int | None = None
    trained_on_civitai_version_id: int | None = None
    # the training checkpoint is in the local library (same SHA-256): its base model then
    # arrives in trained_on_base_model, as file-metadata evidence
    trained_on_library_checkpoint: str | None = None
    notes: list[Evidence] = field(default_factory=list)  # extra evidence gathered upstream
    base_model_claims: list[BaseModelClaim] = field(default_factory=list)  # outranked claims


@dataclass
class VerdictResult:
    verdict: Verdict
    evidence: list[Evidence]
    explanation: dict[str, str]  # {"en": ..., "zh-TW": ...}
    lora_family: Family | None
    checkpoint_family: Family | None
    lora_architecture: Architecture
    checkpoint_architecture: Architecture
    lora_base_model: str | None = None
    checkpoint_base_model: str | None = None
    warning_text: Text | None = field(default=None, repr=False)
    params: dict[str, Any] = field(default_factory=dict, repr=False)
    fix: Fix | None = None  # unknown: set the base model of the file whose family is unknown

    @property
    def applies(self) -> bool:
        """Whether the LoRA may be applied at all: False only for incompatible."""
        return self.verdict != Verdict.INCOMPATIBLE

    def warning(self, locale: str | None = EN) -> str | None:
        """A one-liner for other_family / unknown, None for the other verdicts."""
        return self.warning_text.render(locale, **self.params) if self.warning_text else None

    def explain(self, locale: str | None = EN) -> str:
        return self.explanation[normalize_locale(locale)]

    def as_dict(self, locale: str | None = EN) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's `--json` output)."""
        return {
            "verdict": str(self.verdict),
            "applies": self.applies,
            "explanation": self.explain(locale),
            "explanations": dict(self.explanation),
            "warning": self.warning(locale),
            "evidence": [{"source": str(e.source), "text": e.render(locale)} for e in self.evidence],
            "lora": {
                "family": self.lora_family.id if self.lora_family else None,
                "base_model": self.lora_base_model,
                "architecture": str(self.lora_architecture),
            },
            "checkpoint": {
                "family": self.checkpoint_family.id if self.checkpoint_family else None,
                "base_model": self.checkpoint_base_model,
                "architecture": str(self.checkpoint_architecture),
            },
        }


