"""/settings show, set and reset, and what the defaults do to /draw, end to end."""

from __future__ import annotations

from tests.bot.helpers import field, private_text, public

DEFERRED = 5


def embed_of(result):
    messages = [m for m in [result.response, *result.followups] if m is not None and m.ephemeral and m.embeds]
    assert messages, f"no private embed in {result!r}"
    return messages[-1].embeds[0]


async def test_set_show_and_their_effect_on_draw(world):
    saved = await world.alice.slash(
        world.channel, "settings set", steps=30, size="832x1216", cfg=4.5, sampler="dpm++ 2m", loras="nova_style:0.6",
        checkpoint="NOVA_ORANGE", hires=1.5,
    )
    embed = embed_of(saved)
    assert embed.description.startswith("Saved.")
    assert field(embed, "steps") == "30" and field(embed, "size") == "832×1216" and field(embed, "sampler") == "DPM++ 2M"
    assert field(embed, "checkpoint") == "nova\\_orange"  # the library's own name
    assert field(embed, "hires") == "1.5×"
    assert field(embed_of(await world.alice.slash(world.channel, "settings show")), "LoRAs") == "nova\\_style:0.6"

    world.engine.auto = True
    drawn = await world.alice.slash(world.channel, "draw", prompt="a cat", steps=12)
    request = world.engine.jobs[-1].request
    assert (request.steps, request.width, request.height, request.cfg) == (12, 832, 1216, 4.5)  # the option wins
    assert (request.sampler, request.checkpoint, request.hires) == ("DPM++ 2M", "nova_orange", 1.5)
    assert [(l.name, l.weight) for l in request.loras] == [("nova_style", 0.6)]
    note = field(public(drawn).embeds[0], "Your defaults")
    assert note.startswith("Using your default: checkpoint nova_orange, size 832×1216, CFG 4.5, sampler DPM++ 2M")
    assert "steps" not in note

    # Someone else's draw is untouched.
    await world.bob.slash(world.channel, "draw", prompt="a dog")
    assert world.engine.jobs[-1].request.steps is None and world.engine.jobs[-1].request.loras == []
    assert not [f for f in public(await world.bob.slash(world.channel, "draw", prompt="b")).embeds[0].fields if f.name == "Your defaults"]


async def test_values_outside_the_admins_limits_are_refused_and_nothing_is_kept(world):
    await world.alice.slash(world.channel, "settings set", steps=20)
    for options, says in (
        ({"steps": 60}, "from 1 to 50"),  # the fixture's max_steps
        ({"size": "4096x4096"}, "multiples of 8"),
        ({"size": "big"}, "is not a size"),
        ({"loras": "nova_style:7"}, "between -2 and 2"),
        ({"sampler": "warp"}, "There is no sampler called"),
        ({"checkpoint": "nova_orang"}, "nova_orange"),  # a suggestion
        ({}, "Nothing to change"),
    ):
        result = await world.alice.slash(world.channel, "settings set", cfg=3.0, **options) if options else await world.alice.slash(world.channel, "settings set")
        assert says in private_text(result), options
    assert world.engine.user_defaults(str(world.alice.id)).set_names() == ["steps"]


async def test_a_limit_lowered_later_still_applies_at_draw_time(world):
    await world.alice.slash(world.channel, "settings set", steps=40)
    world.engine.set_limits(max_steps=30)
    result = await world.alice.slash(world.channel, "draw", prompt="x")
    assert "steps must be between 1 and 30" in private_text(result)


async def test_reset_one_then_all(world):
    await world.alice.slash(world.channel, "settings set", steps=30, size="832x1216")
    one = embed_of(await world.alice.slash(world.channel, "settings reset", name="size"))
    assert "Your default size is cleared." in one.description and field(one, "steps") == "30"
    everything = embed_of(await world.alice.slash(world.channel, "settings reset"))
    assert "All your defaults are cleared." in everything.description and "You have no defaults" in everything.description
    assert world.engine.user_defaults(str(world.alice.id)).empty


async def test_settings_answer_privately_in_the_users_language(world, interaction_payload):
    interaction_payload["locale"] = "zh-TW"
    result = await world.alice.slash(world.channel, "settings set", steps=25)
    embed = embed_of(result)
    assert embed.title == "您的繪圖預設值" and field(embed, "步數") == "25"
    assert result.response.ephemeral
