from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    infer_diffusers_model_type,
)
from safetensors.torch import load_file

from engine.errors import CorruptFileError
from engine.files.header import read_header
from engine.pipeline.loader import CheckpointSpec, load_pipeline
from engine.pipeline.single_file import (
    CLIP_G_PREFIX,
    CLIP_L_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    sgm_state_dict,
    write_single_file,
)


@pytest.fixture(scope="module")
def sgm(tiny_pipe):
    return sgm_state_dict(tiny_pipe)


def test_uses_the_key_names_of_real_sdxl_files(sgm, tiny_pipe):
    # Names as they appear in sd_xl_base_1.0.safetensors and CivitAI SDXL checkpoints.
    expected = [
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.time_embed.0.weight",
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.input_blocks.1.0.in_layers.0.weight",
        "model.diffusion_model.input_blocks.3.0.op.weight",
        "model.diffusion_model.input_blocks.4.0.skip_connection.weight",
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight",
        "model.diffusion_model.input_blocks.8.1.transformer_blocks.1.attn2.to_k.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "model.diffusion_model.middle_block.2.emb_layers.1.weight",
        "model.diffusion_model.output_blocks.2.2.conv.weight",
        "model.diffusion_model.output_blocks.5.2.conv.weight",
        "model.diffusion_model.output_blocks.8.0.out_layers.3.weight",
        "model.diffusion_model.out.2.weight",
        "first_stage_model.encoder.down.0.block.0.norm1.weight",
        "first_stage_model.encoder.down.2.downsample.conv.weight",
        "first_stage_model.encoder.mid.attn_1.q.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "first_stage_model.decoder.up.0.block.1.conv2.weight",
        "first_stage_model.decoder.norm_out.weight",
        "first_stage_model.quant_conv.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
        "conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
        "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
        "conditioner.embedders.1.model.positional_embedding",
        "conditioner.embedders.1.model.token_embedding.weight",
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
        "conditioner.embedders.1.model.transformer.resblocks.3.mlp.c_proj.bias",
        "conditioner.embedders.1.model.ln_final.weight",
        "conditioner.embedders.1.model.text_projection",
    ]
    missing = [k for k in expected if k not in sgm]
    assert not missing
    assert not [k for k in sgm if k.startswith(UNET_PREFIX) and ("down_blocks" in k or "resnets" in k)]
    assert sgm["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4  # 1x1 conv, as in LDM
    hidden = tiny_pipe.text_encoder_2.config.hidden_size
    assert sgm[CLIP_G_PREFIX + "transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * hidden, hidden)
    assert torch.equal(sgm[CLIP_G_PREFIX + "text_projection"], tiny_pipe.text_encoder_2.text_projection.weight.T)


def test_diffusers_conversion_inverts_it_exactly(sgm, tiny_pipe):
    unet = convert_ldm_unet_checkpoint(sgm, dict(tiny_pipe.unet.config))
    vae = convert_ldm_vae_checkpoint(sgm, dict(tiny_pipe.vae.config))
    clip_l = convert_ldm_clip_checkpoint(sgm)
    clip_g = convert_open_clip_checkpoint(tiny_pipe.text_encoder_2, sgm, prefix=CLIP_G_PREFIX)
    clip_l_ref = {"text_model." + k: v for k, v in tiny_pipe.text_encoder.state_dict().items()}
    for converted, module_sd in (
        (unet, tiny_pipe.unet.state_dict()),
        (vae, tiny_pipe.vae.state_dict()),
        ({k: v for k, v in clip_l.items() if "position_ids" not in k}, clip_l_ref),
        (clip_g, tiny_pipe.text_encoder_2.state_dict()),
    ):
        assert set(converted) == set(module_sd)
        assert all(torch.equal(converted[k], module_sd[k]) for k in module_sd)


def test_full_size_sdxl_layout_round_trips(pipeline_cache):
    # The real SDXL config, on the meta device (no memory): every key maps to an SGM name
    # and back, and diffusers recognises the result as SDXL base.
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from engine.pipeline.loader import ConfigFolders
    from engine.pipeline.single_file import unet_to_sgm, vae_to_sgm

    folder = ConfigFolders(pipeline_cache).sdxl()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
    sgm = {UNET_PREFIX + k: v for k, v in unet_to_sgm(unet.state_dict(), unet.config).items()}
    sgm |= {VAE_PREFIX + k: v for k, v in vae_to_sgm(vae.state_dict(), vae.config).items()}
    assert "model.diffusion_model.input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight" in sgm
    assert sgm["model.diffusion_model.input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight"].shape == (1280, 2048)
    assert set(convert_ldm_unet_checkpoint(sgm, dict(unet.config))) == set(unet.state_dict())
    assert set(convert_ldm_vae_checkpoint(sgm, dict(vae.config))) == set(vae.state_dict())
    sgm["conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"] = torch.empty(0)
    assert infer_diffusers_model_type(sgm) == "xl_base"


def test_header_reports_shapes_dtypes_and_metadata(tmp_path, tiny_pipe):
    path = write_single_file(
        tiny_pipe, tmp_path / "m.safetensors", {"modelspec.title": "Tiny"}, dtype=torch.float16
    )
    header = read_header(path)
    assert header.metadata == {"modelspec.title": "Tiny"}
    assert header.shape(UNET_PREFIX + "input_blocks.0.0.weight") == (32, 4, 3, 3)
    assert header.tensors[UNET_PREFIX + "input_blocks.0.0.weight"].dtype == "F16"
    assert header.tensors[CLIP_L_PREFIX + "text_model.embeddings.position_ids"].dtype == "I64"
    assert header.has_prefix(VAE_PREFIX) and not header.has_prefix("cond_stage_model.")
    assert "v_pred" not in header.tensors


def test_v_prediction_markers_are_written(tmp_path, tiny_pipe):
    path = write_single_file(tiny_pipe, tmp_path / "v.safetensors", v_prediction=True)
    tensors = load_file(path)
    assert tensors["v_pred"].numel() == 0 and tensors["ztsnr"].numel() == 0


def test_truncated_file_is_corrupt(tmp_path, tiny_checkpoint):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut short"):
        read_header(path)


def test_tensor_entry_without_offsets_is_corrupt(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1]}}).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(CorruptFileError, match="broken entry"):
        read_header(path)


def test_round_trip_draws_the_same_images(tiny_pipe, tiny_checkpoint, pipeline_cache):
    # original pipeline -> one .safetensors -> load_pipeline -> bit-identical pictures
    loaded = load_pipeline(
        CheckpointSpec("tiny", tiny_checkpoint), device="cpu", dtype=torch.float32, cache_dir=pipeline_cache
    )
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        original, restored = getattr(tiny_pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert set(original) == set(restored)
        assert all(torch.equal(original[k], restored[k]) for k in original), name

    def draw(pipe):
        pipe.scheduler = type(loaded.scheduler).from_config(loaded.scheduler.config)
        return np.asarray(
            pipe(
                prompt="a cat",
                negative_prompt="lowres",
                num_inference_steps=2,
                guidance_scale=5.0,
                width=64,
                height=64,
                generator=torch.Generator("cpu").manual_seed(7),
            ).images[0]
        )

    assert np.array_equal(draw(tiny_pipe), draw(loaded))
