"""Tiny SDXL fixtures for the pipeline and worker tests, built once per test session: a
pipeline, the same weights as a CivitAI-style single file and as a diffusers folder, and a
Generator with it loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.pipeline.generator import Generator
from engine.pipeline.loader import CheckpointSpec
from engine.requests import GenerationParams
from engine.testing.tiny_sdxl import build_tiny_pipeline, write_tiny_checkpoint

# Toy-sized matmuls gain nothing from threads, and on a shared 2-core machine torch's
# thread pool spins against the other processes: one thread runs these tests ~5x faster.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_pipe():
    return build_tiny_pipeline(seed=0)


@pytest.fixture(scope="session")
def pipeline_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipeline-cache")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_pipe, tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_xl.safetensors", pipe=tiny_pipe)


@pytest.fixture(scope="session")
def tiny_folder(tiny_pipe, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("diffusers") / "tiny_xl"
    tiny_pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_spec(tiny_checkpoint) -> CheckpointSpec:
    return CheckpointSpec(name="tiny", path=tiny_checkpoint, format="safetensors", sha256=None)


@pytest.fixture(scope="session")
def generator(tiny_spec, pipeline_cache) -> Generator:
    gen = Generator(device="cpu", dtype=torch.float32, cache_dir=pipeline_cache)
    gen.ensure_checkpoint(tiny_spec)
    return gen


@pytest.fixture
def params() -> GenerationParams:
    return GenerationParams(
        prompt="1girl, solo, blue hair, looking at viewer",
        negative="lowres, bad anatomy",
        seed=1234,
        steps=3,
        cfg=5.0,
        width=64,
        height=64,
        count=1,
    )
