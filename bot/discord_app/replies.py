"""Answering interactions: private errors, unexpected failures, and where a deferred
command's progress and result go (`DeferredReply`, or `ChannelReply` for jobs that
outlived their interaction).

Rules every reply follows: user errors (engine.errors.LoracleError) are shown privately in
the user's language; anything unexpected is logged with its traceback and a short
reference, and the user gets "something went wrong" with that reference, never a crash
and never an interaction left "thinking" forever. Nothing here logs interaction tokens.
"""

from __future__ import annotations

import contextlib
import io
import logging
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import discord

from bot.discord_app import limits
from bot.discord_app import texts as T
from bot.discord_app.hints import error_hint
from bot.discord_app.texts import locale_of
from engine.errors import LoracleError

if TYPE_CHECKING:
    pass

log = logging.getLogger("loracle.bot")


def describe(interaction: Any) -> str:
    """Where an interaction came from, for logs (no token, no message content)."""
    command = getattr(getattr(interaction, "command", None), "qualified_name", None)
    data = getattr(interaction, "data", None) or {}
    what = command or data.get("custom_id") or data.get("name") or "?"
    return f"{what} user={getattr(interaction.user, 'id', '?')} guild={interaction.guild_id} channel={interaction.channel_id}"


def log_unexpected(error: BaseException, where: str) -> str:
    """Log an unexpected exception with its traceback; returns the reference shown to the user."""
    ref = uuid.uuid4().hex[:8]
    log.error("unexpected error (ref %s) in %s", ref, where, exc_info=error)
    return ref


def error_text(error: BaseException, locale: str, where: str) -> str:
    if isinstance(error, LoracleError):
        return error_hint(error, locale)
    return T.SOMETHING_WRONG.render(locale, ref=log_unexpected(error, where))


def age_restricted(interaction: Any) -> bool:
    """True in age-restricted (NSFW) channels and threads under them; DMs are not."""
    channel = interaction.channel
    is_nsfw = getattr(channel, "is_nsfw", None)
    try:
        return bool(is_nsfw()) if callable(is_nsfw) else False
    except Exception:  # a partial channel without the flag: treat as not restricted
        return False


def _content(content: str | None) -> dict[str, Any]:
    return {"content": content} if content is not None else {}


async def send_private(interaction: discord.Interaction, content: str | None = None, **kwargs: Any) -> bool:
    """An ephemeral message, whether or not the interaction was answered yet; False if
    Discord would not take it (e.g. the 15-minute interaction token has expired)."""
    if content is not None:
        content = limits.clip(content, limits.CONTENT)
    try:
        if interaction.response.is_done():
            # an embed-only message leaves content out (discord.py types it as str)
            await interaction.followup.send(**_content(content), ephemeral=True, **kwargs)
        else:
            await interaction.response.send_message(content, ephemeral=True, **kwargs)
    except discord.HTTPException as exc:
        log.warning("could not answer %s: %s", describe(interaction), exc)
        return False
    return True


async def report_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the user what went wrong, privately and in their language."""
    original = getattr(error, "original", None)
    if isinstance(original, BaseException):
        error = original
    await send_private(interaction, error_text(error, locale_of(interaction), describe(interaction)))


class UploadRefused(Exception):
    """Discord answered 413 / 40005 "Request entity too large": the pictures must be sent
    smaller (the announced `attachment_size_limit` is not always what a proxy or Discord
    accepts). Raised by `Reply.publish` so the caller can encode them again."""

    def __init__(self, size: int) -> None:
        super().__init__(f"Discord refused {size} bytes of attachments")
        self.size = size


def too_large(error: discord.HTTPException) -> bool:
    return error.status == 413 or error.code == 40005


def files_of(uploads: list[tuple[str, bytes]]) -> list[discord.File]:
    # A discord.File is consumed by one request, so every attempt builds fresh ones.
    return [discord.File(io.BytesIO(data), filename=name) for name, data in uploads]


class Reply(Protocol):
    """Where a job's progress and outcome go (see replies.DeferredReply)."""

    @property
    def upload_limit(self) -> int: ...

    async def progress(self, content: str, view: discord.ui.View | None) -> None: ...

    async def private(self, content: str) -> None: ...

    async def refuse(self, text: str) -> None: ...

    async def publish(
        self,
        *,
        content: str | None,
        embed: discord.Embed | None = None,
        uploads: list[tuple[str, bytes]] | None = None,
        view: discord.ui.View | None = None,
        fallback: str | None = None,
    ) -> None: ...


class DeferredReply:
    """An interaction deferred privately: the "thinking…" reply only the user sees.

    Progress and errors edit that private reply, so every refusal stays private. A result
    meant for everyone (a picture, an info card) is posted as a new public follow-up,
    after which the private reply is removed. Discord turns the *first* follow-up after a
    defer into an edit of the deferred reply (keeping it private), so the private reply
    is completed first when nothing edited it yet.

    If the interaction token has expired (15 minutes) or the message is gone, progress
    edits stop, and a public result is posted to the channel instead, mentioning the user,
    so a long wait in the queue never loses a picture.
    """

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self._edited = False
        self._editable = True

    @property
    def upload_limit(self) -> int:
        limit = getattr(self.interaction, "filesize_limit", None)
        return int(limit) if limit else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    async def _edit(self, **fields: Any) -> bool:
        if not self._editable:
            return False
        try:
            await self.interaction.edit_original_response(**fields)
        except discord.HTTPException as exc:
            log.info("reply edit stopped for %s: %s", describe(self.interaction), exc)
            self._editable = False
            return False
        self._edited = True
        return True

    async def progress(self, content: str, view: discord.ui.View | None) -> None:
        await self._edit(content=limits.clip(content, limits.CONTENT), view=view)

    async def private(self, content: str) -> None:
        """The outcome only the user should see (an error, "cancelled")."""
        text = limits.clip(content, limits.CONTENT)
        if not await self._edit(content=text, embed=None, attachments=[], view=None):
            await send_private(self.interaction, text)

    async def refuse(self, text: str) -> None:
        await self.private(text)

    async def publish(
        self,
        *,
        content: str | None,
        embed: discord.Embed | None = None,
        uploads: list[tuple[str, bytes]] | None = None,
        view: discord.ui.View | None = None,
        fallback: str | None = None,
    ) -> None:
        """Post the result for everyone; `fallback` (a mention) leads the channel message
        used when the interaction can no longer answer."""
        uploads = uploads or []
        if not self._edited:
            await self._edit(content=T.DONE.render(locale_of(self.interaction)), view=None)
        kwargs: dict[str, Any] = {"embed": embed, "files": files_of(uploads), "wait": True}
        if view is not None:
            kwargs["view"] = view
        try:
            await self.interaction.followup.send(**_content(limits.clip(content, limits.CONTENT) if content else None), **kwargs)
        except discord.HTTPException as exc:
            if too_large(exc) and uploads:
                raise UploadRefused(_size(uploads)) from exc
            log.info("result follow-up failed for %s (%s); posting to the channel", describe(self.interaction), exc)
            if not await self._post_to_channel(content, embed, uploads, view, fallback):
                # Never leave "✅ Done." as the last word when nobody got the picture.
                await self.private(T.NOT_DELIVERED.render(locale_of(self.interaction)))
            return
        with contextlib.suppress(discord.HTTPException):
            await self.interaction.delete_original_response()

    async def _post_to_channel(
        self,
        content: str | None,
        embed: discord.Embed | None,
        uploads: list[tuple[str, bytes]],
        view: discord.ui.View | None,
        fallback: str | None,
    ) -> bool:
        try:
            await _send_to_channel(
                self.interaction.channel, (fallback, content), embed, uploads, view, ping=self.interaction.user.id
            )
        except discord.HTTPException as exc:
            if too_large(exc) and uploads:
                raise UploadRefused(_size(uploads)) from exc
            log.warning("could not deliver the result of %s: %s", describe(self.interaction), exc)
            return False
        except AttributeError as exc:  # no channel to post to (e.g. a group DM of a user-installed app)
            log.warning("could not deliver the result of %s: %s", describe(self.interaction), exc)
            return False
        return True


def _size(uploads: list[tuple[str, bytes]]) -> int:
    return sum(len(data) for _, data in uploads)


async def _send_to_channel(
    channel: Any,
    parts: tuple[str | None, ...],
    embed: discord.Embed | None,
    uploads: list[tuple[str, bytes]],
    view: discord.ui.View | None,
    *,
    ping: int | None,
) -> None:
    """A new channel message (the interaction can no longer answer): the parts joined,
    pinging the requester and nobody else. The text can carry what people typed (an
    error naming a LoRA, say), so `users=True` would let a `<@id>` in it ping a
    stranger."""
    text = limits.clip(" ".join(part for part in parts if part), limits.CONTENT) or None
    kwargs: dict[str, Any] = {"embed": embed, "files": files_of(uploads)}
    if view is not None:
        kwargs["view"] = view
    mentions = discord.AllowedMentions(
        everyone=False, roles=False, users=[discord.Object(id=ping)] if ping else False, replied_user=False
    )
    await channel.send(text, allowed_mentions=mentions, **kwargs)


class ChannelReply:
    """A reply for jobs re-queued after a restart: their interaction is gone, so the result
    is posted to the channel they came from, mentioning the requester."""

    def __init__(self, client: discord.Client, channel_id: int, note: str, requester: int | None = None) -> None:
        self._client = client
        self._channel_id = channel_id
        self._note = note  # says whose picture this is, and why it comes as a new message
        self._requester = requester  # the only user the message may ping

    @property
    def upload_limit(self) -> int:
        channel = self._client.get_channel(self._channel_id)
        guild = getattr(channel, "guild", None)
        return int(guild.filesize_limit) if guild is not None else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    async def progress(self, content: str, view: discord.ui.View | None) -> None:
        return None

    async def publish(
        self,
        *,
        content: str | None,
        embed: discord.Embed | None = None,
        uploads: list[tuple[str, bytes]] | None = None,
        view: discord.ui.View | None = None,
        fallback: str | None = None,
    ) -> None:
        uploads = uploads or []
        try:
            channel = self._client.get_channel(self._channel_id) or await self._client.fetch_channel(self._channel_id)
            await _send_to_channel(channel, (self._note, content), embed, uploads, view, ping=self._requester)
        except discord.HTTPException as exc:
            if too_large(exc) and uploads:
                raise UploadRefused(_size(uploads)) from exc
            log.warning("could not deliver a recovered job to channel %s: %s", self._channel_id, exc)
        except AttributeError as exc:
            log.warning("could not deliver a recovered job to channel %s: %s", self._channel_id, exc)

    async def private(self, content: str) -> None:
        # The interaction is gone; the channel (with a mention) is the only way to tell.
        await self.publish(content=content)

    async def refuse(self, text: str) -> None:
        await self.private(text)
