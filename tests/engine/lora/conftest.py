"""Fixtures for the LoRA tests: fresh tiny pipelines, a shared pool of LoRA files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.lora import LoraCache, LoraPatcher, LoraSpec
from engine.testing.lora_files import write_tiny_lora
from engine.testing.tiny_sdxl import build_tiny_pipeline


@pytest.fixture(scope="package", autouse=True)
def single_torch_thread():
    """The tiny models' tensors are far too small to gain from threads, and on a shared
    2-core machine OpenMP threads spin against other processes (10-50x slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def pipe():
    """A fresh tiny SDXL pipeline (seed 0, fp32); cheap enough to build per test."""
    return build_tiny_pipeline(0)


@pytest.fixture(scope="session")
def lora_pool(tmp_path_factory) -> dict[str, Path]:
    """LoRA files of every variant and naming for the tiny pipeline, written once."""
    folder = tmp_path_factory.mktemp("loras")
    source = build_tiny_pipeline(0)
    recipes = {
        "lora_sgm": dict(variant="lora", naming="kohya_sgm", alpha=2.0, seed=1),
        "locon_diffusers": dict(variant="locon", naming="kohya_diffusers", seed=2),
        "locon_cp": dict(variant="locon", naming="kohya_sgm", tucker=True, alpha=8.0, seed=3),
        "loha": dict(variant="loha", naming="kohya_sgm", alpha=2.0, seed=4),
        "loha_tucker": dict(variant="loha", naming="kohya_diffusers", tucker=True, seed=5),
        "lokr": dict(variant="lokr", naming="kohya_sgm", alpha=2.0, seed=6),
        "lokr_tucker": dict(variant="lokr", naming="kohya_sgm", tucker=True, alpha=2.0, seed=7),
        "dora": dict(variant="dora", naming="kohya_sgm", seed=8),
        "dora_input_axis": dict(variant="dora", naming="kohya_sgm", dora_on_output=False, seed=9),
        "peft": dict(variant="locon", naming="peft", alpha=8.0, seed=10),
        "peft_dora": dict(variant="dora", naming="peft", alpha=2.0, seed=11),
        "peft_base_model": dict(variant="lora", naming="peft_base_model", seed=12),
    }
    return {
        name: write_tiny_lora(folder / f"{name}.safetensors", source, **recipe) for name, recipe in recipes.items()
    }


def lora_spec(path: Path, weight: float, key: str | None = None) -> LoraSpec:
    """A spec whose key stands in for the content hash the library would compute."""
    return LoraSpec(key=key if key is not None else f"hash-{path.stem}", path=path, weight=weight, name=path.stem)


@pytest.fixture
def spec():
    return lora_spec


@pytest.fixture
def patcher_for():
    def make(pipe, max_items: int = 16) -> LoraPatcher:
        return LoraPatcher(pipe, LoraCache(max_items))

    return make


@pytest.fixture
def render():
    """Two Euler steps at 64x64 with a fixed seed: deterministic on the CPU."""

    def run(pipe) -> np.ndarray:
        result = pipe(
            prompt="1girl, blue hair, city at night",
            num_inference_steps=2,
            height=64,
            width=64,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        )
        return result.images[0]

    return run
