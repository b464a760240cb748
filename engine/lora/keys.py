"""Which module of an SDXL pipeline a LoRA key addresses.

LoRA files name their target modules in several dialects, all for the same layers:

    kohya, SGM UNet names      lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q
    kohya, diffusers names     lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q
    SimpleTuner LyCORIS        lycoris_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q
    diffusers / peft           unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q
    peft without prefix        base_model.model.down_blocks.1.attentions.0...to_q
    legacy attention processor unet.down_blocks.1...attn1.processor.to_q   (+ "_lora.down.weight")
    ComfyUI generic            diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q
    text encoders              lora_te1_text_model_encoder_layers_0_self_attn_q_proj, lora_te_...,
                               lora_te2_..., text_encoder.text_model..., text_encoder_2.text_model...,
                               text_encoders.clip_l.transformer.text_model..., ...clip_g...

`build_key_map(pipe)` enumerates every module that owns a weight and registers each of its
aliases, so matching a file is a dictionary lookup after `normalize_alias`. The SGM names
(the layout of the original Stability checkpoints, used by kohya's SDXL trainer) are derived
from the UNet config, so the same code serves the tiny test UNet and the real SDXL one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")

# ResnetBlock2D inside, SGM name -> diffusers name.
_RESNET_INNER = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_RESNET_INNER_TO_SGM = {v: k for k, v in _RESNET_INNER.items()}

# Modules outside the blocks, diffusers name -> SGM name.
_BASIC_TO_SGM = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


@dataclass(frozen=True)
class ModuleTarget:
    """One layer of the pipeline a LoRA can change: `component` is unet / text_encoder /
    text_encoder_2, `name` the module path inside it (diffusers / transformers naming)."""

    component: str
    name: str
    module: Any = field(compare=False, repr=False, hash=False)


def _per_level(value: Any, levels: int) -> list[int]:
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)] * levels


def unet_block_map(config: Mapping[str, Any]) -> dict[str, str]:
    """Block-level prefixes of a diffusers UNet2DConditionModel mapped to their SGM names.

    Mirrors the layout of the original (SGM / ldm) UNet: input_blocks count a resnet (+ its
    attention) per layer and one slot per downsampler; output_blocks count layers_per_block+1
    resnets per level, and the upsampler sits after the attention when the level has one
    (SDXL's is `output_blocks.2.2.conv`; SD 1.5's first level has no attention, hence `2.1`).
    """
    down_types = list(config["down_block_types"])
    up_types = list(config["up_block_types"])
    levels = len(down_types)
    layers = _per_level(config.get("layers_per_block", 2), levels)
    mapping: dict[str, str] = {}

    n = 1
    for level, block_type in enumerate(down_types):
        has_attention = "CrossAttn" in block_type
        for i in range(layers[level]):
            mapping[f"down_blocks.{level}.resnets.{i}"] = f"input_blocks.{n}.0"
            if has_attention:
                mapping[f"down_blocks.{level}.attentions.{i}"] = f"input_blocks.{n}.1"
            n += 1
        if level != levels - 1:  # every level but the last downsamples
            mapping[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{n}.0.op"
            n += 1

    mid_type = config.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid_type is None:  # a UNet built without a middle block
        pass
    elif "CrossAttn" in mid_type:
        mapping["mid_block.resnets.0"] = "middle_block.0"
        mapping["mid_block.attentions.0"] = "middle_block.1"
        mapping["mid_block.resnets.1"] = "middle_block.2"
    else:
        mapping["mid_block.resnets.0"] = "middle_block.0"
        mapping["mid_block.resnets.1"] = "middle_block.1"

    up_layers = list(reversed(layers))
    n = 0
    for level, block_type in enumerate(up_types):
        has_attention = "CrossAttn" in block_type
        count = up_layers[level] + 1
        for i in range(count):
            mapping[f"up_blocks.{level}.resnets.{i}"] = f"output_blocks.{n}.0"
            if has_attention:
                mapping[f"up_blocks.{level}.attentions.{i}"] = f"output_blocks.{n}.1"
            if i == count - 1 and level != len(up_types) - 1:
                slot = 2 if has_attention else 1
                mapping[f"up_blocks.{level}.upsamplers.0.conv"] = f"output_blocks.{n}.{slot}.conv"
            n += 1
    return mapping


def sgm_unet_name(diffusers_name: str, block_map: Mapping[str, str]) -> str | None:
    """The SGM name of one UNet module (diffusers naming in), or None if it has none."""
    if diffusers_name in _BASIC_TO_SGM:
        return _BASIC_TO_SGM[diffusers_name]
    if diffusers_name in block_map:
        return block_map[diffusers_name]
    parts = diffusers_name.split(".")
    # Block prefixes have 3 (mid_block.resnets.0) or 4 (down_blocks.1.attentions.0) parts.
    for cut in range(min(len(parts) - 1, 5), 1, -1):
        prefix = ".".join(parts[:cut])
        if prefix not in block_map:
            continue
        rest = ".".join(parts[cut:])
        if ".resnets." in prefix:
            inner = _RESNET_INNER_TO_SGM.get(rest)
            return f"{block_map[prefix]}.{inner}" if inner else None
        return f"{block_map[prefix]}.{rest}"
    return None


def _underscored(name: str) -> str:
    return name.replace(".", "_")


def _unwrap(model: Any) -> Any:
    # torch.compile wraps a module and prefixes every name with "_orig_mod."
    return getattr(model, "_orig_mod", model)


def _weighted_modules(model: Any) -> Iterator[tuple[str, Any]]:
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if name and weight is not None and hasattr(weight, "shape"):
            yield name, module


def unet_aliases(name: str, sgm: str | None) -> list[str]:
    """Every spelling of one UNet module in LoRA files (normalized form)."""
    aliases = [f"unet.{name}", name, f"lora_unet_{_underscored(name)}", f"lycoris_{_underscored(name)}"]
    if sgm is not None:
        aliases += [f"lora_unet_{_underscored(sgm)}", f"diffusion_model.{sgm}"]
    return aliases


def clip_canonical_name(encoder: Any, name: str) -> str:
    """The module name as LoRA files spell it: `text_model.encoder.layers.0...`.

    transformers 5 dropped the `text_model` wrapper from CLIPTextModel (its modules are now
    `encoder.layers...`) but kept it in CLIPTextModelWithProjection; LoRA files always
    carry it, so it is put back here for whichever encoder lacks it.
    """
    if hasattr(_unwrap(encoder), "text_model") or name.startswith("text_model.") or name == "text_projection":
        return name
    return f"text_model.{name}"


def text_encoder_aliases(component: str, name: str) -> list[str]:
    """Every spelling of one text-encoder module in LoRA files (normalized form).

    `name` is the canonical `text_model.encoder...` form. Files written by a trainer that
    runs transformers >= 5 (diffusers' training scripts save `text_encoder.encoder.layers.0
    .self_attn.q_proj.lora_A.weight`) lack the `text_model.` level, so each spelling is
    also registered without it.
    """
    names = [name]
    if name.startswith("text_model."):
        names.append(name[len("text_model.") :])
    aliases: list[str] = []
    for n in names:
        if component == "text_encoder":
            aliases += [
                f"text_encoder.{n}",
                f"lora_te1_{_underscored(n)}",
                f"lora_te_{_underscored(n)}",  # SD 1.5-style prefix, CLIP-L on SDXL as in ComfyUI
                f"text_encoders.clip_l.transformer.{n}",
            ]
        else:
            aliases += [
                f"text_encoder_2.{n}",
                f"lora_te2_{_underscored(n)}",
                f"text_encoders.clip_g.transformer.{n}",
            ]
    return aliases


def build_key_map(pipe: Any) -> dict[str, ModuleTarget]:
    """Map every alias of every weighted module of an SDXL pipeline to its target."""
    key_map: dict[str, ModuleTarget] = {}

    def register(alias: str, target: ModuleTarget) -> None:
        previous = key_map.get(alias)
        if previous is not None and previous != target:
            raise ValueError(f"LoRA alias {alias!r} names both {previous} and {target}")
        key_map[alias] = target

    unet = getattr(pipe, "unet", None)
    if unet is not None:
        unet = _unwrap(unet)
        block_map = unet_block_map(unet.config)
        for name, module in _weighted_modules(unet):
            target = ModuleTarget("unet", name, module)
            for alias in unet_aliases(name, sgm_unet_name(name, block_map)):
                register(alias, target)
    for component in ("text_encoder", "text_encoder_2"):
        encoder = getattr(pipe, component, None)
        if encoder is None:
            continue
        encoder = _unwrap(encoder)
        for name, module in _weighted_modules(encoder):
            target = ModuleTarget(component, name, module)
            for alias in text_encoder_aliases(component, clip_canonical_name(encoder, name)):
                register(alias, target)
    return key_map


_PROCESSOR_QKV = re.compile(r"\.processor\.(to_q|to_k|to_v)$")
_PROCESSOR_OUT = re.compile(r"\.processor\.to_out(\.0)?$")


def normalize_alias(prefix: str) -> str:
    """Bring a module prefix taken from a LoRA key into the form `build_key_map` registers.

    Drops peft's `base_model.model.` wrapper (also inside `unet.base_model.model.`) and folds
    diffusers' legacy attention-processor names (`attn1.processor.to_out`) onto the layers.
    """
    alias = prefix.replace("base_model.model.", "")
    alias = _PROCESSOR_QKV.sub(r".\1", alias)
    alias = _PROCESSOR_OUT.sub(".to_out.0", alias)
    return alias
