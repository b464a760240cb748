"""Everything the library needs to know about one model file, read from its header only.

`inspect_path` answers: what kind of file is this (checkpoint, LoRA, LyCORIS variant),
which architecture does it belong to and why (the evidence is kept as a sentence), its
rank and alpha, what it targets, and what its training metadata claims.

Architecture comes from tensor NAMES and SHAPES first: a LoRA's cross-attention input
width is the text-encoder width of the checkpoint it was trained for (768 SD 1.x, 1024
SD 2.x, 2048 SDXL), and each family names its blocks its own way. Metadata is only a
fallback, because merge and conversion scripts copy it along unchanged.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import LibraryError
from engine.hashing import folder_weight_files
from engine.i18n import Text
from engine.kinds import Architecture, FileKind
from engine.safetensors_header import (
    REFUSED_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    SafetensorsHeader,
    TensorInfo,
    check_not_pickle,
    read_header,
    read_scalars,
    unsafe_file_error,
)
from engine.training_meta import TrainingMetadata, parse_training_metadata

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
_CONTEXT_ARCH = {
    768: Architecture.SD1,
    1024: Architecture.SD2,
    2048: Architecture.SDXL,
    1280: Architecture.SDXL,  # the SDXL refiner conditions on OpenCLIP bigG alone
}
_REFINER_NOTE = "SDXL refiner: meant for the last steps after an SDXL base, not for drawing alone"
_FLUX_HIDDEN = 3072
_FLUX_SINGLE_FUSED = 3 * 3072 + 4 * 3072  # single block linear1: q, k, v and the 4x MLP
_SD3_HIDDEN = {1536, 2432}  # SD3 medium / SD3.5 medium, SD3.5 large
_TRANSFORMER_ARCHES = {Architecture.FLUX, Architecture.SD3, Architecture.AURAFLOW, Architecture.OTHER}
_ALPHA_SAMPLE = 16


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
        )


# --- LoRA key anatomy -----------------------------------------------------------------

# Each pattern splits a key into (module, part). Parts are normalised below.
_LORA_KEY_PATTERNS = (
    # kohya / LyCORIS LoRA and LoCon
    re.compile(r"^(?P<module>.+)\.(?P<part>lora_down|lora_up|lora_mid)\.weight$"),
    # peft / diffusers, with an optional adapter name ("lora_A.default.weight")
    re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B)(?:\.[^.]+)?\.weight$"),
    # XLabs Flux: "processor.qkv_lora1" (image stream) and "qkv_lora2" (text stream) are
    # different modules, so the number stays in the module name
    re.compile(r"^(?P<module>.+?_lora\d+)\.(?P<part>down|up)\.weight$"),
    # old diffusers (".lora.down"), attention processors ("to_q_lora.down") and text-encoder
    # patches (".lora_linear_layer.down")
    re.compile(
        r"^(?P<module>.+?)(?P<part>\.lora_linear_layer\.(?:down|up)|\.lora\.(?:down|up)|_lora\.(?:down|up))"
        r"\.weight$"
    ),
    # LyCORIS LoHa / LoKr / OFT, DoRA magnitudes, alphas
    re.compile(
        r"^(?P<module>.+)\.(?P<part>hada_w[12]_[ab]|hada_t[12]|lokr_w[12](?:_[ab])?|lokr_t[12]|dora_scale"
        r"|oft_blocks|oft_diag|oft_R|alpha)$"
    ),
    re.compile(r"^(?P<module>.+)\.(?P<part>lora_magnitude_vector)(?:\.[^.]+)*$"),
    # LyCORIS full diffs, IA3 and GLoRA exist only under kohya-style names
    re.compile(
        r"^(?P<module>(?:lora|lycoris)_[^.]+)\."
        r"(?P<part>diff|diff_b|on_input|a1\.weight|a2\.weight|b1\.weight|b2\.weight)$"
    ),
)

_WEIGHT_PARTS = {
    "down", "hada_w1_b", "lokr_w1", "lokr_w1_a", "diff", "oft_blocks", "oft_diag", "oft_R",
    "on_input", "a1.weight",
}  # fmt: skip

_TARGET_PREFIXES = (
    ("lora_unet_", "denoiser"),
    ("lora_transformer_", "denoiser"),
    ("oft_unet_", "denoiser"),  # kohya's networks/oft.py
    ("lora_te1_", "text_encoder"),
    ("lora_te2_", "text_encoder_2"),
    ("lora_te3_", "text_encoder_3"),
    ("lora_te_", "text_encoder"),
    ("lycoris_", "denoiser"),  # LyCORIS used directly on a diffusers model (SimpleTuner)
    ("text_encoders.clip_l.transformer.", "text_encoder"),  # ComfyUI's own LoRA saves
    ("text_encoders.clip_g.transformer.", "text_encoder_2"),
    ("text_encoders.t5xxl.transformer.", "text_encoder_3"),
    ("model.diffusion_model.", "denoiser"),
    ("diffusion_model.", "denoiser"),
    ("unet.", "denoiser"),
    ("transformer.", "denoiser"),
    ("text_encoder_2.", "text_encoder_2"),
    ("text_encoder_3.", "text_encoder_3"),
    ("text_encoder.", "text_encoder"),
    ("te1.", "text_encoder"),
    ("te2.", "text_encoder_2"),
)

# Module names of resnet / sampler convolutions: LoRA there means LoCon.
_CONV_MODULE = re.compile(
    r"(resnets_\d+_(conv1|conv2|conv_shortcut)|(down|up)samplers_0_conv|^conv_in|^conv_out"
    r"|(input|middle|output)_blocks?_\d+(_\d+)?_(in_layers_2|out_layers_3|skip_connection|op|conv)$"
    r"|middle_block_[02]_(in_layers_2|out_layers_3))$"
)


@dataclass
class _Module:
    name: str  # as in the file, before the part
    target: str  # denoiser | text_encoder | text_encoder_2 | text_encoder_3
    body: str  # without the target prefix, dots turned to underscores (kohya style)
    parts: dict[str, TensorInfo] = field(default_factory=dict)

    @property
    def down(self) -> TensorInfo | None:
        return self.parts.get("down")

    def in_features(self) -> int | None:
        down = self.down
        if down is not None and len(down.shape) >= 2:
            return down.shape[1] if len(down.shape) == 2 or down.shape[2:] == (1, 1) else None
        w1b = self.parts.get("hada_w1_b")
        if w1b is not None and len(w1b.shape) == 2 and "hada_t1" not in self.parts:
            return w1b.shape[1]
        left = self.parts.get("lokr_w1") or self.parts.get("lokr_w1_b")
        right = self.parts.get("lokr_w2") or self.parts.get("lokr_w2_b")
        if left is not None and right is not None and len(left.shape) == 2 and len(right.shape) == 2:
            return left.shape[1] * right.shape[1]
        return None

    def out_features(self) -> int | None:
        up = self.parts.get("up")
        if up is not None and len(up.shape) == 2:
            return up.shape[0]
        return None

    def rank(self) -> int | None:
        if self.down is not None and self.down.shape:
            return self.down.shape[0]
        w1b = self.parts.get("hada_w1_b")
        if w1b is not None and w1b.shape:
            return w1b.shape[0]
        t2 = self.parts.get("lokr_t2")  # Tucker LoKr convs: core (rank, rank, k, k), w2_a (rank, out)
        if t2 is not None and t2.shape:
            return t2.shape[0]
        for name in ("lokr_w2_a", "lokr_w1_a"):
            t = self.parts.get(name)
            if t is not None and len(t.shape) == 2:
                return t.shape[1]
        return None


def _normalise_part(part: str) -> str:
    if part in ("lora_down", "lora_A", "down") or part.endswith(".down"):
        return "down"
    if part in ("lora_up", "lora_B", "up") or part.endswith(".up"):
        return "up"
    if part == "lora_mid":
        return "mid"
    return part


def _split_target(module: str) -> tuple[str, str]:
    name = module
    if name.startswith("base_model.model."):
        name = name[len("base_model.model.") :]
    for prefix, target in _TARGET_PREFIXES:
        if name.startswith(prefix):
            return target, _body(name[len(prefix) :])
    if name.startswith("text_model."):
        return "text_encoder", _body(name)
    return "denoiser", _body(name)


def _body(name: str) -> str:
    # diffusers 0.14-0.20 saved LoRAs per attention processor ("attn2.processor.to_k_lora"):
    # the layer patched is still attn2.to_k
    return _PROCESSOR.sub(r"\1", name).replace(".", "_")


_PROCESSOR = re.compile(r"\.processor(\.to_(?:q|k|v|out))")


def lora_modules(tensors: Mapping[str, TensorInfo]) -> dict[str, _Module]:
    """Group a LoRA file's tensors by the module they patch."""
    modules: dict[str, _Module] = {}
    for key, info in tensors.items():
        for pattern in _LORA_KEY_PATTERNS:
            m = pattern.match(key)
            if m:
                name = m.group("module")
                module = modules.get(name)
                if module is None:
                    target, body = _split_target(name)
                    module = modules[name] = _Module(name, target, body)
                module.parts[_normalise_part(m.group("part"))] = info
                break
    # A module with nothing but an alpha is not a LoRA module (e.g. a stray "x.alpha").
    return {n: m for n, m in modules.items() if set(m.parts) - {"alpha"}}


def _algorithm(modules: Mapping[str, _Module]) -> tuple[str | None, bool]:
    """The LyCORIS algorithm name ("lora", "locon", "loha", ...) and whether DoRA is used."""
    parts = {p for m in modules.values() for p in m.parts}
    dora = bool(parts & {"dora_scale", "lora_magnitude_vector"})
    if any(p.startswith("hada_") for p in parts):
        return "loha", dora
    if any(p.startswith("lokr_") for p in parts):
        return "lokr", dora
    if parts & {"oft_blocks", "oft_diag", "oft_R"}:
        return "oft", dora
    if "a1.weight" in parts:
        return "glora", dora
    if "on_input" in parts:
        return "ia3", dora
    if "down" in parts:
        conv = any(
            (m.down is not None and len(m.down.shape) == 4 and m.down.shape[2:] != (1, 1))
            or (m.down is not None and _CONV_MODULE.search(m.body))
            for m in modules.values()
        )
        return ("locon" if conv else "lora"), dora
    if "diff" in parts:
        return "full", dora
    return None, dora


# --- checkpoint anatomy ---------------------------------------------------------------

_DENOISER_MARKERS = (
    "model.diffusion_model.", "time_embed.", "time_embedding.", "time_in.", "t_embedder.",
    "time_text_embed.", "double_blocks.", "single_blocks.", "joint_blocks.", "double_layers.",
    "single_layers.", "input_blocks.", "single_transformer_blocks.", "joint_transformer_blocks.",
    "time_projection.", "x_embedder.",
)  # fmt: skip
_TEXT_ENCODER_MARKERS = ("cond_stage_model.", "conditioner.", "text_encoders.", "text_model.", "encoder.block.")
_PACKED_DTYPES = frozenset({"U8", "I8", "BOOL", "U16", "I16", "U32", "I32", "U64", "I64"})
_VAE_PREFIXES = ("encoder.", "decoder.", "first_stage_model.", "quant_conv.", "post_quant_conv.", "vae.")


class _Keys:
    """All key names joined into one string, so substring/regex probes are one C-level scan."""

    def __init__(self, tensors: Mapping[str, TensorInfo]) -> None:
        self.tensors = tensors
        self.text = "\n" + "\n".join(tensors) + "\n"

    def has(self, *subs: str) -> bool:
        return any(s in self.text for s in subs)

    def search(self, pattern: str) -> re.Match[str] | None:
        return re.search(pattern, self.text, re.MULTILINE)

    def shapes(self, pattern: str) -> list[tuple[int, ...]]:
        rx = re.compile(pattern)
        return [t.shape for k, t in self.tensors.items() if rx.search(k)]

    def float_shapes(self, pattern: str) -> list[tuple[int, ...]]:
        # bitsandbytes NF4/int8 checkpoints (Forge's flux1-dev-bnb-nf4) pack weights into
        # U8/I8 tensors of shape (n, 1): only float tensors carry the layer's real shape
        rx = re.compile(pattern)
        return [t.shape for k, t in self.tensors.items() if t.dtype not in _PACKED_DTYPES and rx.search(k)]


def _most_common(values: list[int]) -> int | None:
    return Counter(values).most_common(1)[0][0] if values else None


def detect_kind(tensors: Mapping[str, TensorInfo]) -> FileKind:
    """Checkpoint, LoRA (and which LyCORIS variant), or UNKNOWN (VAE, text encoder, embedding)."""
    return _kind(tensors, lora_modules(tensors))


def _kind(tensors: Mapping[str, TensorInfo], modules: Mapping[str, _Module]) -> FileKind:
    if modules:
        algo, dora = _algorithm(modules)
        if algo == "loha":
            return FileKind.LOHA
        if algo == "lokr":
            return FileKind.LOKR
        if dora:
            return FileKind.DORA
        if algo == "locon":
            return FileKind.LOCON
        if algo is not None:
            return FileKind.LORA
    keys = _Keys(tensors)
    if any(("\n" + m) in keys.text or ("." + m) in keys.text for m in _DENOISER_MARKERS):
        return FileKind.CHECKPOINT
    if keys.search(r"^(down_blocks\.\d+\.attentions|mid_block\.attentions|transformer_blocks\.\d+\.attn)"):
        return FileKind.CHECKPOINT  # a bare diffusers UNet / transformer
    return FileKind.UNKNOWN


@dataclass
class _Verdict:
    architecture: Architecture
    evidence: str
    notes: list[str] = field(default_factory=list)
    # architectures the tensors fit equally well (a text encoder several models share):
    # a metadata hint among them beats the tensors' guess
    shared_with: frozenset[Architecture] = frozenset()


def detect_architecture(
    tensors: Mapping[str, TensorInfo], training: TrainingMetadata | None = None
) -> tuple[Architecture, str]:
    """(architecture, evidence sentence) from key names and shapes, then metadata hints."""
    v = _analyse(tensors, lora_modules(tensors), training)
    return v.architecture, v.evidence


def _analyse(
    tensors: Mapping[str, TensorInfo], modules: Mapping[str, _Module], training: TrainingMetadata | None
) -> _Verdict:
    found = _lora_architecture(modules) if modules else _checkpoint_architecture(tensors)
    hint = training.architecture_hint if training else None
    source = training.architecture_hint_source if training else None
    if found is None:
        if hint is not None:
            return _Verdict(hint, f"metadata: {source} (the tensors are not conclusive)")
        return _Verdict(Architecture.UNKNOWN, "no known key names or shapes, and no metadata hint")
    if hint is not None and hint in found.shared_with:
        return _Verdict(
            hint,
            f"metadata: {source} (the text encoders it trains are shared by several architectures)",
            [_TE_ONLY_NOTE],
        )
    if hint is not None and hint != found.architecture:
        found.notes.append(
            f"metadata says {hint.label} ({source}) but the tensors say {found.architecture.label}; "
            "the tensors win"
        )
    return found


def _lora_architecture(modules: Mapping[str, _Module]) -> _Verdict | None:
    den = [m for m in modules.values() if m.target == "denoiser"]
    bodies = [m.body for m in den]

    def any_body(pattern: str) -> bool:
        rx = re.compile(pattern)
        return any(rx.search(b) for b in bodies)

    def widths(pattern: str) -> list[int]:
        rx = re.compile(pattern)
        return [w for m in den if rx.search(m.body) and (w := m.in_features()) is not None]

    if any_body(r"^(joint_transformer_blocks|double_layers|single_layers)_\d"):
        return _Verdict(
            Architecture.AURAFLOW,
            "key names: AuraFlow blocks (joint_transformer_blocks / double_layers)",
        )
    if any_body(r"^single_transformer_blocks_\d+_attn_to_qkv_mlp_proj$") or any_body(
        r"^transformer_blocks_\d+_ff(_context)?_linear_(in|out)$"
    ):
        # Flux.2 (Klein 4B has Flux.1's hidden size 3072) fuses qkv and mlp in its single blocks
        return _Verdict(Architecture.OTHER, "key names: Flux.2 blocks (attn.to_qkv_mlp_proj / ff.linear_in)")
    if any_body(r"^single_transformer_blocks_\d+_(attn_to_out_0|ff_(linear_[12]|out_projection)|norm1_linear)$"):
        # same hidden size as Flux.1, but Flux.1's single blocks have no attention output
        # projection and no ff (they fuse it into proj_mlp / proj_out)
        return _Verdict(
            Architecture.AURAFLOW,
            "key names: AuraFlow single_transformer_blocks (attn.to_out / ff.linear_1, which Flux lacks)",
        )
    if any_body(r"^(double|single)_blocks_\d+_.*(mlp_fc\d|mod_linear|modulation_linear)") or any_body(
        r"^(txt_in_|individual_token_refiner)"
    ):
        return _Verdict(Architecture.OTHER, "key names: HunyuanVideo blocks (img_mlp_fc / img_mod_linear)")
    if any_body(r"^distilled_guidance_layer_"):
        return _Verdict(Architecture.OTHER, "key names: Chroma (distilled_guidance_layer, a Flux derivative)")
    if any_body(r"^(double|single)_blocks_\d"):
        hidden = _most_common(
            widths(r"^double_blocks_\d+_((img|txt)_attn_(qkv|proj)|processor_(qkv|proj)(_lora\d*)?)$")
            + widths(r"^single_blocks_\d+_(linear1|modulation_lin|processor_qkv(_lora\d*)?)$")
        )
        fused = _most_common([w for m in den if m.body.endswith("_linear1") and (w := m.out_features())])
        if hidden == _FLUX_HIDDEN and fused not in (None, _FLUX_SINGLE_FUSED):
            return _Verdict(
                Architecture.OTHER,
                f"key names: Flux-style single_blocks, but linear1 outputs {fused}, not Flux.1's "
                f"{_FLUX_SINGLE_FUSED} (Flux.2 Klein or another)",
            )
        return _flux_or_other(hidden, "key names: Flux double_blocks / single_blocks")
    if any_body(r"^joint_blocks_\d"):
        return _Verdict(Architecture.SD3, "key names: SD3 MMDiT joint_blocks")
    if any_body(r"^single_transformer_blocks_\d"):
        hidden = _most_common(widths(r"^(single_)?transformer_blocks_\d+_attn_(to_[qkv]|add_[qkv]_proj)$"))
        return _flux_or_other(hidden, "key names: diffusers Flux transformer_blocks + single_transformer_blocks")
    if any_body(r"^transformer_blocks_\d"):
        if any_body(r"^transformer_blocks_\d+_(img|txt)_(mod|mlp)"):
            return _Verdict(
                Architecture.OTHER,
                "key names: Qwen-Image style transformer blocks (img_mod / txt_mlp)",
            )
        hidden = _most_common(widths(r"^transformer_blocks_\d+_attn_(to_[qkv]|add_[qkv]_proj)$"))
        if hidden == _FLUX_HIDDEN:
            return _Verdict(
                Architecture.FLUX,
                "key names: diffusers MMDiT transformer_blocks with hidden size 3072 (Flux; no single blocks trained)",
            )
        if hidden in _SD3_HIDDEN:
            return _Verdict(
                Architecture.SD3,
                f"key names: diffusers MMDiT transformer_blocks with hidden size {hidden} (SD3)",
            )
        return None
    if any_body(r"^blocks_\d+_(self_attn|cross_attn)_"):
        return _Verdict(Architecture.OTHER, "key names: Wan-style DiT blocks (self_attn / cross_attn)")
    if any_body(r"^layers_\d+_attention_"):
        return _Verdict(Architecture.OTHER, "key names: Lumina-style DiT layers")
    if den and any_body(r"^(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)_"):
        return _unet_lora(modules, den, any_body)
    if not den:
        return _text_encoder_lora(modules)
    return None


def _flux_or_other(hidden: int | None, evidence: str) -> _Verdict:
    if hidden is None or hidden == _FLUX_HIDDEN:
        return _Verdict(Architecture.FLUX, evidence + (" with hidden size 3072" if hidden else ""))
    return _Verdict(
        Architecture.OTHER,
        f"{evidence}, but hidden size {hidden} is not Flux.1's 3072 (Flux.2 or another)",
    )


def _unet_lora(modules: Mapping[str, _Module], den: list[_Module], any_body: Any) -> _Verdict | None:
    rx = re.compile(r"attn2_to_[kv]$")
    contexts = [w for m in den if rx.search(m.body) and (w := m.in_features()) is not None]
    context = _most_common(contexts)
    targets = {m.target for m in modules.values()}
    if context in _CONTEXT_ARCH:
        arch = _CONTEXT_ARCH[context]
        v = _Verdict(arch, f"shapes: cross-attention (attn2 to_k/to_v) input width {context}")
        if context == 1280:
            v.notes.append("cross-attention width 1280: made for the SDXL refiner, not the SDXL base")
        return v
    sd_layout = any_body(
        # blocks SDXL does not have: attention in the first level, a fourth level
        r"^(down_blocks_0_attentions|down_blocks_3_|up_blocks_3_attentions"
        r"|input_blocks_[12]_1_|output_blocks_(9|10|11)_1_)"
    )
    sdxl_layout = "text_encoder_2" in targets or any_body(r"transformer_blocks_[1-9]")
    sgm = any_body(r"^(input_blocks|output_blocks|middle_block)_")
    suffix = f" (cross-attention width {context} is not a known one)" if context else ""
    if sdxl_layout and not sd_layout:
        why = "a second text encoder" if "text_encoder_2" in targets else "transformer depth above 1"
        return _Verdict(Architecture.SDXL, f"key names: SDXL UNet block layout ({why}){suffix}")
    if sgm and not sd_layout:
        return _Verdict(
            Architecture.SDXL,
            f"key names: SGM block names (input_blocks/output_blocks) as kohya writes for SDXL{suffix}",
        )
    if sd_layout and not sdxl_layout:
        te = _text_encoder_width(modules)
        if te == 1024:
            return _Verdict(
                Architecture.SD2,
                f"key names: SD 1.x/2.x UNet layout; text encoder width 1024{suffix}",
            )
        proj = [m.down for m in den if m.body.endswith(("proj_in", "proj_out")) and m.down is not None]
        if te == 768 or any(len(p.shape) == 4 for p in proj):
            return _Verdict(
                Architecture.SD1,
                f"key names: SD 1.x/2.x UNet layout; text encoder width 768 or conv proj_in{suffix}",
            )
        return _Verdict(
            Architecture.SD1,
            f"key names: SD 1.x/2.x UNet layout{suffix}; assumed SD 1.x",
            ["could also be SD 2.x: nothing in the file tells them apart"],
        )
    return None


def _text_encoder_width(modules: Mapping[str, _Module]) -> int | None:
    rx = re.compile(r"self_attn_[qkv]_proj$")
    return _most_common(
        [
            w
            for m in modules.values()
            if m.target == "text_encoder" and rx.search(m.body) and (w := m.in_features())
        ]
    )


_TE_ONLY_NOTE = "only the text encoders are trained"


def _text_encoder_lora(modules: Mapping[str, _Module]) -> _Verdict | None:
    targets = {m.target for m in modules.values()}
    if "text_encoder_3" in targets:
        return None  # T5 + CLIP: SD3 or Flux; the text encoders alone cannot tell
    if "text_encoder_2" in targets:
        return _Verdict(
            Architecture.SDXL,
            "key names: two text encoders (text-encoder-only LoRA)",
            [_TE_ONLY_NOTE],
            frozenset({Architecture.SD3}),  # SD3 has the same CLIP-L + CLIP-G pair
        )
    width = _text_encoder_width(modules)
    if width == 1024:
        return _Verdict(Architecture.SD2, "shapes: text encoder width 1024 (text-encoder-only LoRA)")
    if width == 768:
        return _Verdict(
            Architecture.SD1,
            "shapes: text encoder width 768 (text-encoder-only LoRA)",
            ["only the text encoder is trained; CLIP-L is shared with SDXL and Flux, so this is a guess"],
            frozenset({Architecture.SDXL, Architecture.FLUX, Architecture.SD3}),
        )
    return None


def _checkpoint_architecture(tensors: Mapping[str, TensorInfo]) -> _Verdict | None:
    keys = _Keys(tensors)
    if keys.has("double_layers.", "joint_transformer_blocks.") or keys.search(r"(^|\.)register_tokens$"):
        return _Verdict(Architecture.AURAFLOW, "key names: AuraFlow double_layers / register_tokens")
    if keys.has("img_attn_qkv.", "img_mod.linear.", "individual_token_refiner."):
        return _Verdict(Architecture.OTHER, "key names: HunyuanVideo double_blocks")
    if keys.has("distilled_guidance_layer."):
        return _Verdict(Architecture.OTHER, "key names: Chroma (a Flux derivative with pruned modulation)")
    if keys.has("double_stream_modulation", "single_stream_modulation"):
        # Flux.2 shares one modulation across blocks; Klein 4B has Flux.1's hidden size
        return _Verdict(Architecture.OTHER, "key names: Flux.2 (shared double/single stream modulation)")
    if keys.has("double_blocks.") and keys.has("single_blocks.", "img_attn."):
        hidden = _most_common(
            [s[1] for s in keys.float_shapes(r"double_blocks\.\d+\.img_attn\.(qkv|proj)\.weight$") if len(s) == 2]
            + [s[0] for s in keys.float_shapes(r"(^|\.)img_in\.weight$") if len(s) == 2]
            # biases stay unquantized in NF4 files, and the projection's is the hidden size
            + [s[0] for s in keys.float_shapes(r"double_blocks\.\d+\.img_attn\.proj\.bias$") if len(s) == 1]
        )
        v = _flux_or_other(hidden, "key names: Flux double_blocks / single_blocks")
        if v.architecture == Architecture.FLUX:
            dev = keys.has("guidance_in.")
            v.notes.append("Flux dev (guidance embedding)" if dev else "Flux schnell-style (no guidance embedding)")
        return v
    if keys.has("single_transformer_blocks.") and keys.search(r"(^|\.)transformer_blocks\.\d"):
        return _Verdict(
            Architecture.FLUX,
            "key names: diffusers Flux transformer_blocks + single_transformer_blocks",
        )
    if keys.has("joint_blocks."):
        return _Verdict(Architecture.SD3, "key names: SD3 MMDiT joint_blocks")
    if keys.search(r"(^|\.)transformer_blocks\.\d+\.(img|txt)_mod\."):
        return _Verdict(Architecture.OTHER, "key names: Qwen-Image style transformer blocks")
    if keys.search(r"(^|\.)transformer_blocks\.\d+\.attn\.add_k_proj\.") and keys.has("pos_embed.proj."):
        return _Verdict(
            Architecture.SD3,
            "key names: diffusers SD3 transformer (joint attention + patch embedding)",
        )
    if keys.search(r"(^|\.)blocks\.\d+\.(self_attn|cross_attn)\."):
        return _Verdict(
            Architecture.OTHER,
            "key names: a DiT with self_attn / cross_attn blocks (Wan, PixArt, ...)",
        )
    if keys.search(r"(^|\.)layers\.\d+\.attention\.qkv\."):
        return _Verdict(Architecture.OTHER, "key names: Lumina-style DiT layers")
    return _unet_checkpoint(keys) or _component_checkpoint(keys)


def _unet_checkpoint(keys: _Keys) -> _Verdict | None:
    unet = keys.has("model.diffusion_model.", "\ninput_blocks.", "\nmiddle_block.") or keys.search(
        r"^(down_blocks\.\d+\.attentions|mid_block\.)"
    )
    if not unet:
        return None
    if keys.has("encoder_hid_proj."):
        # same UNet shapes as SDXL, but conditioned on ChatGLM: SDXL LoRAs do not fit
        return _Verdict(Architecture.OTHER, "key names: a UNet fed by a projected LLM text encoder (Kolors)")
    notes: list[str] = []
    if not keys.has(*_TEXT_ENCODER_MARKERS):
        notes.append("UNet only: the file has no text encoders (or VAE); they must come from elsewhere")
    context = _most_common([s[1] for s in keys.float_shapes(r"attn2\.to_k\.weight$") if len(s) == 2])
    adm = _most_common(
        [s[1] for s in keys.float_shapes(r"(label_emb\.0\.0|add_embedding\.linear_1)\.weight$") if len(s) == 2]
    )
    channels = [s[1] for s in keys.float_shapes(_UNET_CONV_IN) if len(s) == 4]
    notes.extend(_input_channel_notes(_most_common(channels)))
    refiner = adm == 2560 or context == 1280 or (
        keys.has("conditioner.embedders.0.model.") and not keys.has("conditioner.embedders.1.")
    )
    if refiner:
        notes.append(_REFINER_NOTE)
    if context in _CONTEXT_ARCH:
        return _Verdict(
            _CONTEXT_ARCH[context],
            f"shapes: UNet cross-attention (attn2.to_k) input width {context}", notes,
        )
    if adm in (2816, 2560):
        return _Verdict(Architecture.SDXL, f"shapes: SDXL size/crop conditioning input width {adm}", notes)
    if keys.has("conditioner.embedders.1.", "conditioner.embedders.0.model."):
        return _Verdict(Architecture.SDXL, "key names: SGM conditioner embedders (SDXL text encoders)", notes)
    if keys.has("label_emb.", "add_embedding."):
        return _Verdict(Architecture.SDXL, "key names: SDXL size/crop conditioning (label_emb)", notes)
    if keys.has("cond_stage_model.transformer."):
        return _Verdict(
            Architecture.SD1,
            "key names: CLIP ViT-L text encoder (cond_stage_model.transformer)", notes,
        )
    if keys.has("cond_stage_model.model."):
        return _Verdict(Architecture.SD2, "key names: OpenCLIP text encoder (cond_stage_model.model)", notes)
    return None


_UNET_CONV_IN = r"(^|diffusion_model\.)input_blocks\.0\.0\.weight$|^conv_in\.weight$"
_IN_CHANNEL_NOTES = {
    9: "inpainting UNet (9 input channels: latents + mask + masked image): it fills in masked "
    "parts of a picture and cannot draw from a prompt alone",
    8: "image-editing UNet (8 input channels, instruct-pix2pix / CosXL Edit style): it needs an "
    "input picture to edit",
}


def _input_channel_notes(channels: int | None) -> list[str]:
    # 4 latent channels is a normal text-to-image UNet; other counts are special purpose
    note = _IN_CHANNEL_NOTES.get(channels) if channels else None
    return [note] if note else []


def _component_checkpoint(keys: _Keys) -> _Verdict | None:
    """Files that are not a whole model: embeddings say which text encoder they fit."""
    t = keys.tensors
    if "clip_g" in t and len(t["clip_g"].shape) == 2 and t["clip_g"].shape[1] == 1280:
        return _Verdict(Architecture.SDXL, "textual-inversion embedding for SDXL (clip_l + clip_g)")
    vectors = [info for k, info in t.items() if k == "emb_params" or k.startswith("string_to_param.")]
    widths = {info.shape[-1] for info in vectors if info.shape}
    if widths == {768}:
        return _Verdict(Architecture.SD1, "textual-inversion embedding of width 768")
    if widths == {1024}:
        return _Verdict(Architecture.SD2, "textual-inversion embedding of width 1024")
    return None


def _component_notes(tensors: Mapping[str, TensorInfo]) -> list[str]:
    keys = list(tensors)
    embedding = any(k in ("clip_l", "clip_g", "emb_params") or k.startswith("string_to_param.") for k in keys)
    if embedding:
        return ["a textual-inversion embedding, not a checkpoint or LoRA"]
    if keys and all(k.startswith(_VAE_PREFIXES) for k in keys):
        return ["looks like a VAE on its own, not a checkpoint or LoRA"]
    if keys and all(k.startswith(_TEXT_ENCODER_MARKERS) for k in keys):
        return ["looks like a text encoder on its own, not a checkpoint or LoRA"]
    return []


# --- rank, alpha, targets -------------------------------------------------------------


def _rank(modules: Mapping[str, _Module]) -> int | None:
    return _most_common([r for m in modules.values() if (r := m.rank()) is not None])


def _alpha(
    header: SafetensorsHeader, modules: Mapping[str, _Module], training: TrainingMetadata
) -> float | None:
    """Most common `.alpha` among a sample of modules, else what the metadata says."""
    alphas = [m for m in modules.values() if "alpha" in m.parts]
    if alphas:
        # linear modules only when there are some: conv modules carry conv_alpha, a
        # separate setting; sample evenly, reading a few bytes each
        linear = [m for m in alphas if not (m.down is not None and len(m.down.shape) == 4)] or alphas
        linear.sort(key=lambda m: m.name)
        step = max(1, len(linear) // _ALPHA_SAMPLE)
        names = [m.name + ".alpha" for m in linear[::step][:_ALPHA_SAMPLE]]
        values = [round(v, 6) for v in read_scalars(header, names).values() if v == v]  # drop NaN
        if values:
            return Counter(values).most_common(1)[0][0]
    if training.network_alpha is not None:
        return training.network_alpha
    # diffusers >= 0.34 stores the peft config as JSON: {"unet.lora_alpha": 8, "unet.r": 8, ...}
    adapter = _json_dict(header.metadata.get("lora_adapter_metadata"))
    found = [v for k, v in sorted(adapter.items()) if k.endswith("lora_alpha") and isinstance(v, (int, float))]
    return float(found[0]) if found else None


def _json_dict(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _targets(modules: Mapping[str, _Module], arch: Architecture) -> dict[str, int]:
    denoiser = "transformer" if arch in _TRANSFORMER_ARCHES else "unet"
    counts: Counter[str] = Counter()
    for m in modules.values():
        if set(m.parts) & _WEIGHT_PARTS:
            counts[denoiser if m.target == "denoiser" else m.target] += 1
    return dict(counts)


def _v_prediction(tensors: Mapping[str, TensorInfo], training: TrainingMetadata, notes: list[str]) -> bool:
    # `v_pred` / `ztsnr` are empty marker tensors that NoobAI v-pred and the Forge/ComfyUI
    # convention put into single-file checkpoints
    if "ztsnr" in tensors or training.zero_terminal_snr:
        notes.append("zero terminal SNR (ztsnr): use a schedule with rescaled betas")
    return "v_pred" in tensors or training.prediction_type == "v"


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
        notes.extend(_component_notes(header.tensors))
    else:
        algo, dora = _algorithm(modules)
        if algo in {"oft", "glora", "ia3", "full"}:
            notes.append(f"LyCORIS {algo.upper()} network: not a plain LoRA")
        if dora and kind in (FileKind.LOHA, FileKind.LOKR):
            notes.append("weight-decomposed (DoRA) on top of " + kind.value)
    is_lora = kind.is_lora
    rank = _rank(modules) if is_lora else None
    if is_lora and rank is None and training.network_dim is not None:
        rank = training.network_dim
    v_pred = _v_prediction(header.tensors, training, notes)
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
        alpha=_alpha(header, modules, training) if is_lora else None,
        metadata=dict(header.metadata),
        training=training,
        tensor_count=len(header.tensors),
        dtypes=dict(dtypes),
        targets=_targets(modules, verdict.architecture) if is_lora else {},
        v_prediction=v_pred,
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
) -> _Verdict:
    config = _read_json(denoiser / "config.json") if denoiser else None
    if config is not None and denoiser is not None and denoiser.name == "unet":
        ctx = config.get("cross_attention_dim")
        ctx = ctx[0] if isinstance(ctx, list) and ctx else ctx
        channels = config.get("in_channels")
        notes = _input_channel_notes(channels if isinstance(channels, int) else None)
        if config.get("encoder_hid_dim_type") or config.get("encoder_hid_dim"):
            # Kolors: SDXL's UNet shapes (cross_attention_dim 2048) fed by a projected
            # ChatGLM, so SDXL LoRAs and text encoders do not fit
            return _Verdict(
                Architecture.OTHER,
                "unet/config.json: encoder_hid_dim_type (a UNet fed by a projected LLM text encoder, Kolors)",
                notes,
            )
        if isinstance(ctx, int) and ctx in _CONTEXT_ARCH:
            v = _Verdict(_CONTEXT_ARCH[ctx], f"unet/config.json: cross_attention_dim {ctx}", notes)
            if ctx == 1280:
                v.notes.append(_REFINER_NOTE)
            return v
        if config.get("addition_embed_type") == "text_time":
            return _Verdict(
                Architecture.SDXL,
                "unet/config.json: addition_embed_type text_time (SDXL conditioning)",
                notes,
            )
    if config is not None and denoiser is not None and denoiser.name == "transformer":
        cls = str(config.get("_class_name", ""))
        if cls:
            arch = _TRANSFORMER_CLASS_ARCH.get(cls, Architecture.OTHER)
            return _Verdict(arch, f"transformer/config.json: _class_name {cls}")
    found = _checkpoint_architecture(tensors) if tensors else None
    if found is not None:
        return found
    index = _read_json(folder / "model_index.json") or {}
    cls = str(index.get("_class_name", ""))
    for prefix, arch in _PIPELINE_ARCH:
        if cls.startswith(prefix):
            v = _Verdict(arch, f"model_index.json: _class_name {cls}")
            if arch == Architecture.SD1:
                v.notes.append("could also be SD 2.x: the pipeline class is shared")
            return v
    if cls:
        return _Verdict(Architecture.OTHER, f"model_index.json: _class_name {cls}")
    return _Verdict(Architecture.UNKNOWN, "no config, pipeline class or known weights in the folder")


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
    if scheduler.get("rescale_betas_zero_snr") is True:
        notes.append("zero terminal SNR (ztsnr): use a schedule with rescaled betas")
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
        data_offset=None,
        notes=notes,
    )
