"""LoRA anatomy from a header: the modules a LoRA patches, its architecture, rank and alpha.

A LoRA's architecture comes from the names of the modules it patches and, for UNet LoRAs,
from the cross-attention input width (the text-encoder width of the checkpoint it was
trained for, see engine/files/classify.py). Keys are split by the one grammar in
engine/files/lora_keys.py.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.files.classify import (
    CONTEXT_ARCH,
    FLUX_HIDDEN,
    FLUX_SINGLE_FUSED,
    SD3_HIDDEN,
    Verdict,
    flux_or_other,
    most_common,
)
from engine.files.header import SafetensorsHeader, TensorInfo, read_scalars
from engine.files.lora_keys import LYCORIS_ONLY, algorithm, is_lycoris_module, split_key
from engine.files.training import TrainingMetadata
from engine.kinds import Architecture

_TRANSFORMER_ARCHES = {Architecture.FLUX, Architecture.SD3, Architecture.AURAFLOW, Architecture.OTHER}
_ALPHA_SAMPLE = 16

# --- LoRA key anatomy -----------------------------------------------------------------

WEIGHT_PARTS = {
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
class ModuleParts:
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


def lora_modules(tensors: Mapping[str, TensorInfo]) -> dict[str, ModuleParts]:
    """Group a LoRA file's tensors by the module they patch."""
    modules: dict[str, ModuleParts] = {}
    for key, info in tensors.items():
        split = split_key(key)
        if split is None:
            continue
        name, part = split
        if part in LYCORIS_ONLY and not is_lycoris_module(name):
            continue
        module = modules.get(name)
        if module is None:
            target, body = _split_target(name)
            module = modules[name] = ModuleParts(name, target, body)
        module.parts[part] = info
    # A module with nothing but an alpha is not a LoRA module (e.g. a stray "x.alpha").
    return {n: m for n, m in modules.items() if set(m.parts) - {"alpha"}}


def is_conv(modules: Mapping[str, ModuleParts]) -> bool:
    """Whether a LoRA patches a convolution (what makes it a LoCon): a kernel above 1x1,
    or a module named as one of the UNet's convolutions."""
    return any(
        m.down is not None and ((len(m.down.shape) == 4 and m.down.shape[2:] != (1, 1)) or _CONV_MODULE.search(m.body))
        for m in modules.values()
    )


def lora_algorithm(modules: Mapping[str, ModuleParts]) -> tuple[str | None, bool]:
    """The LyCORIS algorithm name ("lora", "locon", "loha", ...) and whether DoRA is used."""
    return algorithm({p for m in modules.values() for p in m.parts}, conv=is_conv(modules))


def lora_architecture(modules: Mapping[str, ModuleParts]) -> Verdict | None:
    den = [m for m in modules.values() if m.target == "denoiser"]
    bodies = [m.body for m in den]

    def any_body(pattern: str) -> bool:
        rx = re.compile(pattern)
        return any(rx.search(b) for b in bodies)

    def widths(pattern: str) -> list[int]:
        rx = re.compile(pattern)
        return [w for m in den if rx.search(m.body) and (w := m.in_features()) is not None]

    if any_body(r"^(joint_transformer_blocks|double_layers|single_layers)_\d"):
        return Verdict(
            Architecture.AURAFLOW,
            "key names: AuraFlow blocks (joint_transformer_blocks / double_layers)",
        )
    if any_body(r"^single_transformer_blocks_\d+_attn_to_qkv_mlp_proj$") or any_body(
        r"^transformer_blocks_\d+_ff(_context)?_linear_(in|out)$"
    ):
        # Flux.2 (Klein 4B has Flux.1's hidden size 3072) fuses qkv and mlp in its single blocks
        return Verdict(Architecture.OTHER, "key names: Flux.2 blocks (attn.to_qkv_mlp_proj / ff.linear_in)")
    if any_body(r"^single_transformer_blocks_\d+_(attn_to_out_0|ff_(linear_[12]|out_projection)|norm1_linear)$"):
        # same hidden size as Flux.1, but Flux.1's single blocks have no attention output
        # projection and no ff (they fuse it into proj_mlp / proj_out)
        return Verdict(
            Architecture.AURAFLOW,
            "key names: AuraFlow single_transformer_blocks (attn.to_out / ff.linear_1, which Flux lacks)",
        )
    if any_body(r"^(double|single)_blocks_\d+_.*(mlp_fc\d|mod_linear|modulation_linear)") or any_body(
        r"^(txt_in_|individual_token_refiner)"
    ):
        return Verdict(Architecture.OTHER, "key names: HunyuanVideo blocks (img_mlp_fc / img_mod_linear)")
    if any_body(r"^distilled_guidance_layer_"):
        return Verdict(Architecture.OTHER, "key names: Chroma (distilled_guidance_layer, a Flux derivative)")
    if any_body(r"^(double|single)_blocks_\d"):
        hidden = most_common(
            widths(r"^double_blocks_\d+_((img|txt)_attn_(qkv|proj)|processor_(qkv|proj)(_lora\d*)?)$")
            + widths(r"^single_blocks_\d+_(linear1|modulation_lin|processor_qkv(_lora\d*)?)$")
        )
        fused = most_common([w for m in den if m.body.endswith("_linear1") and (w := m.out_features())])
        if hidden == FLUX_HIDDEN and fused not in (None, FLUX_SINGLE_FUSED):
            return Verdict(
                Architecture.OTHER,
                f"key names: Flux-style single_blocks, but linear1 outputs {fused}, not Flux.1's "
                f"{FLUX_SINGLE_FUSED} (Flux.2 Klein or another)",
            )
        return flux_or_other(hidden, "key names: Flux double_blocks / single_blocks")
    if any_body(r"^joint_blocks_\d"):
        return Verdict(Architecture.SD3, "key names: SD3 MMDiT joint_blocks")
    if any_body(r"^single_transformer_blocks_\d"):
        hidden = most_common(widths(r"^(single_)?transformer_blocks_\d+_attn_(to_[qkv]|add_[qkv]_proj)$"))
        return flux_or_other(hidden, "key names: diffusers Flux transformer_blocks + single_transformer_blocks")
    if any_body(r"^transformer_blocks_\d"):
        if any_body(r"^transformer_blocks_\d+_(img|txt)_(mod|mlp)"):
            return Verdict(
                Architecture.OTHER,
                "key names: Qwen-Image style transformer blocks (img_mod / txt_mlp)",
            )
        hidden = most_common(widths(r"^transformer_blocks_\d+_attn_(to_[qkv]|add_[qkv]_proj)$"))
        if hidden == FLUX_HIDDEN:
            return Verdict(
                Architecture.FLUX,
                "key names: diffusers MMDiT transformer_blocks with hidden size 3072 (Flux; no single blocks trained)",
            )
        if hidden in SD3_HIDDEN:
            return Verdict(
                Architecture.SD3,
                f"key names: diffusers MMDiT transformer_blocks with hidden size {hidden} (SD3)",
            )
        return None
    if any_body(r"^blocks_\d+_(self_attn|cross_attn)_"):
        return Verdict(Architecture.OTHER, "key names: Wan-style DiT blocks (self_attn / cross_attn)")
    if any_body(r"^layers_\d+_attention_"):
        return Verdict(Architecture.OTHER, "key names: Lumina-style DiT layers")
    if den and any_body(r"^(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)_"):
        return _unet_lora(modules, den, any_body)
    if not den:
        return _text_encoder_lora(modules)
    return None



def _unet_lora(modules: Mapping[str, ModuleParts], den: list[ModuleParts], any_body: Any) -> Verdict | None:
    rx = re.compile(r"attn2_to_[kv]$")
    contexts = [w for m in den if rx.search(m.body) and (w := m.in_features()) is not None]
    context = most_common(contexts)
    targets = {m.target for m in modules.values()}
    if context in CONTEXT_ARCH:
        arch = CONTEXT_ARCH[context]
        v = Verdict(arch, f"shapes: cross-attention (attn2 to_k/to_v) input width {context}")
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
        return Verdict(Architecture.SDXL, f"key names: SDXL UNet block layout ({why}){suffix}")
    if sgm and not sd_layout:
        return Verdict(
            Architecture.SDXL,
            f"key names: SGM block names (input_blocks/output_blocks) as kohya writes for SDXL{suffix}",
        )
    if sd_layout and not sdxl_layout:
        te = _text_encoder_width(modules)
        if te == 1024:
            return Verdict(
                Architecture.SD2,
                f"key names: SD 1.x/2.x UNet layout; text encoder width 1024{suffix}",
            )
        proj = [m.down for m in den if m.body.endswith(("proj_in", "proj_out")) and m.down is not None]
        if te == 768 or any(len(p.shape) == 4 for p in proj):
            return Verdict(
                Architecture.SD1,
                f"key names: SD 1.x/2.x UNet layout; text encoder width 768 or conv proj_in{suffix}",
            )
        return Verdict(
            Architecture.SD1,
            f"key names: SD 1.x/2.x UNet layout{suffix}; assumed SD 1.x",
            ["could also be SD 2.x: nothing in the file tells them apart"],
        )
    return None


def _text_encoder_width(modules: Mapping[str, ModuleParts]) -> int | None:
    rx = re.compile(r"self_attn_[qkv]_proj$")
    return most_common(
        [
            w
            for m in modules.values()
            if m.target == "text_encoder" and rx.search(m.body) and (w := m.in_features())
        ]
    )


TE_ONLY_NOTE = "only the text encoders are trained"


def _text_encoder_lora(modules: Mapping[str, ModuleParts]) -> Verdict | None:
    targets = {m.target for m in modules.values()}
    if "text_encoder_3" in targets:
        return None  # T5 + CLIP: SD3 or Flux; the text encoders alone cannot tell
    if "text_encoder_2" in targets:
        return Verdict(
            Architecture.SDXL,
            "key names: two text encoders (text-encoder-only LoRA)",
            [TE_ONLY_NOTE],
            frozenset({Architecture.SD3}),  # SD3 has the same CLIP-L + CLIP-G pair
        )
    width = _text_encoder_width(modules)
    if width == 1024:
        return Verdict(Architecture.SD2, "shapes: text encoder width 1024 (text-encoder-only LoRA)")
    if width == 768:
        return Verdict(
            Architecture.SD1,
            "shapes: text encoder width 768 (text-encoder-only LoRA)",
            ["only the text encoder is trained; CLIP-L is shared with SDXL and Flux, so this is a guess"],
            frozenset({Architecture.SDXL, Architecture.FLUX, Architecture.SD3}),
        )
    return None



# --- rank, alpha, targets -------------------------------------------------------------


def lora_rank(modules: Mapping[str, ModuleParts]) -> int | None:
    return most_common([r for m in modules.values() if (r := m.rank()) is not None])


def lora_alpha(
    header: SafetensorsHeader, modules: Mapping[str, ModuleParts], training: TrainingMetadata
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
    found = [v for k, v in sorted(adapter.items()) if k.endswith("lora_alpha")]
    return finite_float(found[0]) if found else None


def finite_float(value: Any) -> float | None:
    """A number read from file metadata as a float, or None when it is no sane number (a
    string, a bool, inf, NaN, or an integer too large for a float: 10**400 is valid JSON)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) and abs(f) <= 1e12 else None


def _json_dict(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def lora_targets(modules: Mapping[str, ModuleParts], arch: Architecture) -> dict[str, int]:
    denoiser = "transformer" if arch in _TRANSFORMER_ARCHES else "unet"
    counts: Counter[str] = Counter()
    for m in modules.values():
        if set(m.parts) & WEIGHT_PARTS:
            counts[denoiser if m.target == "denoiser" else m.target] += 1
    return dict(counts)


