"""SDXL as one .safetensors file in the original (SGM/LDM) key layout CivitAI checkpoints use.

`write_single_file` is the reverse of diffusers' single-file conversion: it turns a diffusers
`StableDiffusionXLPipeline` into the keys Stability's `sd_xl_base_1.0.safetensors` carries

    model.diffusion_model.*                 the UNet        (input_blocks / middle_block / output_blocks)
    first_stage_model.*                     the VAE         (encoder.down.N.block.M, mid.attn_1 as 1x1 convs)
    conditioner.embedders.0.transformer.*   CLIP ViT-L      (Hugging Face names under text_model.)
    conditioner.embedders.1.model.*         OpenCLIP bigG   (resblocks, fused attn.in_proj, text_projection)

so tiny demo and test checkpoints go through exactly the loading path a real download does.
The mapping is derived from the model configs rather than hard-coded for SDXL's sizes, which
is what lets the tiny pipeline (same block layout, toy widths) use it. Reading and
classifying such a file is engine/files' business.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from engine.files.classify import SGM_VAE_PREFIX, V_PRED_KEY, ZTSNR_KEY

if TYPE_CHECKING:
    import torch

# diffusers assembles a pipeline's components at runtime, so statically its attributes
# (unet, vae, scheduler, ...) are unknown: pipelines are typed as Any here.
Pipeline: TypeAlias = Any

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = SGM_VAE_PREFIX
CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
CLIP_G_PREFIX = "conditioner.embedders.1.model."


# ----------------------------------------------------------------------------- UNet ---

_UNET_TOP = {
    "conv_in.": "input_blocks.0.0.",
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}

_UNET_RESNET = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
)


def _rename_resnet(rest: str, table: tuple[tuple[str, str], ...]) -> str:
    for old, new in table:
        if rest.startswith(old):
            return new + rest[len(old) :]
    return rest


def unet_to_sgm(state_dict: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """diffusers UNet2DConditionModel keys -> SGM `model.diffusion_model.*` keys (no prefix)."""
    per_level = int(config["layers_per_block"]) + 1  # resnets (+ downsampler slot) per level
    up_types = list(config["up_block_types"])
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        out[_unet_key(key, per_level, up_types)] = value
    return out


def _unet_key(key: str, per_level: int, up_types: list[str]) -> str:
    for old, new in _UNET_TOP.items():
        if key.startswith(old):
            return new + key[len(old) :]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per_level + layer + 1
        if kind == "resnets":
            return f"input_blocks.{index}.0.{_rename_resnet(rest, _UNET_RESNET)}"
        return f"input_blocks.{index}.1.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per_level}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
        kind, layer, rest = m[1], int(m[2]), m[3]
        if kind == "resnets":
            return f"middle_block.{2 * layer}.{_rename_resnet(rest, _UNET_RESNET)}"
        return f"middle_block.1.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per_level + layer
        if kind == "resnets":
            return f"output_blocks.{index}.0.{_rename_resnet(rest, _UNET_RESNET)}"
        return f"output_blocks.{index}.1.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        block = int(m[1])
        # The upsampler sits after the attention in cross-attention levels, else after the resnet.
        slot = 2 if up_types[block].startswith("CrossAttn") else 1
        return f"output_blocks.{block * per_level + per_level - 1}.{slot}.conv.{m[2]}"
    raise ValueError(f"no SGM name for UNet key {key!r}")


# ------------------------------------------------------------------------------ VAE ---

_VAE_RESNET = (("conv_shortcut.", "nin_shortcut."),)
_VAE_ATTN = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


def vae_to_sgm(state_dict: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """diffusers AutoencoderKL keys -> LDM `first_stage_model.*` keys (no prefix).

    The mid-block attention projections become 1x1 convolutions, as in the original files.
    """
    levels = len(config["block_out_channels"])
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        name, is_attn_proj = _vae_key(key, levels)
        if is_attn_proj and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)
        out[name] = value
    return out


def _vae_key(key: str, levels: int) -> tuple[str, bool]:
    if m := re.match(r"(encoder|decoder)\.conv_norm_out\.(.*)", key):
        return f"{m[1]}.norm_out.{m[2]}", False
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_rename_resnet(m[3], _VAE_RESNET)}", False
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", key):
        return f"encoder.down.{m[1]}.downsample.{m[2]}", False
    # Decoder levels are numbered from the bottom in LDM, from the top in diffusers.
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        level = levels - 1 - int(m[1])
        return f"decoder.up.{level}.block.{m[2]}.{_rename_resnet(m[3], _VAE_RESNET)}", False
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.{m[2]}", False
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_rename_resnet(m[3], _VAE_RESNET)}", False
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
        rest = _rename_resnet(m[2], _VAE_ATTN)
        return f"{m[1]}.mid.attn_1.{rest}", rest.endswith("weight") and not rest.startswith("norm.")
    if re.match(r"(encoder|decoder)\.(conv_in|conv_out)\.|(post_)?quant_conv\.", key):
        return key, False
    raise ValueError(f"no LDM name for VAE key {key!r}")


# ---------------------------------------------------------------------- text encoders ---


def clip_l_to_sgm(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """CLIPTextModel keys -> `conditioner.embedders.0.transformer.*` keys (no prefix).

    The original files keep Hugging Face's names under `text_model.`; transformers >= 5.6
    flattened CLIPTextModel, so the prefix is put back where it is missing.
    """
    return {
        (key if key.startswith("text_model.") else "text_model." + key): value
        for key, value in state_dict.items()
    }


_OPENCLIP_NAMES = (
    ("text_model.encoder.layers.", "transformer.resblocks."),
    ("text_model.final_layer_norm.", "ln_final."),
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
)
_OPENCLIP_LAYER = (
    (".self_attn.out_proj.", ".attn.out_proj."),
    (".layer_norm1.", ".ln_1."),
    (".layer_norm2.", ".ln_2."),
    (".mlp.fc1.", ".mlp.c_fc."),
    (".mlp.fc2.", ".mlp.c_proj."),
)


def clip_g_to_sgm(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """CLIPTextModelWithProjection keys -> OpenCLIP `conditioner.embedders.1.model.*` (no prefix).

    q/k/v projections are fused into `attn.in_proj_*` (q, k, v order, as nn.MultiheadAttention
    stores them) and `text_projection` is stored transposed (OpenCLIP multiplies `x @ P`).
    """
    import torch

    out: dict[str, Any] = {}
    qkv: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        if m := re.match(r"(.*)\.self_attn\.([qkv])_proj\.(weight|bias)$", key):
            qkv.setdefault(f"{m[1]}.{m[3]}", {})[m[2]] = value
            continue
        if key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
            continue
        out[_openclip_key(key)] = value
    for stem, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"q/k/v projections incomplete for {stem!r}")
        layer, kind = stem.rsplit(".", 1)
        out[f"{_openclip_key(layer)}.attn.in_proj_{kind}"] = torch.cat(
            [parts["q"], parts["k"], parts["v"]], dim=0
        )
    return out


def _openclip_key(key: str) -> str:
    for old, new in _OPENCLIP_NAMES:
        if key.startswith(old):
            key = new + key[len(old) :]
            break
    else:
        raise ValueError(f"no OpenCLIP name for text encoder key {key!r}")
    for old, new in _OPENCLIP_LAYER:
        key = key.replace(old, new)
    return key


# ---------------------------------------------------------------------------- writer ---


def sgm_state_dict(pipe: Pipeline) -> dict[str, torch.Tensor]:
    """The whole pipeline as one SGM-layout state dict (tensors shared, not copied)."""
    import torch

    parts = (
        (UNET_PREFIX, unet_to_sgm(pipe.unet.state_dict(), pipe.unet.config)),
        (VAE_PREFIX, vae_to_sgm(pipe.vae.state_dict(), pipe.vae.config)),
        (CLIP_L_PREFIX, clip_l_to_sgm(pipe.text_encoder.state_dict())),
        (CLIP_G_PREFIX, clip_g_to_sgm(pipe.text_encoder_2.state_dict())),
    )
    out = {prefix + key: value for prefix, part in parts for key, value in part.items()}
    # Two tensors Stability's file carries that no diffusers module holds: CLIP-L's position
    # ids buffer and OpenCLIP's logit scale (ln 100, its clamp value after training).
    positions = int(pipe.text_encoder.config.max_position_embeddings)
    out[CLIP_L_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    out[CLIP_G_PREFIX + "logit_scale"] = torch.tensor(math.log(100.0))
    return out


def write_single_file(
    pipe: Pipeline,
    path: Path,
    metadata: Mapping[str, str] | None = None,
    *,
    dtype: torch.dtype | None = None,
    v_prediction: bool = False,
) -> Path:
    """Save `pipe` as one .safetensors checkpoint laid out like a CivitAI SDXL download.

    `dtype` casts floating tensors (real downloads are usually fp16); `v_prediction` adds the
    `v_pred` and `ztsnr` marker tensors NoobAI-style v-prediction checkpoints carry.
    """
    import torch
    from safetensors.torch import save_file

    tensors = sgm_state_dict(pipe)
    prepared: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        prepared[key] = value.contiguous()
    if v_prediction:
        prepared[V_PRED_KEY] = torch.zeros(0)
        prepared[ZTSNR_KEY] = torch.zeros(0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(prepared, str(path), metadata={str(k): str(v) for k, v in (metadata or {}).items()})
    return path
