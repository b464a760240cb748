"""The Engine in LORACLE_CLUSTER=ray mode on the tiny demo library: the same pictures as
in-process, a status per worker, and an unreachable cluster that refuses drawing only."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import Engine
from engine.errors import DrawingUnavailableError
from engine.planning.lora_weights import LoraRequest
from engine.requests import DrawRequest
from engine.settings import Settings, load_settings

pytestmark = pytest.mark.slow

CKPT = "loracleDemoXL_v10"


def request(seed: int, *loras: tuple[str, float]) -> DrawRequest:
    return DrawRequest(
        prompt="1girl, smile, flower", negative="lowres", seed=seed, steps=2, width=64, height=64,
        loras=[LoraRequest(name, weight) for name, weight in loras], user_id=f"user{seed % 3}",
    )


REQUESTS = [(11, ("demo_exact_style", 0.8)), (12, ("demo_pony_style", -0.5)), (13, ("demo_exact_style", 1.0))]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def settings_for(demo_dir: Path, **values: object) -> Settings:
    return load_settings(_env_file=None, data_dir=demo_dir, offline=True, device="cpu", dtype="float32", **values)


async def started(settings: Settings) -> Engine:
    engine = Engine(settings)
    await engine.scan(civitai=False)
    engine.set_entry(CKPT, base_model="Illustrious")
    await engine.start()
    return engine


async def test_the_cluster_draws_the_same_pictures_as_the_local_worker(ray_local, demo_dir: Path) -> None:
    local = await started(settings_for(demo_dir))
    try:
        expected = [await local.draw(request(seed, lora)) for seed, lora in REQUESTS]
        status = local.cluster_status()
        assert status.mode == "local" and [w.id for w in status.workers] == ["local"]
        assert status.workers[0].jobs_done == 3 and status.workers[0].loaded
    finally:
        await local.close()

    cluster = await started(settings_for(demo_dir, cluster="ray", workers=2))
    try:
        handles = [await cluster.submit(request(seed, lora)) for seed, lora in REQUESTS]
        drawn = [await handle.result() for handle in handles]
        status = cluster.cluster_status()
    finally:
        await cluster.close()
    for want, got in zip(expected, drawn, strict=True):
        assert got.images[0].parent.parent == demo_dir / "outputs"  # written by the bot
        assert np.array_equal(pixels(want.images[0]), pixels(got.images[0]))
        assert got.parameters == want.parameters
        assert [lora.status for lora in got.plan.loras] == [lora.status for lora in want.plan.loras]
    assert status.mode == "ray" and len(status.workers) == 2
    assert sum(w.jobs_done for w in status.workers) == 3
    assert all(w.node for w in status.workers)


async def test_an_unreachable_cluster_answers_questions_and_refuses_drawing(demo_dir: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = await started(settings_for(demo_dir, cluster="ray", ray_address=f"127.0.0.1:{port}"))
    try:
        info = await engine.lora_info("demo_exact_style")
        assert info.file.endswith("demo_exact_style.safetensors")
        with pytest.raises(DrawingUnavailableError) as caught:
            await engine.submit(request(1))
        assert "Drawing is unavailable" in str(caught.value)
        assert "目前無法繪圖" in caught.value.localized("zh-TW")
        status = engine.cluster_status()
        assert not status.available and status.workers == []
        assert "unreachable" in (status.note or "")
    finally:
        await engine.close()


async def test_an_image_to_image_job_takes_its_picture_to_the_worker(ray_local, demo_dir: Path) -> None:
    """The stored picture travels with the job (only the model library is shared), and
    the worker draws what the in-process engine draws from it."""
    source = Image.new("RGB", (64, 64), (200, 120, 40))
    import io

    buffer = io.BytesIO()
    source.save(buffer, "PNG")

    def from_picture(engine_image: str) -> DrawRequest:
        job = request(21, ("demo_exact_style", 0.8))
        job.init_image, job.strength, job.steps = engine_image, 0.6, 4
        return job

    local = await started(settings_for(demo_dir))
    try:
        stored = await local.store_image(buffer.getvalue())
        expected = await local.draw(from_picture(stored.id))
    finally:
        await local.close()
    cluster = await started(settings_for(demo_dir, cluster="ray", workers=1))
    try:
        got = await (await cluster.submit(from_picture(stored.id))).result()
    finally:
        await cluster.close()
    assert "Denoising strength: 0.6" in got.parameters
    assert np.array_equal(pixels(expected.images[0]), pixels(got.images[0]))
