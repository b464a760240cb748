"""Originals read back from the checkpoint file: exact in every dtype, no copies kept."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import pytest
import torch

from engine.lora import LoraCache, LoraPatcher
from engine.lora.restore import remember_source, source_for
from engine.pipeline.loader import CheckpointSpec, load_pipeline
from engine.pipeline.single_file import write_single_file
from engine.testing.lora_files import assert_bit_identical, changed_weights, snapshot_weights
from engine.testing.tiny_sdxl import build_tiny_pipeline

# Every variant and naming, so UNet attention, resnet convs, both text encoders (CLIP-G's
# fused q/k/v among them) and DoRA's use of the original weight all go through a re-read.
MIX = ("lora_sgm", "locon_diffusers", "locon_cp", "loha", "lokr", "dora", "peft", "peft_base_model")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("restore")
    pipe = build_tiny_pipeline(0)
    pipe.save_pretrained(folder / "folder", safe_serialization=True)
    return {
        "fp32": write_single_file(pipe, folder / "fp32.safetensors"),
        "fp16": write_single_file(pipe, folder / "fp16.safetensors", dtype=torch.float16),
        "folder": folder / "folder",
        "cache": folder / "cache",
    }


def load(files: dict[str, Path], which: str, dtype: torch.dtype, path: Path | None = None):
    fmt = "diffusers" if which == "folder" else "safetensors"
    spec = CheckpointSpec(name=which, path=path or files[which], format=fmt)
    return load_pipeline(spec, device="cpu", dtype=dtype, cache_dir=files["cache"])


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32}[t.element_size()])


@pytest.mark.parametrize(
    ("which", "dtype"),
    [("fp32", torch.float32), ("fp32", torch.float16), ("fp32", torch.bfloat16), ("fp16", torch.bfloat16),
     ("folder", torch.float16)],
)
def test_every_patchable_weight_reads_back_exactly_as_loaded(files, which, dtype):
    pipe = load(files, which, dtype)
    source = source_for(pipe)
    assert source is not None
    unreadable = []
    for component in ("unet", "text_encoder", "text_encoder_2"):
        for name, param in getattr(pipe, component).named_parameters():
            value = source.read(component, name, param)
            if value is None:
                unreadable.append(f"{component}.{name}")
                continue
            assert value.dtype == param.dtype and value.shape == param.shape
            assert torch.equal(bits(value), bits(param.detach())), f"{component}.{name}"
    # OpenCLIP stores the projection transposed: the one weight a LoRA would get a copy of.
    assert unreadable == ([] if which == "folder" else ["text_encoder_2.text_projection.weight"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_many_switches_restore_bit_exact_with_no_pristine_copy(files, spec, lora_pool, dtype):
    fresh = snapshot_weights(load(files, "fp32", dtype))
    pipe = load(files, "fp32", dtype)
    patcher = LoraPatcher(pipe, LoraCache(32))
    rng = random.Random(7)
    for _ in range(20):
        chosen = rng.sample(MIX, rng.randint(1, 3))
        patcher.apply([spec(lora_pool[name], rng.choice([-1.0, -0.4, 0.3, 0.8, 1.2])) for name in chosen])
        assert patcher.pristine_bytes == 0 and patcher.reread_bytes > 0
        assert changed_weights(fresh, snapshot_weights(pipe))
    patcher.apply([])
    assert patcher.touched_params == 0
    assert_bit_identical(fresh, snapshot_weights(pipe))
    assert patcher.stats.params_restored > 0


def test_same_weights_as_with_pristine_copies(files, spec, lora_pool):
    chosen = [spec(lora_pool["dora"], 0.7), spec(lora_pool["locon_cp"], -0.5), spec(lora_pool["peft"], 0.9)]
    read_back = load(files, "fp32", torch.bfloat16)
    copies = load(files, "fp32", torch.bfloat16)
    first = LoraPatcher(read_back, LoraCache(4))
    first.apply(chosen)
    second = LoraPatcher(copies, LoraCache(4), read_back=False)
    second.apply(chosen)
    assert second.reread_bytes == 0 and second.pristine_bytes > 0
    assert_bit_identical(snapshot_weights(copies), snapshot_weights(read_back))


def test_a_weight_the_file_does_not_give_back_gets_a_copy(files, spec, lora_pool, caplog):
    fresh = snapshot_weights(load(files, "fp32", torch.float32))
    pipe = load(files, "fp32", torch.float32)
    # A weight changed after the load (as an unknown converter would leave it): the re-read
    # differs, so this one parameter is copied on first touch and comes back as it was.
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    target = pipe.unet.get_parameter(name)
    original = target.detach().clone()
    with torch.no_grad():
        target.add_(1.0)
    altered = target.detach().clone()
    patcher = LoraPatcher(pipe, LoraCache(4))
    with caplog.at_level(logging.INFO, logger="engine.lora.patcher"):
        patcher.apply([spec(lora_pool["lora_sgm"], 1.0)])
    assert patcher.pristine_bytes == target.numel() * target.element_size()
    assert "1 weights kept as copies in memory" in caplog.text
    patcher.restore()
    assert torch.equal(target.detach(), altered)
    with torch.no_grad():
        target.copy_(original)  # everything else came back from the file, untouched by the edit
    assert_bit_identical(fresh, snapshot_weights(pipe))


def test_checkpoint_replaced_on_disk_still_restores_the_loaded_weights(files, spec, lora_pool, tmp_path):
    path = tmp_path / "replaced.safetensors"
    path.write_bytes(files["fp32"].read_bytes())
    pipe = load(files, "fp32", torch.float32, path=path)
    fresh = snapshot_weights(pipe)
    patcher = LoraPatcher(pipe, LoraCache(4))
    patcher.apply([spec(lora_pool["lora_sgm"], 1.0)])
    # A new download renamed over the old file: the loaded one's content stays mapped.
    other = write_single_file(build_tiny_pipeline(1), tmp_path / "new.safetensors")
    os.replace(other, path)
    patcher.apply([spec(lora_pool["locon_cp"], 0.5)])
    patcher.restore()
    assert_bit_identical(fresh, snapshot_weights(pipe))


def test_pipeline_built_in_memory_keeps_copies(spec, lora_pool):
    pipe = build_tiny_pipeline(0)
    assert source_for(pipe) is None
    patcher = LoraPatcher(pipe, LoraCache(4))
    patcher.apply([spec(lora_pool["lora_sgm"], 1.0)])
    assert patcher.pristine_bytes > 0 and patcher.reread_bytes == 0


def test_unreadable_checkpoint_does_not_fail_the_load(tmp_path, caplog):
    pipe = build_tiny_pipeline(0)
    with caplog.at_level(logging.WARNING, logger="engine.lora.restore"):
        assert remember_source(pipe, tmp_path / "missing.safetensors", "safetensors") is None
    assert "copies will be kept in memory" in caplog.text
    assert source_for(pipe) is None
