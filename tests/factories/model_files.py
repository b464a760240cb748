"""Writers of small but realistic model files, and of hostile ones, for tests.

LoRAs get real key names and the real in/out widths of the layers they patch (so shape
based detection sees what it would see in a real file) but tiny ranks and only a handful
of modules. Checkpoints get a handful of tensors that identify their architecture.

Tensor bytes are zeros unless a `seed` is given, and zeros are never written: the file is
extended with truncate(), which most filesystems store sparsely. A "7 MB" checkpoint with a
real SDXL label_emb shape therefore costs microseconds and no disk.

The safetensors layout is written here (8-byte length, space-padded JSON header, data);
tests check that the reference `safetensors` library reads these files identically.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.files.header import DTYPE_BITS

# --- the writer -----------------------------------------------------------------------


@dataclass(frozen=True)
class T:
    """One tensor to write: dtype, shape and, optionally, its exact bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes | None = None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BITS[self.dtype] // 8


def scalar(value: float, dtype: str = "F32") -> T:
    """A 0-d float tensor holding `value` (how kohya stores `.alpha`)."""
    if dtype == "BF16":
        raw = struct.pack("<f", value)[2:]
    else:
        raw = struct.pack({"F16": "<e", "F32": "<f", "F64": "<d"}[dtype], value)
    return T(dtype, (), raw)


def write_safetensors(
    path: str | Path,
    tensors: Mapping[str, T],
    metadata: Mapping[str, str] | None = None,
    *,
    seed: int | None = None,
) -> Path:
    """Write a spec-conformant safetensors file; tensors without data are zeros (or random
    small values when `seed` is given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    offset = 0
    order = sorted(tensors)
    for name in order:
        t = tensors[name]
        header[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the reference writer aligns the data section to 8
    data_offset = 8 + len(raw)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        pos = 0
        for name in order:
            t = tensors[name]
            data = t.data if t.data is not None else _random_bytes(t, seed, name)
            if data is not None:
                if len(data) != t.nbytes:
                    raise ValueError(f"{name}: {len(data)} bytes given, {t.nbytes} needed")
                f.seek(data_offset + pos)
                f.write(data)
            pos += t.nbytes
        f.truncate(data_offset + offset)
    return path


def _random_bytes(t: T, seed: int | None, name: str) -> bytes | None:
    if seed is None or t.dtype not in ("F16", "BF16", "F32") or not t.shape:
        return None
    import zlib

    import numpy as np

    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    values = (rng.standard_normal(math.prod(t.shape)) * 0.01).astype(np.float32)
    if t.dtype == "F32":
        return values.tobytes()
    if t.dtype == "F16":
        return values.astype(np.float16).tobytes()
    return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()


# --- kohya metadata -------------------------------------------------------------------

_BASE_VERSION = {
    "sd1": "sd_v1",
    "sd2": "sd_v2",
    "sd2_v": "sd_v2_v",
    "sdxl": "sdxl_base_v1-0",
    "flux": "flux1",
}
_MODELSPEC_ARCH = {
    "sd1": "stable-diffusion-v1",
    "sd2": "stable-diffusion-v2-512",
    "sd2_v": "stable-diffusion-v2-768-v",
    "sdxl": "stable-diffusion-xl-v1-base",
    "flux": "flux-1-dev",
    "sd3": "stable-diffusion-3-medium",
}
_RESOLUTION = {"sd1": 512, "sd2": 512, "sd2_v": 768, "sdxl": 1024, "flux": 1024, "sd3": 1024}


def kohya_metadata(
    base: str = "sdxl",
    *,
    sd_model_name: str | None = "illustriousXL_v01.safetensors",
    new_sd_model_hash: str | None = None,
    sd_model_hash: str | None = None,
    tags: Mapping[str, int] | Sequence[str] | None = None,
    output_name: str = "my_lora",
    network_module: str = "networks.lora",
    network_dim: int | str = 4,
    network_alpha: float | str = 2.0,
    network_args: Mapping[str, str] | None = None,
    training_comment: str | None = None,
    trigger_phrase: str | None = None,
    modelspec: bool = True,
) -> dict[str, str]:
    """The `__metadata__` sd-scripts' train_network.py writes (every value `str(v)`),
    plus the `modelspec.*` keys of library/sai_model_spec.py."""
    if tags is None:
        tags = {"1girl": 20, "solo": 18, "smile": 7, "long hair": 5}
    if not isinstance(tags, Mapping):
        tags = {t: len(tags) - i for i, t in enumerate(tags)}
    res = _RESOLUTION.get(base, 1024)
    dataset_dir = f"10_{output_name}"
    md: dict[str, Any] = {
        "ss_session_id": 1234567890,
        "ss_training_started_at": 1714550400.123,
        "ss_output_name": output_name,
        "ss_learning_rate": 0.0001,
        "ss_text_encoder_lr": 5e-05,
        "ss_unet_lr": 0.0001,
        "ss_num_train_images": 200,
        "ss_num_reg_images": 0,
        "ss_num_batches_per_epoch": 100,
        "ss_num_epochs": 10,
        "ss_gradient_checkpointing": True,
        "ss_gradient_accumulation_steps": 1,
        "ss_max_train_steps": 1000,
        "ss_lr_warmup_steps": 0,
        "ss_lr_scheduler": "cosine",
        "ss_network_module": network_module,
        "ss_network_dim": network_dim,
        "ss_network_alpha": network_alpha,
        "ss_network_dropout": None,
        "ss_mixed_precision": "bf16",
        "ss_full_fp16": False,
        "ss_v2": base.startswith("sd2"),
        "ss_base_model_version": _BASE_VERSION.get(base, base),
        "ss_clip_skip": 2 if base == "sd1" else None,
        "ss_max_token_length": 225,
        "ss_cache_latents": True,
        "ss_seed": 42,
        "ss_lowram": False,
        "ss_noise_offset": None,
        "ss_multires_noise_iterations": None,
        "ss_multires_noise_discount": 0.3,
        "ss_adaptive_noise_scale": None,
        "ss_zero_terminal_snr": False,
        "ss_training_comment": training_comment,
        "ss_sd_scripts_commit_hash": "e89653975ddf429cdf0c0fd268da0a5a3e8dba1f",
        "ss_optimizer": "bitsandbytes.optim.adamw.AdamW8bit",
        "ss_max_grad_norm": 1.0,
        "ss_caption_dropout_rate": 0.0,
        "ss_caption_dropout_every_n_epochs": 0,
        "ss_caption_tag_dropout_rate": 0.0,
        "ss_face_crop_aug_range": None,
        "ss_prior_loss_weight": 1.0,
        "ss_min_snr_gamma": 5.0,
        "ss_scale_weight_norms": None,
        "ss_debiased_estimation": False,
        "ss_loss_type": "l2",
        "ss_batch_size_per_device": 2,
        "ss_total_batch_size": 2,
        "ss_resolution": (res, res),
        "ss_color_aug": False,
        "ss_flip_aug": False,
        "ss_random_crop": False,
        "ss_shuffle_caption": True,
        "ss_enable_bucket": True,
        "ss_bucket_no_upscale": True,
        "ss_min_bucket_reso": 256,
        "ss_max_bucket_reso": 2048,
        "ss_keep_tokens": 1,
        "ss_dataset_dirs": json.dumps({dataset_dir: {"n_repeats": 10, "img_count": 20}}),
        "ss_reg_dataset_dirs": json.dumps({}),
        "ss_tag_frequency": json.dumps({dataset_dir: dict(tags)}),
        "ss_bucket_info": json.dumps({"buckets": {}, "mean_img_ar_error": 0.0}),
        "ss_training_finished_at": 1714554000.456,
        "ss_steps": 1000,
        "ss_epoch": 10,
    }
    if network_args:
        md["ss_network_args"] = json.dumps(dict(network_args))
    if sd_model_name is not None:
        md["ss_sd_model_name"] = sd_model_name
    if new_sd_model_hash is not None:
        md["ss_new_sd_model_hash"] = new_sd_model_hash.lower()
        md["ss_sd_model_hash"] = (sd_model_hash or "1a2b3c4d").lower()
    elif sd_model_hash is not None:
        md["ss_sd_model_hash"] = sd_model_hash.lower()
    out = {k: str(v) for k, v in md.items()}
    if modelspec:
        out.update(_modelspec(base, output_name, res, trigger_phrase))
    return out


def _modelspec(base: str, title: str, res: int, trigger_phrase: str | None) -> dict[str, str]:
    spec = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": _MODELSPEC_ARCH.get(base, base) + "/lora",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models"
        if base == "sdxl"
        else ("https://github.com/black-forest-labs/flux" if base == "flux" else "diffusers"),
        "modelspec.title": title,
        "modelspec.resolution": f"{res}x{res}",
        "modelspec.date": "2024-05-01T09:00:00",
    }
    if base != "flux":
        spec["modelspec.prediction_type"] = "v" if base.endswith("_v") else "epsilon"
    if trigger_phrase is not None:
        spec["modelspec.trigger_phrase"] = trigger_phrase
    return spec


# --- LoRA module tables (name, in_features, out_features, conv kernel or 0) -----------

_SD_UNET = [
    ("down_blocks_0_attentions_0_proj_in", 320, 320, 1),
    ("down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 320, 320, 0),
    ("down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", "ctx", 320, 0),
    ("down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v", "ctx", 320, 0),
    ("mid_block_attentions_0_transformer_blocks_0_attn2_to_k", "ctx", 1280, 0),
    ("up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2", 1280, 320, 0),
]
_SD_CONV = [
    ("down_blocks_0_resnets_0_conv1", 320, 320, 3),
    ("up_blocks_3_resnets_2_conv_shortcut", 640, 320, 1),
]
_SDXL_UNET = [
    ("input_blocks_4_1_proj_in", 640, 640, 0),
    ("input_blocks_4_1_transformer_blocks_0_attn1_to_q", 640, 640, 0),
    ("input_blocks_4_1_transformer_blocks_0_attn2_to_k", 2048, 640, 0),
    ("input_blocks_7_1_transformer_blocks_1_attn2_to_v", 2048, 1280, 0),
    ("middle_block_1_transformer_blocks_0_attn2_to_k", 2048, 1280, 0),
    ("output_blocks_0_1_transformer_blocks_9_ff_net_2", 5120, 1280, 0),
]
_SDXL_CONV = [
    ("input_blocks_1_0_in_layers_2", 320, 320, 3),
    ("output_blocks_2_2_conv", 1280, 1280, 3),
]
# engine/testing/tiny_sdxl.py's SDXL: the same names at toy widths (channels 32/64/64,
# cross-attention 64, transformer depth 1/1/2, text encoders of width 32)
_SDXL_TINY_UNET = [
    ("input_blocks_4_1_proj_in", 64, 64, 0),
    ("input_blocks_4_1_transformer_blocks_0_attn1_to_q", 64, 64, 0),
    ("input_blocks_4_1_transformer_blocks_0_attn2_to_k", 64, 64, 0),
    ("input_blocks_7_1_transformer_blocks_1_attn2_to_v", 64, 64, 0),
    ("middle_block_1_transformer_blocks_1_attn2_to_k", 64, 64, 0),
    ("output_blocks_0_1_transformer_blocks_1_ff_net_2", 256, 64, 0),
]
_SDXL_TINY_CONV = [("input_blocks_1_0_in_layers_2", 32, 32, 3)]
_TINY_CLIP = [
    ("text_model_encoder_layers_0_self_attn_q_proj", 32, 32, 0),
    ("text_model_encoder_layers_3_mlp_fc1", 32, 37, 0),
]
_FLUX = [
    ("double_blocks_0_img_attn_proj", 3072, 3072, 0),
    ("double_blocks_0_img_attn_qkv", 3072, 9216, 0),
    ("double_blocks_18_txt_mlp_2", 12288, 3072, 0),
    ("single_blocks_0_linear1", 3072, 21504, 0),
    ("single_blocks_37_linear2", 15360, 3072, 0),
]
_SD3 = [
    ("joint_blocks_0_x_block_attn_qkv", 1536, 4608, 0),
    ("joint_blocks_0_context_block_attn_proj", 1536, 1536, 0),
    ("joint_blocks_23_x_block_mlp_fc2", 6144, 1536, 0),
]
_CLIP_L = [
    ("text_model_encoder_layers_0_self_attn_q_proj", 768, 768, 0),
    ("text_model_encoder_layers_11_mlp_fc1", 768, 3072, 0),
]
_CLIP_H = [
    ("text_model_encoder_layers_0_self_attn_q_proj", 1024, 1024, 0),
    ("text_model_encoder_layers_22_mlp_fc1", 1024, 4096, 0),
]
_CLIP_G = [
    ("text_model_encoder_layers_0_self_attn_k_proj", 1280, 1280, 0),
    ("text_model_encoder_layers_31_mlp_fc1", 1280, 5120, 0),
]

_Row = tuple[str, Any, int, int]


def _kohya_layout(arch: str, conv: bool, text_encoder: bool) -> list[tuple[str, str, int, int, int]]:
    """(prefix, module, in, out, kernel) rows for a kohya LoRA of `arch`."""
    unet: list[_Row]
    tes: list[tuple[str, list[_Row]]]
    if arch in ("sd1", "sd2"):
        ctx = 768 if arch == "sd1" else 1024
        unet = [(n, ctx if i == "ctx" else i, o, k if arch == "sd1" else 0) for n, i, o, k in _SD_UNET]
        unet += _SD_CONV if conv else []
        tes = [("lora_te_", _CLIP_L if arch == "sd1" else _CLIP_H)]
    elif arch == "sdxl":
        unet = _SDXL_UNET + (_SDXL_CONV if conv else [])
        tes = [("lora_te1_", _CLIP_L), ("lora_te2_", _CLIP_G)]
    elif arch == "sdxl_tiny":
        unet = _SDXL_TINY_UNET + (_SDXL_TINY_CONV if conv else [])
        tes = [("lora_te1_", _TINY_CLIP), ("lora_te2_", _TINY_CLIP)]
    elif arch == "flux":
        if conv:
            raise ValueError("Flux has no convolution layers to train a LoCon on")
        unet = _FLUX
        tes = [("lora_te1_", _CLIP_L)]
    elif arch == "sd3":
        if conv:
            raise ValueError("SD3 has no convolution layers to train a LoCon on")
        unet = _SD3
        tes = [("lora_te1_", _CLIP_L), ("lora_te2_", _CLIP_G)]
    else:
        raise ValueError(f"unknown arch {arch!r}")
    rows = [("lora_unet_", n, i, o, k) for n, i, o, k in unet]
    if text_encoder:
        rows += [(prefix, n, i, o, k) for prefix, table in tes for n, i, o, k in table]
    return rows


def _split(n: int) -> tuple[int, int]:
    """(small, large) factors of n as LyCORIS's LoKr factorisation picks them."""
    for a in (16, 8, 4, 2):
        if n % a == 0:
            return a, n // a
    return 1, n


def write_kohya_lora(
    path: str | Path,
    arch: str = "sdxl",
    *,
    variant: str = "lora",
    rank: int = 4,
    alpha: float | None = None,
    metadata: Mapping[str, str] | None = None,
    text_encoder: bool = True,
    alpha_dtype: str = "F32",
    dtype: str = "F16",
    exclude: str | None = None,
    seed: int | None = None,
) -> Path:
    """A kohya / LyCORIS LoRA: `lora_unet_…` and `lora_te*_…` modules with `.alpha`.

    arch: sd1 sd2 sdxl sdxl_tiny (engine/testing/tiny_sdxl.py's widths) flux sd3.
    variant: lora | locon | loha | lokr | dora. `metadata=None` writes kohya_metadata for
    the arch; pass `{}` for a file without metadata. `exclude` is a regex of module names
    to leave out (e.g. "attn2" to hide the cross-attention widths).
    """
    import re

    if variant not in ("lora", "locon", "loha", "lokr", "dora"):
        raise ValueError(f"unknown variant {variant!r}")
    alpha = float(rank) / 2 if alpha is None else float(alpha)
    rows = _kohya_layout(arch, variant == "locon", text_encoder)
    if exclude:
        rows = [r for r in rows if not re.search(exclude, r[1])]
    tensors: dict[str, T] = {}
    for prefix, name, fan_in, fan_out, kernel in rows:
        key = prefix + name
        tensors[f"{key}.alpha"] = scalar(alpha, alpha_dtype)
        if variant in ("lora", "locon", "dora"):
            if kernel:
                tensors[f"{key}.lora_down.weight"] = T(dtype, (rank, fan_in, kernel, kernel))
                tensors[f"{key}.lora_up.weight"] = T(dtype, (fan_out, rank, 1, 1))
            else:
                tensors[f"{key}.lora_down.weight"] = T(dtype, (rank, fan_in))
                tensors[f"{key}.lora_up.weight"] = T(dtype, (fan_out, rank))
            if variant == "dora":
                tensors[f"{key}.dora_scale"] = T(dtype, (fan_out, 1))
        elif variant == "loha":
            flat_in = fan_in * (kernel * kernel if kernel else 1)
            for w in ("w1", "w2"):
                tensors[f"{key}.hada_{w}_a"] = T(dtype, (fan_out, rank))
                tensors[f"{key}.hada_{w}_b"] = T(dtype, (rank, flat_in))
        else:  # lokr
            a, c = _split(fan_out)
            b, d = _split(fan_in)
            tensors[f"{key}.lokr_w1"] = T(dtype, (a, b))
            tensors[f"{key}.lokr_w2_a"] = T(dtype, (c, rank))
            tensors[f"{key}.lokr_w2_b"] = T(dtype, (rank, d))
    if metadata is None:
        module = {"lora": "networks.lora", "dora": "networks.lora"}.get(variant, "lycoris.kohya")
        args = None if module == "networks.lora" else {"algo": variant, "conv_dim": "4", "conv_alpha": "1"}
        if variant == "dora":
            args = {"dora_wd": "True"}
        metadata = kohya_metadata(
            "sdxl" if arch == "sdxl_tiny" else arch,
            network_module=module,
            network_dim=rank,
            network_alpha=alpha,
            network_args=args,
        )
        if arch == "sd3":  # only modelspec is certain for SD3; leave kohya's version string out
            metadata = {k: v for k, v in metadata.items() if k != "ss_base_model_version"}
    return write_safetensors(path, tensors, metadata or None, seed=seed)


# --- diffusers / peft LoRAs -----------------------------------------------------------

_PEFT_UNET: dict[str, list[tuple[str, int, int]]] = {
    "sd1": [
        ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 320, 320),
        ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", 768, 320),
        ("mid_block.attentions.0.transformer_blocks.0.attn2.to_v", 768, 1280),
        ("up_blocks.3.attentions.0.transformer_blocks.0.attn1.to_out.0", 320, 320),
    ],
    "sd2": [
        ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 320, 320),
        ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", 1024, 320),
        ("mid_block.attentions.0.transformer_blocks.0.attn2.to_v", 1024, 1280),
        ("up_blocks.3.attentions.0.transformer_blocks.0.attn1.to_out.0", 320, 320),
    ],
    "sdxl": [
        ("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", 2048, 640),
        ("down_blocks.2.attentions.1.transformer_blocks.9.attn1.to_q", 1280, 1280),
        ("mid_block.attentions.0.transformer_blocks.3.attn2.to_v", 2048, 1280),
        ("up_blocks.0.attentions.2.transformer_blocks.0.ff.net.2", 5120, 1280),
    ],
    "flux": [
        ("transformer_blocks.0.attn.to_q", 3072, 3072),
        ("transformer_blocks.0.attn.add_k_proj", 3072, 3072),
        ("transformer_blocks.18.ff.net.2", 12288, 3072),
        ("single_transformer_blocks.0.attn.to_k", 3072, 3072),
        ("single_transformer_blocks.37.proj_out", 15360, 3072),
    ],
    "sd3": [
        ("transformer_blocks.0.attn.to_q", 1536, 1536),
        ("transformer_blocks.0.attn.add_q_proj", 1536, 1536),
        ("transformer_blocks.22.ff_context.net.2", 6144, 1536),
    ],
    "auraflow": [
        ("joint_transformer_blocks.0.attn.to_q", 3072, 3072),
        ("joint_transformer_blocks.3.attn.add_k_proj", 3072, 3072),
        ("single_transformer_blocks.0.attn.to_q", 3072, 3072),
        ("single_transformer_blocks.31.ff.linear_2", 8192, 3072),
    ],
}
_PEFT_TE: dict[str, list[tuple[str, str, int, int]]] = {
    "sd1": [("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj", 768, 768)],
    "sd2": [("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj", 1024, 1024)],
    "sdxl": [
        ("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj", 768, 768),
        ("text_encoder_2", "text_model.encoder.layers.0.self_attn.q_proj", 1280, 1280),
    ],
}


def write_peft_lora(
    path: str | Path,
    arch: str = "sdxl",
    *,
    rank: int = 4,
    alpha: float | None = None,
    style: str = "peft",
    text_encoder: bool = True,
    metadata: Mapping[str, str] | None = None,
    exclude: str | None = None,
    dora: bool = False,
    dtype: str = "F16",
    seed: int | None = None,
) -> Path:
    """A diffusers-format LoRA: `unet.…lora_A.weight` (style "peft") or the older
    `unet.…lora.down.weight` / `text_encoder.…lora_linear_layer.down.weight` ("legacy").
    Flux, SD3 and AuraFlow use the `transformer.` prefix. With `alpha`, the peft config is
    stored as diffusers >= 0.34 does (`lora_adapter_metadata`)."""
    import re

    if arch not in _PEFT_UNET:
        raise ValueError(f"unknown arch {arch!r}")
    if style not in ("peft", "legacy"):
        raise ValueError(f"unknown style {style!r}")
    denoiser = "unet" if arch in ("sd1", "sd2", "sdxl") else "transformer"
    rows = [(denoiser, n, i, o) for n, i, o in _PEFT_UNET[arch]]
    if text_encoder:
        rows += _PEFT_TE.get(arch, [])
    if exclude:
        rows = [r for r in rows if not re.search(exclude, r[1])]
    tensors: dict[str, T] = {}
    for component, name, fan_in, fan_out in rows:
        key = f"{component}.{name}"
        if style == "peft":
            down, up = f"{key}.lora_A.weight", f"{key}.lora_B.weight"
        elif component == denoiser:
            down, up = f"{key}.lora.down.weight", f"{key}.lora.up.weight"
        else:
            down, up = f"{key}.lora_linear_layer.down.weight", f"{key}.lora_linear_layer.up.weight"
        tensors[down] = T(dtype, (rank, fan_in))
        tensors[up] = T(dtype, (fan_out, rank))
        if dora:
            tensors[f"{key}.lora_magnitude_vector"] = T(dtype, (fan_out,))
    md = {"format": "pt"}
    if alpha is not None:
        md["lora_adapter_metadata"] = json.dumps(
            {f"{denoiser}.lora_alpha": alpha, f"{denoiser}.r": rank}, indent=2, sort_keys=True
        )
    md.update(metadata or {})
    return write_safetensors(path, tensors, md, seed=seed)


def write_xlabs_flux_lora(path: str | Path, *, rank: int = 4, dtype: str = "BF16") -> Path:
    """XLabs-AI's Flux LoRA format: `double_blocks.N.processor.proj_lora1.down.weight`."""
    tensors: dict[str, T] = {}
    for block in (0, 1, 18):
        for part, fan_out in (("qkv_lora1", 9216), ("proj_lora1", 3072), ("qkv_lora2", 9216), ("proj_lora2", 3072)):
            key = f"double_blocks.{block}.processor.{part}"
            tensors[f"{key}.down.weight"] = T(dtype, (rank, 3072))
            tensors[f"{key}.up.weight"] = T(dtype, (fan_out, rank))
    return write_safetensors(path, tensors, None)


# --- checkpoints ----------------------------------------------------------------------

_CHECKPOINTS: dict[str, dict[str, tuple[int, ...]]] = {
    "sd1": {
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "model.diffusion_model.time_embed.0.weight": (1280, 320),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
        "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
    },
    "sd2": {
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
        "model.diffusion_model.time_embed.0.weight": (1280, 320),
        "cond_stage_model.model.positional_embedding": (77, 1024),
        "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
    },
    "sdxl": {
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "model.diffusion_model.time_embed.0.weight": (1280, 320),
        "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
        "conditioner.embedders.1.model.positional_embedding": (77, 1280),
        "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
    },
    "sdxl_refiner": {
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (768, 1280),
        "model.diffusion_model.label_emb.0.0.weight": (1536, 2560),
        "conditioner.embedders.0.model.positional_embedding": (77, 1280),
        "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
    },
    "flux": {
        "double_blocks.0.img_attn.proj.weight": (3072, 3072),
        "double_blocks.0.img_attn.norm.key_norm.scale": (128,),
        "single_blocks.0.norm.key_norm.scale": (128,),
        "img_in.weight": (3072, 64),
        "time_in.in_layer.weight": (3072, 256),
        "guidance_in.in_layer.weight": (3072, 256),
        "final_layer.linear.weight": (64, 3072),
    },
    "sd3": {
        "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (4608, 1536),
        "model.diffusion_model.joint_blocks.0.context_block.attn.proj.weight": (1536, 1536),
        "model.diffusion_model.x_embedder.proj.weight": (1536, 16, 2, 2),
        "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": (768,),
    },
    "auraflow": {
        "model.double_layers.0.attn.w1q.weight": (3072, 3072),
        "model.single_layers.0.attn.w1q.weight": (3072, 3072),
        "model.register_tokens": (1, 8, 3072),
        "model.t_embedder.mlp.0.weight": (3072, 256),
    },
}
_DIFFUSERS_SINGLE: dict[str, dict[str, tuple[int, ...]]] = {
    "sdxl": {
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
        "add_embedding.linear_1.weight": (1280, 2816),
        "time_embedding.linear_1.weight": (1280, 320),
    },
    "flux": {
        "transformer_blocks.0.attn.add_k_proj.weight": (3072, 3072),
        "single_transformer_blocks.0.attn.to_k.weight": (3072, 3072),
        "x_embedder.weight": (3072, 64),
        "time_text_embed.timestep_embedder.linear_1.weight": (3072, 256),
    },
}


def write_checkpoint(
    path: str | Path,
    arch: str = "sdxl",
    *,
    style: str = "single",
    v_pred: bool = False,
    ztsnr: bool = False,
    metadata: Mapping[str, str] | None = None,
    dtype: str = "F16",
) -> Path:
    """A single-file checkpoint with a few identifying tensors of real shapes.

    arch: sd1 sd2 sdxl sdxl_refiner flux sd3 auraflow. style: "single" (original
    LDM/SGM/BFL names), "unet_only" (ComfyUI UNet export: no prefix, no text encoders),
    "comfy" (Flux with the `model.diffusion_model.` prefix), "diffusers" (diffusers names).
    `v_pred`/`ztsnr` add the empty marker tensors NoobAI and Forge/ComfyUI use.
    """
    if style == "diffusers":
        shapes = dict(_DIFFUSERS_SINGLE[arch])
    else:
        shapes = dict(_CHECKPOINTS[arch])
        if style == "unet_only":
            prefix = "model.diffusion_model."
            shapes = {k[len(prefix) :]: s for k, s in shapes.items() if k.startswith(prefix)}
        elif style == "comfy":
            shapes = {"model.diffusion_model." + k: s for k, s in shapes.items()}
        elif style != "single":
            raise ValueError(f"unknown style {style!r}")
    tensors = {k: T(dtype, s) for k, s in shapes.items()}
    if v_pred:
        tensors["v_pred"] = T("F32", (0,))
    if ztsnr:
        tensors["ztsnr"] = T("F32", (0,))
    return write_safetensors(path, tensors, metadata)


def write_diffusers_folder(
    path: str | Path,
    arch: str = "sdxl",
    *,
    v_pred: bool = False,
    pickle_only: bool = False,
    with_configs: bool = True,
) -> Path:
    """A diffusers pipeline folder: model_index.json, component configs and a few weights.

    arch: sd1 sd2 sdxl sdxl_tiny flux. `pickle_only` writes `.bin` weights instead (a
    harmless pickle) to exercise refusal; `with_configs=False` leaves only model_index.json
    and the weights, so detection must fall back to tensor names.
    """
    from engine.testing import tiny_sdxl as tiny

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    if arch == "sdxl_tiny":
        tiny.write_config_folder(root)
        weights = {
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (64, 64),
            "add_embedding.linear_1.weight": (128, 80),
            "time_embedding.linear_1.weight": (128, 32),
        }
        denoiser = "unet"
    else:
        pipeline, denoiser, config = _DIFFUSERS_LAYOUT[arch]
        _write_json(root / "model_index.json", {"_class_name": pipeline, "_diffusers_version": "0.30.0"})
        if with_configs:
            _write_json(root / denoiser / "config.json", config)
        weights = _DIFFUSERS_WEIGHTS[arch]
    if not with_configs:
        cfg = root / denoiser / "config.json"
        if cfg.exists():
            cfg.unlink()
    scheduler = {"_class_name": "EulerDiscreteScheduler", "prediction_type": "v_prediction" if v_pred else "epsilon"}
    _write_json(root / "scheduler" / "scheduler_config.json", scheduler)
    target = root / denoiser
    target.mkdir(parents=True, exist_ok=True)
    if pickle_only:
        (target / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"note": "harmless"}, protocol=2))
    else:
        write_safetensors(target / "diffusion_pytorch_model.safetensors", {k: T("F16", s) for k, s in weights.items()})
        write_safetensors(
            root / "vae" / "diffusion_pytorch_model.safetensors", {"decoder.conv_out.weight": T("F16", (3, 128, 3, 3))}
        )
    return root


_DIFFUSERS_LAYOUT: dict[str, tuple[str, str, dict[str, Any]]] = {
    "sd1": ("StableDiffusionPipeline", "unet", {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 768}),
    "sd2": ("StableDiffusionPipeline", "unet", {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 1024}),
    "sdxl": (
        "StableDiffusionXLPipeline",
        "unet",
        {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 2048, "addition_embed_type": "text_time"},
    ),
    "flux": ("FluxPipeline", "transformer", {"_class_name": "FluxTransformer2DModel", "num_layers": 19}),
}
_DIFFUSERS_WEIGHTS: dict[str, dict[str, tuple[int, ...]]] = {
    "sd1": {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": (320, 768)},
    "sd2": {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": (320, 1024)},
    "sdxl": {
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
        "add_embedding.linear_1.weight": (1280, 2816),
    },
    "flux": {
        "transformer_blocks.0.attn.add_k_proj.weight": (3072, 3072),
        "single_transformer_blocks.0.attn.to_k.weight": (3072, 3072),
    },
}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


# --- hostile files --------------------------------------------------------------------


def write_raw(path: str | Path, header: bytes | Mapping[str, Any] | list[Any], data: bytes = b"", *, declared: int | None = None) -> Path:
    """Write 8-byte length + `header` (bytes or JSON-able) + `data`, lying about the
    length when `declared` is given."""
    path = Path(path)
    raw = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    length = len(raw) if declared is None else declared
    path.write_bytes(length.to_bytes(8, "little") + raw + data)
    return path


def write_empty_file(path: str | Path) -> Path:
    Path(path).write_bytes(b"")
    return Path(path)


def write_short_file(path: str | Path) -> Path:
    Path(path).write_bytes(b"\x05\x00\x00")
    return Path(path)


def write_truncated_file(path: str | Path) -> Path:
    """A real LoRA cut in the middle of its data (an unfinished download)."""
    write_kohya_lora(path, "sd1", text_encoder=False, metadata={})
    size = Path(path).stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    return Path(path)


def write_header_beyond_file(path: str | Path) -> Path:
    return write_raw(path, b'{"a":', declared=1000)


def write_gigantic_header(path: str | Path) -> Path:
    return write_raw(path, b"{}", declared=2**40)


def write_not_json_header(path: str | Path) -> Path:
    return write_raw(path, b"this is not json at all!")


def write_non_object_header(path: str | Path) -> Path:
    return write_raw(path, [1, 2, 3])


def write_bad_utf8_header(path: str | Path) -> Path:
    return write_raw(path, b'{"\xff\xfe":1}')


def write_deeply_nested_header(path: str | Path, depth: int = 100_000) -> Path:
    return write_raw(path, b"[" * depth + b"]" * depth)


def write_offsets_out_of_range(path: str | Path) -> Path:
    header = {"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}
    return write_raw(path, header, b"\x00" * 16)


def write_bad_dtype(path: str | Path) -> Path:
    return write_raw(path, {"w": {"dtype": "F128", "shape": [2], "data_offsets": [0, 32]}}, b"\x00" * 32)


def write_bad_shape(path: str | Path) -> Path:
    return write_raw(path, {"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}}, b"\x00" * 8)


def write_size_mismatch(path: str | Path) -> Path:
    return write_raw(path, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\x00" * 16)


def write_overlapping_offsets(path: str | Path) -> Path:
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    return write_raw(path, header, b"\x00" * 24)


def write_gap_between_tensors(path: str | Path) -> Path:
    """Offsets that skip 8 bytes: the reference loader refuses the file ("invalid offset")."""
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]},
    }
    return write_raw(path, header, b"\x00" * 24)


def write_trailing_bytes(path: str | Path) -> Path:
    """A real LoRA with its bytes written twice (a resumed download that started over):
    the reference loader refuses it ("file not fully covered")."""
    write_kohya_lora(path, "sd1", text_encoder=False, metadata={})
    data = Path(path).read_bytes()
    Path(path).write_bytes(data + data)
    return Path(path)


def write_duplicate_tensor_name(path: str | Path) -> Path:
    """The same tensor name twice: JSON keeps the last, leaving the first one's bytes
    unclaimed, and the reference loader refuses it."""
    raw = (
        b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
        b' "w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}'
    )
    return write_raw(path, raw, b"\x00" * 16)


def write_gguf_file(path: str | Path) -> Path:
    """The start of a GGUF file (magic, version 3, counts) saved under a .safetensors name."""
    Path(path).write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(16, "little") + b"\x00" * 64)
    return Path(path)


def write_html_file(path: str | Path) -> Path:
    """What a failed CivitAI download leaves behind: a login page saved as the model."""
    Path(path).write_bytes(b"<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>")
    return Path(path)


def write_pickle_file(path: str | Path, protocol: int = 2) -> Path:
    """A pickle of a harmless dict, as legacy torch.save / .ckpt files start. Never load it."""
    Path(path).write_bytes(pickle.dumps({"state_dict": {"weight": [0.0, 1.0]}}, protocol=protocol))
    return Path(path)


def write_zip_file(path: str | Path) -> Path:
    """A zip holding a pickle, the layout of torch.save since PyTorch 1.6. Never load it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"weight": [0.0]}, protocol=2))
        zf.writestr("archive/version", "3\n")
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


# Every hostile writer that read_header must refuse with CorruptFileError, by name.
CORRUPT_WRITERS: dict[str, Callable[[Path], Path]] = {
    "empty": write_empty_file,
    "short": write_short_file,
    "truncated": write_truncated_file,
    "header_beyond_file": write_header_beyond_file,
    "gigantic_header": write_gigantic_header,
    "not_json": write_not_json_header,
    "not_object": write_non_object_header,
    "bad_utf8": write_bad_utf8_header,
    "deeply_nested": write_deeply_nested_header,
    "offsets_out_of_range": write_offsets_out_of_range,
    "bad_dtype": write_bad_dtype,
    "bad_shape": write_bad_shape,
    "size_mismatch": write_size_mismatch,
    "overlapping": write_overlapping_offsets,
    "gap": write_gap_between_tensors,
    "trailing_bytes": write_trailing_bytes,
    "duplicate_tensor": write_duplicate_tensor_name,
    "gguf": write_gguf_file,
    "html": write_html_file,
}
# ...and every one it must refuse with UnsafeFileError.
UNSAFE_WRITERS: dict[str, Callable[[Path], Path]] = {
    "pickle": write_pickle_file,
    "pickle_protocol_4": lambda p: write_pickle_file(p, protocol=4),
    "zip": write_zip_file,
}
