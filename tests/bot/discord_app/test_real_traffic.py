"""What real Discord traffic carries and SimCord's defaults do not: interactions from a
guild the bot has not cached (roles only as ids), threads it has not seen, team-owned
applications with read-only members, models CivitAI marks NSFW, uploads Discord refuses
as too large (40005), channel posts that must ping only the requester."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import discord

from bot.discord_app.permissions import AdminDirectory
from bot.discord_app.replies import ChannelReply
from engine.kinds import Category
from tests.bot.fakes import FakeEntry
from tests.bot.helpers import acknowledged, private_text, progress_text, public

APP_ID = "1456074443980800000"


def user_payload(user_id: int, name: str) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "discriminator": "0", "avatar": None, "global_name": None}


# -- admins -------------------------------------------------------------------------------
async def test_admin_role_counts_when_the_guild_is_not_cached(world):
    """A guild can be uncached (unavailable after a reconnect, or the bot invited with
    `applications.commands` only): `member.roles` in the payload are then bare ids, and
    discord.py's `Member.roles` drops every one it cannot resolve."""
    keepers = world.guild.create_role("Loracle keepers")
    keeper = world.guild.add_member(world.env.create_user("carol"), roles=[keepers])
    world.bot.admins._role_ids = {keepers.id}
    world.guild.set_command_permissions(
        next(c.id for c in world.bot.synced if c.name == "admin"), {keeper: True}
    )
    world.bot._connection._guilds.pop(world.guild.id)

    result = await keeper.slash(world.channel, "admin queue pause")

    assert "The queue is paused" in private_text(result)
    assert world.engine.queue.paused


def test_role_ids_come_from_the_payload_not_the_cache():
    from bot.discord_app.permissions import role_ids

    class Member:
        _roles: ClassVar[list[int]] = [111, 222]
        roles: ClassVar[list[Any]] = []  # what discord.py resolves in an uncached guild

    assert role_ids(Member()) == {111, 222}


class _Client:
    def __init__(self, info: Any) -> None:
        self.info = info

    async def application_info(self) -> Any:
        return self.info


def team_app_info(state: Any) -> discord.AppInfo:
    """GET /oauth2/applications/@me of a team-owned application, as Discord sends it."""

    def member(user_id: int, role: str, membership_state: int = 2) -> dict[str, Any]:
        return {
            "membership_state": membership_state,
            "team_id": "9000",
            "permissions": ["*"],
            "role": role,
            "user": user_payload(user_id, f"user{user_id}"),
        }

    return discord.AppInfo(
        state,
        {
            "id": APP_ID,
            "name": "Loracle",
            "icon": None,
            "description": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 0,
            "owner": {**user_payload(9000, "team9000"), "public_flags": 1024, "flags": 1024},
            "team": {
                "id": "9000",
                "icon": None,
                "name": "Loracle team",
                "owner_user_id": "100",
                "members": [
                    member(100, "admin"),
                    member(101, "developer"),
                    member(102, "read_only"),
                    member(103, "developer", membership_state=1),  # invited, not accepted
                ],
            },
        },
    )


async def test_team_admins_and_developers_are_admins_read_only_members_are_not(world):
    info = team_app_info(world.bot._connection)
    directory = AdminDirectory(_Client(info), owner_ids=[], admin_role_ids=[])

    async def admin(user_id: int) -> bool:
        return await directory.is_admin(discord.Object(id=user_id))

    assert await admin(100) and await admin(101)
    assert not await admin(102)  # read-only: may look at the app, not run it
    assert not await admin(103)  # has not joined the team
    assert not await admin(9000)  # the team's placeholder owner user


# -- NSFW ---------------------------------------------------------------------------------
def values(choices: list[dict[str, Any]]) -> list[str]:
    return [c["value"] for c in choices]


async def test_models_civitai_marks_nsfw_are_not_suggested_outside_age_restricted_channels(world):
    world.engine.library.append(FakeEntry("after_hours", Category.LORA, "Illustrious", civitai_nsfw=True))
    world.engine.library.append(FakeEntry("midnight_mix", Category.CHECKPOINT, "Illustrious", civitai_nsfw=True))
    sfw, nsfw = world.channel, world.nsfw_channel
    assert "after_hours" not in values(await world.alice.autocomplete(sfw, "lora info", "name", "after"))
    assert "after_hours" not in values(await world.alice.autocomplete(sfw, "family check", "lora", "after"))
    assert "midnight_mix" not in values(await world.alice.autocomplete(sfw, "draw", "checkpoint", "mid"))
    assert "midnight_mix" not in values(await world.alice.autocomplete(sfw, "family check", "checkpoint", "mid"))
    assert "after_hours" not in values(await world.alice.autocomplete(sfw, "draw", "loras", "after"))
    assert values(await world.alice.autocomplete(nsfw, "lora info", "name", "after")) == ["after_hours"]
    assert values(await world.alice.autocomplete(nsfw, "draw", "checkpoint", "mid")) == ["midnight_mix"]


async def test_family_check_of_an_nsfw_model_only_in_age_restricted_channels(world):
    world.engine.library.append(FakeEntry("after_hours", Category.LORA, "Illustrious", civitai_nsfw=True))
    refused = await world.alice.slash(world.channel, "family check", checkpoint="nova_orange", lora="nova_style, after_hours")
    assert "“after_hours” is marked NSFW" in progress_text(refused)
    assert not [m for m in refused.followups if not m.ephemeral]  # nothing public
    refused = await world.alice.slash(world.channel, "family check", checkpoint="secret_mix", lora="nova_style")
    assert "“secret_mix” is marked NSFW" in progress_text(refused)
    allowed = await world.alice.slash(world.nsfw_channel, "family check", checkpoint="secret_mix", lora="after_hours")
    assert public(allowed).embeds


async def test_family_check_lora_option_completes_the_last_of_several_names(world):
    choices = await world.alice.autocomplete(world.channel, "family check", "lora", "nova_style, det")
    assert values(choices) == ["nova_style, detail_slider"]
    choices = await world.alice.autocomplete(world.channel, "family check", "lora", "nova_style，")
    assert "nova_style, nova_style" not in values(choices) and "nova_style, detail_slider" in values(choices)


async def test_weight_typed_with_a_full_width_colon_is_kept_as_typed(world):
    choices = await world.alice.autocomplete(world.channel, "draw", "loras", "detail_slider：０.５")
    assert values(choices) == ["detail_slider：０.５"]
    choices = await world.alice.autocomplete(world.channel, "draw", "loras", "detail_slider：0.5, ")
    assert "detail_slider：0.5, detail_slider" not in values(choices)


def thread_payload(thread_id: int, parent: Any, guild: Any) -> dict[str, Any]:
    """The `channel` of an INTERACTION_CREATE sent from a public thread: no `nsfw` of its
    own (a thread is age-restricted when its parent is)."""
    return {
        "id": str(thread_id),
        "type": 11,
        "guild_id": str(guild.id),
        "parent_id": str(parent.id),
        "owner_id": "1",
        "name": "after-dark chat",
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": "2026-01-01T00:00:00+00:00",
            "locked": False,
        },
        "permissions": "2248473465835073",
    }


async def test_threads_take_the_age_restriction_of_their_parent(world, interaction_payload):
    world.engine.auto = True
    interaction_payload["channel"] = thread_payload(1456074443980809999, world.nsfw_channel, world.guild)
    allowed = await world.alice.slash(world.channel, "draw", prompt="x", loras="spicy")
    assert public(allowed).attachments
    assert world.engine.jobs[-1].request.allow_nsfw is True
    interaction_payload["channel"] = thread_payload(1456074443980809998, world.channel, world.guild)
    refused = await world.alice.slash(world.channel, "draw", prompt="x", loras="spicy")
    assert "marked NSFW" in progress_text(refused)


# -- delivery -----------------------------------------------------------------------------
async def test_pictures_discord_refuses_as_too_large_are_sent_smaller(world):
    world.engine.auto = True
    world.engine.noisy_images = True
    world.env.inject_error(
        "POST", "/webhooks/*", status=413, code=40005, message="Request entity too large", times=1
    )
    result = await world.alice.slash(world.channel, "draw", prompt="noise", size="512x512")
    message = public(result)
    [attachment] = message.attachments
    assert attachment.filename.endswith(".jpg")
    assert "JPEG" in message.content


async def test_a_picture_nobody_could_receive_is_reported_privately(world):
    world.engine.auto = True
    world.env.inject_error("POST", "/webhooks/*", status=400, code=50035, message="Invalid Form Body", times=None)
    world.env.inject_error("POST", "/channels/*/messages", status=403, code=50013, message="Missing Permissions", times=None)
    result = await world.alice.slash(world.channel, "draw", prompt="a cat")
    assert "Discord would not let me post it here" in progress_text(result)  # not a silent "✅ Done."


async def test_channel_posts_ping_the_requester_and_nobody_else(world):
    requester, stranger = world.alice.id, world.bob.id
    reply = ChannelReply(world.bot, world.channel.id, f"<@{requester}> your picture", requester)
    await reply.private(f"“<@{stranger}>” is not a LoRA in the library.")
    await world.env.settle()
    [post] = [r for r in world.env.http_requests if r.method == "POST" and r.path.endswith(f"/channels/{world.channel.id}/messages")]
    mentions = post.json["allowed_mentions"]
    assert [int(user) for user in mentions["users"]] == [requester]
    assert mentions["parse"] == []


async def test_reroll_after_a_restart_reads_the_job_table_off_the_event_loop(world):
    world.engine.auto = True
    first = await world.alice.slash(world.channel, "draw", prompt="a cat")
    message = public(first)
    world.bot.draws.memory._items.clear()  # as after a restart
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = world.engine.job_request

    def job_request(job_id: str):
        seen.append(threading.get_ident())
        return original(job_id)

    world.engine.job_request = job_request
    await world.bob.click(message, label="Reroll")
    assert seen and loop_thread not in seen
    assert world.engine.jobs[-1].request.prompt == "a cat"


async def test_an_admin_action_outliving_its_token_reports_by_direct_message(world):
    """A 7 GB download can outlast the 15-minute interaction token (Discord then answers
    401 / 50027 Invalid Webhook Token): the outcome goes to the admin's DMs."""
    original = world.engine.add_from_civitai

    async def slow_add(ref_text: str, *, progress=None):
        # What Env.inject_error records (which bot-owned work may not call): the token is gone.
        world.env.backend.faults.append(
            {"method": "*", "path": "/webhooks/*", "status": 401, "code": 50027, "message": "Invalid Webhook Token", "times": None}
        )
        return await original(ref_text, progress=progress)

    world.engine.add_from_civitai = slow_add
    await world.admin.slash(world.channel, "admin add", source="https://civitai.com/models/1?modelVersionId=777")
    await world.env.settle()
    dms = [
        r.json
        for r in world.env.http_requests
        if r.method == "POST" and r.path.startswith("/channels/") and r.path.endswith("/messages")
        and isinstance(r.json, dict) and "Added" in (r.json.get("content") or "")
    ]
    assert dms and "civitai\\_1777" in dms[-1]["content"]


# -- Discord first, the disk after ---------------------------------------------------------
def recording(world, obj, name: str, seen: list[tuple[bool, bool]]):
    """Wrap obj.name to record, per call, (interaction already answered, off the event loop)."""
    original = getattr(obj, name)
    loop_thread = threading.get_ident()

    def wrapper(*args, **kwargs):
        seen.append((acknowledged(world.env), threading.get_ident() != loop_thread))
        return original(*args, **kwargs)

    setattr(obj, name, wrapper)


async def test_reroll_answers_discord_before_it_reads_the_job_table(world):
    world.engine.auto = True
    message = public(await world.alice.slash(world.channel, "draw", prompt="a cat"))
    world.bot.draws.memory._items.clear()  # as after a restart
    seen: list[tuple[bool, bool]] = []
    recording(world, world.engine, "job_request", seen)
    reroll = await world.bob.click(message, label="Reroll")
    assert seen == [(True, True)]
    assert public(reroll).attachments

    world.engine.jobs.clear()  # a job the table no longer knows
    unknown = await world.bob.click(message, label="Reroll")
    assert "no longer known, so it cannot be redrawn" in private_text(unknown)


async def test_cancel_answers_discord_before_it_asks_the_engine_and_off_the_loop(world):
    result = await world.alice.slash(world.channel, "draw", prompt="a cat")
    seen: list[tuple[bool, bool]] = []
    recording(world, world.engine, "cancel", seen)
    click = await world.alice.click(result.response.message, label="Cancel")
    assert seen == [(True, True)]
    assert "Cancelling" in private_text(click)
    assert progress_text(result) == "✖️ Cancelled."


async def test_admin_remove_and_blocklist_answer_discord_before_touching_sqlite(world):
    seen: list[tuple[bool, bool]] = []
    recording(world, world.engine, "find", seen)
    result = await world.admin.slash(world.channel, "admin remove", name="pony_eyes")
    assert seen == [(True, True)]
    assert "Delete **pony\\_eyes**" in result.response.content
    await world.admin.click(result.response.message, label="Keep it")
    assert result.response.content == "Nothing was deleted."

    seen.clear()
    recording(world, world.engine.admin, "set_blocklist", seen)
    recording(world, world.engine.admin, "blocklist", seen)
    added = await world.admin.slash(world.channel, "admin blocklist add", words="gore")
    assert seen and all(seen) and all(ack for ack, _ in seen)
    assert private_text(added) == "Blocked words on this server: `gore`"
    seen.clear()
    shown = await world.admin.slash(world.channel, "admin blocklist show")
    assert seen == [(True, True)]
    assert private_text(shown) == "Blocked words on this server: `gore`"


async def test_confirming_a_removal_is_acknowledged_before_the_file_is_deleted(world):
    """Deleting a 7 GB file (and its database rows) can outlast the 3 s Discord gives a click."""
    seen: list[bool] = []
    original = world.engine.remove

    async def slow_remove(name: str):
        seen.append(acknowledged(world.env))  # the newest interaction is the click
        return await original(name)

    world.engine.remove = slow_remove
    result = await world.admin.slash(world.channel, "admin remove", name="pony_eyes")
    await world.admin.click(result.response.message, label="Delete the file")
    assert seen == [True]
    assert result.response.content == "Removed loras/pony\\_eyes.safetensors."
    assert result.response.message.components == []
