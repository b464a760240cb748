"""/admin through SimCord: refused to non-admins whatever Discord shows, and each action."""

from __future__ import annotations

import pytest

from tests.bot.helpers import command_id, edits_of_original, private_text, progress_text


@pytest.mark.parametrize("who", ["moderator", "bob"])
async def test_admin_is_refused_to_non_admins_even_when_discord_shows_it(world, who):
    # The moderator has Manage Server (Discord shows /admin); bob was granted the
    # command in the server's integration settings. Neither is a Loracle admin.
    world.guild.set_command_permissions(command_id(world, "admin"), {world.bob: True})
    actor = getattr(world, who)
    for command, options in [
        ("admin scan", {}),
        ("admin remove", {"name": "pony_eyes"}),
        ("admin queue clear", {}),
        ("admin limits", {"max_steps": 3}),
    ]:
        result = await actor.slash(world.channel, command, **options)
        assert private_text(result).startswith("Only Loracle's admins can use /admin.")
    assert world.engine.admin.limits().max_steps == 50
    assert "pony_eyes" in [e.name for e in world.engine.library]


async def test_members_of_an_admin_role_are_admins(world):
    role = world.guild.create_role("Loracle admins")
    member = world.guild.add_member(world.env.create_user("carol"), roles=[role])
    world.guild.set_command_permissions(command_id(world, "admin"), {member: True})
    world.bot.admins._role_ids = {role.id}
    result = await member.slash(world.channel, "admin queue pause")
    assert progress_text(result) if result.response.ephemeral else False
    assert world.engine.queue.paused


async def test_scan_reports_counts_and_problems(world):
    result = await world.admin.slash(world.channel, "admin scan")
    text = progress_text(result)
    assert text.startswith("Scan finished: 1 added, 0 updated, 0 removed, 12 unchanged.")
    assert "⚠️ skipped loras/old.ckpt: pickled files are refused, never loaded" in text


async def test_add_from_civitai_shows_download_progress(world):
    result = await world.admin.slash(world.channel, "admin add", source="https://civitai.com/models/1?modelVersionId=777")
    assert progress_text(result) == "Added lora **civitai\\_1777** (loras/civitai\\_1777.safetensors)."
    shown = [edit.get("content") for edit in edits_of_original(world.env) if edit]
    assert "⬇️ Downloading… 300 B of 300 B (100%)" in shown


async def test_add_from_a_file_in_the_data_folder(world, settings):
    (settings.root / "incoming").mkdir()
    (settings.root / "incoming" / "new_style.safetensors").write_bytes(b"x")
    result = await world.admin.slash(world.channel, "admin add", source="incoming/new_style.safetensors")
    assert progress_text(result).startswith("Added lora **new\\_style**")
    (settings.root.parent / "outside.safetensors").write_bytes(b"x")
    outside = await world.admin.slash(world.channel, "admin add", source="../outside.safetensors")
    assert progress_text(outside) == "“../outside.safetensors” is not a file inside the data folder."


async def test_add_failure_is_reported(world):
    from engine.errors import CivitaiError

    world.engine.failures["add_from_civitai"] = CivitaiError("CivitAI did not answer in time.")
    result = await world.admin.slash(world.channel, "admin add", source="12345")
    assert progress_text(result) == "CivitAI did not answer in time."


async def test_remove_asks_first(world):
    result = await world.admin.slash(world.channel, "admin remove", name="pony_eyes")
    assert result.ephemeral and "Delete **pony\\_eyes** (loras/pony\\_eyes.safetensors, 144.0 MB)" in result.response.content
    await world.admin.click(result.response.message, label="Keep it")
    assert result.response.content == "Nothing was deleted."
    assert "pony_eyes" in [e.name for e in world.engine.library]

    result = await world.admin.slash(world.channel, "admin remove", name="pony_eyes")
    await world.admin.click(result.response.message, label="Delete the file")
    assert result.response.content == "Removed loras/pony\\_eyes.safetensors."
    assert "pony_eyes" not in [e.name for e in world.engine.library]

    unknown = await world.admin.slash(world.channel, "admin remove", name="pony_eyez")
    assert private_text(unknown).startswith("No model named “pony_eyez”")


async def test_refresh(world):
    result = await world.admin.slash(world.channel, "admin refresh", name="nova_style")
    assert progress_text(result).splitlines() == [
        "Asked CivitAI again about **nova\\_style**.",
        "• CivitAI was asked about 1 file(s).",
    ]
    result = await world.admin.slash(world.channel, "admin refresh")
    assert progress_text(result).startswith("Asked CivitAI again about every file.")
    assert ("refresh", None) in world.engine.calls


async def test_set_overrides(world):
    result = await world.admin.slash(
        world.channel, "admin set", name="mystery", base_model="Pony", weight=0.7, nsfw=True, display_name="Mystery Box"
    )
    assert progress_text(result) == (
        "**Mystery Box**: base model Pony (Pony); recommended weight 0.7; NSFW yes; enabled yes."
    )
    _name, by, values = world.engine.calls[-1][1]
    assert by == f"discord:{world.admin.id}"
    assert values == {"base_model": "Pony", "display_name": "Mystery Box", "weight": 0.7, "nsfw": True}

    cleared = await world.admin.slash(world.channel, "admin set", name="mystery", base_model="-")
    assert "base model unknown (unknown)" in progress_text(cleared)
    nothing = await world.admin.slash(world.channel, "admin set", name="mystery")
    assert progress_text(nothing).startswith("Nothing to change")
    too_big = await world.admin.slash(world.channel, "admin set", name="mystery", weight=99.0)
    assert progress_text(too_big) == "weight must be between -2.0 and 2.0"


async def test_default_checkpoint(world):
    result = await world.admin.slash(world.channel, "admin default-checkpoint", name="autismmix")
    assert progress_text(result) == "The default checkpoint is now **autismmix**."
    assert world.engine.admin.default_checkpoint() == "autismmix"
    world.engine.auto = True
    await world.alice.slash(world.channel, "draw", prompt="x")
    assert world.engine.jobs[-1].plan.checkpoint.name == "autismmix"
    result = await world.admin.slash(world.channel, "admin default-checkpoint", name="-")
    assert progress_text(result).startswith("No default checkpoint is set now")
    result = await world.admin.slash(world.channel, "admin default-checkpoint", name="pony_eyes")
    assert progress_text(result).startswith("No checkpoint named “pony_eyes”")


async def test_limits(world):
    result = await world.admin.slash(world.channel, "admin limits")
    assert progress_text(result) == (
        "Limits: up to 50 steps, 1536 px per side, 4 pictures per request, 2 waiting jobs per person."
    )
    result = await world.admin.slash(world.channel, "admin limits", max_steps=20, queue_per_user=5)
    assert progress_text(result).startswith("Limits: up to 20 steps, 1536 px per side, 4 pictures per request, 5 waiting")
    refused = await world.alice.slash(world.channel, "draw", prompt="x", steps=30)
    assert private_text(refused) == "steps must be between 1 and 20"


async def test_queue_pause_resume_clear(world):
    await world.alice.slash(world.channel, "draw", prompt="waiting")
    assert private_text(await world.admin.slash(world.channel, "admin queue pause")).startswith("The queue is paused")
    refused = await world.bob.slash(world.channel, "draw", prompt="x")
    assert private_text(refused).startswith("The queue is paused by an admin right now")
    assert private_text(await world.admin.slash(world.channel, "admin queue resume")) == "The queue runs again."
    assert private_text(await world.admin.slash(world.channel, "admin queue clear")) == (
        "Removed 1 waiting job(s); the running one continues."
    )
    assert world.engine.jobs[0].state == "cancelled"


async def test_blocklist(world):
    shown = await world.admin.slash(world.channel, "admin blocklist show")
    assert private_text(shown) == "No words are blocked on this server."
    added = await world.admin.slash(world.channel, "admin blocklist add", words="Gore, blood，\u200bguts")
    assert private_text(added) == "Blocked words on this server: `blood`, `gore`, `guts`"
    removed = await world.admin.slash(world.channel, "admin blocklist remove", words="gore")
    assert private_text(removed) == "Blocked words on this server: `blood`, `guts`"
    assert world.engine.admin.blocklist(str(world.guild.id)) == ["blood", "guts"]


async def test_cluster_shows_each_gpu_worker(world):
    result = await world.admin.slash(world.channel, "admin cluster")
    text = progress_text(result)
    assert text.startswith("**GPU workers** (local) · drawing available · 0 job(s) waiting")
    assert "`local` idle · node test-node · GPU none (CPU) · loaded - · 0 job(s) · busy 0%" in text
    world.guild.set_command_permissions(command_id(world, "admin"), {world.bob: True})
    refused = await world.bob.slash(world.channel, "admin cluster")
    assert private_text(refused).startswith("Only Loracle's admins can use /admin.")
