"""Everything the library needs to know about one model file, read from its header only.

`inspect_path` answers: what kind of file is this (checkpoint, LoRA, LyCORIS variant),
which architecture does it belong to and why (the evidence is kept as a sentence), its
rank and alpha, what it targets, and what its training metadata claims.

The anatomy lives in engine/files/classify.py (checkpoints) and lora_classify.py (LoRAs);
this module puts their answers together, once, at scan time. The library stores the
result and the loader and LoRA parser trust it rather than classifying again.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import LibraryError
from engine.files.classify import (
    CONTEXT_ARCH,
    REFINER_NOTE,
    ZTSNR_NOTE,
    CheckpointFacts,
    Verdict,
    checkpoint_architecture,
    component_notes,
    input_channel_notes,
    is_checkpoint,
    prediction,
    single_file_has_vae,
)
from engine.files.hashing import folder_weight_files
from engine.files.header import SAFETENSORS_SUFFIXES, SafetensorsHeader, TensorInfo, read_header
from engine.files.lora_classify import (
    TE_ONLY_NOTE,
    ModuleParts,
    is_conv,
    lora_algorithm,
    lora_alpha,
    lora_architecture,
    lora_modules,
    lora_rank,
    lora_targets,
)
from engine.files.lora_keys import lora_kind
from engine.files.lora_sanity import check_lora
from engine.files.sniff import REFUSED_SUFFIXES, check_not_pickle, unsafe_file_error
from engine.files.training import TrainingMetadata, parse_training_metadata
from engine.i18n import Text
from engine.kinds import Architecture, FileKind

_MSG_MISSING = Text("“{name}” does not exist.", "「{name}」不存在。")
_MSG_NOT_REGULAR = Text(
    "“{name}” is not a regular file (a pipe, socket or device), so it cannot be a model.",
    "「{name}」不是一般檔案（而是管線、通訊端或裝置），不可能是模型。",
)
_MSG_UNKNOWN_SUFFIX = Text(
    "“{name}” is not a model file Loracle can read (extension “{suffix}”). Use .safetensors files "
    "or diffusers folders.",
    "Loracle 無法讀取「{name}」（副檔名「{suffix}」）。請使用 .safetensors 檔案或 diffusers 資料夾。",
)
_MSG_GGUF = Text(
    "“{name}” is a GGUF (quantized) file; Loracle only reads .safetensors files and diffusers folders.",
    "「{name}」是 GGUF（量化）檔案；Loracle 只讀取 .safetensors 檔案與 diffusers 資料夾。",
)
_MSG_NOT_DIFFUSERS = Text(
    "The folder “{name}” is not a diffusers model: it has no model_index.json and no unet/ or "
    "transformer/ subfolder.",
    "資料夾「{name}」不是 diffusers 模型：沒有 model_index.json，也沒有 unet/ 或 transformer/ 子資料夾。",
)
_MSG_FOLDER_NO_WEIGHTS = Text(
    "The diffusers folder “{name}” has no .safetensors weights.",
    "diffusers 資料夾「{name}」裡沒有 .safetensors 權重檔。",
)

# Known cross-attention (text-encoder) widths of the UNet families.
@dataclass
class ModelFileInfo:
    path: Path
    format: str  # "safetensors" | "diffusers"
    size: int
    mtime: float
    kind: FileKind
    architecture: Architecture
    architecture_evidence: str
    rank: int | None
    alpha: float | None
    metadata: dict[str, str]
    training: TrainingMetadata
    tensor_count: int
    dtypes: dict[str, int]
    targets: dict[str, int]  # LoRA modules per target: unet/text_encoder/text_encoder_2/transformer
    v_prediction: bool
    data_offset: int | None  # where tensor bytes start (AutoV3 hashing); None for folders
    notes: list[str] = field(default_factory=list)
    zero_terminal_snr: bool = False  # as the file states it (marker, metadata, scheduler)
    has_vae: bool = False  # a checkpoint with its VAE baked in

    @property
    def facts(self) -> CheckpointFacts:
        return CheckpointFacts(
            architecture=self.architecture,
            kind=self.kind,
            v_prediction=self.v_prediction,
            zero_terminal_snr=self.zero_terminal_snr,
            has_vae=self.has_vae,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for caching in the database."""
        return {
            "path": str(self.path),
            "format": self.format,
            "size": self.size,
            "mtime": self.mtime,
            "kind": self.kind.value,
            "architecture": self.architecture.value,
            "architecture_evidence": self.architecture_evidence,
            "rank": self.rank,
            "alpha": self.alpha,
            "metadata": dict(self.metadata),
            "training": self.training.to_dict(),
            "tensor_count": self.tensor_count,
            "dtypes": dict(self.dtypes),
            "targets": dict(self.targets),
            "v_prediction": self.v_prediction,
            "data_offset": self.data_offset,
            "notes": list(self.notes),
            "zero_terminal_snr": self.zero_terminal_snr,
            "has_vae": self.has_vae,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelFileInfo:
        return cls(
            path=Path(data["path"]),
            format=data["format"],
            size=int(data["size"]),
            mtime=float(data["mtime"]),
            kind=FileKind(data["kind"]),
            architecture=Architecture(data["architecture"]),
            architecture_evidence=data.get("architecture_evidence", ""),
            rank=data.get("rank"),
            alpha=data.get("alpha"),
            metadata=dict(data.get("metadata") or {}),
            training=TrainingMetadata.from_dict(data.get("training") or {}),
            tensor_count=int(data.get("tensor_count", 0)),
            dtypes=dict(data.get("dtypes") or {}),
            targets=dict(data.get("targets") or {}),
            v_prediction=bool(data.get("v_prediction", False)),
            data_offset=data.get("data_offset"),
            notes=list(data.get("notes") or []),
            zero_terminal_snr=bool(data.get("zero_terminal_snr", False)),
            has_vae=bool(data.get("has_vae", False)),
        )



def detect_kind(tensors: Mapping[str, TensorInfo]) -> FileKind:
    """Checkpoint, LoRA (and which LyCORIS variant), or UNKNOWN (VAE, text encoder, embedding)."""
    return _kind(tensors, lora_modules(tensors))


def _kind(tensors: Mapping[str, TensorInfo], modules: Mapping[str, ModuleParts]) -> FileKind:
    if modules:
        kind = lora_kind({p for m in modules.values() for p in m.parts}, conv=is_conv(modules))
        if kind is not None:
            return kind
    return FileKind.CHECKPOINT if is_checkpoint(tensors) else FileKind.UNKNOWN


def detect_architecture(
    tensors: Mapping[str, TensorInfo], training: TrainingMetadata | None = None
) -> tuple[Architecture, str]:
    """(architecture, evidence sentence) from key names and shapes, then metadata hints."""
    v = _analyse(tensors, lora_modules(tensors), training)
    return v.architecture, v.evidence


def _analyse(
    tensors: Mapping[str, TensorInfo], modules: Mapping[str, ModuleParts], training: TrainingMetadata | None
) -> Verdict:
    found = lora_architecture(modules) if modules else checkpoint_architecture(tensors)
    hint = training.architecture_hint if training else None
    source = training.architecture_hint_source if training else None
    if found is None:
        if hint is not None:
            return Verdict(hint, f"metadata: {source} (the tensors are not conclusive)")
        return Verdict(Architecture.UNKNOWN, "no known key names or shapes, and no metadata hint")
    if hint is not None and hint in found.shared_with:
        return Verdict(
            hint,
            f"metadata: {source} (the text encoders it trains are shared by several architectures)",
            [TE_ONLY_NOTE],
        )
    if hint is not None and hint != found.architecture:
        found.notes.append(
            f"metadata says {hint.label} ({source}) but the tensors say {found.architecture.label}; "
            "the tensors win"
        )
    return found



# --- entry points ---------------------------------------------------------------------


def inspect_path(path: str | os.PathLike[str]) -> ModelFileInfo:
    """Inspect a .safetensors file or a diffusers folder without loading any tensor data.

    Raises UnsafeFileError (pickled formats), CorruptFileError (damaged safetensors) or
    LibraryError (missing path, unknown extension, not a diffusers folder).
    """
    p = Path(path)
    if not p.exists():
        raise LibraryError(_MSG_MISSING, name=p.name or str(p))
    if p.is_dir():
        return _inspect_folder(p)
    if not p.is_file():
        # a named pipe or device would block the first read forever and stall the scan
        raise LibraryError(_MSG_NOT_REGULAR, name=p.name)
    suffix = p.suffix.lower()
    if suffix in REFUSED_SUFFIXES:
        raise unsafe_file_error(p, suffix)
    if suffix in SAFETENSORS_SUFFIXES:
        return _inspect_file(p)
    check_not_pickle(p)  # a pickle under an odd name is still named as unsafe
    if suffix == ".gguf":
        raise LibraryError(_MSG_GGUF, name=p.name)
    raise LibraryError(_MSG_UNKNOWN_SUFFIX, name=p.name, suffix=suffix or "(none)")


def inspect_header(header: SafetensorsHeader, mtime: float | None = None) -> ModelFileInfo:
    """ModelFileInfo from an already-read header (the scanner may have one)."""
    training = parse_training_metadata(header.metadata)
    modules = lora_modules(header.tensors)
    kind = _kind(header.tensors, modules)
    verdict = _analyse(header.tensors, modules, training)
    notes = list(verdict.notes)
    if not modules:
        notes.extend(component_notes(header.tensors))
    else:
        algo, dora = lora_algorithm(modules)
        if algo in {"oft", "glora", "ia3", "full"}:
            notes.append(f"LyCORIS {algo.upper()} network: not a plain LoRA")
        if dora and kind in (FileKind.LOHA, FileKind.LOKR):
            notes.append("weight-decomposed (DoRA) on top of " + kind.value)
    is_lora = kind.is_lora
    if is_lora:
        check_lora(header, modules)
    rank = lora_rank(modules) if is_lora else None
    if is_lora and rank is None and training.network_dim is not None:
        rank = training.network_dim
    v_pred, zero_snr = prediction(header.tensors, training)
    if zero_snr:
        notes.append(ZTSNR_NOTE)
    dtypes = Counter(t.dtype for t in header.tensors.values())
    return ModelFileInfo(
        path=header.path,
        format="safetensors",
        size=header.file_size,
        mtime=mtime if mtime is not None else header.path.stat().st_mtime,
        kind=kind,
        architecture=verdict.architecture,
        architecture_evidence=verdict.evidence,
        rank=rank,
        alpha=lora_alpha(header, modules, training) if is_lora else None,
        metadata=dict(header.metadata),
        training=training,
        tensor_count=len(header.tensors),
        dtypes=dict(dtypes),
        targets=lora_targets(modules, verdict.architecture) if is_lora else {},
        v_prediction=v_pred,
        zero_terminal_snr=zero_snr,
        has_vae=kind == FileKind.CHECKPOINT and single_file_has_vae(header.tensors),
        data_offset=header.data_offset,
        notes=notes,
    )


def _inspect_file(path: Path) -> ModelFileInfo:
    return inspect_header(read_header(path))


# --- diffusers folders ----------------------------------------------------------------

_PIPELINE_ARCH = (
    ("StableDiffusionXL", Architecture.SDXL),
    ("StableDiffusion3", Architecture.SD3),
    ("Flux2", Architecture.OTHER),
    ("Flux", Architecture.FLUX),
    ("AuraFlow", Architecture.AURAFLOW),
    ("StableDiffusion", Architecture.SD1),
)
_TRANSFORMER_CLASS_ARCH = {
    "FluxTransformer2DModel": Architecture.FLUX,
    "SD3Transformer2DModel": Architecture.SD3,
    "AuraFlowTransformer2DModel": Architecture.AURAFLOW,
}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        parsed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _folder_architecture(
    folder: Path, denoiser: Path | None, tensors: Mapping[str, TensorInfo]
) -> Verdict:
    config = _read_json(denoiser / "config.json") if denoiser else None
    if config is not None and denoiser is not None and denoiser.name == "unet":
        ctx = config.get("cross_attention_dim")
        ctx = ctx[0] if isinstance(ctx, list) and ctx else ctx
        channels = config.get("in_channels")
        notes = input_channel_notes(channels if isinstance(channels, int) else None)
        if config.get("encoder_hid_dim_type") or config.get("encoder_hid_dim"):
            # Kolors: SDXL's UNet shapes (cross_attention_dim 2048) fed by a projected
            # ChatGLM, so SDXL LoRAs and text encoders do not fit
            return Verdict(
                Architecture.OTHER,
                "unet/config.json: encoder_hid_dim_type (a UNet fed by a projected LLM text encoder, Kolors)",
                notes,
            )
        if isinstance(ctx, int) and ctx in CONTEXT_ARCH:
            v = Verdict(CONTEXT_ARCH[ctx], f"unet/config.json: cross_attention_dim {ctx}", notes)
            if ctx == 1280:
                v.notes.append(REFINER_NOTE)
            return v
        if config.get("addition_embed_type") == "text_time":
            return Verdict(
                Architecture.SDXL,
                "unet/config.json: addition_embed_type text_time (SDXL conditioning)",
                notes,
            )
    if config is not None and denoiser is not None and denoiser.name == "transformer":
        cls = str(config.get("_class_name", ""))
        if cls:
            arch = _TRANSFORMER_CLASS_ARCH.get(cls, Architecture.OTHER)
            return Verdict(arch, f"transformer/config.json: _class_name {cls}")
    found = checkpoint_architecture(tensors) if tensors else None
    if found is not None:
        return found
    index = _read_json(folder / "model_index.json") or {}
    cls = str(index.get("_class_name", ""))
    for prefix, arch in _PIPELINE_ARCH:
        if cls.startswith(prefix):
            v = Verdict(arch, f"model_index.json: _class_name {cls}")
            if arch == Architecture.SD1:
                v.notes.append("could also be SD 2.x: the pipeline class is shared")
            return v
    if cls:
        return Verdict(Architecture.OTHER, f"model_index.json: _class_name {cls}")
    return Verdict(Architecture.UNKNOWN, "no config, pipeline class or known weights in the folder")


def _inspect_folder(folder: Path) -> ModelFileInfo:
    denoiser = next((folder / d for d in ("unet", "transformer") if (folder / d).is_dir()), None)
    if not (folder / "model_index.json").is_file() and denoiser is None:
        raise LibraryError(_MSG_NOT_DIFFUSERS, name=folder.name)
    weights = folder_weight_files(folder)
    all_files = [p for p in folder.rglob("*") if p.is_file()]
    if not weights:
        pickled = [p for p in all_files if p.suffix.lower() in REFUSED_SUFFIXES]
        if pickled:
            raise unsafe_file_error(pickled[0], pickled[0].suffix.lower())
        raise LibraryError(_MSG_FOLDER_NO_WEIGHTS, name=folder.name)
    notes: list[str] = []
    if any(p.suffix.lower() in REFUSED_SUFFIXES for p in all_files):
        notes.append("pickled weight files in the folder are ignored; only .safetensors are read")
    headers = [read_header(p) for p in weights]
    dtypes: Counter[str] = Counter()
    denoiser_tensors: dict[str, TensorInfo] = {}
    metadata: dict[str, str] = {}
    for h in headers:
        dtypes.update(t.dtype for t in h.tensors.values())
        if denoiser is not None and h.path.parent == denoiser:
            denoiser_tensors.update(h.tensors)
            metadata.update(h.metadata)
    verdict = _folder_architecture(folder, denoiser, denoiser_tensors)
    notes.extend(verdict.notes)
    training = parse_training_metadata(metadata)
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json") or {}
    v_pred = scheduler.get("prediction_type") == "v_prediction"
    zero_snr = scheduler.get("rescale_betas_zero_snr") is True
    if zero_snr:
        notes.append(ZTSNR_NOTE)
    return ModelFileInfo(
        path=folder,
        format="diffusers",
        size=sum(p.stat().st_size for p in all_files),
        mtime=max(p.stat().st_mtime for p in all_files),
        kind=FileKind.CHECKPOINT,
        architecture=verdict.architecture,
        architecture_evidence=verdict.evidence,
        rank=None,
        alpha=None,
        metadata=metadata,
        training=training,
        tensor_count=sum(len(h.tensors) for h in headers),
        dtypes=dict(dtypes),
        targets={},
        v_prediction=v_pred or training.prediction_type == "v",
        zero_terminal_snr=zero_snr,
        has_vae=(folder / "vae").is_dir(),
        data_offset=None,
        notes=notes,
    )

