"""What a front end asks the engine to draw, before and after names are resolved."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeAlias

from engine.files.classify import CheckpointFacts
from engine.i18n import EN, Message
from engine.kinds import Architecture, FileKind
from engine.pipeline.samplers import DEFAULT_SAMPLER
from engine.planning.lora_weights import LoraRequest, LoraStatus

Origin: TypeAlias = dict[str, Any]
"""A JSON object only the front end that submitted a job reads."""


@dataclass
class DrawRequest:
    prompt: str
    negative: str = ""
    checkpoint: str | None = None  # None: the default checkpoint
    loras: list[LoraRequest] = field(default_factory=list)
    seed: int | None = None  # None: random
    steps: int | None = None
    cfg: float | None = None
    width: int | None = None
    height: int | None = None
    count: int = 1
    sampler: str | None = None
    user_id: str = "cli"
    # Whose prompt blocklist applies (the bot: its server's id); None: nobody's.
    scope: str | None = None
    # Where the request came from, for the front end alone: stored and handed back with
    # the job (the bot posts a job recovered after a restart there), never read here.
    origin: Origin | None = None
    locale: str = EN
    allow_nsfw: bool = True  # the bot sets False outside age-restricted channels
    # Image-to-image: the id of a picture kept by Engine.store_image (under the data dir, so
    # a waiting job survives a restart) and how far to move away from it (0-1).
    init_image: str | None = None
    strength: float | None = None
    # Hires fix as A1111 defines it: None leaves each to the admin's default; hires=1.0 is off.
    hires: float | None = None
    hires_denoise: float | None = None
    hires_steps: int | None = None
    hires_upscaler: str | None = None  # "latent", "lanczos" or an upscaler model's name
    # A1111's "Clip skip" (GenerationParams.clip_skip); None: the checkpoint's default.
    # Set by "draw like this" so a picture made with it is redrawn with it.
    clip_skip: int | None = None

    @property
    def kind(self) -> str:
        """The job's kind, for metrics and the queue's reports: draw, hires, img2img, upscale."""
        hires = self.hires is not None and self.hires > 1
        if self.init_image is not None:
            return "upscale" if hires else "img2img"
        return "hires" if hires else "draw"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DrawRequest:
        # Rows written by another version may carry keys this one does not know (or lack
        # new ones): keep what is understood, so a restart never loses a queued job.
        known = {f.name for f in fields(cls)}
        data = {key: value for key, value in data.items() if key in known}
        data["loras"] = [LoraRequest(**item) for item in data.get("loras", [])]
        return cls(**data)


@dataclass
class PlannedCheckpoint:
    name: str
    label: str
    path: Path
    format: str
    sha256: str | None
    autov2: str | None
    architecture: Architecture
    base_model: str | None
    family: str | None  # family id
    family_label: str | None
    v_prediction: bool = False
    # A checkpoint pruned of its VAE borrows another library checkpoint's (file, name).
    vae_path: Path | None = None
    vae_from: str | None = None
    facts: CheckpointFacts | None = None  # the scan's classification, trusted by the loader


@dataclass
class PlannedLora:
    name: str
    label: str
    path: Path | None
    sha256: str | None
    autov3: str | None
    requested_weight: float | None
    applied_weight: float
    status: LoraStatus
    verdict: str
    warnings: list[Message] = field(default_factory=list)
    unmatched_keys: int = 0
    matched_modules: int = 0
    kind: FileKind | None = None  # as the scan decided it; the LoRA parser trusts it

    def to_json(self, locale: str = EN) -> dict[str, Any]:
        return {
            "name": self.name,
            "requested_weight": self.requested_weight,
            "applied_weight": self.applied_weight,
            "status": str(self.status),
            "verdict": self.verdict,
            "warnings": [w.render(locale) for w in self.warnings],
            "matched_modules": self.matched_modules,
            "unmatched_keys": self.unmatched_keys,
        }


@dataclass(frozen=True)
class GenerationParams:
    """Everything the pipeline needs for one job, limits already checked."""

    prompt: str
    negative: str
    seed: int
    steps: int
    cfg: float
    width: int
    height: int
    count: int = 1
    sampler: str = DEFAULT_SAMPLER
    # A1111/CivitAI convention. SDXL already reads the penultimate CLIP layer (what CivitAI
    # calls "clip skip 2"), so 1 and 2 draw the same; each step above 2 skips one more layer.
    clip_skip: int | None = None
    # Image-to-image from a user's picture: how far to move from it (0-1); None for a
    # text-only job. The picture itself travels beside the params (DrawPlan.request).
    strength: float | None = None
    # Hires fix (A1111's): 1.0 is off. A second pass at `hires_denoise` with `hires_steps`
    # steps (0: `steps`) after upscaling by "latent", "lanczos" or an upscaler model's name.
    hires: float = 1.0
    hires_denoise: float = 0.0
    hires_steps: int = 0
    hires_upscaler: str = "latent"

    @property
    def second_pass_steps(self) -> int:
        return self.hires_steps or self.steps

    @property
    def hires_size(self) -> tuple[int, int]:
        """The final (width, height) of a hires job: A1111's int(side * scale), in whole
        latent cells (8 pixels)."""
        return (int(self.width * self.hires) // 8 * 8, int(self.height * self.hires) // 8 * 8)


@dataclass
class DrawPlan:
    """A request with every name resolved and every weight decided: ready for the GPU."""

    request: DrawRequest
    checkpoint: PlannedCheckpoint
    loras: list[PlannedLora]
    params: GenerationParams
    warnings: list[Message] = field(default_factory=list)
    upscaler_path: Path | None = None  # the upscaler model of a hires job, when one is used

    @property
    def applied_loras(self) -> list[PlannedLora]:
        return [l for l in self.loras if l.status in (LoraStatus.APPLIED, LoraStatus.CLAMPED)]


@dataclass
class DrawResult:
    job_id: str
    images: list[Path]
    seeds: list[int]
    plan: DrawPlan
    warnings: list[Message]
    parameters: str  # the A1111 `parameters` text written into each PNG
    seconds: float  # GPU time of the job
    queued_seconds: float = 0.0
    checkpoint_loaded: bool = False  # whether this job had to load the checkpoint

    def to_json(self, locale: str = EN) -> dict[str, Any]:
        cp = self.plan.checkpoint
        p = self.plan.params
        return {
            "job_id": self.job_id,
            "images": [str(path) for path in self.images],
            "seed": p.seed,
            "seeds": self.seeds,
            "checkpoint": {
                "name": cp.name,
                "architecture": str(cp.architecture),
                "base_model": cp.base_model,
                "family": cp.family,
                "vae_from": cp.vae_from,
            },
            "loras": [l.to_json(locale) for l in self.plan.loras],
            "warnings": [w.render(locale) for w in self.warnings],
            "steps": p.steps,
            "cfg": p.cfg,
            "width": p.width,
            "height": p.height,
            "sampler": p.sampler,
            "seconds": round(self.seconds, 3),
            "kind": self.plan.request.kind,
            "strength": p.strength,
            "hires": _hires_json(p),
        }


def _hires_json(p: GenerationParams) -> dict[str, Any] | None:
    """A hires job's second pass: `width`/`height` above are the first pass (A1111's `Size`)."""
    if p.hires <= 1:
        return None
    width, height = p.hires_size
    return {
        "scale": p.hires,
        "denoise": p.hires_denoise,
        "steps": p.second_pass_steps,
        "upscaler": p.hires_upscaler,
        "width": width,
        "height": height,
    }
