"""The "Draw like this" and "Image info" message context menus, and /draw's picture
options (image, strength, hires, like), end to end through discord.py and SimCord."""

from __future__ import annotations

import io

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.png_info import PARAMETERS_KEY, format_parameters
from tests.bot.fakes import FakeEntry
from tests.bot.helpers import (
    acknowledged,
    attachment_bytes,
    callback_flags,
    callback_types,
    field,
    private_text,
    public,
)

DEFERRED = 5
MESSAGE = 4
EPHEMERAL = 64
NOVA_STYLE = FakeEntry("nova_style", "lora", None).sha256  # the fake library's hashes
NOVA_ORANGE = FakeEntry("nova_orange", "checkpoint", None).sha256
MISSING_HASH = "abcdef012345"


def png(size=(96, 64), parameters: str | None = None, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    info = PngInfo()
    if parameters is not None:
        info.add_text(PARAMETERS_KEY, parameters)
    Image.new("RGB", size, (200, 40, 90)).save(out, format=fmt, **({"pnginfo": info} if fmt == "PNG" else {}))
    return out.getvalue()


def a1111_png(**extra) -> bytes:
    """A picture as A1111 writes it: one LoRA found by hash, one by name, one missing."""
    text = format_parameters(
        prompt="a lighthouse at dusk",
        negative="lowres",
        steps=24,
        sampler="DPM++ 2M",
        cfg=5.5,
        seed=1234,
        width=96,
        height=64,
        model_name="some_renamed_copy",
        model_hash=NOVA_ORANGE[:10],
        loras=[
            ("nova_style", 0.6, NOVA_STYLE[:12]),
            ("detail_slider", 0.3, None),
            ("lost_lora", 0.8, MISSING_HASH),
        ],
        version="v1.10.1",
        **extra,
    )
    return png(parameters=text)


async def test_draw_like_this_answers_first_then_draws_the_same_picture_publicly(world):
    world.engine.auto = True
    world.engine.civitai_by_hash[MISSING_HASH] = "https://civitai.com/models/99?modelVersionId=7"
    seen_acknowledged = []
    like_request = world.engine.like_request

    async def checking(*args, **kwargs):
        seen_acknowledged.append(acknowledged(world.env))  # Discord was answered before any reading
        return await like_request(*args, **kwargs)

    world.engine.like_request = checking
    post = await world.alice.send(world.channel, "look at this", attachments=[("lighthouse.png", a1111_png())])
    result = await world.bob.context_menu(world.channel, "Draw like this", post)

    assert callback_types(world.env)[-1] == DEFERRED and callback_flags(world.env)[-1] == EPHEMERAL
    assert seen_acknowledged == [True]
    request = world.engine.jobs[-1].request
    assert (request.prompt, request.negative, request.seed, request.steps, request.cfg) == (
        "a lighthouse at dusk", "lowres", 1234, 24, 5.5
    )
    assert (request.width, request.height, request.sampler, request.checkpoint) == (96, 64, "DPM++ 2M", "nova_orange")
    assert [(l.name, l.weight) for l in request.loras] == [("nova_style", 0.6), ("detail_slider", 0.3)]
    assert request.user_id == str(world.bob.id)
    reply = public(result)  # public, like /draw
    from_picture = field(reply.embeds[0], "From the picture")
    assert "✅ checkpoint `some_renamed_copy`: matched by hash → `nova_orange`" in from_picture
    assert "✅ LoRA `nova_style` 0.6: matched by hash" in from_picture
    assert "🟡 LoRA `detail_slider` 0.3: matched by name only" in from_picture
    assert "❌ LoRA `lost_lora` 0.8: not in the library; an admin can /admin add <https://civitai.com/models/99" in from_picture
    assert "`nova_style` 0.6 → 0.6 · applied" in field(reply.embeds[0], "LoRAs")


async def test_image_info_is_private_with_each_resources_match_and_verdict(world):
    post = await world.alice.send(world.channel, "", attachments=[("lighthouse.png", a1111_png())])
    result = await world.bob.context_menu(world.channel, "Image info", post)

    assert callback_types(world.env)[-1] == DEFERRED and callback_flags(world.env)[-1] == EPHEMERAL
    assert result.followups == [] or all(m.ephemeral for m in result.followups)
    [embed] = result.response.message.embeds
    assert field(embed, "Prompt") == "a lighthouse at dusk"
    resources = field(embed, "Resources")
    assert "matched by hash" in resources and "🟢 same family" in resources
    assert "`lost_lora` 0.8: not in the library" in resources
    assert field(embed, "Seed") == "1234" and field(embed, "Size") == "96×64"
    assert world.engine.jobs == []  # nothing is drawn


async def test_image_info_judges_against_the_users_default_checkpoint(world):
    await world.bob.slash(world.channel, "settings set", checkpoint="autismmix")
    post = await world.alice.send(world.channel, "", attachments=[("lighthouse.png", a1111_png())])
    result = await world.bob.context_menu(world.channel, "Image info", post)
    assert ("image_info", "autismmix") in world.engine.calls
    assert "🟡 other family" in field(result.response.message.embeds[0], "Resources")  # Illustrious LoRA on Pony


async def test_a_message_without_a_picture_gets_a_clear_private_answer(world):
    post = await world.alice.send(world.channel, "just words", attachments=[("notes.txt", b"hello")])
    for menu in ("Draw like this", "Image info"):
        result = await world.bob.context_menu(world.channel, menu, post)
        assert callback_types(world.env)[-1] == MESSAGE
        assert "That message has no picture I can read" in private_text(result)
    assert world.engine.calls == []


async def test_a_picture_without_parameters_is_said_so(world):
    post = await world.alice.send(world.channel, "", attachments=[("photo.jpg", png(fmt="JPEG"))])
    result = await world.bob.context_menu(world.channel, "Draw like this", post)
    assert "carries no generation parameters" in private_text(result)
    assert world.engine.jobs == []
    assert all(m.ephemeral for m in result.followups)  # nothing public


async def test_a_picture_over_the_size_limit_is_refused_before_reading(world, settings):
    settings.max_attachment_mb = 1
    big = png(size=(900, 900), parameters="x\n" + "y" * 1_200_000 + "\nSteps: 1, Seed: 1, Size: 64x64")
    post = await world.alice.send(world.channel, "", attachments=[("huge.png", big)])
    result = await world.bob.context_menu(world.channel, "Image info", post)
    assert "pictures up to 1.0 MB are accepted" in private_text(result)
    assert world.engine.calls == []  # never read


async def test_context_menu_names_follow_the_users_language(world, interaction_payload):
    interaction_payload["locale"] = "zh-TW"
    post = await world.alice.send(world.channel, "", attachments=[("a.txt", b"x")])
    result = await world.bob.context_menu(world.channel, "Image info", post)
    assert "那則訊息沒有我能讀取的圖片" in private_text(result)


# -- /draw image: strength: hires: like: ----------------------------------------------
async def test_draw_from_an_image_with_strength(world):
    world.engine.auto = True
    result = await world.alice.slash(
        world.channel, "draw", prompt="as a watercolour", image=("cat.webp", png(size=(130, 99), fmt="WEBP")), strength=0.45
    )
    request = world.engine.jobs[-1].request
    assert request.init_image and request.strength == 0.45 and request.kind == "img2img"
    [attachment] = public(result).attachments
    # kept at the picture's own size, in multiples of 8
    assert Image.open(io.BytesIO(attachment_bytes(world.env, attachment))).size == (128, 96)
    assert (world.engine.settings.root / "inputs" / f"{request.init_image}.png").exists()


async def test_draw_with_hires(world):
    world.engine.auto = True
    result = await world.alice.slash(world.channel, "draw", prompt="a castle", size="64x64", hires=2.0)
    assert world.engine.jobs[-1].request.hires == 2.0
    [attachment] = public(result).attachments
    assert Image.open(io.BytesIO(attachment_bytes(world.env, attachment))).size == (128, 128)


async def test_draw_like_a_picture_with_options_over_it(world):
    world.engine.auto = True
    result = await world.alice.slash(world.channel, "draw", like=("lighthouse.png", a1111_png()), steps=10, loras="pony_eyes:0.5")
    request = world.engine.jobs[-1].request
    assert (request.prompt, request.seed, request.cfg, request.steps) == ("a lighthouse at dusk", 1234, 5.5, 10)
    assert [(l.name, l.weight) for l in request.loras] == [("pony_eyes", 0.5)]  # the option wins
    assert "matched by hash" in field(public(result).embeds[0], "From the picture")


async def test_bad_pictures_in_draw_are_answered_clearly(world):
    cases = [
        ({"image": ("notes.txt", b"hello")}, "does not look like a picture", MESSAGE),  # refused before the defer
        ({"image": ("fake.png", b"not a png at all")}, "not a picture Loracle can read", DEFERRED),  # the bytes judged
        ({"like": ("plain.png", png())}, "carries no generation parameters", DEFERRED),
    ]
    for options, says, answer in cases:
        result = await world.alice.slash(world.channel, "draw", prompt="x", **options)
        assert says in private_text(result), options
        assert callback_types(world.env)[-1] == answer
    assert world.engine.jobs == []


async def test_strength_without_an_image_or_no_prompt_at_all_is_refused(world):
    result = await world.alice.slash(world.channel, "draw", prompt="x", strength=0.5)
    assert "strength only applies with an image" in private_text(result)
    result = await world.alice.slash(world.channel, "draw", steps=5)
    assert "The prompt is empty" in private_text(result)
    assert world.engine.jobs == []


# -- over a real socket: Discord's 3 seconds measured on the wall clock -----------------
async def test_context_menus_answer_within_three_seconds_over_the_wire(tmp_path):
    import asyncio
    import time

    from bot.discord_app import endpoints
    from bot.discord_app.launch import serve
    from bot.settings import load_settings
    from tests.bot.fakes import FakeEngine
    from tests.bot.loopback import FakeDiscord, message_menu_interaction

    saved = endpoints.current()
    discord_fake = FakeDiscord()
    await discord_fake.start()
    settings = load_settings(
        data_dir=tmp_path / "data", offline=True,
        discord_api_base=discord_fake.api_base, discord_gateway_url=discord_fake.gateway_url,
    )
    endpoints.apply(settings.discord_api_base, settings.discord_gateway_url)
    engine = FakeEngine(settings, auto=True)
    release = asyncio.Event()
    like_request, image_info = engine.like_request, engine.image_info

    async def slow_like(*args, **kwargs):
        await release.wait()  # an engine busy reading a huge PNG for longer than Discord waits
        return await like_request(*args, **kwargs)

    async def slow_info(*args, **kwargs):
        await release.wait()
        return await image_info(*args, **kwargs)

    engine.like_request, engine.image_info = slow_like, slow_info
    bots = []
    task = asyncio.create_task(serve(settings, "secret-token", engine, started=bots.append, handle_signals=False, progress_interval=0))
    try:
        await asyncio.wait_for(discord_fake.identified.wait(), 10)
        await asyncio.wait_for(bots[0].wait_until_ready(), 10)
        picture = discord_fake.attachment("lighthouse.png", a1111_png())
        for number, menu in enumerate(("Draw like this", "Image info")):
            started = time.monotonic()
            await discord_fake.dispatch("INTERACTION_CREATE", message_menu_interaction(menu, [picture], interaction_id=9100 + number))
            answer = await asyncio.wait_for(discord_fake.callbacks.get(), 3)
            assert time.monotonic() - started < 3
            assert answer["type"] == DEFERRED and answer["data"]["flags"] == EPHEMERAL
        release.set()
        for _ in range(500):
            if engine.jobs and any(r.method == "PATCH" and "embeds" in repr(r.body) and "Resources" in repr(r.body)
                                   for r in discord_fake.requests):
                break
            await asyncio.sleep(0.01)
        assert engine.jobs[-1].request.prompt == "a lighthouse at dusk"  # the picture was downloaded and read
        assert ("image_info", None) in engine.calls
    finally:
        for bot in bots:
            await bot.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await discord_fake.stop()
        endpoints.restore(saved)
