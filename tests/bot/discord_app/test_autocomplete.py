"""Autocomplete through SimCord: ranking, Discord's limits, NSFW filtering, deadlines."""

from __future__ import annotations

import time

from bot.discord_app import autocomplete
from bot.discord_app.autocomplete import split_list
from engine.kinds import Category
from tests.bot.fakes import FakeEntry
from tests.bot.helpers import command_id


def names(choices):
    return [c["name"] for c in choices]


def values(choices):
    return [c["value"] for c in choices]


async def test_lora_suggestions_rank_by_verdict_and_leave_out_incompatible(world):
    choices = await world.alice.autocomplete(world.channel, "draw", "loras", "", checkpoint="nova_orange")
    assert values(choices) == ["nova_style", "detail_slider", "pony_eyes", "mystery"]
    assert names(choices) == [
        "nova_style — ✅ exact match",
        "detail_slider — 🟢 same family · 0.8",
        "pony_eyes — 🟡 other family",
        "mystery — ❔ unknown",
    ]


async def test_ranking_follows_the_chosen_checkpoint(world):
    choices = await world.alice.autocomplete(world.channel, "draw", "loras", "", checkpoint="autismmix")
    assert values(choices)[0] == "pony_eyes"
    assert "sd15_lineart" not in values(choices) and "flux_glow" not in values(choices)


async def test_completes_the_last_item_of_a_list(world):
    choices = await world.alice.autocomplete(world.channel, "draw", "loras", "nova_style:0.7, det", checkpoint="nova_orange")
    assert values(choices) == ["nova_style:0.7, detail_slider"]
    # Names already listed are not offered again.
    choices = await world.alice.autocomplete(world.channel, "draw", "loras", "nova_style:0.7,", checkpoint="nova_orange")
    assert "nova_style:0.7, nova_style" not in values(choices)
    assert values(choices)[0] == "nova_style:0.7, detail_slider"
    # Typing a weight: the text itself is the only suggestion.
    choices = await world.alice.autocomplete(world.channel, "draw", "loras", "nova_style:0.", checkpoint="nova_orange")
    assert values(choices) == ["nova_style:0."]


async def test_nsfw_loras_only_suggested_in_age_restricted_channels(world):
    assert "spicy" not in values(await world.alice.autocomplete(world.channel, "draw", "loras", "sp"))
    assert "spicy" in values(await world.alice.autocomplete(world.nsfw_channel, "draw", "loras", "sp"))


async def test_never_more_than_25_choices_of_at_most_100_characters(world):
    for i in range(60):
        world.engine.library.append(FakeEntry(f"style_{i:02d}_" + "x" * 120, Category.LORA, "Illustrious"))
        world.engine.library.append(FakeEntry(f"short_{i:02d}", Category.LORA, "Illustrious", display_name="d" * 150))
    choices = await world.alice.autocomplete(world.channel, "draw", "loras", "", checkpoint="nova_orange")
    assert len(choices) == 25
    assert all(len(c["name"]) <= 100 and len(c["value"]) <= 100 for c in choices)
    long_prefix = "a" * 95 + ", "
    choices = await world.alice.autocomplete(world.channel, "draw", "loras", long_prefix + "sh")
    assert choices == []  # no completion fits Discord's 100-character value


async def test_checkpoint_suggestions_show_their_family(world):
    await world.admin.slash(world.channel, "admin default-checkpoint", name="autismmix")
    choices = await world.alice.autocomplete(world.channel, "draw", "checkpoint", "")
    assert names(choices) == [
        "autismmix — Pony · SDXL ★",
        "dreamshaper8 — unknown · SD 1.x",
        "nova_orange — Illustrious · SDXL",
    ]
    assert values(await world.alice.autocomplete(world.nsfw_channel, "draw", "checkpoint", "mix")) == [
        "autismmix",
        "secret_mix",
    ]


async def test_sizes_respect_the_limit(world):
    choices = await world.alice.autocomplete(world.channel, "draw", "size", "")
    assert "1024x1024" in values(choices) and "640x1536" in values(choices)
    world.engine.admin.set_limits(max_size=1024)
    choices = await world.alice.autocomplete(world.channel, "draw", "size", "")
    assert values(choices) == ["1024x1024"]


async def test_lora_info_and_family_check_names(world):
    assert values(await world.alice.autocomplete(world.channel, "lora info", "name", "PONY")) == ["pony_eyes"]
    assert values(await world.alice.autocomplete(world.channel, "family check", "checkpoint", "nov")) == ["nova_orange"]


async def test_a_failing_library_gives_no_suggestions_not_an_error(world, caplog):
    world.engine.failures["suggest_loras"] = RuntimeError("disk gone")
    assert await world.alice.autocomplete(world.channel, "draw", "loras", "x") == []
    assert "autocomplete failed" in caplog.text


async def test_a_slow_library_answers_within_the_budget(monkeypatch, caplog):
    # Outside SimCord, whose virtual clock lets a thread finish before any timer fires.
    monkeypatch.setattr(autocomplete, "BUDGET_S", 0.02)
    started = time.perf_counter()
    assert await autocomplete._bounded(lambda: time.sleep(0.3) or ["late"], []) == []
    assert time.perf_counter() - started < 0.25  # did not wait for the thread
    assert "longer than 0.0 s" in caplog.text


async def test_admin_autocomplete_is_empty_for_non_admins(world):
    world.guild.set_command_permissions(command_id(world, "admin"), {world.bob: True})
    assert await world.bob.autocomplete(world.channel, "admin remove", "name", "") == []
    assert len(await world.admin.autocomplete(world.channel, "admin remove", "name", "")) == 12


def test_split_list():
    assert split_list("") == ("", "")
    assert split_list("abc") == ("", "abc")
    assert split_list("a:0.8, b") == ("a:0.8, ", "b")
    assert split_list("a:0.8,") == ("a:0.8, ", "")
    assert split_list("a:0.8；b") == ("a:0.8, ", "b")  # full-width separator from a CJK keyboard


async def test_while_the_library_is_indexed_it_says_so_and_offers_what_is_indexed(world):
    world.engine.library.append(FakeEntry("fresh_ckpt", Category.CHECKPOINT, "Illustrious", hash_pending=True))
    world.engine.indexing.begin()
    choices = await world.alice.autocomplete(world.nsfw_channel, "draw", "checkpoint", "fresh")
    assert "being indexed" in names(choices)[0] and values(choices)[0] == "fresh"
    assert values(choices)[1:] == ["fresh_ckpt"]
    # not hashed yet: no admin settings yet, so it may be NSFW: not offered outside age-restricted channels
    choices = await world.alice.autocomplete(world.channel, "draw", "checkpoint", "fresh")
    assert values(choices) == ["fresh"]
    world.engine.indexing.end()
    choices = await world.alice.autocomplete(world.nsfw_channel, "draw", "checkpoint", "fresh")
    assert values(choices) == ["fresh_ckpt"]
