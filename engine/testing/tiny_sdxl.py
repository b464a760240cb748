"""A tiny SDXL built from config, offline: the same block layout as SDXL at toy sizes.

Used by the tests, the demo and the CPU benchmarks. The UNet keeps SDXL's three levels,
two resnets per level and attention on levels 2 and 3, so LoRA keys written for it carry
real SDXL names (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`). The VAE has
SDXL's four levels, so pixel sizes relate to latents as on the real model (factor 8).
The tokenizer is a small CLIP BPE vocabulary written here; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.pipeline import prepare_environment

TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 2,
    "attention_head_dim": [2, 4, 4],
    "transformer_layers_per_block": [1, 1, 2],
    "cross_attention_dim": 64,  # = text_encoder hidden (32) + text_encoder_2 hidden (32)
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 80,  # 6 * 8 + text_encoder_2 projection (32)
    "norm_num_groups": 8,
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 16, 16, 16],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 128,
    "scaling_factor": 0.13025,  # SDXL's
}

TINY_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}


def _text_config(projection: bool) -> dict[str, Any]:
    vocab, _ = tiny_vocab()
    return {
        "architectures": ["CLIPTextModelWithProjection" if projection else "CLIPTextModel"],
        "model_type": "clip_text_model",
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 37,
        "projection_dim": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
        "pad_token_id": vocab["<|endoftext|>"],
    }


# Words that get whole-word tokens, so the demo's prompts do not explode into characters.
_WORDS = ["1girl", "1boy", "solo", "masterpiece", "best", "quality", "high", "very", "aesthetic", "absurdres", "newest", "score_9", "score_8_up", "score_7_up", "source_anime", "rating_safe", "worst", "low", "bad", "anatomy", "hands", "blurry", "lowres", "jpeg", "artifacts", "watermark", "signature", "text", "cat", "dog", "sky", "city", "night", "day", "smile", "hair", "long", "short", "blue", "red", "green", "black", "white", "pink", "eyes", "dress", "school", "uniform", "outdoors", "indoors", "portrait", "upper", "body", "full", "looking", "at", "viewer", "simple", "background", "flower", "tree", "sea", "beach", "mountain", "snow", "rain", "sunset", "light", "shadow", "detailed", "style", "art", "anime", "illustration", "painting", "sketch", "watercolor", "chibi", "cute", "cool", "a", "an", "the", "of", "in", "on", "with"]


def tiny_vocab() -> tuple[dict[str, int], list[str]]:
    """A CLIP-style BPE vocabulary (tokens -> ids) and its ordered merges."""
    from engine.pipeline.clip_vocab import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [ch + "</w>" for ch in alphabet]
    merges: list[str] = []
    seen = set(tokens)
    for word in _WORDS:
        symbols = [*list(word[:-1]), word[-1] + "</w>"]
        while len(symbols) > 1:
            pair = f"{symbols[0]} {symbols[1]}"
            merged = symbols[0] + symbols[1]
            if merged not in seen:
                merges.append(pair)
                tokens.append(merged)
                seen.add(merged)
            symbols = [merged, *symbols[2:]]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_tokenizer(folder: Path) -> Path:
    """Write a CLIPTokenizer folder (vocab.json, merges.txt, configs) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def write_config_folder(folder: Path) -> Path:
    """A diffusers folder holding only configs and tokenizers: what `from_single_file`
    needs as `config=` to load a tiny single-file checkpoint without a hub."""
    folder.mkdir(parents=True, exist_ok=True)
    model_index = {
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": "0.30.0",
        "force_zeros_for_empty_prompt": True,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    _write_json(folder / "model_index.json", model_index)
    _write_json(folder / "unet" / "config.json", {"_class_name": "UNet2DConditionModel", **TINY_UNET_CONFIG})
    _write_json(folder / "vae" / "config.json", {"_class_name": "AutoencoderKL", **TINY_VAE_CONFIG})
    _write_json(folder / "scheduler" / "scheduler_config.json", TINY_SCHEDULER_CONFIG)
    _write_json(folder / "text_encoder" / "config.json", _text_config(projection=False))
    _write_json(folder / "text_encoder_2" / "config.json", _text_config(projection=True))
    write_tokenizer(folder / "tokenizer")
    write_tokenizer(folder / "tokenizer_2")
    return folder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def build_tiny_pipeline(seed: int = 0, folder: Path | None = None) -> Any:
    """A StableDiffusionXLPipeline with random weights (seeded), fp32, on the CPU."""
    import tempfile

    import torch

    prepare_environment()
    import diffusers

    # diffusers is untyped, and its pipelines set their parts at run time: nothing to check.
    lib: Any = diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = write_tokenizer(Path(tmp) / "tokenizer")
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
        tokenizer_2 = CLIPTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(seed)
    unet = lib.UNet2DConditionModel(**TINY_UNET_CONFIG)
    vae = lib.AutoencoderKL(**TINY_VAE_CONFIG)
    text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(projection=False)))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**_text_config(projection=True)))
    scheduler = lib.EulerDiscreteScheduler.from_config(TINY_SCHEDULER_CONFIG)
    pipe = lib.StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    if folder is not None:
        pipe.save_pretrained(folder, safe_serialization=True)
    return pipe


def write_tiny_checkpoint(
    path: Path,
    *,
    seed: int = 0,
    metadata: dict[str, str] | None = None,
    v_prediction: bool = False,
    pipe: Any = None,
) -> Path:
    """A tiny SDXL saved as one .safetensors in the layout of a CivitAI download.

    Pass `pipe` to save an already built tiny pipeline instead of building one from `seed`.
    """
    from engine.pipeline.single_file import write_single_file

    if pipe is None:
        pipe = build_tiny_pipeline(seed)
    return write_single_file(pipe, path, metadata, v_prediction=v_prediction)
