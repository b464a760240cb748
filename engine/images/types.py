"""The shapes the image loop hands to front ends (the bot and the CLI).

Kept apart from the code that fills them so both front ends and the engine agree on one
definition: a stored input picture, the parameters read from a PNG, and how each resource
that PNG names was matched against the library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from engine.i18n import Message
from engine.requests import DrawRequest

MatchHow = Literal["hash", "name", "missing"]
ResourceKind = Literal["checkpoint", "lora"]
ParameterSource = Literal["loracle", "a1111", "comfyui", "civitai"]


@dataclass(frozen=True)
class StoredImage:
    """A user's picture, checked and normalised, kept under the data dir by its id."""

    id: str  # sha256 of the stored PNG: the same picture is stored once
    width: int
    height: int


@dataclass(frozen=True)
class ResourceRef:
    """A checkpoint or LoRA as a PNG names it: by name, by hash, or both."""

    kind: ResourceKind
    name: str | None
    hash: str | None = None  # as written: AutoV2 (10 hex), AutoV3 (12 hex) or a full sha256
    weight: float | None = None  # LoRAs only
    civitai_version: int | None = None  # CivitAI's model-version id, where the picture gives it


@dataclass
class ImageParameters:
    """What a picture says about how it was made; None where it does not say."""

    source: ParameterSource
    prompt: str
    negative: str = ""
    seed: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None  # Loracle's own sampler name when recognised
    width: int | None = None
    height: int | None = None
    clip_skip: int | None = None
    checkpoint: ResourceRef | None = None
    loras: list[ResourceRef] = field(default_factory=list)
    hires: float | None = None
    hires_denoise: float | None = None
    hires_steps: int | None = None
    hires_upscaler: str | None = None
    denoise: float | None = None  # img2img strength, when the picture was made from another
    extra: dict[str, str] = field(default_factory=dict)  # fields read but not used
    warnings: list[Message] = field(default_factory=list)  # values refused while reading


@dataclass(frozen=True)
class ResourceMatch:
    """One resource of a picture and what the library holds for it."""

    ref: ResourceRef
    how: MatchHow
    matched: str | None = None  # the library entry's name, unless missing
    verdict: str | None = None  # LoRAs: its verdict against the checkpoint to be used
    civitai_url: str | None = None  # where to get it, found by hash (missing ones)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.ref.kind,
            "name": self.ref.name,
            "hash": self.ref.hash,
            "weight": self.ref.weight,
            "how": self.how,
            "matched": self.matched,
            "verdict": self.verdict,
            "civitai_url": self.civitai_url,
        }


@dataclass
class ImageInfo:
    """A picture's parameters and each of its resources matched against the library."""

    parameters: ImageParameters
    matches: list[ResourceMatch]
    warnings: list[Message] = field(default_factory=list)


@dataclass
class LikeRequest:
    """A draw request rebuilt from a picture, with how each of its resources was found."""

    request: DrawRequest
    matches: list[ResourceMatch]
    warnings: list[Message] = field(default_factory=list)
