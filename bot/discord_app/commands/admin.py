"""/admin: the library, per-file settings, the default checkpoint, limits, the queue and
the per-server prompt blocklist. Every answer is private.

The group is hidden from members without Manage Server, and the command tree checks every
/admin interaction against the bot's own admin list before any of this runs
(`client.LoracleTree.interaction_check`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.discord_app import autocomplete, limits
from bot.discord_app import texts as T
from bot.discord_app.cluster_view import render_cluster
from bot.discord_app.port import QueuePort
from bot.discord_app.progress import download_text
from bot.discord_app.render import safe
from bot.discord_app.replies import describe, error_text, send_private
from bot.discord_app.texts import locale_of
from bot.discord_app.translator import desc
from bot.discord_app.views import ConfirmView
from engine.errors import RequestError
from engine.text_input import clean_name

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot

CLEAR = "-"

log = logging.getLogger("loracle.bot")


class ProgressPump:
    """Shows the latest progress line of a long action (scan, download), at most once per
    interval. `report()` may be called from any thread (the engine reports from its
    download and hashing threads)."""

    def __init__(self, show: Callable[[str], Awaitable[None]], interval: float) -> None:
        self._show = show
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._latest: str | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def report(self, text: str) -> None:
        if threading.get_ident() == self._loop_thread:
            self._set(text)
        else:
            self._loop.call_soon_threadsafe(self._set, text)

    def _set(self, text: str) -> None:
        self._latest = text
        self._changed.set()

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._latest is not None:
                await self._show(self._latest)
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> ProgressPump:
        self._task = self._loop.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def say(interaction: discord.Interaction, text: str, *, final: bool = False) -> None:
    """Show `text` as this admin command's (private) answer.

    The interaction's token lasts 15 minutes, and downloading a 7 GB checkpoint can take
    longer: then progress simply stops showing, and the `final` outcome goes to the
    admin's direct messages rather than nowhere."""
    text = limits.clip(text, limits.CONTENT)
    if interaction.response.is_done():
        try:
            await interaction.edit_original_response(content=text)
            return
        except discord.HTTPException:
            pass
    if await send_private(interaction, text) or not final:
        return
    try:
        await interaction.user.send(text)
    except discord.HTTPException as exc:
        log.warning("could not tell %s the outcome: %s", describe(interaction), exc)


async def act(interaction: discord.Interaction, body: Callable[[str], Awaitable[str | None]], *, defer: bool = True) -> None:
    """Run an admin action; its text, or its error, becomes the private answer."""
    locale = locale_of(interaction)
    if defer:
        await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        text = await body(locale)
    except Exception as exc:
        text = error_text(exc, locale, describe(interaction))
    if text is not None:
        await say(interaction, text, final=True)


def split_words(text: str) -> list[str]:
    return [w for w in (clean_name(part).lower() for part in re.split(r"[,;\n，；]", text)) if w]


def _yes_no(value: bool, locale: str) -> str:
    return (T.YES if value else T.NO).render(locale)


def register(client: LoracleBot) -> None:
    engine = client.engine
    admin = app_commands.Group(
        name="admin",
        description=desc("Manage Loracle's library, limits and queue (bot admins)"),
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
        # `guild_only` alone sends only the deprecated dm_permission, which does not cover
        # group DMs or a user-installed copy of the app; contexts and integration types do.
        # Manage Server (default_member_permissions) means something only where the bot
        # itself was added to the server.
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        allowed_installs=app_commands.AppInstallationType(guild=True),
    )
    queue = app_commands.Group(name="queue", description=desc("Pause, resume or clear the drawing queue"), parent=admin)
    blocklist = app_commands.Group(name="blocklist", description=desc("Words prompts may not contain on this server"), parent=admin)

    # -- library ------------------------------------------------------------------------
    @admin.command(name="scan", description=desc("Find new, changed and removed model files"))
    async def scan(interaction: discord.Interaction) -> None:
        async def body(locale: str) -> str:
            async with ProgressPump(lambda text: say(interaction, text), client.draws.interval) as pump:
                report = await engine.scan(progress=lambda item: pump.report(T.SCANNING.render(locale, item=item)))
            lines = [
                T.SCAN_DONE.render(
                    locale,
                    added=len(report.added),
                    updated=len(report.updated),
                    removed=len(report.removed),
                    unchanged=report.unchanged,
                )
            ]
            lines += [T.SCAN_PROBLEM.render(locale, path=p.rel_path, message=p.message) for p in report.problems]
            lines += [f"• {note.render(locale)}" for note in getattr(report, "notes", None) or []]
            return limits.join_lines(lines, limits.CONTENT, lambda n: T.AND_MORE.render(locale, count=n))

        await act(interaction, body)

    @admin.command(name="add", description=desc("Add a model from a CivitAI link or version id, or a file in the data folder"))
    @app_commands.describe(source=desc("CivitAI URL, model-version id, or a path inside the data folder"))
    async def add(interaction: discord.Interaction, source: str) -> None:
        async def body(locale: str) -> str:
            text = clean_name(source)
            async with ProgressPump(lambda line: say(interaction, line), client.draws.interval) as pump:
                pump.report(T.ADDING.render(locale, source=safe(limits.clip(text, 200))))
                is_file = "://" not in text and await asyncio.to_thread((engine.settings.root / text).exists)
                if is_file:
                    entry = await engine.add_from_path(text)
                else:
                    entry = await engine.add_from_civitai(
                        text, progress=lambda done, total: pump.report(download_text(done, total, locale))
                    )
            category = str(entry.category)
            return T.ADDED.render(
                locale,
                category=category,
                category_zh=T.CATEGORY_ZH.get(category, category),
                name=safe(entry.name),
                path=safe(entry.rel_path),
            )

        await act(interaction, body)

    @admin.command(name="remove", description=desc("Delete a model file from the library and the disk"))
    @app_commands.describe(name=desc("Checkpoint or LoRA name"))
    @app_commands.autocomplete(name=autocomplete.library_names)
    async def remove(interaction: discord.Interaction, name: str) -> None:
        locale = locale_of(interaction)
        # The library lookup reads SQLite: answer Discord first, then ask the question.
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            entry = await asyncio.to_thread(engine.find, name)
        except Exception as exc:
            await say(interaction, error_text(exc, locale, describe(interaction)))
            return
        view = ConfirmView(interaction.user.id, T.BUTTON_CONFIRM_DELETE.render(locale), T.BUTTON_KEEP.render(locale))
        question = T.REMOVE_CONFIRM.render(
            locale, name=safe(entry.label), path=safe(entry.rel_path), size=T.human_size(entry.size)
        )
        await interaction.edit_original_response(content=question, view=view)
        await view.wait()
        if view.result is not True:
            outcome = T.REMOVE_KEPT.render(locale)
        else:
            try:
                removed = await engine.remove(entry.name)
                outcome = T.REMOVED.render(locale, path=safe(removed.rel_path))
            except Exception as exc:
                outcome = error_text(exc, locale, describe(interaction))
        # The click was acknowledged at once (ConfirmView); the question becomes the outcome.
        try:
            await interaction.edit_original_response(content=outcome, view=None)
        except discord.HTTPException:
            await say(interaction, outcome, final=True)

    @admin.command(name="refresh", description=desc("Ask CivitAI again, ignoring cached answers"))
    @app_commands.describe(name=desc("One file (empty: every file)"))
    @app_commands.autocomplete(name=autocomplete.library_names)
    async def refresh(interaction: discord.Interaction, name: str | None = None) -> None:
        async def body(locale: str) -> str:
            notes = await engine.refresh(name or None)
            head = (
                T.REFRESHED_ONE.render(locale, name=safe(clean_name(name))) if name else T.REFRESHED_ALL.render(locale)
            )
            lines = [head] + [f"• {note.render(locale)}" for note in notes]
            return limits.join_lines(lines, limits.CONTENT, lambda n: T.AND_MORE.render(locale, count=n))

        await act(interaction, body)

    @admin.command(name="set", description=desc("Override what CivitAI and the file say about a model"))
    @app_commands.describe(
        name=desc("Checkpoint or LoRA name"),
        base_model=desc('Base model, e.g. "Illustrious" or "Pony" ("-" clears)'),
        weight=desc("Recommended LoRA weight"),
        nsfw=desc("Only in age-restricted channels"),
        enabled=desc("Can be used at all"),
        display_name=desc('Name shown to users ("-" clears)'),
    )
    @app_commands.autocomplete(name=autocomplete.library_names)
    async def set_(
        interaction: discord.Interaction,
        name: str,
        base_model: str | None = None,
        weight: float | None = None,
        nsfw: bool | None = None,
        enabled: bool | None = None,
        display_name: str | None = None,
    ) -> None:
        async def body(locale: str) -> str:
            values: dict[str, Any] = {}
            for key, value in (("base_model", base_model), ("display_name", display_name)):
                if value is not None:
                    cleaned = clean_name(value)
                    values[key] = None if cleaned in ("", CLEAR) else cleaned
            for key, flag in (("weight", weight), ("nsfw", nsfw), ("enabled", enabled)):
                if flag is not None:
                    values[key] = flag
            if not values:
                raise RequestError(T.SET_NOTHING)
            who = f"discord:{interaction.user.id}"
            entry = await asyncio.to_thread(lambda: engine.set_entry(name, by=who, **values))
            summary, flagged = await asyncio.to_thread(lambda: (engine.summary(entry), engine.is_nsfw(entry)))
            return T.SET_DONE.render(
                locale,
                name=safe(entry.label),
                base_model=safe(summary.base_model) if summary.base_model else T.UNKNOWN.render(locale),
                family=safe(summary.family_label) if summary.family_label else T.UNKNOWN.render(locale),
                weight="-" if entry.weight_override is None else f"{entry.weight_override:g}",
                nsfw=_yes_no(flagged, locale),
                enabled=_yes_no(entry.enabled, locale),
            )

        await act(interaction, body)

    @admin.command(name="default-checkpoint", description=desc("Set the checkpoint /draw uses when none is given"))
    @app_commands.describe(name=desc('Checkpoint name ("-" clears)'))
    @app_commands.autocomplete(name=autocomplete.checkpoint_names)
    async def default_checkpoint(interaction: discord.Interaction, name: str) -> None:
        async def body(locale: str) -> str:
            if clean_name(name) == CLEAR:
                await asyncio.to_thread(engine.admin.set_default_checkpoint, None)
                return T.DEFAULT_CLEARED.render(locale)
            entry = await asyncio.to_thread(engine.find, name, "checkpoint")
            await asyncio.to_thread(engine.admin.set_default_checkpoint, entry.name)
            return T.DEFAULT_SET.render(locale, name=safe(entry.label))

        await act(interaction, body)

    @admin.command(name="limits", description=desc("Show or change the drawing limits"))
    @app_commands.describe(
        max_steps=desc("Most denoising steps per picture"),
        max_size=desc("Largest width or height in pixels"),
        max_images=desc("Most pictures per request"),
        queue_per_user=desc("Most waiting jobs per person"),
    )
    async def limits_(
        interaction: discord.Interaction,
        max_steps: app_commands.Range[int, 1, 150] | None = None,
        max_size: app_commands.Range[int, 64, 4096] | None = None,
        max_images: app_commands.Range[int, 1, 8] | None = None,
        queue_per_user: app_commands.Range[int, 1, 50] | None = None,
    ) -> None:
        async def body(locale: str) -> str:
            given = {
                key: value
                for key, value in (
                    ("max_steps", max_steps),
                    ("max_size", max_size),
                    ("max_images", max_images),
                    ("queue_per_user", queue_per_user),
                )
                if value is not None
            }
            current = await asyncio.to_thread(
                (lambda: engine.set_limits(**given)) if given else engine.admin.limits
            )
            return T.LIMITS.render(locale, **vars(current))

        await act(interaction, body)

    # -- GPU workers (local or Ray) -----------------------------------------------------
    @admin.command(name="cluster", description=desc("Show the GPU workers: node, GPU, loaded checkpoint, jobs, load"))
    async def cluster(interaction: discord.Interaction) -> None:
        async def body(locale: str) -> str:
            return render_cluster(engine.cluster_status(), locale)

        await act(interaction, body, defer=False)

    # -- queue --------------------------------------------------------------------------
    async def queue_action(interaction: discord.Interaction, action: Callable[[QueuePort, str], str]) -> None:
        async def body(locale: str) -> str:
            if engine.queue is None:
                return T.QUEUE_OFF.render(locale)
            return action(engine.queue, locale)

        await act(interaction, body, defer=False)

    @queue.command(name="pause", description=desc("Stop starting and accepting new jobs"))
    async def pause(interaction: discord.Interaction) -> None:
        def action(jobs: QueuePort, locale: str) -> str:
            jobs.pause()
            return T.QUEUE_PAUSED.render(locale)

        await queue_action(interaction, action)

    @queue.command(name="resume", description=desc("Start and accept jobs again"))
    async def resume(interaction: discord.Interaction) -> None:
        def action(jobs: QueuePort, locale: str) -> str:
            jobs.resume()
            return T.QUEUE_RESUMED.render(locale)

        await queue_action(interaction, action)

    @queue.command(name="clear", description=desc("Cancel every waiting job"))
    async def clear(interaction: discord.Interaction) -> None:
        await queue_action(interaction, lambda jobs, locale: T.QUEUE_CLEARED.render(locale, count=jobs.clear()))

    # -- blocklist ----------------------------------------------------------------------
    def show_words(words: list[str], locale: str) -> str:
        if not words:
            return T.BLOCKLIST_EMPTY.render(locale)
        return T.BLOCKLIST_SHOW.render(locale, words=", ".join(f"`{w.replace('`', '')}`" for w in words))

    async def change_words(interaction: discord.Interaction, words: str, add: bool) -> None:
        async def body(locale: str) -> str:
            guild = str(interaction.guild_id)

            def update() -> list[str]:
                current = set(engine.admin.blocklist(guild))
                given = set(split_words(words))
                return engine.admin.set_blocklist(guild, sorted(current | given if add else current - given))

            return show_words(await asyncio.to_thread(update), locale)

        # Deferred: the write may wait for SQLite's lock (a scan writing, say) past 3 s.
        await act(interaction, body)

    @blocklist.command(name="add", description=desc("Block words (comma separated)"))
    @app_commands.describe(words=desc("Words, separated by commas"))
    async def block_add(interaction: discord.Interaction, words: str) -> None:
        await change_words(interaction, words, add=True)

    @blocklist.command(name="remove", description=desc("Allow words again (comma separated)"))
    @app_commands.describe(words=desc("Words, separated by commas"))
    async def block_remove(interaction: discord.Interaction, words: str) -> None:
        await change_words(interaction, words, add=False)

    @blocklist.command(name="show", description=desc("Show the blocked words"))
    async def block_show(interaction: discord.Interaction) -> None:
        async def body(locale: str) -> str:
            return show_words(await asyncio.to_thread(engine.admin.blocklist, str(interaction.guild_id)), locale)

        await act(interaction, body)

    client.tree.add_command(admin)
