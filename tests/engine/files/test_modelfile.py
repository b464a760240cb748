from __future__ import annotations

import json

import pytest

from engine.errors import CorruptFileError, LibraryError, UnsafeFileError
from engine.files.header import TensorInfo, read_header
from engine.files.modelfile import ModelFileInfo, detect_architecture, detect_kind, inspect_path
from engine.files.training import parse_training_metadata
from engine.kinds import Architecture, FileKind
from tests.factories import model_files as mf

A = Architecture
K = FileKind


def ti(*shape: int, dtype: str = "F16") -> TensorInfo:
    """A header entry for synthetic key sets (offsets do not matter to detection)."""
    return TensorInfo(dtype, tuple(shape), 0, 0)


def lora(names: dict[str, tuple[int, int]], *, part: str = "lora_down.weight") -> dict[str, TensorInfo]:
    """Synthetic LoRA keys: module -> (in_features, out_features)."""
    out: dict[str, TensorInfo] = {}
    for module, (fan_in, fan_out) in names.items():
        up = part.replace("down", "up").replace("lora_A", "lora_B")
        out[f"{module}.{part}"] = ti(4, fan_in)
        out[f"{module}.{up}"] = ti(fan_out, 4)
    return out


# --- kohya / LyCORIS LoRAs ------------------------------------------------------------

KOHYA_CASES = [
    ("sd1", A.SD1, {"unet": 6, "text_encoder": 2}),
    ("sd2", A.SD2, {"unet": 6, "text_encoder": 2}),
    ("sdxl", A.SDXL, {"unet": 6, "text_encoder": 2, "text_encoder_2": 2}),
    ("flux", A.FLUX, {"transformer": 5, "text_encoder": 2}),
    ("sd3", A.SD3, {"transformer": 3, "text_encoder": 2, "text_encoder_2": 2}),
]
VARIANT_KINDS = {"lora": K.LORA, "locon": K.LOCON, "loha": K.LOHA, "lokr": K.LOKR, "dora": K.DORA}


@pytest.mark.parametrize(
    ("arch", "expected", "targets", "variant"),
    [
        (*case, variant)
        for case in KOHYA_CASES
        for variant in sorted(VARIANT_KINDS)
        if not (variant == "locon" and case[0] in ("flux", "sd3"))  # no convolutions there
    ],
)
def test_kohya_and_lycoris_loras(tmp_path, arch, expected, targets, variant):
    path = mf.write_kohya_lora(tmp_path / "l.safetensors", arch, variant=variant, rank=8, alpha=4.0)

    info = inspect_path(path)

    assert info.kind == VARIANT_KINDS[variant]
    assert info.architecture == expected, info.architecture_evidence
    assert info.rank == 8
    assert info.alpha == 4.0
    conv = 2 if variant == "locon" else 0
    assert info.targets == {k: v + (conv if k == "unet" else 0) for k, v in targets.items()}
    assert info.format == "safetensors"
    assert info.training.network_dim == 8
    assert info.notes == []


def test_shapes_are_the_evidence_for_unet_loras(tmp_path):
    info = inspect_path(mf.write_kohya_lora(tmp_path / "l.safetensors", "sdxl", metadata={}))
    assert info.architecture == A.SDXL
    assert "2048" in info.architecture_evidence and "shapes" in info.architecture_evidence
    assert info.training.architecture_hint is None


def test_tiny_sdxl_lora_is_sdxl_by_its_names(tmp_path):
    with_te = inspect_path(mf.write_kohya_lora(tmp_path / "a.safetensors", "sdxl_tiny", metadata={}))
    assert with_te.architecture == A.SDXL
    assert "key names" in with_te.architecture_evidence and "64" in with_te.architecture_evidence
    unet_only = inspect_path(
        mf.write_kohya_lora(tmp_path / "b.safetensors", "sdxl_tiny", text_encoder=False, metadata={})
    )
    assert unet_only.architecture == A.SDXL
    assert unet_only.targets == {"unet": 6}
    locon = inspect_path(mf.write_kohya_lora(tmp_path / "c.safetensors", "sdxl_tiny", variant="locon"))
    assert (locon.kind, locon.architecture) == (K.LOCON, A.SDXL)


@pytest.mark.parametrize(
    ("arch", "text_encoder", "expected", "why"),
    [
        ("sd1", True, A.SD1, "text encoder width 768"),
        ("sd2", True, A.SD2, "text encoder width 1024"),
        ("sd1", False, A.SD1, "conv proj_in"),
        ("sdxl", True, A.SDXL, "second text encoder"),
        ("sdxl", False, A.SDXL, "depth above 1"),
    ],
)
def test_without_cross_attention_the_block_layout_decides(tmp_path, arch, text_encoder, expected, why):
    path = mf.write_kohya_lora(
        tmp_path / "l.safetensors", arch, exclude="attn2", text_encoder=text_encoder, metadata={}
    )
    info = inspect_path(path)
    assert info.architecture == expected
    assert why in info.architecture_evidence


def test_sd_layout_with_nothing_else_is_assumed_sd1_with_a_note(tmp_path):
    path = mf.write_kohya_lora(
        tmp_path / "l.safetensors", "sd2", exclude="attn2|proj_in", text_encoder=False, metadata={}
    )
    info = inspect_path(path)
    assert info.architecture == A.SD1
    assert "assumed" in info.architecture_evidence
    assert any("SD 2.x" in n for n in info.notes)


def test_metadata_is_the_fallback_when_tensors_say_nothing(tmp_path):
    tensors = {"lora_unet_mystery_block.lora_down.weight": mf.T("F16", (4, 100))}
    tensors["lora_unet_mystery_block.lora_up.weight"] = mf.T("F16", (100, 4))
    path = mf.write_safetensors(tmp_path / "l.safetensors", tensors, mf.kohya_metadata("sdxl"))
    info = inspect_path(path)
    assert info.architecture == A.SDXL
    assert info.architecture_evidence.startswith("metadata: modelspec.architecture=")
    bare = mf.write_safetensors(tmp_path / "bare.safetensors", tensors)
    assert inspect_path(bare).architecture == A.UNKNOWN


def test_tensors_win_over_contradicting_metadata_and_say_so(tmp_path):
    path = mf.write_kohya_lora(tmp_path / "l.safetensors", "sd1", metadata=mf.kohya_metadata("sdxl"))
    info = inspect_path(path)
    assert info.architecture == A.SD1
    assert any("metadata says SDXL" in n and "tensors win" in n for n in info.notes)


def test_refiner_lora_is_sdxl_with_a_note():
    arch, evidence = detect_architecture(lora({"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k": (1280, 768)}))
    assert arch == A.SDXL and "1280" in evidence


# --- diffusers / peft / XLabs LoRAs ---------------------------------------------------

PEFT_CASES = [
    ("sd1", A.SD1, {"unet": 4, "text_encoder": 1}),
    ("sd2", A.SD2, {"unet": 4, "text_encoder": 1}),
    ("sdxl", A.SDXL, {"unet": 4, "text_encoder": 1, "text_encoder_2": 1}),
    ("flux", A.FLUX, {"transformer": 5}),
    ("sd3", A.SD3, {"transformer": 3}),
    ("auraflow", A.AURAFLOW, {"transformer": 4}),
]


@pytest.mark.parametrize(("arch", "expected", "targets"), PEFT_CASES)
@pytest.mark.parametrize("style", ["peft", "legacy"])
def test_diffusers_loras(tmp_path, arch, expected, targets, style):
    info = inspect_path(mf.write_peft_lora(tmp_path / "l.safetensors", arch, style=style, rank=16))
    assert info.kind == K.LORA
    assert info.architecture == expected, info.architecture_evidence
    assert info.rank == 16
    assert info.alpha is None  # peft keeps alpha in its config, not in the weights
    assert info.targets == targets


def test_diffusers_lora_alpha_from_adapter_metadata(tmp_path):
    info = inspect_path(mf.write_peft_lora(tmp_path / "l.safetensors", "sdxl", rank=8, alpha=16))
    assert (info.rank, info.alpha) == (8, 16.0)


def test_peft_dora_is_dora(tmp_path):
    info = inspect_path(mf.write_peft_lora(tmp_path / "l.safetensors", "sdxl", dora=True))
    assert (info.kind, info.architecture) == (K.DORA, A.SDXL)


def test_flux_lora_with_only_double_blocks_is_flux_by_hidden_size(tmp_path):
    path = mf.write_peft_lora(tmp_path / "l.safetensors", "flux", exclude="single_transformer_blocks")
    info = inspect_path(path)
    assert info.architecture == A.FLUX
    assert "3072" in info.architecture_evidence


def test_xlabs_flux_lora(tmp_path):
    info = inspect_path(mf.write_xlabs_flux_lora(tmp_path / "x.safetensors", rank=16))
    assert (info.kind, info.architecture, info.rank) == (K.LORA, A.FLUX, 16)
    assert info.targets == {"transformer": 12}


def test_kohya_names_with_peft_prefixes_and_adapter_names():
    keys = {
        "base_model.model.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.default.weight": ti(4, 2048),
        "base_model.model.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.default.weight": ti(640, 4),
    }
    assert detect_kind(keys) == K.LORA
    assert detect_architecture(keys)[0] == A.SDXL


# --- synthetic key sets of other real-world formats -----------------------------------


@pytest.mark.parametrize(
    ("keys", "kind"),
    [
        ({"m.lora_down.weight": ti(4, 8), "m.lora_up.weight": ti(8, 4)}, K.LORA),
        ({"m.lora_A.weight": ti(4, 8), "m.lora_B.weight": ti(8, 4)}, K.LORA),
        ({"unet.m.lora.down.weight": ti(4, 8), "unet.m.lora.up.weight": ti(8, 4)}, K.LORA),
        ({"x.processor.to_q_lora.down.weight": ti(4, 8)}, K.LORA),
        ({"double_blocks.0.processor.proj_lora1.down.weight": ti(4, 3072)}, K.LORA),
        ({"m.lora_down.weight": ti(4, 8, 3, 3), "m.lora_up.weight": ti(8, 4, 1, 1)}, K.LOCON),
        ({"m.lora_down.weight": ti(4, 8, 1, 1), "m.lora_up.weight": ti(8, 4, 1, 1)}, K.LORA),
        ({"lora_unet_down_blocks_0_resnets_0_conv_shortcut.lora_down.weight": ti(4, 8, 1, 1)}, K.LOCON),
        ({"m.hada_w1_a": ti(8, 4), "m.hada_w1_b": ti(4, 8), "m.alpha": ti()}, K.LOHA),
        ({"m.lokr_w1_a": ti(4, 2), "m.lokr_w1_b": ti(2, 4), "m.lokr_w2": ti(4, 4)}, K.LOKR),
        ({"m.lora_down.weight": ti(4, 8), "m.dora_scale": ti(8, 1)}, K.DORA),
        ({"m.hada_w1_a": ti(8, 4), "m.hada_w1_b": ti(4, 8), "m.dora_scale": ti(8, 1)}, K.LOHA),
        ({"lora_unet_x.oft_blocks": ti(4, 2, 2)}, K.LORA),
        ({"lora_unet_x.diff": ti(8, 8)}, K.LORA),
        ({"model.diffusion_model.input_blocks.0.0.weight": ti(320, 4, 3, 3)}, K.CHECKPOINT),
        ({"double_blocks.0.img_attn.qkv.weight": ti(9216, 3072)}, K.CHECKPOINT),
        ({"down_blocks.1.attentions.0.proj_in.weight": ti(640, 640)}, K.CHECKPOINT),
        ({"encoder.down.0.block.0.conv1.weight": ti(128, 128, 3, 3), "decoder.conv_out.weight": ti(3, 128, 3, 3)}, K.UNKNOWN),
        ({"encoder.down_blocks.0.resnets.0.conv1.weight": ti(128, 128, 3, 3)}, K.UNKNOWN),
        ({"text_model.encoder.layers.0.self_attn.q_proj.weight": ti(768, 768)}, K.UNKNOWN),
        ({"clip_l": ti(2, 768), "clip_g": ti(2, 1280)}, K.UNKNOWN),
        ({"emb_params": ti(4, 768)}, K.UNKNOWN),
        ({"some.alpha": ti()}, K.UNKNOWN),
        ({}, K.UNKNOWN),
    ],
)
def test_detect_kind(keys, kind):
    assert detect_kind(keys) == kind


@pytest.mark.parametrize(
    ("keys", "arch", "words"),
    [
        # HunyuanVideo (musubi-tuner) shares Flux's kohya block names but not its layer names
        (lora({"lora_unet_double_blocks_0_img_mlp_fc1": (3072, 12288)}), A.OTHER, "HunyuanVideo"),
        (lora({"diffusion_model.blocks.0.self_attn.q": (5120, 5120)}, part="lora_A.weight"), A.OTHER, "Wan"),
        (lora({"transformer.transformer_blocks.0.img_mod.1": (3072, 18432)}, part="lora_A.weight"), A.OTHER, "Qwen"),
        (lora({"lora_unet_double_blocks_0_img_attn_qkv": (6144, 18432)}), A.OTHER, "6144"),
        (lora({"lora_unet_joint_blocks_0_x_block_attn_qkv": (1536, 4608)}), A.SD3, "joint_blocks"),
        (lora({"lora_transformer_single_transformer_blocks_0_attn_to_q": (3072, 3072)}), A.FLUX, "single"),
        (lora({"lora_unet_double_layers_0_attn_w1q": (3072, 3072)}), A.AURAFLOW, "AuraFlow"),
        (lora({"lora_te2_text_model_encoder_layers_0_self_attn_q_proj": (1280, 1280)}), A.SDXL, "two text encoders"),
        (lora({"lora_te_text_model_encoder_layers_0_self_attn_q_proj": (1024, 1024)}), A.SD2, "1024"),
        (lora({"lora_te_text_model_encoder_layers_0_self_attn_q_proj": (768, 768)}), A.SD1, "768"),
        (lora({"lycoris_transformer_blocks_0_attn_to_q": (3072, 3072)}), A.FLUX, "3072"),
        (lora({"lycoris_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k": (2048, 640)}), A.SDXL, "2048"),
        (
            lora(
                {
                    "diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q": (64, 64),
                    "text_encoders.clip_g.transformer.text_model.encoder.layers.0.self_attn.q_proj": (32, 32),
                }
            ),
            A.SDXL,
            "second text encoder",
        ),
    ],
)
def test_lora_architecture_of_other_formats(keys, arch, words):
    found, evidence = detect_architecture(keys)
    assert found == arch
    assert words in evidence


@pytest.mark.parametrize(
    ("keys", "arch", "words"),
    [
        ({"double_blocks.0.img_attn_qkv.weight": ti(9216, 3072), "txt_in.individual_token_refiner.x": ti(1)}, A.OTHER, "HunyuanVideo"),
        ({"double_blocks.0.img_attn.qkv.weight": ti(9216, 3072), "distilled_guidance_layer.in_proj.weight": ti(1)}, A.OTHER, "Chroma"),
        ({"double_blocks.0.img_attn.qkv.weight": ti(18432, 6144), "single_blocks.0.linear1.weight": ti(1, 6144)}, A.OTHER, "6144"),
        ({"blocks.0.self_attn.q.weight": ti(5120, 5120), "patch_embedding.weight": ti(1)}, A.OTHER, "self_attn"),
        ({"transformer_blocks.0.attn.add_k_proj.weight": ti(1536, 1536), "pos_embed.proj.weight": ti(1536, 16, 2, 2)}, A.SD3, "SD3"),
        ({"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": ti(320, 768)}, A.SD1, "768"),
        ({"model.diffusion_model.label_emb.0.0.weight": ti(1280, 2816)}, A.SDXL, "2816"),
        ({"model.diffusion_model.label_emb.0.0.bias": ti(1280), "model.diffusion_model.time_embed.0.weight": ti(1280, 64)}, A.SDXL, "label_emb"),
        ({"model.diffusion_model.time_embed.0.weight": ti(1, 1), "conditioner.embedders.1.model.ln_final.weight": ti(1)}, A.SDXL, "conditioner"),
        ({"model.diffusion_model.time_embed.0.weight": ti(1, 1), "cond_stage_model.transformer.x": ti(1)}, A.SD1, "ViT-L"),
        ({"model.diffusion_model.time_embed.0.weight": ti(1, 1), "cond_stage_model.model.x": ti(1)}, A.SD2, "OpenCLIP"),
        ({"down_blocks.1.attentions.0.x.attn2.to_k.weight": ti(640, 2048), "encoder_hid_proj.weight": ti(1)}, A.OTHER, "Kolors"),
        ({"clip_l": ti(2, 768), "clip_g": ti(2, 1280)}, A.SDXL, "embedding"),
        ({"emb_params": ti(4, 768)}, A.SD1, "embedding"),
        ({"encoder.conv_in.weight": ti(128, 3, 3, 3)}, A.UNKNOWN, "no known"),
    ],
)
def test_checkpoint_architecture_of_other_formats(keys, arch, words):
    found, evidence = detect_architecture(keys)
    assert found == arch
    assert words in evidence


# --- checkpoints ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "style", "expected"),
    [
        ("sd1", "single", A.SD1),
        ("sd2", "single", A.SD2),
        ("sdxl", "single", A.SDXL),
        ("sdxl", "unet_only", A.SDXL),
        ("sdxl", "diffusers", A.SDXL),
        ("sdxl_refiner", "single", A.SDXL),
        ("flux", "single", A.FLUX),
        ("flux", "comfy", A.FLUX),
        ("flux", "diffusers", A.FLUX),
        ("sd3", "single", A.SD3),
        ("auraflow", "single", A.AURAFLOW),
    ],
)
def test_checkpoints(tmp_path, arch, style, expected):
    path = mf.write_checkpoint(tmp_path / "c.safetensors", arch, style=style)
    info = inspect_path(path)
    assert info.kind == K.CHECKPOINT
    assert info.architecture == expected, info.architecture_evidence
    assert info.rank is None and info.alpha is None and info.targets == {}
    assert info.v_prediction is False


def test_unet_only_and_refiner_exports_carry_notes(tmp_path):
    unet = inspect_path(mf.write_checkpoint(tmp_path / "u.safetensors", "sdxl", style="unet_only"))
    assert any("UNet only" in n for n in unet.notes)
    refiner = inspect_path(mf.write_checkpoint(tmp_path / "r.safetensors", "sdxl_refiner"))
    assert any("refiner" in n for n in refiner.notes)
    full = inspect_path(mf.write_checkpoint(tmp_path / "f.safetensors", "sdxl"))
    assert full.notes == []


def test_v_prediction_markers(tmp_path):
    vpred = inspect_path(mf.write_checkpoint(tmp_path / "v.safetensors", "sdxl", v_pred=True, ztsnr=True))
    assert vpred.v_prediction is True
    assert any("ztsnr" in n for n in vpred.notes)
    spec = inspect_path(
        mf.write_checkpoint(tmp_path / "s.safetensors", "sdxl", metadata={"modelspec.prediction_type": "v"})
    )
    assert spec.v_prediction is True
    kohya = inspect_path(mf.write_checkpoint(tmp_path / "k.safetensors", "sd2", metadata={"ss_v_parameterization": "True"}))
    assert kohya.v_prediction is True


def test_file_facts(tmp_path):
    path = mf.write_checkpoint(tmp_path / "c.safetensors", "sd1", dtype="BF16", v_pred=True)
    header = read_header(path)
    info = inspect_path(path)
    assert info.path == path
    assert info.size == path.stat().st_size
    assert info.mtime == path.stat().st_mtime
    assert info.data_offset == header.data_offset
    assert info.tensor_count == 7
    assert info.dtypes == {"BF16": 6, "F32": 1}
    assert info.metadata == {}


def test_round_trips_through_a_dict(tmp_path):
    info = inspect_path(mf.write_kohya_lora(tmp_path / "l.safetensors", "sdxl", variant="locon"))
    data = json.loads(json.dumps(info.to_dict()))
    assert ModelFileInfo.from_dict(data) == info


# --- alpha and rank details -----------------------------------------------------------


def test_alpha_is_the_most_common_linear_alpha_not_the_conv_alpha(tmp_path):
    tensors: dict[str, mf.T] = {}
    for i in range(5):
        m = f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn{i}"
        tensors[f"{m}.lora_down.weight"] = mf.T("F16", (8, 320))
        tensors[f"{m}.lora_up.weight"] = mf.T("F16", (320, 8))
        tensors[f"{m}.alpha"] = mf.scalar(1.0 if i == 0 else 8.0, "BF16")
    for i in range(8):
        m = f"lora_unet_down_blocks_0_resnets_{i}_conv1"
        tensors[f"{m}.lora_down.weight"] = mf.T("F16", (4, 320, 3, 3))
        tensors[f"{m}.lora_up.weight"] = mf.T("F16", (320, 4, 1, 1))
        tensors[f"{m}.alpha"] = mf.scalar(1.0)
    info = inspect_path(mf.write_safetensors(tmp_path / "l.safetensors", tensors))
    assert info.kind == K.LOCON
    assert info.alpha == 8.0
    assert info.rank == 4  # most common rank over all modules


def test_alpha_falls_back_to_ss_network_alpha(tmp_path):
    tensors = {
        "lora_unet_a.lora_down.weight": mf.T("F16", (4, 8)),
        "lora_unet_a.lora_up.weight": mf.T("F16", (8, 4)),
    }
    path = mf.write_safetensors(tmp_path / "l.safetensors", tensors, {"ss_network_alpha": "32.0"})
    assert inspect_path(path).alpha == 32.0


def test_rank_of_a_full_lokr_comes_from_the_metadata(tmp_path):
    tensors = {"lora_unet_a.lokr_w1": mf.T("F16", (4, 4)), "lora_unet_a.lokr_w2": mf.T("F16", (80, 160))}
    path = mf.write_safetensors(tmp_path / "l.safetensors", tensors, {"ss_network_dim": "100000"})
    info = inspect_path(path)
    assert (info.kind, info.rank) == (K.LOKR, 100000)


# --- refusals and odd paths -----------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(LibraryError, match="does not exist"):
        inspect_path(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle", ".CKPT"])
def test_pickled_suffixes_are_refused_without_reading(tmp_path, suffix):
    path = mf.write_kohya_lora(tmp_path / f"model{suffix}", "sd1")  # even real safetensors bytes
    with pytest.raises(UnsafeFileError, match="safetensors version"):
        inspect_path(path)


def test_pickle_named_safetensors_is_refused(tmp_path):
    with pytest.raises(UnsafeFileError):
        inspect_path(mf.write_zip_file(tmp_path / "model.safetensors"))
    with pytest.raises(UnsafeFileError):
        inspect_path(mf.write_pickle_file(tmp_path / "model.weights"))


def test_corrupt_safetensors_propagates(tmp_path):
    with pytest.raises(CorruptFileError):
        inspect_path(mf.write_truncated_file(tmp_path / "t.safetensors"))


def test_unknown_extensions_are_named(tmp_path):
    gguf = tmp_path / "flux-q4.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\0" * 32)
    with pytest.raises(LibraryError, match="GGUF"):
        inspect_path(gguf)
    txt = tmp_path / "readme.txt"
    txt.write_text("hello")
    with pytest.raises(LibraryError, match=r"extension “\.txt”") as info:
        inspect_path(txt)
    assert "readme.txt" in info.value.localized("zh-TW")


def test_sft_suffix_is_safetensors(tmp_path):
    info = inspect_path(mf.write_checkpoint(tmp_path / "flux1-dev.sft", "flux"))
    assert info.architecture == A.FLUX


# --- diffusers folders ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "expected", "evidence"),
    [
        ("sd1", A.SD1, "cross_attention_dim 768"),
        ("sd2", A.SD2, "cross_attention_dim 1024"),
        ("sdxl", A.SDXL, "cross_attention_dim 2048"),
        ("sdxl_tiny", A.SDXL, "text_time"),
        ("flux", A.FLUX, "FluxTransformer2DModel"),
    ],
)
def test_diffusers_folders_by_config(tmp_path, arch, expected, evidence):
    root = mf.write_diffusers_folder(tmp_path / "pipe", arch)
    info = inspect_path(root)
    assert info.format == "diffusers"
    assert info.kind == K.CHECKPOINT
    assert info.architecture == expected
    assert evidence in info.architecture_evidence
    assert info.data_offset is None
    assert info.tensor_count >= 2
    assert info.size == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_diffusers_folder_without_configs_falls_back_to_tensors_then_pipeline_class(tmp_path):
    by_tensors = inspect_path(mf.write_diffusers_folder(tmp_path / "a", "sd2", with_configs=False))
    assert by_tensors.architecture == A.SD2
    assert "1024" in by_tensors.architecture_evidence

    root = mf.write_diffusers_folder(tmp_path / "b", "sdxl", with_configs=False)
    mf.write_safetensors(root / "unet" / "diffusion_pytorch_model.safetensors", {"conv_in.weight": mf.T("F16", (4,))})
    by_class = inspect_path(root)
    assert by_class.architecture == A.SDXL
    assert "StableDiffusionXLPipeline" in by_class.architecture_evidence


def test_diffusers_folder_v_prediction_from_scheduler(tmp_path):
    assert inspect_path(mf.write_diffusers_folder(tmp_path / "v", "sdxl", v_pred=True)).v_prediction is True


def test_diffusers_folder_with_only_pickles_is_refused(tmp_path):
    root = mf.write_diffusers_folder(tmp_path / "p", "sdxl", pickle_only=True)
    with pytest.raises(UnsafeFileError):
        inspect_path(root)


def test_diffusers_folder_pickles_beside_safetensors_are_ignored_with_a_note(tmp_path):
    root = mf.write_diffusers_folder(tmp_path / "p", "sdxl")
    mf.write_pickle_file(root / "unet" / "diffusion_pytorch_model.bin")
    info = inspect_path(root)
    assert info.architecture == A.SDXL
    assert any("pickled" in n for n in info.notes)


def test_a_plain_folder_is_not_a_model(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(LibraryError, match="not a diffusers model"):
        inspect_path(tmp_path / "stuff")


def test_training_metadata_is_attached(tmp_path):
    md = mf.kohya_metadata("sdxl", sd_model_name="ponyDiffusionV6XL.safetensors", trigger_phrase="zzz")
    info = inspect_path(mf.write_kohya_lora(tmp_path / "l.safetensors", "sdxl", metadata=md))
    assert info.training == parse_training_metadata(md)
    assert info.training.sd_model_name == "ponyDiffusionV6XL.safetensors"
    assert info.training.trigger_words == ["zzz"]
    assert info.metadata == md


# --- real-world layouts found in review -----------------------------------------------


def test_nf4_flux_checkpoint_is_flux_though_its_weights_are_packed(tmp_path):
    # Forge's flux1-dev-bnb-nf4: Linear weights are U8 blobs of shape (n, 1) with absmax /
    # quant_state companions; biases stay BF16 and give the real hidden size
    p = "model.diffusion_model."
    tensors = {
        p + "double_blocks.0.img_attn.proj.weight": mf.T("U8", (4718592, 1)),
        p + "double_blocks.0.img_attn.proj.weight.absmax": mf.T("F32", (147456,)),
        p + "double_blocks.0.img_attn.proj.weight.quant_state.bitsandbytes__nf4": mf.T("U8", (16,)),
        p + "double_blocks.0.img_attn.proj.bias": mf.T("BF16", (3072,)),
        p + "double_blocks.0.img_attn.qkv.weight": mf.T("U8", (14155776, 1)),
        p + "single_blocks.0.linear1.weight": mf.T("U8", (33030144, 1)),
        p + "img_in.weight": mf.T("U8", (98304, 1)),
        p + "img_in.bias": mf.T("BF16", (3072,)),
        p + "guidance_in.in_layer.weight": mf.T("U8", (393216, 1)),
    }
    info = inspect_path(mf.write_safetensors(tmp_path / "flux1-dev-bnb-nf4.safetensors", tensors))
    assert (info.kind, info.architecture) == (K.CHECKPOINT, A.FLUX), info.architecture_evidence
    assert "3072" in info.architecture_evidence


def test_fp8_flux_checkpoint_is_flux(tmp_path):
    p = "model.diffusion_model."
    tensors = {
        p + "double_blocks.0.img_attn.qkv.weight": mf.T("F8_E4M3", (9216, 3072)),
        p + "double_blocks.0.img_attn.qkv.scale_weight": mf.T("F32", ()),
        p + "single_blocks.0.linear1.weight": mf.T("F8_E4M3", (21504, 3072)),
        "scaled_fp8": mf.T("F8_E4M3", (0,)),
    }
    assert inspect_path(mf.write_safetensors(tmp_path / "f.safetensors", tensors)).architecture == A.FLUX


def test_auraflow_lora_of_single_blocks_only_is_not_flux():
    # Pony V7 (AuraFlow) LoRAs may train only the 32 single blocks, whose hidden size is
    # Flux's 3072; AuraFlow's single blocks have attn.to_out and ff.linear_*, Flux's do not
    aura = lora(
        {
            "transformer.single_transformer_blocks.0.attn.to_q": (3072, 3072),
            "transformer.single_transformer_blocks.0.attn.to_out.0": (3072, 3072),
            "transformer.single_transformer_blocks.0.ff.linear_1": (3072, 8192),
        },
        part="lora_A.weight",
    )
    assert detect_architecture(aura)[0] == A.AURAFLOW
    flux = lora(
        {
            "transformer.single_transformer_blocks.0.attn.to_q": (3072, 3072),
            "transformer.single_transformer_blocks.0.proj_mlp": (3072, 12288),
            "transformer.single_transformer_blocks.0.proj_out": (15360, 3072),
        },
        part="lora_A.weight",
    )
    assert detect_architecture(flux)[0] == A.FLUX


@pytest.mark.parametrize(
    ("prefix", "ctx", "arch"),
    [("", 1024, A.SD2), ("unet.", 2048, A.SDXL), ("", 768, A.SD1)],
)
def test_old_diffusers_attention_processor_loras_are_read_by_their_shapes(prefix, ctx, arch):
    # diffusers 0.14-0.20 saved "…attn2.processor.to_k_lora.down.weight"
    base = f"{prefix}down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"
    keys = {
        f"{base}.to_k_lora.down.weight": ti(4, ctx),
        f"{base}.to_k_lora.up.weight": ti(640, 4),
        f"{base}.to_out_lora.down.weight": ti(4, 640),
        f"{base}.to_out_lora.up.weight": ti(640, 4),
    }
    found, evidence = detect_architecture(keys)
    assert found == arch and str(ctx) in evidence


def test_chroma_lora_is_not_flux():
    keys = lora(
        {
            "diffusion_model.double_blocks.0.img_attn.qkv": (3072, 9216),
            "diffusion_model.distilled_guidance_layer.layers.0.in_layer": (5120, 5120),
        },
        part="lora_A.weight",
    )
    found, evidence = detect_architecture(keys)
    assert found == A.OTHER and "Chroma" in evidence


def test_kohya_oft_is_read_like_its_lora(tmp_path):
    m = "oft_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    tensors = {f"{m}.oft_blocks": mf.T("F32", (32, 20, 20)), f"{m}.alpha": mf.scalar(1.0)}
    info = inspect_path(mf.write_safetensors(tmp_path / "oft.safetensors", tensors))
    assert info.kind.is_lora and info.architecture == A.SDXL
    assert info.targets == {"unet": 1}


def test_tucker_lokr_rank_is_the_core_size(tmp_path):
    m = "lora_unet_input_blocks_1_0_in_layers_2"
    tensors = {
        f"{m}.lokr_w1": mf.T("F16", (4, 4)),
        f"{m}.lokr_t2": mf.T("F16", (8, 8, 3, 3)),
        f"{m}.lokr_w2_a": mf.T("F16", (8, 80)),
        f"{m}.lokr_w2_b": mf.T("F16", (8, 80)),
        f"{m}.alpha": mf.scalar(8.0),
    }
    info = inspect_path(mf.write_safetensors(tmp_path / "l.safetensors", tensors))
    assert (info.kind, info.rank) == (K.LOKR, 8)


@pytest.mark.parametrize(
    ("base", "modules", "expected"),
    [
        # kohya Flux trained with --network_train_text_encoder_only: CLIP-L alone
        ("flux", {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (768, 768)}, A.FLUX),
        # kohya SD3: CLIP-L + CLIP-G, like SDXL
        (
            "sd3",
            {
                "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (768, 768),
                "lora_te2_text_model_encoder_layers_0_self_attn_q_proj": (1280, 1280),
            },
            A.SD3,
        ),
        # OpenCLIP-H is SD 2.x's alone: the tensors are certain and win
        ("sdxl", {"lora_te_text_model_encoder_layers_0_self_attn_q_proj": (1024, 1024)}, A.SD2),
    ],
)
def test_text_encoder_only_loras_take_the_metadata_where_the_encoder_is_shared(tmp_path, base, modules, expected):
    tensors = {k: mf.T("F16", v.shape) for k, v in lora(modules).items()}
    md = mf.kohya_metadata(base)
    info = inspect_path(mf.write_safetensors(tmp_path / "te.safetensors", tensors, md))
    assert info.architecture == expected, info.architecture_evidence
    if expected != A.SD2:
        assert info.architecture_evidence.startswith("metadata: modelspec.architecture=")
        assert not any("guess" in n for n in info.notes)


def test_svd_merged_lora_with_integer_alphas(tmp_path):
    # kohya's svd_merge_lora.py stores `.alpha` as torch.tensor(rank): I64 scalars
    import struct

    tensors: dict[str, mf.T] = {}
    for i in range(3):
        m = f"lora_unet_input_blocks_4_1_transformer_blocks_{i}_attn2_to_k"
        tensors[f"{m}.lora_down.weight"] = mf.T("F16", (16, 2048))
        tensors[f"{m}.lora_up.weight"] = mf.T("F16", (640, 16))
        tensors[f"{m}.alpha"] = mf.T("I64", (), struct.pack("<q", 16))
    info = inspect_path(mf.write_safetensors(tmp_path / "merged.safetensors", tensors))
    assert (info.kind, info.architecture, info.rank, info.alpha) == (K.LORA, A.SDXL, 16, 16.0)


@pytest.mark.parametrize(
    ("key", "channels", "words"),
    [
        ("model.diffusion_model.input_blocks.0.0.weight", 9, "inpainting"),
        ("conv_in.weight", 9, "inpainting"),
        ("model.diffusion_model.input_blocks.0.0.weight", 8, "image-editing"),
    ],
)
def test_special_purpose_unets_are_noted(tmp_path, key, channels, words):
    prefix = "model.diffusion_model." if key.startswith("model.") else ""
    ctx_key = (
        prefix + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
        if prefix
        else "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    )
    tensors = {key: mf.T("F16", (320, channels, 3, 3)), ctx_key: mf.T("F16", (640, 2048))}
    info = inspect_path(mf.write_safetensors(tmp_path / "c.safetensors", tensors))
    assert (info.kind, info.architecture) == (K.CHECKPOINT, A.SDXL)
    assert any(words in n for n in info.notes)
    normal = {key: mf.T("F16", (320, 4, 3, 3)), ctx_key: mf.T("F16", (640, 2048))}
    assert not any("channels" in n for n in inspect_path(mf.write_safetensors(tmp_path / "n.safetensors", normal)).notes)


def test_diffusers_inpainting_folder_is_noted_and_kolors_is_not_sdxl(tmp_path):
    root = mf.write_diffusers_folder(tmp_path / "inpaint", "sdxl")
    config = json.loads((root / "unet" / "config.json").read_text())
    (root / "unet" / "config.json").write_text(json.dumps({**config, "in_channels": 9}))
    assert any("inpainting" in n for n in inspect_path(root).notes)

    # Kolors: cross_attention_dim 2048 like SDXL, but fed by a projected ChatGLM
    kolors = mf.write_diffusers_folder(tmp_path / "kolors", "sdxl")
    (kolors / "unet" / "config.json").write_text(
        json.dumps({**config, "encoder_hid_dim": 4096, "encoder_hid_dim_type": "text_proj"})
    )
    info = inspect_path(kolors)
    assert info.architecture == A.OTHER and "Kolors" in info.architecture_evidence


def test_early_ai_toolkit_flux_lora_has_no_false_sd15_claim(tmp_path):
    # ai-toolkit wrote ss_base_model_version "sd_1.5" into its first Flux LoRAs
    md = {
        "ss_base_model_version": "sd_1.5",
        "software": json.dumps({"name": "ai-toolkit", "repo": "https://github.com/ostris/ai-toolkit", "version": "0.1.0"}),
        "format": "pt",
    }
    path = mf.write_peft_lora(tmp_path / "l.safetensors", "flux", metadata=md)
    info = inspect_path(path)
    assert info.architecture == A.FLUX
    assert not any("metadata says" in n for n in info.notes)


def test_sharded_diffusers_unet_is_read_across_its_shards(tmp_path):
    root = mf.write_diffusers_folder(tmp_path / "pipe", "sdxl", with_configs=False)
    unet = root / "unet"
    (unet / "diffusion_pytorch_model.safetensors").unlink()
    mf.write_safetensors(
        unet / "diffusion_pytorch_model-00001-of-00002.safetensors",
        {"down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": mf.T("F16", (640, 2048))},
    )
    mf.write_safetensors(
        unet / "diffusion_pytorch_model-00002-of-00002.safetensors",
        {"add_embedding.linear_1.weight": mf.T("F16", (1280, 2816))},
    )
    weight_map = {
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": "diffusion_pytorch_model-00001-of-00002.safetensors",
        "add_embedding.linear_1.weight": "diffusion_pytorch_model-00002-of-00002.safetensors",
    }
    (unet / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    info = inspect_path(root)
    assert info.architecture == A.SDXL and "2048" in info.architecture_evidence
    assert info.tensor_count == 3  # two shards + the VAE


@pytest.mark.parametrize(
    "modules",
    [
        # diffusers names: single blocks fuse qkv + mlp, double blocks use ff.linear_in
        {
            "transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj": (3072, 27648),
            "transformer.single_transformer_blocks.0.attn.to_out": (12288, 3072),
        },
        {"transformer.transformer_blocks.0.ff.linear_in": (3072, 18432), "transformer.transformer_blocks.0.attn.to_q": (3072, 3072)},
        # BFL names as Flux.1's, but linear1's output is not q, k, v + a 4x MLP
        {"diffusion_model.single_blocks.0.linear1": (3072, 27648), "diffusion_model.double_blocks.0.img_attn.qkv": (3072, 9216)},
    ],
)
def test_flux2_klein_loras_with_flux1_hidden_size_are_not_flux(modules):
    found, evidence = detect_architecture(lora(modules, part="lora_A.weight"))
    assert found == A.OTHER and "Flux.2" in evidence


def test_flux2_checkpoint_is_not_flux():
    keys = {
        "double_blocks.0.img_attn.qkv.weight": ti(9216, 3072),
        "single_blocks.0.linear1.weight": ti(27648, 3072),
        "double_stream_modulation_img.lin.weight": ti(18432, 3072),
    }
    found, evidence = detect_architecture(keys)
    assert found == A.OTHER and "Flux.2" in evidence
