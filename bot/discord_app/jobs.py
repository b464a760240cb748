"""From a /draw (or a reroll click) to the finished picture in the channel.

`DrawService` defers at once, submits the request, then follows the job's events: the
queue position and step progress edit the requester's private reply (throttled), and
the finished pictures are posted for everyone with their embed and the reroll/delete
buttons. It also answers the cancel, reroll and delete buttons, and delivers jobs the
engine re-queued after a restart to the channels they came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.discord_app import texts as T
from bot.discord_app.lifecycle import STOPPING, InFlight, while_indexing
from bot.discord_app.parsing import DrawOptions, build_request
from bot.discord_app.port import EnginePort, JobHandlePort
from bot.discord_app.progress import DEFAULT_INTERVAL, Throttle, event_text
from bot.discord_app.render import draw_embed
from bot.discord_app.replies import (
    ChannelReply,
    DeferredReply,
    Reply,
    UploadRefused,
    age_restricted,
    error_text,
    log_unexpected,
    send_private,
)
from bot.discord_app.texts import locale_of
from bot.discord_app.uploads import TooLargeError, fit_images
from bot.discord_app.views import progress_view, result_view
from engine.errors import LoracleError
from engine.queue.handle import Cancelled, Done, Failed
from engine.requests import DrawRequest, DrawResult, Origin

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot

UPLOAD_ATTEMPTS = 3  # the fitted pictures, then at most two smaller encodings

log = logging.getLogger("loracle.bot")


def scope_of(interaction: discord.Interaction) -> str | None:
    """Whose prompt blocklist applies: the server's (none in direct messages)."""
    return str(interaction.guild_id) if interaction.guild_id else None


def origin_of(interaction: discord.Interaction) -> Origin:
    """What the bot needs to answer a job after a restart, when the interaction is gone;
    the engine stores it with the job and never reads it."""
    return {
        "guild_id": str(interaction.guild_id) if interaction.guild_id else None,
        "channel_id": str(interaction.channel_id) if interaction.channel_id else None,
    }


def channel_of(origin: Origin | None) -> int | None:
    channel_id = (origin or {}).get("channel_id")
    return int(channel_id) if isinstance(channel_id, str) and channel_id.isdigit() else None


class RequestMemory:
    """The requests behind recent jobs, for "reroll" (bounded; oldest forgotten first)."""

    def __init__(self, size: int = 2000) -> None:
        self._size = size
        self._items: OrderedDict[str, DrawRequest] = OrderedDict()

    def remember(self, job_id: str, request: DrawRequest) -> None:
        self._items[job_id] = dataclasses.replace(request, loras=list(request.loras))
        self._items.move_to_end(job_id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def get(self, job_id: str) -> DrawRequest | None:
        return self._items.get(job_id)


class DrawService:
    def __init__(self, client: LoracleBot, engine: EnginePort, *, interval: float = DEFAULT_INTERVAL) -> None:
        self.client = client
        self.engine = engine
        self.interval = interval
        self.memory = RequestMemory()
        self._followers: set[asyncio.Task[None]] = set()  # recovered jobs (no interaction owns them)
        self._following: set[asyncio.Task[Any]] = set()  # every task following a job now
        self._recovered_followed = False  # on_ready runs again after every reconnect
        self.draining = False  # the bot is stopping (see drain)
        self._stopping: asyncio.Task[Any] | None = None
        self.in_flight = InFlight()  # requests being answered: stopping waits for them
        # Extra reply fields per job (what came from a picture, which defaults were used).
        self.extras: dict[str, list[tuple[str, str]]] = {}

    # -- /draw ------------------------------------------------------------------------
    def request_for(self, interaction: discord.Interaction, options: DrawOptions) -> DrawRequest:
        settings = self.engine.settings
        return build_request(
            options,
            user_id=str(interaction.user.id),
            scope=scope_of(interaction),
            origin=origin_of(interaction),
            locale=locale_of(interaction),
            allow_nsfw=age_restricted(interaction),
            max_loras=settings.max_loras,
            max_prompt_chars=settings.max_prompt_chars,
        )

    async def draw_command(self, interaction: discord.Interaction, options: DrawOptions) -> None:
        locale = locale_of(interaction)
        if self.draining:
            await send_private(interaction, STOPPING.render(locale))
            return
        with self.in_flight.hold():
            await self._draw_command(interaction, options, locale)

    async def _draw_command(self, interaction: discord.Interaction, options: DrawOptions, locale: str) -> None:
        pictures = self.client.pictures
        try:
            request = self.request_for(interaction, options)
            pictures.check_options(options)  # attachments too large, or no pictures at all
        except LoracleError as exc:
            await send_private(interaction, error_text(exc, locale, f"/draw by {interaction.user.id}"))
            return
        # Answer Discord first (it allows 3 s); planning and queueing come after, and only
        # once every interaction that arrived meanwhile has been answered too (a burst of
        # /draw must not wait behind the planning of the ones before it).
        await interaction.response.defer(ephemeral=True, thinking=True)
        await asyncio.sleep(0)
        reply = DeferredReply(interaction)
        try:
            # pictures read, the user's /settings defaults applied (disk and network: after the defer)
            request, extra = await pictures.prepare_draw(interaction, options, request, locale)
        except Exception as exc:
            await reply.refuse(error_text(exc, locale, f"/draw by {interaction.user.id}"))
            return
        await self.run(reply, request, interaction.user.id, locale, extra)

    async def run(
        self, reply: Reply, request: DrawRequest, requester: int, locale: str, extra: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Submit and follow one job to its end; every outcome reaches the user. `extra`
        fields join the picture's reply."""
        with self.in_flight.hold():
            await self._run(reply, request, requester, locale, extra)

    async def _run(
        self, reply: Reply, request: DrawRequest, requester: int, locale: str, extra: Sequence[tuple[str, str]] = ()
    ) -> None:
        try:
            # A name the start-up scan has not reached yet waits for it (engine/indexing.py).
            handle = await while_indexing(
                self.engine, reply, locale, self.engine.submit(request), stopping=lambda: self.draining
            )
        except LoracleError as exc:
            await reply.refuse(exc.localized(locale))
            return
        except Exception as exc:
            await reply.refuse(T.SOMETHING_WRONG.render(locale, ref=log_unexpected(exc, f"submit for {requester}")))
            return
        self.memory.remember(handle.id, request)
        if extra:
            self.extras[handle.id] = list(extra)
        try:
            await self.follow(handle, reply, requester, locale)
        finally:
            self.extras.pop(handle.id, None)

    async def follow(self, handle: JobHandlePort, reply: Reply, requester: int, locale: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._following.add(task)
        try:
            await self._follow(handle, reply, requester, locale)
        finally:
            if task is not None:
                self._following.discard(task)

    async def _follow(self, handle: JobHandlePort, reply: Reply, requester: int, locale: str) -> None:
        view = progress_view(handle.id, requester, locale)
        throttle = Throttle(self.interval)
        pending: str | None = None
        shown: str | None = None
        events = handle.events().__aiter__()
        upcoming: asyncio.Future[Any] | None = None
        try:
            while True:
                if upcoming is None:
                    upcoming = asyncio.ensure_future(events.__anext__())
                timeout = throttle.wait_time() if pending is not None else None
                done, _ = await asyncio.wait({upcoming}, timeout=timeout)
                if not done:
                    # The latest position or step waited out the throttle: show it now.
                    assert pending is not None
                    await reply.progress(pending, view)
                    shown, pending = pending, None
                    throttle.mark()
                    continue
                try:
                    event = upcoming.result()
                except StopAsyncIteration:
                    event = None
                upcoming = None
                if event is None or isinstance(event, (Done, Failed, Cancelled)):
                    await self._finish(event, handle, reply, requester, locale)
                    return
                text = event_text(event, locale)
                if text is None or text == shown:
                    continue
                pending = text
                if throttle.ready():
                    await reply.progress(pending, view)
                    shown, pending = pending, None
                    throttle.mark()
        except Exception as exc:
            ref = log_unexpected(exc, f"following job {handle.id}")
            await reply.private(T.SOMETHING_WRONG.render(locale, ref=ref))
        finally:
            if upcoming is not None and not upcoming.done():
                upcoming.cancel()

    async def _finish(
        self, event: Done | Failed | Cancelled | None, handle: JobHandlePort, reply: Reply, requester: int, locale: str
    ) -> None:
        if isinstance(event, Cancelled):
            await reply.private(T.CANCELLED.render(locale))
            return
        if isinstance(event, Failed):
            if self.draining and isinstance(reply, ChannelReply):
                # Kept for the next start, where it is drawn and posted: a public "the bot
                # is restarting" per waiting job at every restart would only be noise.
                log.info("job %s stays queued for the next start", handle.id)
                return
            await reply.private(T.FAILED.render(locale, error=error_text(event.error, locale, handle.id)))
            return
        try:
            result = event.result if isinstance(event, Done) else await handle.result()
        except LoracleError as exc:
            await reply.private(T.FAILED.render(locale, error=exc.localized(locale)))
            return
        await self.deliver(result, reply, requester, locale)

    async def deliver(self, result: DrawResult, reply: Reply, requester: int, locale: str) -> None:
        """Post the pictures within the interaction's upload limit; if Discord still
        refuses them as too large (40005), encode them again into half that size."""
        limit = reply.upload_limit
        embed = draw_embed(result, locale, self.extras.get(result.job_id, ()))
        for _ in range(UPLOAD_ATTEMPTS):
            try:
                upload = await asyncio.to_thread(
                    fit_images, list(result.images), limit, stem=f"loracle-{result.plan.params.seed}"
                )
            except TooLargeError:
                break
            try:
                await reply.publish(
                    content=upload.note.render(locale) if upload.note else None,
                    embed=embed,
                    uploads=upload.files,
                    view=result_view(result.job_id, requester, locale, len(result.images)),
                    fallback=T.LATE_DELIVERY.render(locale, mention=f"<@{requester}>"),
                )
                return
            except UploadRefused as refused:
                log.info("Discord refused %d bytes for job %s; sending smaller pictures", refused.size, result.job_id)
                limit = min(limit, refused.size) // 2
        await reply.private(T.TOO_BIG.render(locale, limit=T.human_size(limit)))

    # -- shutting down ----------------------------------------------------------------
    async def drain(self, timeout: float) -> bool:
        """Stop the queue (no new jobs; the running one finishes, the waiting ones are
        kept for the next start) and wait until every job followed here has been answered:
        the finished picture posted, the waiting ones told. Must run while the bot is
        still connected, or the last picture is drawn for nobody. False on timeout."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        queue = self.engine.queue
        if queue is not None:
            # A task, not wait_for: a timeout must not cancel the engine's own shutdown.
            self._stopping = stopping = loop.create_task(queue.stop(), name="loracle-queue-stop")
            done, _ = await asyncio.wait({stopping}, timeout=timeout)
            if not done:
                return False
            stopping.result()
        # Requests being answered (a /draw still being planned when the signal came): their
        # answer, "shutting down" at the latest, must go out before the HTTP session closes.
        if not await self.in_flight.wait(deadline - loop.time()):
            return False
        while self._following:
            left = deadline - loop.time()
            if left <= 0:
                return False
            # asyncio.wait never cancels what it waits for (gather would, on a timeout).
            await asyncio.wait(set(self._following), timeout=left)
        return True

    # -- buttons ----------------------------------------------------------------------
    async def on_cancel(self, interaction: discord.Interaction, job_id: str, owner_id: int) -> None:
        locale = locale_of(interaction)
        is_admin = interaction.user.id != owner_id and await self.client.admins.is_admin(interaction.user)
        if interaction.user.id != owner_id and not is_admin:
            await send_private(interaction, T.CANCEL_NOT_YOURS.render(locale))
            return
        # Engine calls may wait on the disk (a cancelled job's row is written to SQLite):
        # answer Discord first, and keep the event loop out of it.
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            cancelled = await asyncio.to_thread(
                self.engine.cancel, job_id, user_id=str(interaction.user.id), is_admin=is_admin
            )
        except LoracleError as exc:
            await send_private(interaction, exc.localized(locale))
            return
        await send_private(interaction, (T.CANCEL_REQUESTED if cancelled else T.ALREADY_FINISHED).render(locale))

    async def on_delete(self, interaction: discord.Interaction, job_id: str, owner_id: int) -> None:
        locale = locale_of(interaction)
        if interaction.user.id != owner_id and not await self.client.admins.is_admin(interaction.user):
            await send_private(interaction, T.DELETE_NOT_YOURS.render(locale))
            return
        await interaction.response.defer()
        try:
            await interaction.delete_original_response()
            return
        except discord.HTTPException:
            if interaction.message is None:
                raise
        # Already gone (two clicks at once, a moderator) is what was asked for.
        with contextlib.suppress(discord.NotFound):
            await interaction.message.delete()

    async def on_reroll(self, interaction: discord.Interaction, job_id: str) -> None:
        locale = locale_of(interaction)
        # Answer Discord first: after a restart the request is read from the job table,
        # and a slow disk must not cost the 3 seconds Discord allows.
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = DeferredReply(interaction)
        original = await self.lookup(job_id)
        if original is None:
            await reply.refuse(T.REROLL_UNKNOWN.render(locale))
            return
        request = dataclasses.replace(
            original,
            loras=list(original.loras),
            seed=None,
            user_id=str(interaction.user.id),
            scope=scope_of(interaction),
            origin=origin_of(interaction),
            locale=locale,
            allow_nsfw=age_restricted(interaction),
        )
        await self.run(reply, request, interaction.user.id, locale)

    async def lookup(self, job_id: str) -> DrawRequest | None:
        remembered = self.memory.get(job_id)
        if remembered is not None:
            return remembered
        # Messages from before a restart: the engine's job table (SQLite, so in a thread:
        # the event loop must not wait on the disk) has the request.
        try:
            return await asyncio.to_thread(self.engine.job_request, job_id)
        except Exception as exc:
            log_unexpected(exc, f"looking up job {job_id}")
        return None

    # -- jobs re-queued after a restart ---------------------------------------------------
    def follow_recovered(self) -> int:
        """Deliver the results of jobs the engine re-queued at start-up to their channels
        (once per process)."""
        if self._recovered_followed:
            return 0
        self._recovered_followed = True
        started = 0
        for handle in self.engine.recovered:
            job = handle.job
            channel_id = channel_of(job.origin)
            if channel_id is None:  # not the bot's (a CLI job), or from no channel
                continue
            request = DrawRequest.from_json(job.request) if job.request else None
            locale = request.locale if request else "en"
            requester = int(job.user_id) if str(job.user_id).isdigit() else 0
            if request is not None:
                self.memory.remember(handle.id, request)
            note = T.RECOVERED_DELIVERY.render(locale, mention=f"<@{requester}>")
            reply = ChannelReply(self.client, channel_id, note, requester or None)
            task = asyncio.get_running_loop().create_task(self.follow(handle, reply, requester, locale))
            self._followers.add(task)
            task.add_done_callback(self._followers.discard)
            started += 1
        return started
