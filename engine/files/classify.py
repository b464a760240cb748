"""Checkpoint anatomy from a header: architecture, v-prediction, VAE presence.

Architecture comes from tensor NAMES and SHAPES first: the cross-attention input width is
the text-encoder width of the family (CONTEXT_ARCH below, the one copy of that table), and
each family names its blocks its own way. Metadata is only a fallback, because merge and
conversion scripts copy it along unchanged.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.files.header import TensorInfo
from engine.files.training import TrainingMetadata
from engine.kinds import Architecture, FileKind

CONTEXT_ARCH = {
    768: Architecture.SD1,
    1024: Architecture.SD2,
    2048: Architecture.SDXL,
    1280: Architecture.SDXL,  # the SDXL refiner conditions on OpenCLIP bigG alone
}
REFINER_NOTE = "SDXL refiner: meant for the last steps after an SDXL base, not for drawing alone"
FLUX_HIDDEN = 3072
FLUX_SINGLE_FUSED = 3 * 3072 + 4 * 3072  # single block linear1: q, k, v and the 4x MLP
SD3_HIDDEN = {1536, 2432}  # SD3 medium / SD3.5 medium, SD3.5 large
# Marker tensors NoobAI-style v-prediction checkpoints carry (ComfyUI and Forge read them too).
V_PRED_KEY = "v_pred"
ZTSNR_KEY = "ztsnr"
SGM_VAE_PREFIX = "first_stage_model."
ZTSNR_NOTE = "zero terminal SNR (ztsnr): use a schedule with rescaled betas"

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


def is_checkpoint(tensors: Mapping[str, TensorInfo]) -> bool:
    """Whether the keys name a denoiser (UNet or transformer), whole model or bare."""
    keys = _Keys(tensors)
    if any(("\n" + m) in keys.text or ("." + m) in keys.text for m in _DENOISER_MARKERS):
        return True
    # a bare diffusers UNet / transformer
    return bool(keys.search(r"^(down_blocks\.\d+\.attentions|mid_block\.attentions|transformer_blocks\.\d+\.attn)"))


def most_common(values: list[int]) -> int | None:
    return Counter(values).most_common(1)[0][0] if values else None


@dataclass
class Verdict:
    architecture: Architecture
    evidence: str
    notes: list[str] = field(default_factory=list)
    # architectures the tensors fit equally well (a text encoder several models share):
    # a metadata hint among them beats the tensors' guess
    shared_with: frozenset[Architecture] = frozenset()



def flux_or_other(hidden: int | None, evidence: str) -> Verdict:
    if hidden is None or hidden == FLUX_HIDDEN:
        return Verdict(Architecture.FLUX, evidence + (" with hidden size 3072" if hidden else ""))
    return Verdict(
        Architecture.OTHER,
        f"{evidence}, but hidden size {hidden} is not Flux.1's 3072 (Flux.2 or another)",
    )



def checkpoint_architecture(tensors: Mapping[str, TensorInfo]) -> Verdict | None:
    keys = _Keys(tensors)
    if keys.has("double_layers.", "joint_transformer_blocks.") or keys.search(r"(^|\.)register_tokens$"):
        return Verdict(Architecture.AURAFLOW, "key names: AuraFlow double_layers / register_tokens")
    if keys.has("img_attn_qkv.", "img_mod.linear.", "individual_token_refiner."):
        return Verdict(Architecture.OTHER, "key names: HunyuanVideo double_blocks")
    if keys.has("distilled_guidance_layer."):
        return Verdict(Architecture.OTHER, "key names: Chroma (a Flux derivative with pruned modulation)")
    if keys.has("double_stream_modulation", "single_stream_modulation"):
        # Flux.2 shares one modulation across blocks; Klein 4B has Flux.1's hidden size
        return Verdict(Architecture.OTHER, "key names: Flux.2 (shared double/single stream modulation)")
    if keys.has("double_blocks.") and keys.has("single_blocks.", "img_attn."):
        hidden = most_common(
            [s[1] for s in keys.float_shapes(r"double_blocks\.\d+\.img_attn\.(qkv|proj)\.weight$") if len(s) == 2]
            + [s[0] for s in keys.float_shapes(r"(^|\.)img_in\.weight$") if len(s) == 2]
            # biases stay unquantized in NF4 files, and the projection's is the hidden size
            + [s[0] for s in keys.float_shapes(r"double_blocks\.\d+\.img_attn\.proj\.bias$") if len(s) == 1]
        )
        v = flux_or_other(hidden, "key names: Flux double_blocks / single_blocks")
        if v.architecture == Architecture.FLUX:
            dev = keys.has("guidance_in.")
            v.notes.append("Flux dev (guidance embedding)" if dev else "Flux schnell-style (no guidance embedding)")
        return v
    if keys.has("single_transformer_blocks.") and keys.search(r"(^|\.)transformer_blocks\.\d"):
        return Verdict(
            Architecture.FLUX,
            "key names: diffusers Flux transformer_blocks + single_transformer_blocks",
        )
    if keys.has("joint_blocks."):
        return Verdict(Architecture.SD3, "key names: SD3 MMDiT joint_blocks")
    if keys.search(r"(^|\.)transformer_blocks\.\d+\.(img|txt)_mod\."):
        return Verdict(Architecture.OTHER, "key names: Qwen-Image style transformer blocks")
    if keys.search(r"(^|\.)transformer_blocks\.\d+\.attn\.add_k_proj\.") and keys.has("pos_embed.proj."):
        return Verdict(
            Architecture.SD3,
            "key names: diffusers SD3 transformer (joint attention + patch embedding)",
        )
    if keys.search(r"(^|\.)blocks\.\d+\.(self_attn|cross_attn)\."):
        return Verdict(
            Architecture.OTHER,
            "key names: a DiT with self_attn / cross_attn blocks (Wan, PixArt, ...)",
        )
    if keys.search(r"(^|\.)layers\.\d+\.attention\.qkv\."):
        return Verdict(Architecture.OTHER, "key names: Lumina-style DiT layers")
    return _unet_checkpoint(keys) or _component_checkpoint(keys)


def _unet_checkpoint(keys: _Keys) -> Verdict | None:
    unet = keys.has("model.diffusion_model.", "\ninput_blocks.", "\nmiddle_block.") or keys.search(
        r"^(down_blocks\.\d+\.attentions|mid_block\.)"
    )
    if not unet:
        return None
    if keys.has("encoder_hid_proj."):
        # same UNet shapes as SDXL, but conditioned on ChatGLM: SDXL LoRAs do not fit
        return Verdict(Architecture.OTHER, "key names: a UNet fed by a projected LLM text encoder (Kolors)")
    notes: list[str] = []
    if not keys.has(*_TEXT_ENCODER_MARKERS):
        notes.append("UNet only: the file has no text encoders (or VAE); they must come from elsewhere")
    context = most_common([s[1] for s in keys.float_shapes(r"attn2\.to_k\.weight$") if len(s) == 2])
    adm = most_common(
        [s[1] for s in keys.float_shapes(r"(label_emb\.0\.0|add_embedding\.linear_1)\.weight$") if len(s) == 2]
    )
    channels = [s[1] for s in keys.float_shapes(_UNET_CONV_IN) if len(s) == 4]
    notes.extend(input_channel_notes(most_common(channels)))
    refiner = adm == 2560 or context == 1280 or (
        keys.has("conditioner.embedders.0.model.") and not keys.has("conditioner.embedders.1.")
    )
    if refiner:
        notes.append(REFINER_NOTE)
    if context in CONTEXT_ARCH:
        return Verdict(
            CONTEXT_ARCH[context],
            f"shapes: UNet cross-attention (attn2.to_k) input width {context}", notes,
        )
    if adm in (2816, 2560):
        return Verdict(Architecture.SDXL, f"shapes: SDXL size/crop conditioning input width {adm}", notes)
    if keys.has("conditioner.embedders.1.", "conditioner.embedders.0.model."):
        return Verdict(Architecture.SDXL, "key names: SGM conditioner embedders (SDXL text encoders)", notes)
    if keys.has("label_emb.", "add_embedding."):
        return Verdict(Architecture.SDXL, "key names: SDXL size/crop conditioning (label_emb)", notes)
    if keys.has("cond_stage_model.transformer."):
        return Verdict(
            Architecture.SD1,
            "key names: CLIP ViT-L text encoder (cond_stage_model.transformer)", notes,
        )
    if keys.has("cond_stage_model.model."):
        return Verdict(Architecture.SD2, "key names: OpenCLIP text encoder (cond_stage_model.model)", notes)
    return None


_UNET_CONV_IN = r"(^|diffusion_model\.)input_blocks\.0\.0\.weight$|^conv_in\.weight$"
_IN_CHANNEL_NOTES = {
    9: "inpainting UNet (9 input channels: latents + mask + masked image): it fills in masked "
    "parts of a picture and cannot draw from a prompt alone",
    8: "image-editing UNet (8 input channels, instruct-pix2pix / CosXL Edit style): it needs an "
    "input picture to edit",
}


def input_channel_notes(channels: int | None) -> list[str]:
    # 4 latent channels is a normal text-to-image UNet; other counts are special purpose
    note = _IN_CHANNEL_NOTES.get(channels) if channels else None
    return [note] if note else []


def _component_checkpoint(keys: _Keys) -> Verdict | None:
    """Files that are not a whole model: embeddings say which text encoder they fit."""
    t = keys.tensors
    if "clip_g" in t and len(t["clip_g"].shape) == 2 and t["clip_g"].shape[1] == 1280:
        return Verdict(Architecture.SDXL, "textual-inversion embedding for SDXL (clip_l + clip_g)")
    vectors = [info for k, info in t.items() if k == "emb_params" or k.startswith("string_to_param.")]
    widths = {info.shape[-1] for info in vectors if info.shape}
    if widths == {768}:
        return Verdict(Architecture.SD1, "textual-inversion embedding of width 768")
    if widths == {1024}:
        return Verdict(Architecture.SD2, "textual-inversion embedding of width 1024")
    return None


def component_notes(tensors: Mapping[str, TensorInfo]) -> list[str]:
    keys = list(tensors)
    embedding = any(k in ("clip_l", "clip_g", "emb_params") or k.startswith("string_to_param.") for k in keys)
    if embedding:
        return ["a textual-inversion embedding, not a checkpoint or LoRA"]
    if keys and all(k.startswith(_VAE_PREFIXES) for k in keys):
        return ["looks like a VAE on its own, not a checkpoint or LoRA"]
    if keys and all(k.startswith(_TEXT_ENCODER_MARKERS) for k in keys):
        return ["looks like a text encoder on its own, not a checkpoint or LoRA"]
    return []


def prediction(tensors: Mapping[str, TensorInfo], training: TrainingMetadata) -> tuple[bool, bool]:
    """(v-prediction, zero terminal SNR) as a single file states them: the empty `v_pred` /
    `ztsnr` marker tensors, or the training metadata (modelspec.prediction_type,
    ss_v_parameterization, ss_zero_terminal_snr)."""
    v_pred = V_PRED_KEY in tensors or training.prediction_type == "v"
    return v_pred, ZTSNR_KEY in tensors or training.zero_terminal_snr


def single_file_has_vae(tensors: Mapping[str, TensorInfo]) -> bool:
    """Whether a single-file checkpoint carries its VAE (files "pruned" of it do not)."""
    return any(k.startswith(SGM_VAE_PREFIX) for k in tensors)


@dataclass(frozen=True)
class CheckpointFacts:
    """What the scan decided about a checkpoint: stored in the library, carried by the plan
    to the loader, and trusted there, so no second opinion forms on the GPU thread."""

    architecture: Architecture
    kind: FileKind
    v_prediction: bool
    zero_terminal_snr: bool  # as the file states it; applies only with v_prediction
    has_vae: bool
