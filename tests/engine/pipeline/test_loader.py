from __future__ import annotations

import json
import os
import shutil
import socket

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import CorruptFileError, LibraryError, UnsafeFileError
from engine.files.classify import CheckpointFacts
from engine.files.header import read_header
from engine.files.modelfile import inspect_header
from engine.kinds import Architecture, FileKind
from engine.pipeline.loader import (
    CheckpointSpec,
    ConfigFolders,
    hub_offline,
    inspect_single_file,
    load_pipeline,
)
from engine.pipeline.samplers import make_scheduler, sampler_names
from engine.testing.tiny_sdxl import write_tiny_checkpoint

SDXL_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
    "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
    "conditioner.embedders.1.model.positional_embedding": (77, 1280),
}


def fake_checkpoint(path, keys, metadata=None):
    """A safetensors file with these names and shapes (zeros): enough for header checks."""
    save_file({k: torch.zeros(shape, dtype=torch.float16) for k, shape in keys.items()}, str(path), metadata)
    return path


def with_changes(**changes):
    keys = dict(SDXL_KEYS)
    for key, shape in changes.items():
        key = key.replace("__", ".")
        if shape is None:
            keys.pop(key)
        else:
            keys[key] = shape
    return keys


# -- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys, arch",
    [
        (SDXL_KEYS, Architecture.SDXL),
        # a text encoder alone is no checkpoint (the scanner calls it UNKNOWN): each has a UNet
        (
            {"model.diffusion_model.time_embed.0.weight": (8, 4),
             "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,)},
            Architecture.SD1,
        ),
        (
            {"model.diffusion_model.time_embed.0.weight": (8, 4), "cond_stage_model.model.ln_final.weight": (1024,)},
            Architecture.SD2,
        ),
        (
            {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768)},
            Architecture.SD1,
        ),
        ({"model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": (128,)}, Architecture.FLUX),
        ({"joint_blocks.0.context_block.adaLN_modulation.1.bias": (8,)}, Architecture.SD3),
        ({"double_layers.0.attn.w2q.weight": (8, 8)}, Architecture.AURAFLOW),
        ({"something.else": (1,)}, Architecture.UNKNOWN),
    ],
)
def test_architecture_from_header_is_the_scanners(tmp_path, keys, arch):
    # the loader has no classifier of its own: without stored facts it asks the scanner
    path = fake_checkpoint(tmp_path / "m.safetensors", keys)
    assert inspect_header(read_header(path)).architecture is arch


def test_stored_facts_are_trusted_over_the_file(tmp_path):
    path = fake_checkpoint(tmp_path / "m.safetensors", SDXL_KEYS)
    facts = CheckpointFacts(Architecture.SDXL, FileKind.CHECKPOINT, v_prediction=True, zero_terminal_snr=True,
                            has_vae=True)  # fmt: skip
    info = inspect_single_file(path, facts=facts)
    assert (info.v_prediction, info.zero_terminal_snr) == (True, True)
    stored_as_flux = CheckpointFacts(Architecture.FLUX, FileKind.CHECKPOINT, False, False, True)
    with pytest.raises(LibraryError, match="Flux"):
        inspect_single_file(path, facts=stored_as_flux)


def test_full_sdxl_header_is_the_sdxl_variant(tmp_path):
    info = inspect_single_file(fake_checkpoint(tmp_path / "real.safetensors", SDXL_KEYS))
    assert (info.architecture, info.variant, info.v_prediction) == (Architecture.SDXL, "sdxl", False)


def test_tiny_checkpoint_is_the_tiny_variant(tiny_checkpoint):
    assert inspect_single_file(tiny_checkpoint).variant == "tiny"


@pytest.mark.parametrize(
    "keys, words",
    [
        (
            {
                "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
                "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
            },
            "SD 1.x",
        ),
        ({"model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": (128,)}, "Flux"),
        ({"double_layers.0.attn.w2q.weight": (8, 8)}, "AuraFlow"),
        ({"something.else": (1,)}, "not a checkpoint Loracle recognises"),
        ({"lora_unet_input_blocks_4_1_proj_in.lora_down.weight": (4, 64)}, "is a LoRA"),
        ({"conditioner.embedders.0.model.positional_embedding": (77, 1280), **SDXL_KEYS}, "refiner"),
        (with_changes(**{"model__diffusion_model__input_blocks__0__0__weight": (320, 9, 3, 3)}), "inpainting"),
        (with_changes(**{"first_stage_model__decoder__conv_out__weight": None}), "no VAE"),
        (with_changes(**{"conditioner__embedders__1__model__positional_embedding": None}), "text encoders"),
        (with_changes(**{"model__diffusion_model__input_blocks__0__0__weight": (256, 4, 3, 3)}), "unusual size"),
    ],
)
def test_refuses_what_it_cannot_draw_with(tmp_path, keys, words):
    with pytest.raises(LibraryError, match=words) as err:
        inspect_single_file(fake_checkpoint(tmp_path / "other.safetensors", keys))
    assert "other.safetensors" in err.value.localized("zh-TW")


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin", ".sft", ".SAFETENSORS"])
def test_pickled_formats_are_never_opened(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04 pickled payload that must not be read")
    with pytest.raises(UnsafeFileError, match="never loads them"):
        load_pipeline(CheckpointSpec("m", path), device="cpu", dtype=torch.float32, cache_dir=tmp_path)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(LibraryError, match="is gone"):
        load_pipeline(
            CheckpointSpec("gone", tmp_path / "gone.safetensors"), device="cpu", dtype=torch.float32, cache_dir=tmp_path
        )


@pytest.mark.parametrize(
    "metadata, expected",
    [
        (None, (False, False)),
        ({"modelspec.prediction_type": "v"}, (True, False)),
        ({"modelspec.prediction_type": "epsilon"}, (False, False)),
        # kohya's fine-tuning flags, which the library reads as v-prediction too
        ({"ss_v_parameterization": "True"}, (True, False)),
        ({"ss_v_parameterization": "True", "ss_zero_terminal_snr": "True"}, (True, True)),
    ],
)
def test_v_prediction_from_metadata(tmp_path, metadata, expected):
    info = inspect_single_file(fake_checkpoint(tmp_path / "m.safetensors", SDXL_KEYS, metadata))
    assert (info.v_prediction, info.zero_terminal_snr) == expected


# -- config folders ------------------------------------------------------------------------


def test_sdxl_config_folder_is_materialised_once(tmp_path):
    folders = ConfigFolders(tmp_path)
    folder = folders.sdxl()
    assert folders.sdxl() == folder
    for sub in ("tokenizer", "tokenizer_2"):
        assert (folder / sub / "vocab.json").is_file() and (folder / sub / "merges.txt").is_file()
    assert not list(folder.glob("*.gz"))
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging left behind


def test_shipped_config_is_sdxl_base(pipeline_cache):
    # Parameter counts of SDXL base 1.0's four networks, from configs alone (meta device).
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = ConfigFolders(pipeline_cache).sdxl()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        clip_l = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, clip_l, clip_g)]
    assert counts == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["_class_name"], scheduler["timestep_spacing"], scheduler["steps_offset"]) == (
        "EulerDiscreteScheduler",
        "leading",
        1,
    )


# -- loading -------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_loads_single_file_and_folder_without_network(no_network, tiny_spec, tiny_folder, tmp_path):
    # A fresh cache: the config folders are written while the network is unreachable.
    single = load_pipeline(tiny_spec, device="cpu", dtype=torch.float32, cache_dir=tmp_path)
    folder = load_pipeline(
        CheckpointSpec("tiny-folder", tiny_folder, format="diffusers"), device="cpu", dtype=torch.float32, cache_dir=tmp_path
    )
    for pipe in (single, folder):
        assert type(pipe).__name__ == "StableDiffusionXLPipeline"
        assert pipe.scheduler.config.prediction_type == "epsilon"
    assert torch.equal(single.unet.conv_in.weight, folder.unet.conv_in.weight)


def test_hub_offline_restores_the_previous_state(monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = hub_constants.HF_HUB_OFFLINE
    with hub_offline():
        assert hub_constants.is_offline_mode()
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert before == hub_constants.HF_HUB_OFFLINE
    assert "HF_HUB_OFFLINE" not in os.environ


def test_dtype_is_applied(tiny_spec, pipeline_cache):
    pipe = load_pipeline(tiny_spec, device="cpu", dtype=torch.bfloat16, cache_dir=pipeline_cache)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.text_encoder_2.dtype == torch.bfloat16


@pytest.mark.parametrize("dtype, upcast", [(torch.float16, True), (torch.float32, False)])
def test_float16_decodes_with_an_upcast_vae(tiny_folder, tmp_path, dtype, upcast):
    # A fine-tune that ships force_upcast=false would decode in float16 and overflow.
    folder = tmp_path / "no-upcast"
    shutil.copytree(tiny_folder, folder)
    vae_config = folder / "vae" / "config.json"
    vae_config.write_text(json.dumps({**json.loads(vae_config.read_text()), "force_upcast": False}))
    pipe = load_pipeline(CheckpointSpec("f", folder, format="diffusers"), device="cpu", dtype=dtype, cache_dir=tmp_path)
    assert pipe.vae.config.force_upcast is upcast


@pytest.mark.parametrize("how", ["file", "spec"])
def test_v_prediction_configures_the_scheduler(how, tiny_pipe, tmp_path, pipeline_cache):
    path = write_tiny_checkpoint(tmp_path / "v.safetensors", pipe=tiny_pipe, v_prediction=(how == "file"))
    spec = CheckpointSpec("v", path, v_prediction=(how == "spec"))
    pipe = load_pipeline(spec, device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.scheduler.config.rescale_betas_zero_snr is True
    # zero terminal SNR: the last timestep is (almost) pure noise
    assert float(pipe.scheduler.alphas_cumprod[-1]) < 1e-6
    # and every sampler built from it keeps both settings
    karras = make_scheduler("DPM++ 2M Karras", pipe.scheduler.config)
    assert karras.config.prediction_type == "v_prediction" and karras.config.rescale_betas_zero_snr is True


def test_zero_terminal_snr_starts_every_sampler_from_pure_noise(tiny_pipe, tmp_path, pipeline_cache):
    # With SDXL's "leading" spacing a 28-step run starts at t=946, never at the t=999 step
    # the rescaled betas make pure noise; ztsnr needs "trailing" timesteps. DPM++ SDE has no
    # rescale option of its own and must still get the rescaled schedule.
    path = write_tiny_checkpoint(tmp_path / "v.safetensors", pipe=tiny_pipe, v_prediction=True)
    spec = CheckpointSpec("v", path, v_prediction=True)  # as the library plans it
    pipe = load_pipeline(spec, device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    for name in sampler_names():
        scheduler = make_scheduler(name, pipe.scheduler.config)
        scheduler.set_timesteps(28)
        assert round(float(scheduler.timesteps[0])) == 999, name
        assert float(scheduler.alphas_cumprod[-1]) < 1e-6, name


@pytest.mark.parametrize("spec_flag", [False, True])
def test_v_pred_marker_without_ztsnr_keeps_the_usual_schedule(spec_flag, tiny_pipe, tmp_path, pipeline_cache):
    # The library sets spec.v_prediction from this very marker: that must not add ztsnr.
    path = write_tiny_checkpoint(tmp_path / "v.safetensors", pipe=tiny_pipe, v_prediction=True)
    tensors = load_file(path)
    del tensors["ztsnr"]
    save_file(tensors, str(path))
    spec = CheckpointSpec("v", path, v_prediction=spec_flag)
    pipe = load_pipeline(spec, device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert not pipe.scheduler.config.get("rescale_betas_zero_snr", False)
    assert pipe.scheduler.config.timestep_spacing == "leading"


@pytest.mark.parametrize("rescale, spacing", [(False, "leading"), (True, "trailing")])
def test_v_pred_folder_keeps_its_own_zero_snr_choice(rescale, spacing, tiny_folder, tmp_path):
    folder = tmp_path / "vpred"
    shutil.copytree(tiny_folder, folder)
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config.update(prediction_type="v_prediction", rescale_betas_zero_snr=rescale)
    config_path.write_text(json.dumps(config))
    spec = CheckpointSpec("vpred", folder, format="diffusers", v_prediction=True)
    pipe = load_pipeline(spec, device="cpu", dtype=torch.float32, cache_dir=tmp_path)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert bool(pipe.scheduler.config.get("rescale_betas_zero_snr")) is rescale
    assert pipe.scheduler.config.timestep_spacing == spacing


def test_incomplete_checkpoint_is_refused(tiny_checkpoint, tmp_path, pipeline_cache):
    tensors = load_file(tiny_checkpoint)
    del tensors["model.diffusion_model.middle_block.1.proj_out.weight"]
    path = tmp_path / "partial.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(CorruptFileError, match="incomplete") as err:
        load_pipeline(CheckpointSpec("partial", path), device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    assert "「partial」不完整" in err.value.localized("zh-TW")


def test_folder_of_another_pipeline_is_refused(tiny_folder, tmp_path):
    folder = tmp_path / "sd15"
    shutil.copytree(tiny_folder, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(LibraryError, match="StableDiffusionPipeline"):
        load_pipeline(CheckpointSpec("sd15", folder, format="diffusers"), device="cpu", dtype=torch.float32, cache_dir=tmp_path)


def test_folder_with_only_pickled_weights_is_refused(tiny_folder, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_folder, folder)
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(UnsafeFileError, match="unet"):
        load_pipeline(CheckpointSpec("p", folder, format="diffusers"), device="cpu", dtype=torch.float32, cache_dir=tmp_path)


def test_folder_with_only_fp16_variant_files_loads(tiny_pipe, tmp_path):
    # `huggingface-cli download --include "*.fp16.safetensors"` leaves only the variant files.
    folder = tmp_path / "fp16-only"
    tiny_pipe.save_pretrained(folder, safe_serialization=True, variant="fp16")
    assert not list(folder.glob("unet/diffusion_pytorch_model.safetensors"))
    pipe = load_pipeline(CheckpointSpec("f", folder, format="diffusers"), device="cpu", dtype=torch.float32, cache_dir=tmp_path)
    assert torch.equal(pipe.unet.conv_in.weight, tiny_pipe.unet.conv_in.weight)


@pytest.mark.parametrize("donor", ["checkpoint", "ldm_vae_file", "diffusers_vae_file"])
def test_checkpoint_pruned_of_its_vae_loads_with_a_borrowed_one(donor, tiny_pipe, tiny_checkpoint, tmp_path, pipeline_cache):
    from engine.pipeline.single_file import vae_to_sgm

    tensors = load_file(tiny_checkpoint)
    pruned = tmp_path / "no_vae.safetensors"
    save_file({k: v for k, v in tensors.items() if not k.startswith("first_stage_model.")}, str(pruned))
    vae_state = {k: v.contiguous() for k, v in tiny_pipe.vae.state_dict().items()}
    sources = {
        "checkpoint": tiny_checkpoint,
        "ldm_vae_file": tmp_path / "vae_ldm.safetensors",
        "diffusers_vae_file": tmp_path / "vae_diffusers.safetensors",
    }
    save_file({k: v.contiguous() for k, v in vae_to_sgm(vae_state, tiny_pipe.vae.config).items()}, str(sources["ldm_vae_file"]))
    save_file(vae_state, str(sources["diffusers_vae_file"]))
    spec = CheckpointSpec("no_vae", pruned, vae_path=sources[donor])
    pipe = load_pipeline(spec, device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    loaded = pipe.vae.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in vae_state.items())
    assert torch.equal(pipe.unet.conv_in.weight, tiny_pipe.unet.conv_in.weight)
    with pytest.raises(LibraryError, match="has no VAE"):
        load_pipeline(CheckpointSpec("no_vae", pruned), device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
