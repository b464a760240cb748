"""The buttons under a finished picture (Upscale, Vary, Remix) end to end through
discord.py and SimCord with the fake engine, and the attachment checks."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from PIL import Image

from bot.discord_app.client import create_bot
from bot.discord_app.images import (
    VARY_STRONG,
    VARY_SUBTLE,
    check_attachment,
    looks_like_picture,
    max_attachment_bytes,
)
from engine.errors import ImageInputError
from engine.i18n import Text
from tests.bot.fake_images import HIRES_DEFAULT
from tests.bot.helpers import attachment_bytes, button_ids, callback_types, field, private_text, public

DEFERRED = 5
MODAL = 9
ACTIONS = ("upscale", "vary-subtle", "vary-strong", "remix")


def picture_size(world, message) -> tuple[int, int]:
    [attachment] = message.attachments
    return Image.open(io.BytesIO(attachment_bytes(world.env, attachment))).size


async def drawn(world, **options):
    world.engine.auto = True
    result = await world.alice.slash(world.channel, "draw", **options)
    return public(result), world.engine.jobs[-1]


async def test_every_picture_gets_its_own_row_of_buttons(world):
    message, job = await drawn(world, prompt="two cats", count=2)
    ids = button_ids(message)
    assert ids[:2] == [f"loracle:reroll:{job.id}:{world.alice.id}", f"loracle:delete:{job.id}:{world.alice.id}"]
    assert ids[2:] == [f"loracle:{a}:{job.id}:{i}:{world.alice.id}" for i in (0, 1) for a in ACTIONS]
    rows = [[b.label for b in row.children] for row in message.components]
    assert rows[1] == ["Upscale 1", "Vary (subtle) 1", "Vary (strong) 1", "Remix 1"]
    assert rows[2][0] == "Upscale 2"


async def test_upscale_redraws_that_picture_bigger_with_its_seed_prompt_and_loras(world):
    message, original = await drawn(world, prompt="a cat", loras="nova_style:0.7", seed=5, size="128x96")
    click = await world.alice.click(message, label="Upscale")

    assert callback_types(world.env)[-1] == DEFERRED
    assert ("upscale_request", None) in world.engine.calls  # None: the admin's default scale
    job = world.engine.jobs[-1]
    assert job is not original
    request = job.request
    assert request.init_image and request.hires == HIRES_DEFAULT
    assert (request.prompt, request.seed, request.width, request.height) == ("a cat", 5, 128, 96)
    assert [(l.name, l.weight) for l in request.loras] == [("nova_style", 0.7)]
    assert request.user_id == str(world.alice.id) and request.origin["channel_id"] == str(world.channel.id)
    reply = public(click)
    assert picture_size(world, reply) == (192, 144)  # 1.5 × 128x96
    embed = reply.embeds[0]
    assert "`nova_style` 0.7 → 0.7 · applied" in field(embed, "LoRAs")  # applied weights, as /draw says
    assert "hires 1.5×" in field(embed, "Size")
    assert not [f for f in embed.fields if f.name == "From the picture"]  # everything matched by hash
    assert f"loracle:upscale:{job.id}:0:{world.alice.id}" in button_ids(reply)  # and it can go on


async def test_vary_subtle_and_strong_start_from_the_picture_with_new_seeds(world):
    message, original = await drawn(world, prompt="a fox", seed=11, size="96x64")
    subtle = public(await world.alice.click(message, label="Vary (subtle)"))
    strong = public(await world.alice.click(message, label="Vary (strong)"))

    first, second = world.engine.jobs[-2:]
    assert (first.request.strength, second.request.strength) == (VARY_SUBTLE, VARY_STRONG)
    assert first.request.init_image == second.request.init_image is not None
    assert len({original.plan.params.seed, first.plan.params.seed, second.plan.params.seed}) == 3
    assert first.request.prompt == second.request.prompt == "a fox"
    assert picture_size(world, subtle) == picture_size(world, strong) == (96, 64)
    assert field(subtle.embeds[0], "Seed") == str(first.plan.params.seed)


async def test_remix_modal_is_prefilled_and_redraws_the_edit_with_the_same_seed(world):
    message, original = await drawn(world, prompt="a cat", negative="blurry", loras="nova_style:0.7, detail_slider", seed=40, count=2)
    shown = await world.alice.click(message, label="Remix 2")

    assert callback_types(world.env)[-1] == MODAL
    inputs = {
        c["custom_id"]: c.get("value")
        for row in shown.modal["components"]
        for c in row["components"]
    }
    assert inputs == {"remix:prompt": "a cat", "remix:negative": "blurry", "remix:loras": "nova_style:0.7, detail_slider"}

    result = await world.alice.submit_modal(
        shown, {"remix:prompt": "a cat in a hat", "remix:negative": "", "remix:loras": "nova_style:0.4"}
    )
    job = world.engine.jobs[-1]
    assert job is not original
    request = job.request
    assert request.prompt == "a cat in a hat" and request.negative == ""
    assert [(l.name, l.weight) for l in request.loras] == [("nova_style", 0.4)]
    assert request.seed == 41 and request.count == 1  # the second picture's own seed
    reply = public(result)
    assert field(reply.embeds[0], "Seed") == "41"
    assert "`nova_style` 0.4 → 0.4" in field(reply.embeds[0], "LoRAs")


async def test_remix_with_a_bad_lora_list_is_refused_privately_and_nothing_is_drawn(world):
    message, _ = await drawn(world, prompt="a cat")
    shown = await world.alice.click(message, label="Remix")
    before = len(world.engine.jobs)
    result = await world.alice.submit_modal(shown, {"remix:prompt": "a cat", "remix:loras": "nova_style:lots"})
    assert "nova_style" in private_text(result) and "lots" in private_text(result)
    assert len(world.engine.jobs) == before


async def test_a_strangers_click_is_told_to_draw_their_own(world):
    message, _ = await drawn(world, prompt="mine")
    before = len(world.engine.jobs)
    for label in ("Upscale", "Vary (subtle)", "Vary (strong)", "Remix"):
        refused = await world.bob.click(message, label=label)
        assert "Only the person who asked for this picture can upscale, vary or remix it" in private_text(refused)
        assert refused.modal is None
    assert len(world.engine.jobs) == before


async def test_picture_buttons_keep_working_after_a_restart(world, engine, settings):
    message, _ = await drawn(world, prompt="before", seed=3)
    await world.env.restart_bot(create_bot(engine, settings, progress_interval=0, heartbeat_interval=3600))
    varied = await world.alice.click(message, label="Vary (strong)")
    assert public(varied).attachments and world.engine.jobs[-1].request.strength == VARY_STRONG
    # Remix after a restart reads the request from the engine's job table.
    shown = await world.alice.click(message, label="Remix")
    assert shown.modal is not None


async def test_a_picture_no_longer_on_disk_is_said_so(world, settings):
    message, job = await drawn(world, prompt="gone")
    (settings.outputs_dir / f"{job.id}-0.png").unlink()
    result = await world.alice.click(message, label="Upscale")
    assert "no longer kept on the server" in private_text(result)


async def test_an_engine_refusal_reaches_the_user_in_their_language(world, interaction_payload):
    message, _ = await drawn(world, prompt="x")
    world.engine.failures["store_image"] = ImageInputError(Text("bad picture", "圖片有問題"))
    interaction_payload["locale"] = "zh-TW"
    result = await world.alice.click(message, label="Upscale")
    assert "圖片有問題" in private_text(result)


# -- attachment checks (before any byte is read) ---------------------------------------
def attachment(name: str, size: int, content_type: str | None):
    return SimpleNamespace(filename=name, size=size, content_type=content_type)


def test_pictures_are_recognised_by_content_type_or_extension():
    assert looks_like_picture(attachment("a.PNG", 1, None))
    assert looks_like_picture(attachment("blob", 1, "image/webp"))
    assert not looks_like_picture(attachment("notes.txt", 1, "text/plain"))


def test_the_limit_is_the_admins_setting_within_discords(settings):
    assert max_attachment_bytes(settings) == 20 * 1024 * 1024
    settings.max_attachment_mb = 25
    assert max_attachment_bytes(settings) == 25 * 1024 * 1024


@pytest.mark.parametrize(
    ("item", "says"),
    [
        (attachment("big.png", 30 * 1024 * 1024, "image/png"), "is 31.5 MB; pictures up to 21.0 MB are accepted"),
        (attachment("notes.txt", 10, "text/plain"), "does not look like a picture"),
    ],
)
def test_too_large_or_not_a_picture_is_refused(item, says):
    with pytest.raises(ImageInputError) as caught:
        check_attachment(item, 20 * 1024 * 1024)
    assert says in caught.value.localized("en")
