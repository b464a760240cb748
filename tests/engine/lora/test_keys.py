"""Key mapping: every dialect of LoRA module names lands on the right layer."""

from __future__ import annotations

import pytest
import torch

from engine.lora.keys import (
    build_key_map,
    normalize_alias,
    sgm_unet_name,
    unet_block_map,
)
from engine.testing.tiny_sdxl import TINY_UNET_CONFIG

# The real SDXL base UNet config (stabilityai/stable-diffusion-xl-base-1.0/unet/config.json,
# the fields that shape the module tree), for key-mapping checks on a meta-device model.
SDXL_UNET_CONFIG = {
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "in_channels": 4,
    "layers_per_block": 2,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}

# SD 1.5's UNet layout: attention on the first three levels, 1x1-conv projections.
SD15_UNET_CONFIG = {
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "in_channels": 4,
    "layers_per_block": 2,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}



@pytest.mark.parametrize(
    "config", [TINY_UNET_CONFIG, SDXL_UNET_CONFIG, SD15_UNET_CONFIG], ids=["tiny", "sdxl", "sd15"]
)
def test_sgm_names_agree_with_diffusers_checkpoint_converter(config):
    """Write a fake SGM checkpoint through our mapping, convert it with diffusers' own
    single-file converter, and check every tensor lands on the parameter we said."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    block_map = unet_block_map(unet.config)
    checkpoint, expected = {}, {}
    for index, name in enumerate(unet.state_dict()):
        module, _, param = name.rpartition(".")
        sgm = sgm_unet_name(module, block_map)
        assert sgm is not None, f"no SGM name for {module}"
        checkpoint[f"model.diffusion_model.{sgm}.{param}"] = torch.tensor(float(index))
        expected[name] = float(index)
    converted = convert_ldm_unet_checkpoint(checkpoint, dict(unet.config))
    assert converted.keys() == expected.keys()
    assert {k: float(v) for k, v in converted.items()} == expected


def test_sdxl_layout_names():
    block_map = unet_block_map(SDXL_UNET_CONFIG)
    assert block_map["down_blocks.1.attentions.0"] == "input_blocks.4.1"
    assert block_map["down_blocks.2.attentions.1"] == "input_blocks.8.1"
    assert block_map["down_blocks.0.downsamplers.0.conv"] == "input_blocks.3.0.op"
    assert block_map["down_blocks.1.downsamplers.0.conv"] == "input_blocks.6.0.op"
    assert "down_blocks.2.downsamplers.0.conv" not in block_map
    assert block_map["mid_block.attentions.0"] == "middle_block.1"
    # SDXL's first up level has attention, so its upsampler is the third entry of block 2.
    assert block_map["up_blocks.0.upsamplers.0.conv"] == "output_blocks.2.2.conv"
    assert block_map["up_blocks.1.upsamplers.0.conv"] == "output_blocks.5.2.conv"
    assert block_map["up_blocks.2.resnets.2"] == "output_blocks.8.0"
    assert sgm_unet_name("up_blocks.2.resnets.2.conv_shortcut", block_map) == "output_blocks.8.0.skip_connection"
    assert sgm_unet_name("mid_block.resnets.1.time_emb_proj", block_map) == "middle_block.2.emb_layers.1"


def test_sd15_layout_puts_first_upsampler_after_the_resnet():
    assert unet_block_map(SD15_UNET_CONFIG)["up_blocks.0.upsamplers.0.conv"] == "output_blocks.2.1.conv"


EXPECTED = {
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q": (
        "unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"),
    "lora_unet_input_blocks_7_1_transformer_blocks_1_ff_net_0_proj": (
        "unet", "down_blocks.2.attentions.0.transformer_blocks.1.ff.net.0.proj"),
    "lora_unet_output_blocks_2_2_conv": ("unet", "up_blocks.0.upsamplers.0.conv"),
    "lora_unet_output_blocks_5_2_conv": ("unet", "up_blocks.1.upsamplers.0.conv"),
    "lora_unet_output_blocks_3_1_transformer_blocks_0_attn2_to_out_0": (
        "unet", "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0"),
    "lora_unet_middle_block_1_proj_in": ("unet", "mid_block.attentions.0.proj_in"),
    "lora_unet_middle_block_2_in_layers_2": ("unet", "mid_block.resnets.1.conv1"),
    "lora_unet_input_blocks_1_0_in_layers_2": ("unet", "down_blocks.0.resnets.0.conv1"),
    "lora_unet_input_blocks_1_0_emb_layers_1": ("unet", "down_blocks.0.resnets.0.time_emb_proj"),
    "lora_unet_input_blocks_1_0_out_layers_3": ("unet", "down_blocks.0.resnets.0.conv2"),
    "lora_unet_input_blocks_4_0_skip_connection": ("unet", "down_blocks.1.resnets.0.conv_shortcut"),
    "lora_unet_input_blocks_3_0_op": ("unet", "down_blocks.0.downsamplers.0.conv"),
    "lora_unet_input_blocks_0_0": ("unet", "conv_in"),
    "lora_unet_time_embed_0": ("unet", "time_embedding.linear_1"),
    "lora_unet_time_embed_2": ("unet", "time_embedding.linear_2"),
    "lora_unet_label_emb_0_0": ("unet", "add_embedding.linear_1"),
    "lora_unet_label_emb_0_2": ("unet", "add_embedding.linear_2"),
    "lora_unet_out_2": ("unet", "conv_out"),
    "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q": (
        "unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"),
    "lora_unet_up_blocks_0_upsamplers_0_conv": ("unet", "up_blocks.0.upsamplers.0.conv"),
    "lycoris_mid_block_attentions_0_proj_out": ("unet", "mid_block.attentions.0.proj_out"),
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q": (
        "unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"),
    "down_blocks.1.attentions.0.proj_in": ("unet", "down_blocks.1.attentions.0.proj_in"),
    "diffusion_model.input_blocks.4.1.proj_in": ("unet", "down_blocks.1.attentions.0.proj_in"),
    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (
        "text_encoder", "text_model.encoder.layers.0.self_attn.q_proj"),
    "lora_te_text_model_encoder_layers_1_mlp_fc2": ("text_encoder", "text_model.encoder.layers.1.mlp.fc2"),
    "text_encoder.text_model.encoder.layers.0.self_attn.out_proj": (
        "text_encoder", "text_model.encoder.layers.0.self_attn.out_proj"),
    "text_encoders.clip_l.transformer.text_model.encoder.layers.0.mlp.fc1": (
        "text_encoder", "text_model.encoder.layers.0.mlp.fc1"),
    "lora_te2_text_model_encoder_layers_3_mlp_fc1": ("text_encoder_2", "text_model.encoder.layers.3.mlp.fc1"),
    "text_encoder_2.text_model.encoder.layers.0.self_attn.k_proj": (
        "text_encoder_2", "text_model.encoder.layers.0.self_attn.k_proj"),
    "lora_te2_text_projection": ("text_encoder_2", "text_projection"),
    # written by trainers on transformers >= 5, whose CLIPTextModel has no `text_model.`
    "text_encoder.encoder.layers.1.self_attn.q_proj": ("text_encoder", "text_model.encoder.layers.1.self_attn.q_proj"),
    "text_encoder_2.encoder.layers.2.mlp.fc2": ("text_encoder_2", "text_model.encoder.layers.2.mlp.fc2"),
}


def _module_path(target) -> str:
    # transformers 5 dropped CLIPTextModel's `text_model.` wrapper; compare as files spell it.
    if target.component == "text_encoder" and not target.name.startswith("text_model."):
        return f"text_model.{target.name}"
    return target.name


def test_real_world_aliases_resolve(pipe):
    key_map = build_key_map(pipe)
    for alias, (component, name) in EXPECTED.items():
        target = key_map.get(alias)
        assert target is not None, alias
        assert (target.component, _module_path(target)) == (component, name), alias
        module = getattr(pipe, component).get_submodule(target.name)
        assert target.module is module


def test_sd15_upsampler_name_does_not_resolve_on_sdxl_layout(pipe):
    # output_blocks.2.1 is an attention block on SDXL: an SD 1.5 upsampler key must not land.
    assert "lora_unet_output_blocks_2_1_conv" not in build_key_map(pipe)


def test_every_unet_module_with_weights_has_both_kohya_forms(pipe):
    key_map = build_key_map(pipe)
    for name, module in pipe.unet.named_modules():
        if getattr(module, "weight", None) is None or not name:
            continue
        aliases = {a for a, t in key_map.items() if t.component == "unet" and t.name == name}
        assert f"lora_unet_{name.replace('.', '_')}" in aliases
        # ...and the SGM spelling kohya's SDXL trainer writes
        assert any(a.startswith("lora_unet_") and a != f"lora_unet_{name.replace('.', '_')}" for a in aliases), name


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("base_model.model.down_blocks.1.attentions.0.proj_in", "down_blocks.1.attentions.0.proj_in"),
        ("unet.base_model.model.mid_block.attentions.0.proj_out", "unet.mid_block.attentions.0.proj_out"),
        ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q",
         "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"),
        ("unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out",
         "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0"),
        ("lora_unet_input_blocks_4_1_proj_in", "lora_unet_input_blocks_4_1_proj_in"),
    ],
)
def test_normalize_alias(prefix, expected):
    assert normalize_alias(prefix) == expected
