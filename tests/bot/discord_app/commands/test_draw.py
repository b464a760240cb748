"""/draw end to end through discord.py and SimCord, with the fake engine."""

from __future__ import annotations

import io

import discord
from PIL import Image

from bot.discord_app.client import create_bot
from engine.errors import JobFailedError
from engine.queue.failures import UNEXPECTED
from tests.bot.helpers import (
    PNG_SIGNATURE,
    attachment_bytes,
    button_ids,
    callback_flags,
    callback_types,
    edits_of_original,
    field,
    private_text,
    progress_text,
    public,
    still_exists,
)

DEFERRED = 5
EPHEMERAL = 64


async def test_draw_defers_first_then_replies_with_png_and_applied_weights(world):
    world.engine.auto = True
    result = await world.alice.slash(world.channel, "draw", prompt="a cat on a roof", loras="detail_slider:0.6, pony_eyes")

    assert callback_types(world.env) == [DEFERRED]
    assert callback_flags(world.env) == [EPHEMERAL]  # "thinking…" only for the requester
    message = public(result)
    assert result.response is None  # the private progress reply is removed once the picture is out
    [attachment] = message.attachments
    data = attachment_bytes(world.env, attachment)
    assert attachment.filename.endswith(".png") and data.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(data)).size == (64, 64)

    [embed] = message.embeds
    job = world.engine.jobs[-1]
    assert "nova_orange" in embed.title
    assert "Illustrious family · SDXL" in field(embed, "Checkpoint")
    loras = field(embed, "LoRAs")
    assert "`detail_slider` 0.6 → 0.6 · applied · 🟢 same family" in loras
    assert "`pony_eyes` default → 1 · applied · 🟡 other family" in loras
    assert "pony\\_eyes" in field(embed, "Warnings")
    assert field(embed, "Seed") == str(job.plan.params.seed)
    assert field(embed, "Steps") == "4"
    assert field(embed, "Size") == "64×64"
    assert field(embed, "Time") == "1.2 s"
    assert button_ids(message) == [
        f"loracle:reroll:{job.id}:{world.alice.id}",
        f"loracle:delete:{job.id}:{world.alice.id}",
        *(f"loracle:{action}:{job.id}:0:{world.alice.id}" for action in ("upscale", "vary-subtle", "vary-strong", "remix")),
    ]
    request = job.request
    assert request.user_id == str(world.alice.id)
    assert request.scope == str(world.guild.id)
    assert request.origin == {"guild_id": str(world.guild.id), "channel_id": str(world.channel.id)}
    assert [(l.name, l.weight) for l in request.loras] == [("detail_slider", 0.6), ("pony_eyes", None)]
    assert request.allow_nsfw is False


async def test_progress_shows_queue_position_then_steps(world):
    first = await world.bob.slash(world.channel, "draw", prompt="first")
    result = await world.alice.slash(world.channel, "draw", prompt="second")
    assert progress_text(first) == "⏳ Queued: you are next."
    assert progress_text(result) == "⏳ Queued: position 2."
    assert button_ids(result.response.message) == [f"loracle:cancel:{world.engine.jobs[1].id}:{world.alice.id}"]

    bobs, alices = world.engine.jobs
    bobs.start()
    await world.env.settle()
    assert progress_text(result) == "⏳ Queued: you are next."
    bobs.finish()
    alices.start()
    alices.step(2)
    await world.env.settle()
    assert progress_text(result) == "🎨 Drawing… step 2/4\n▰▰▰▰▰▰▱▱▱▱▱▱"
    alices.finish()
    await world.env.settle()
    message = public(result)
    assert message.content == "" and message.attachments and message.embeds
    assert result.response is None


async def test_requester_cancels_a_queued_job(world):
    result = await world.alice.slash(world.channel, "draw", prompt="a cat")
    job = world.engine.jobs[-1]
    click = await world.alice.click(result.response.message, label="Cancel")
    assert "Cancelling" in private_text(click)
    assert job.state == "cancelled"
    assert progress_text(result) == "✖️ Cancelled."
    assert button_ids(result.response.message) == []
    assert result.followups == []


async def test_requester_cancels_a_running_job(world):
    result = await world.alice.slash(world.channel, "draw", prompt="a cat")
    job = world.engine.jobs[-1]
    job.start()
    job.step(1)
    await world.env.settle()
    await world.alice.click(result.response.message, label="Cancel")
    assert job.state == "cancelled" and progress_text(result) == "✖️ Cancelled."


async def test_reroll_draws_the_same_request_with_a_new_seed(world):
    world.engine.auto = True
    original = await world.alice.slash(world.channel, "draw", prompt="a cat", loras="nova_style:0.7", seed=5, steps=3)
    reroll = await world.bob.click(public(original), label="Reroll")

    assert callback_types(world.env)[-1] == DEFERRED
    first, second = world.engine.jobs
    assert second.request.prompt == "a cat" and second.request.steps == 3
    assert [(l.name, l.weight) for l in second.request.loras] == [("nova_style", 0.7)]
    assert second.request.user_id == str(world.bob.id)
    assert first.plan.params.seed == 5 and second.plan.params.seed != 5
    message = public(reroll)
    assert message.id != public(original).id
    assert field(message.embeds[0], "Seed") == str(second.plan.params.seed)
    assert f"loracle:delete:{second.id}:{world.bob.id}" in button_ids(message)


async def test_delete_is_for_the_requester_or_an_admin(world):
    world.engine.auto = True
    first = public(await world.alice.slash(world.channel, "draw", prompt="one"))
    second = public(await world.alice.slash(world.channel, "draw", prompt="two"))
    refused = await world.bob.click(first, label="Delete")
    assert "Only the person who asked" in private_text(refused)
    assert still_exists(world.env, first)

    await world.alice.click(first, label="Delete")
    assert not still_exists(world.env, first)
    await world.moderator.click(second, label="Delete")  # manages the server, but is no Loracle admin
    assert still_exists(world.env, second)
    await world.admin.click(second, label="Delete")
    assert not still_exists(world.env, second)


async def test_buttons_keep_working_after_a_restart(world, engine, settings):
    engine.auto = True
    old_message = public(await world.alice.slash(world.channel, "draw", prompt="a cat", seed=9))
    await world.env.restart_bot(create_bot(engine, settings, progress_interval=0, heartbeat_interval=3600))
    # The new process has no memory of the job: the engine's job table answers.
    reroll = await world.alice.click(old_message, label="Reroll")
    assert world.engine.jobs[-1].request.prompt == "a cat"
    assert public(reroll).attachments


async def test_results_of_jobs_requeued_after_a_restart_reach_their_channel(world, engine, settings):
    await world.alice.slash(world.channel, "draw", prompt="before the restart")
    job = engine.jobs[-1]
    engine.recovered = [job.handle]
    await world.env.restart_bot(create_bot(engine, settings, progress_interval=0, heartbeat_interval=3600))
    job.run_to_end()
    await world.env.settle()
    last = world.channel.last_message
    assert last is not None and f"<@{world.alice.id}>" in last.content
    assert last.attachments and last.embeds


async def test_gpu_failure_is_shown_and_the_bot_keeps_going(world):
    result = await world.alice.slash(world.channel, "draw", prompt="huge")
    world.engine.jobs[-1].fail()
    await world.env.settle()
    assert progress_text(result).startswith("❌ The graphics card ran out of memory")
    assert button_ids(result.response.message) == [] and result.followups == []

    world.engine.auto = True
    again = await world.alice.slash(world.channel, "draw", prompt="smaller")
    assert public(again).attachments


async def test_unexpected_job_failure_has_a_plain_message(world):
    result = await world.alice.slash(world.channel, "draw", prompt="x")
    world.engine.jobs[-1].fail(JobFailedError(UNEXPECTED, kind="RuntimeError"))
    await world.env.settle()
    assert "unexpected problem (RuntimeError)" in progress_text(result)


async def test_unexpected_engine_exception_becomes_a_private_reference(world, caplog):
    world.engine.failures["submit"] = RuntimeError("database on fire")
    result = await world.alice.slash(world.channel, "draw", prompt="x")
    text = private_text(result)
    assert text.startswith("Something went wrong on our side (reference ")
    assert result.followups == []  # nothing public
    assert "database on fire" in caplog.text and "unexpected error" in caplog.text
    assert "database on fire" not in text


async def test_final_reply_falls_back_to_the_channel_when_the_token_expired(world):
    result = await world.alice.slash(world.channel, "draw", prompt="slow")
    world.env.inject_error("*", "/webhooks/*", status=401, code=50027, message="Invalid Webhook Token", times=None)
    world.engine.jobs[-1].run_to_end()
    await world.env.settle()
    last = world.channel.last_message
    assert last is not None and result.followups == []
    assert f"<@{world.alice.id}>" in last.content and "original reply had expired" in last.content
    assert last.attachments[0].filename.endswith(".png")
    assert f"loracle:reroll:{world.engine.jobs[-1].id}:{world.alice.id}" in button_ids(last)


async def test_pictures_over_the_upload_limit_are_sent_as_jpeg(world, interaction_payload):
    world.engine.auto = True
    world.engine.noisy_images = True
    interaction_payload["attachment_size_limit"] = 600_000
    result = await world.alice.slash(world.channel, "draw", prompt="noise", size="512x512")
    message = public(result)
    [attachment] = message.attachments
    data = attachment_bytes(world.env, attachment)
    assert attachment.filename.endswith(".jpg") and data[:3] == b"\xff\xd8\xff"
    assert len(data) < 600_000
    assert "upload limit" in message.content and "600.0 KB" in message.content


async def test_replies_follow_the_users_locale(world, interaction_payload):
    interaction_payload["locale"] = "zh-TW"
    result = await world.alice.slash(world.channel, "draw", prompt="貓", loras="pony_eyes")
    assert progress_text(result) == "⏳ 排隊中：下一個就是您。"
    world.engine.jobs[-1].run_to_end()
    await world.env.settle()
    message = public(result)
    [embed] = message.embeds
    assert "Illustrious 系列 · SDXL" in field(embed, "模型")
    assert "🟡 不同系列" in field(embed, "LoRA")
    assert [b.label for row in message.components for b in row.children] == ["重畫", "刪除", "放大", "微調變化", "大幅變化", "改寫重畫"]
    refused = await world.alice.slash(world.channel, "draw", prompt="x", loras="detail_slider:abc")
    assert "不是數字" in private_text(refused)


# -- bad input ---------------------------------------------------------------------------
async def _refusal(world, **options) -> str:
    before = len(callback_types(world.env))
    result = await world.alice.slash(world.channel, "draw", **options)
    assert result.response is not None and result.response.ephemeral and result.followups == []
    assert len(callback_types(world.env)) == before + 1
    return private_text(result)


async def test_weights_that_are_not_numbers_are_refused_before_deferring(world):
    for weights, expected in [
        ("detail_slider:abc", "The weight “abc” for “detail_slider” is not a number"),
        ("detail_slider:nan", "must be a real number"),
        ("detail_slider:inf", "must be a real number"),
        ("detail_slider:0.5, detail_slider:1", "listed twice"),
        (":0.5", "A LoRA name is missing"),
        ("a,b,c,d,e,f,g", "At most 6 LoRAs"),
    ]:
        text = await _refusal(world, prompt="x", loras=weights)
        assert expected in text, (weights, text)
    assert callback_types(world.env) == [4] * 6  # answered at once, privately; nothing deferred
    assert world.engine.jobs == []


async def test_huge_weight_is_clamped_and_said_so(world):
    world.engine.auto = True
    result = await world.alice.slash(world.channel, "draw", prompt="x", loras="detail_slider:1e9")
    embed = public(result).embeds[0]
    assert "`detail_slider` 1e+09 → 2 · clamped" in field(embed, "LoRAs")
    assert "outside -2…2, so 2 was used" in field(embed, "Warnings")


async def test_prompt_of_ten_thousand_characters_is_refused(world):
    text = await _refusal(world, prompt="a" * 10_000)
    assert text == "The prompt is 10000 characters long; the limit is 2000. Please shorten it."
    text = await _refusal(world, prompt="cat", negative="b" * 10_000)
    assert text.startswith("The negative prompt is 10000 characters long")


async def test_invisible_and_right_to_left_characters(world):
    assert "prompt is empty" in await _refusal(world, prompt="\u200b\u200d\ufeff ")
    world.engine.auto = True
    result = await world.alice.slash(
        world.channel, "draw", prompt="\u202eevil\u202c cat", loras="deta\u200bil_slider:0.5", checkpoint="nova\u200e_orange"
    )
    embed = public(result).embeds[0]
    assert "`detail_slider` 0.5 → 0.5 · applied" in field(embed, "LoRAs")
    assert "\u202e" not in embed.description and "evil cat" in embed.description
    rtl = await world.alice.slash(world.channel, "draw", prompt="قطة على السطح مرحبا")
    assert "قطة على السطح" in public(rtl).embeds[0].description


async def test_unknown_names_get_suggestions_privately(world):
    result = await world.alice.slash(world.channel, "draw", prompt="x", checkpoint="nova_orang")
    assert result.followups == []
    assert private_text(result) == "No checkpoint named “nova_orang” in the library. Did you mean: nova_orange?"
    result = await world.alice.slash(world.channel, "draw", prompt="x", loras="detail_sliderr:0.5")
    assert "No lora named “detail_sliderr”" in private_text(result)


async def test_bad_size_and_non_sdxl_checkpoint(world):
    assert "“huge” is not a size" in await _refusal(world, prompt="x", size="huge")
    result = await world.alice.slash(world.channel, "draw", prompt="x", checkpoint="dreamshaper8")
    assert "SDXL checkpoints only" in private_text(result)


async def test_incompatible_lora_is_refused_naming_both_architectures(world):
    result = await world.alice.slash(world.channel, "draw", prompt="x", loras="sd15_lineart:0.8")
    text = private_text(result)
    assert "SD 1.x LoRA" in text and "SDXL checkpoint" in text
    assert not [m for m in result.followups if not m.ephemeral] and world.engine.jobs == []  # nothing queued
    world.engine.auto = True
    result = await world.alice.slash(world.channel, "draw", prompt="x", loras="sd15_lineart:0")
    assert "`sd15_lineart` 0 → 0 · not applied" in field(public(result).embeds[0], "LoRAs")


async def test_nsfw_models_only_in_age_restricted_channels(world):
    result = await world.alice.slash(world.channel, "draw", prompt="x", loras="spicy")
    assert "marked NSFW" in private_text(result)
    result = await world.alice.slash(world.channel, "draw", prompt="x", checkpoint="secret_mix")
    assert "marked NSFW" in private_text(result)
    world.engine.auto = True
    allowed = await world.alice.slash(world.nsfw_channel, "draw", prompt="x", loras="spicy", checkpoint="secret_mix")
    assert public(allowed).attachments
    assert world.engine.jobs[-1].request.allow_nsfw is True


async def test_server_blocklist(world):
    await world.admin.slash(world.channel, "admin blocklist add", words="gore, Blood")
    result = await world.alice.slash(world.channel, "draw", prompt="BLOOD moon")
    assert "contains “blood”" in private_text(result)


async def test_per_user_queue_cap(world):
    for prompt in ("one", "two"):
        await world.alice.slash(world.channel, "draw", prompt=prompt)
    result = await world.alice.slash(world.channel, "draw", prompt="three")
    assert "You already have 2 jobs waiting in the queue (the limit is 2)" in private_text(result)
    other = await world.bob.slash(world.channel, "draw", prompt="bob's")
    assert progress_text(other) == "⏳ Queued: position 3."


async def test_disabled_lora(world):
    result = await world.alice.slash(world.channel, "draw", prompt="x", loras="retired")
    assert "disabled by an admin" in private_text(result)


async def test_edits_never_exceed_discord_limits(world):
    world.engine.auto = True
    long_name = "x" * 90
    world.engine.library[5].display_name = long_name + "`**@everyone"
    prompt = "word " * 390
    result = await world.alice.slash(world.channel, "draw", prompt=prompt, negative="bad " * 400, loras="detail_slider")
    embed = public(result).embeds[0]
    assert len(embed) <= 6000 and len(embed.description) <= 1500
    assert "ˋ**@everyone`" in field(embed, "LoRAs")  # a backtick cannot break out of the code span
    for edit in edits_of_original(world.env):
        assert edit is None or len(edit.get("content") or "") <= 2000
    assert isinstance(public(result), discord.Message)


async def test_deleting_a_picture_someone_else_deleted_meanwhile_is_no_error(world, caplog):
    world.engine.auto = True
    message = public(await world.alice.slash(world.channel, "draw", prompt="one"))
    gone = {"status": 404, "code": 10008, "message": "Unknown Message", "times": 1}
    world.env.inject_error("DELETE", "/webhooks/*/messages/@original", **gone)
    world.env.inject_error("DELETE", f"/channels/{world.channel.id}/messages/*", **gone)
    click = await world.alice.click(message, label="Delete")
    assert click.followups == [] and "Something went wrong" not in caplog.text
    assert "unexpected error" not in caplog.text


async def test_a_lora_whose_trigger_word_is_missing_gets_one_warning_naming_it(world):
    world.engine.auto = True
    result = await world.alice.slash(world.channel, "draw", prompt="a cat on a roof", loras="nova_style:0.7")
    warnings = field(public(result).embeds[0], "Warnings")
    assert "nova\\_style: none of its trigger words is in the prompt" in warnings
    assert "Add one of: nova style." in warnings
    assert warnings.count("trigger words") == 1

    result = await world.alice.slash(world.channel, "draw", prompt="a cat, (Nova_Style:1.1)", loras="nova_style:0.7")
    embed = public(result).embeds[0]
    assert "trigger words" not in "".join(f.value for f in embed.fields)
