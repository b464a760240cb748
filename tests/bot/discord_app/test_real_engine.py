"""End to end with the REAL engine: a tiny offline SDXL library (bot.demo), the real
queue and GPU worker thread (on the CPU), real LoRA application and PNG metadata,
driven through discord.py by SimCord. A 64×64, 2-step picture takes well under a second.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from bot.demo import CHECKPOINT, build_demo_library
from bot.settings import BotSettings as Settings
from bot.settings import load_settings
from tests.bot.helpers import (
    PNG_SIGNATURE,
    attachment_bytes,
    callback_types,
    field,
    private_text,
    public,
)

pytestmark = [pytest.mark.slow, pytest.mark.simcord(settle_timeout=20)]


@pytest.fixture(scope="session")
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
        data_dir=data,
        offline=True,
        device="cpu",
        default_steps=2,
        default_width=64,
        default_height=64,
        queue_per_user=3,
    )


@pytest.fixture
async def engine(settings: Settings):
    from engine.api import Engine

    engine = Engine(settings)
    await engine.scan(civitai=False)
    # The demo checkpoint is not on CivitAI: an admin says what it is, as on a real server.
    engine.set_entry(CHECKPOINT, base_model="Illustrious", by="test")
    engine.admin.set_default_checkpoint(CHECKPOINT)
    await engine.start()
    yield engine
    await engine.close()


async def test_draw_with_the_real_engine(world):
    result = await world.alice.slash(
        world.channel, "draw", prompt="1girl, watercolor", loras="demo_exact_style:0.8, demo_pony_style:-0.5, demo_sd15_detail:0"
    )
    assert callback_types(world.env) == [5]
    message = public(result)
    [attachment] = message.attachments
    data = attachment_bytes(world.env, attachment)
    assert data.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(data))
    assert image.size == (64, 64)
    assert "<lora:demo_exact_style:0.8>" in image.text["parameters"]  # A1111 metadata survives the upload

    embed = message.embeds[0]
    assert "Illustrious family · SDXL" in field(embed, "Checkpoint")
    loras = field(embed, "LoRAs").splitlines()
    assert loras[0] == "`demo_exact_style` 0.8 → 0.8 · applied · ✅ exact match"
    assert loras[1] == "`demo_pony_style` -0.5 → -0.5 · applied · 🟡 other family"
    assert loras[2] == "`demo_sd15_detail` 0 → 0 · not applied · ⛔ incompatible"  # weight 0: not a reason to refuse
    assert field(embed, "Steps") == "2" and field(embed, "Size") == "64×64"


async def test_incompatible_lora_is_refused_with_the_real_engine(world):
    result = await world.alice.slash(world.channel, "draw", prompt="1girl", loras="demo_sd15_detail")
    text = private_text(result)
    assert "SD 1.x LoRA" in text and "SDXL checkpoint" in text and "No checkpoint in the library suits it." in text


async def test_progress_and_reroll_with_the_real_engine(world):
    first = await world.alice.slash(world.channel, "draw", prompt="a cat", seed=7)
    edits = [r.json.get("content") for r in world.env.http_requests if r.method == "PATCH" and r.json]
    assert any(text and text.startswith(("⏳", "🎨")) for text in edits)
    reroll = await world.bob.click(public(first), label="Reroll")
    assert field(public(first).embeds[0], "Seed") == "7"
    assert field(public(reroll).embeds[0], "Seed") != "7"
    assert public(reroll).attachments


async def test_autocomplete_ranks_real_verdicts(world):
    choices = await world.alice.autocomplete(world.channel, "draw", "loras", "demo")
    assert [c["value"] for c in choices] == [
        "demo_exact_style",
        "demo_noob_character",
        "demo_pony_style",
        "demo_mystery",
    ]
    checkpoints = await world.alice.autocomplete(world.channel, "draw", "checkpoint", "")
    # the default first, then the merge's parent the demo keeps in the library
    assert [c["name"] for c in checkpoints] == [f"{CHECKPOINT} — Illustrious · SDXL ★", "tinyIllustriousBase_v10 — Illustrious · SDXL"]


async def test_lora_info_and_family_check_with_the_real_engine(world):
    info = public(await world.alice.slash(world.channel, "lora info", name="demo_pony_style")).embeds[0]
    assert field(info, "Base model") == "Pony (from the file's metadata)"
    assert field(info, "Family") == "Pony"
    assert "🟡 other family" in field(info, "Checkpoints in the library")

    check = public(
        await world.alice.slash(world.channel, "family check", checkpoint=CHECKPOINT, lora="demo_pony_style")
    ).embeds[0]
    verdict = field(check, "🟡 other family · demo_pony_style")
    assert "curry" in verdict


async def test_bad_input_with_the_real_engine(world):
    unknown = await world.alice.slash(world.channel, "draw", prompt="x", loras="demo_exact_styl:0.5")
    assert "demo_exact_style" in private_text(unknown)  # suggested
    nan = await world.alice.slash(world.channel, "draw", prompt="x", loras="demo_exact_style:nan")
    assert "must be a real number" in private_text(nan)
    long = await world.alice.slash(world.channel, "draw", prompt="x" * 10_000)
    assert "10000 characters" in private_text(long)


async def test_admin_changes_reach_the_real_engine(world):
    scan = await world.admin.slash(world.channel, "admin scan")
    assert "Scan finished: 0 added, 0 updated, 0 removed, 7 unchanged." in private_text(scan)  # 2 checkpoints, 5 LoRAs
    changed = await world.admin.slash(world.channel, "admin set", name="demo_mystery", base_model="Pony", weight=0.6)
    assert private_text(changed) == (
        "**demo\\_mystery**: base model Pony (Pony); recommended weight 0.6; NSFW no; enabled yes."
    )
    check = public(
        await world.alice.slash(world.channel, "family check", checkpoint=CHECKPOINT, lora="demo_mystery")
    ).embeds[0]
    assert check.fields[0].name == "🟡 other family · demo_mystery"
    refused = await world.moderator.slash(world.channel, "admin set", name="demo_mystery", nsfw=True)
    assert private_text(refused).startswith("Only Loracle's admins")


async def test_admin_set_refuses_a_display_name_that_looks_like_another_file(world):
    refused = await world.admin.slash(
        world.channel, "admin set", name="demo_mystery", display_name="dеmo_pony_style"  # Cyrillic е
    )
    text = private_text(refused)
    assert "looks the same as “demo_pony_style”" in text
    fine = await world.admin.slash(world.channel, "admin set", name="demo_mystery", display_name="Mystery Box")
    assert private_text(fine).startswith("**Mystery Box**")


async def test_metrics_endpoint_with_the_real_engine(world, settings):
    """Local mode serves the same metrics: the real queue's depth and the real LoRA
    cache's hits, scraped from the endpoint `loracle run` starts (LORACLE_METRICS_PORT)."""
    import asyncio

    from bot.discord_app.launch import start_metrics
    from engine import metrics
    from tests.scrape import scrape, value

    server = start_metrics(settings.model_copy(update={"metrics_port": 0}), world.engine)
    assert server is not None
    try:
        name = "loracle_lora_cache_requests_total"
        before = await asyncio.to_thread(scrape, server.url)
        # The patcher keeps a LoRA applied between jobs that share it: switch away and back.
        for loras in ("demo_exact_style:0.8", "demo_pony_style:0.5", "demo_exact_style:0.8"):
            result = await world.alice.slash(world.channel, "draw", prompt="1girl", loras=loras)
            assert public(result).attachments
        after = await asyncio.to_thread(scrape, server.url)
    finally:
        server.close()
        metrics.track_queue(None)
    assert value(after, "loracle_queue_depth") == 0 == world.engine.queue.size
    assert value(after, name, result="miss") - value(before, name, result="miss") >= 2  # each read from disk
    assert value(after, name, result="hit") - value(before, name, result="hit") >= 1  # then from memory


async def test_checkpoint_info_with_the_real_engine(world):
    # The demo checkpoint is an A1111 merge: its file names both parents, one in the library.
    card = public(await world.alice.slash(world.channel, "checkpoint info", name=CHECKPOINT)).embeds[0]
    assert field(card, "Type") == "🧪 Checkpoint Merge (from the file's metadata)"
    assert field(card, "Base model") == "Illustrious (set by an admin)"
    parents = field(card, "Merged from").splitlines()
    assert parents[0] == "*A1111 checkpoint merger · Weighted sum · 0.3*"
    assert parents[1] == "**A** `tinyIllustriousBase_v10.safetensors` — in the library as **tinyIllustriousBase\\_v10** (Illustrious)"
    assert parents[2] == "**B** `loracleDemoPainterly_v20.safetensors` — not in the library"
    loras = field(card, "LoRAs that suit it").splitlines()
    assert loras[:2] == ["✅ exact match: **demo\\_exact\\_style**", "🟢 same family: **demo\\_noob\\_character**"]
    assert "1 LoRA(s) of another architecture left out." in loras
    assert "masterpiece" in field(card, "Prompt conventions")
    assert "The file's own metadata (A1111 checkpoint merger) names 2 model(s) it was merged from." in field(card, "Evidence")


async def test_picture_buttons_and_draw_like_this_with_the_real_engine(world):
    """The image loop on the real engine: Upscale gives a bigger picture of the same seed,
    Vary a new picture from this one, and "Draw like this" on Loracle's own picture draws
    it again bit for bit."""
    posted = public(
        await world.alice.slash(world.channel, "draw", prompt="1girl, lighthouse", loras="demo_exact_style:0.8", steps=3)
    )
    original = attachment_bytes(world.env, posted.attachments[0])
    first = Image.open(io.BytesIO(original))
    assert first.size == (64, 64)

    upscaled = public(await world.alice.click(posted, label="Upscale"))
    bigger = Image.open(io.BytesIO(attachment_bytes(world.env, upscaled.attachments[0])))
    assert bigger.size == (96, 96)  # the admin's default hires scale, 1.5
    text = bigger.text["parameters"]
    assert "Hires upscale: 1.5" in text and "<lora:demo_exact_style:0.8>" in text
    assert f"Seed: {first.text['parameters'].split('Seed: ')[1].split(',')[0]}," in text

    varied = public(await world.alice.click(posted, label="Vary (subtle)"))
    variation = Image.open(io.BytesIO(attachment_bytes(world.env, varied.attachments[0])))
    assert variation.size == (64, 64)
    assert "Denoising strength: 0.35" in variation.text["parameters"]
    assert variation.tobytes() != first.tobytes()

    again = public(await world.bob.context_menu(world.channel, "Draw like this", posted))
    redrawn = Image.open(io.BytesIO(attachment_bytes(world.env, again.attachments[0])))
    assert redrawn.tobytes() == first.tobytes()
