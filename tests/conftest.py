"""Fixtures shared across the suite: the offline demo library, built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.settings import Settings, load_settings


@pytest.fixture(scope="session")
def demo_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only template: the `loracle demo` checkpoint and LoRAs (tiny SDXL)."""
    import torch

    from bot.demo import build_demo_library

    # Toy-sized tensors gain nothing from threads on a shared 2-core machine.
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("demo-template")
    build_demo_library(root)
    return root


@pytest.fixture
def demo_dir(demo_library: Path, tmp_path: Path) -> Path:
    """A private copy of the demo library that a test may change."""
    target = tmp_path / "data"
    shutil.copytree(demo_library, target)
    return target


@pytest.fixture
def demo_settings(demo_dir: Path) -> Settings:
    return load_settings(_env_file=None, data_dir=demo_dir, offline=True)
