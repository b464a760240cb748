"""End to end through Discord (SimCord) with the REAL engine in cluster mode: /draw goes
through the bot's queue to a Ray actor on a local CPU-only Ray, and the PNG comes back
through Ray's object store into the bot's outputs and onto Discord."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from bot.demo import CHECKPOINT, build_demo_library
from bot.settings import BotSettings as Settings
from bot.settings import load_settings
from tests.bot.helpers import PNG_SIGNATURE, attachment_bytes, field, public
from tests.engine.workers.conftest import ray_local  # noqa: F401  (the shared local Ray)

pytestmark = [pytest.mark.slow, pytest.mark.simcord(settle_timeout=120)]


@pytest.fixture(scope="module")
def demo_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo-library")
    build_demo_library(root)
    return root


@pytest.fixture
def settings(tmp_path: Path, demo_library: Path) -> Settings:
    data = tmp_path / "data"
    for folder in ("models", "loras"):
        shutil.copytree(demo_library / folder, data / folder)
    return load_settings(
        data_dir=data, offline=True, device="cpu", default_steps=2, default_width=64, default_height=64,
        cluster="ray", workers=1,
    )


@pytest.fixture
async def engine(settings: Settings, ray_local):
    from engine.api import Engine

    engine = Engine(settings)
    await engine.scan(civitai=False)
    engine.set_entry(CHECKPOINT, base_model="Illustrious", by="test")
    engine.admin.set_default_checkpoint(CHECKPOINT)
    await engine.start()
    assert engine.cluster is not None and engine.drawing_available()
    yield engine
    await engine.close()


async def test_draw_through_a_ray_worker(world, settings: Settings):
    result = await world.alice.slash(world.channel, "draw", prompt="1girl, watercolor", loras="demo_exact_style:0.8")
    message = public(result)
    [attachment] = message.attachments
    data = attachment_bytes(world.env, attachment)
    assert data.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(data))
    assert image.size == (64, 64) and "<lora:demo_exact_style:0.8>" in image.text["parameters"]
    assert field(message.embeds[0], "Steps") == "2"
    assert list((settings.outputs_dir).rglob("*.png"))  # written by the bot from the worker's bytes
    status = world.engine.cluster_status()
    assert status.mode == "ray" and [w.jobs_done for w in status.workers] == [1]
