"""Pictures in: the Upscale / Vary / Remix buttons under a finished picture, `/draw image:`
and `like:`, and the "Draw like this" and "Image info" message context menus.

Each turns a picture into an engine request (engine.upscale_request, vary_request,
like_request, store_image) and hands it to `DrawService.run`, so it meets the same queue,
progress, delivery and reply (LoRAs and weights applied) as /draw. Discord gets its answer
(a defer, or the remix modal) before anything is downloaded or read; attachments over the
size limit are refused before a byte is read, and the bytes themselves are judged by the
engine: a file name or content type is only a hint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.discord_app import limits
from bot.discord_app import texts as T
from bot.discord_app.defaults import apply_defaults, lora_text, used_text
from bot.discord_app.jobs import origin_of, scope_of
from bot.discord_app.lifecycle import STOPPING
from bot.discord_app.parsing import DrawOptions
from bot.discord_app.render import safe
from bot.discord_app.render_images import image_info_embed, picture_fields
from bot.discord_app.replies import DeferredReply, age_restricted, describe, error_text, send_private
from bot.discord_app.texts import locale_of
from engine.errors import ImageInputError, LoracleError
from engine.planning.lora_weights import parse_lora_list
from engine.planning.prompt_checks import check_prompt_text
from engine.requests import DrawRequest

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot
    from bot.discord_app.jobs import DrawService
    from bot.discord_app.port import EnginePort

log = logging.getLogger("loracle.bot")

# How far "Vary" moves away from the picture (image-to-image denoising strength).
VARY_SUBTLE = 0.35
VARY_STRONG = 0.65
VARY_STRENGTHS = {"vary-subtle": VARY_SUBTLE, "vary-strong": VARY_STRONG}

DISCORD_MAX_BYTES = 25 * 1024 * 1024  # what Discord lets a user upload without Nitro
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
LOOKUP_TIMEOUT_S = 2.0  # a modal must be the first answer, within Discord's 3 seconds
MODAL_TIMEOUT_S = 15 * 60
TEXT_INPUT_MAX = 4000  # Discord's limit for one text input
MODAL_TITLE_MAX = 45
FIELD_LABEL_MAX = 45


def max_attachment_bytes(settings: Any) -> int:
    return min(DISCORD_MAX_BYTES, int(getattr(settings, "max_attachment_mb", 20)) * 1024 * 1024)


def looks_like_picture(attachment: Any) -> bool:
    """A hint only (the engine reads the bytes): an image content type or a picture's extension."""
    content_type = (getattr(attachment, "content_type", None) or "").split(";")[0].strip().lower()
    return content_type.startswith("image/") or str(attachment.filename).lower().endswith(PICTURE_EXTENSIONS)


def check_attachment(attachment: Any, limit: int) -> None:
    """Refuse before reading: too large, or plainly not a picture."""
    name = limits.clip(safe(str(attachment.filename)), 80)
    if int(attachment.size) > limit:
        raise ImageInputError(T.ATTACHMENT_TOO_LARGE, name=name, size=T.human_size(attachment.size), limit=T.human_size(limit))
    if not looks_like_picture(attachment):
        raise ImageInputError(T.NOT_A_PICTURE, name=name)


def picture_in(message: discord.Message) -> discord.Attachment | None:
    """The first attachment of `message` that looks like a picture."""
    return next((a for a in message.attachments if looks_like_picture(a)), None)


async def read_attachment(attachment: discord.Attachment) -> bytes:
    # An HTTP download on the event loop's own session: nothing blocks while it runs.
    try:
        return await attachment.read()
    except (TimeoutError, discord.HTTPException, aiohttp.ClientError) as exc:
        log.info("could not download attachment %s: %s", attachment.id, exc)
        raise ImageInputError(T.ATTACHMENT_UNREADABLE, name=limits.clip(safe(attachment.filename), 80)) from exc


def stamp(request: DrawRequest, interaction: discord.Interaction) -> DrawRequest:
    """The request made the clicking user's own: who, where, which language, NSFW or not."""
    request.user_id = str(interaction.user.id)
    request.scope = scope_of(interaction)
    request.origin = origin_of(interaction)
    request.locale = locale_of(interaction)
    request.allow_nsfw = age_restricted(interaction)
    return request


def merge_like(base: DrawRequest, given: DrawRequest, options: DrawOptions) -> DrawRequest:
    """The picture's request with every /draw option that was given put over it."""
    merged = dataclasses.replace(
        base,
        loras=list(base.loras),
        user_id=given.user_id,
        scope=given.scope,
        origin=given.origin,
        locale=given.locale,
        allow_nsfw=given.allow_nsfw,
    )
    if options.prompt.strip():
        merged.prompt = given.prompt
    if options.negative is not None:
        merged.negative = given.negative
    if options.checkpoint is not None:
        merged.checkpoint = given.checkpoint
    if options.loras is not None:
        merged.loras = list(given.loras)
    if options.size is not None:
        merged.width, merged.height = given.width, given.height
    for name in ("steps", "cfg", "seed", "strength", "hires"):
        if getattr(options, name) is not None:
            setattr(merged, name, getattr(given, name))
    if options.count is not None:
        merged.count = given.count
    return merged


class PictureService:
    def __init__(self, client: LoracleBot) -> None:
        self.client = client

    @property
    def engine(self) -> EnginePort:
        return self.client.engine

    @property
    def draws(self) -> DrawService:
        return self.client.draws

    @property
    def max_bytes(self) -> int:
        return max_attachment_bytes(self.client.settings)

    # -- /draw image: and like: --------------------------------------------------------
    def check_options(self, options: DrawOptions) -> None:
        for attachment in (options.image, options.like):
            if attachment is not None:
                check_attachment(attachment, self.max_bytes)

    async def prepare_draw(
        self, interaction: discord.Interaction, options: DrawOptions, request: DrawRequest, locale: str
    ) -> tuple[DrawRequest, list[tuple[str, str]]]:
        """The /draw request with its pictures read and the user's defaults applied, and
        the reply's extra fields saying what came from where. Runs after the defer."""
        extra: list[tuple[str, str]] = []
        user_id = str(interaction.user.id)
        if options.like is not None:
            like = await self.engine.like_request(
                await read_attachment(options.like), user_id=user_id, allow_nsfw=request.allow_nsfw
            )
            request = merge_like(like.request, request, options)
            extra += picture_fields(like.matches, like.warnings, locale)
        if options.image is not None:
            stored = await self.engine.store_image(await read_attachment(options.image))
            request.init_image = stored.id
        if options.like is None:
            # the picture of `like` says everything; defaults fill only a plain /draw
            defaults = await asyncio.to_thread(self.engine.user_defaults, user_id)
            note = used_text(defaults, apply_defaults(request, options, defaults), locale)
            if note:
                extra.append((T.F_YOUR_DEFAULTS.render(locale), note))
        return request, extra

    # -- buttons under a picture ---------------------------------------------------------
    async def on_picture(self, interaction: discord.Interaction, action: str, job_id: str, index: int, owner_id: int) -> None:
        locale = locale_of(interaction)
        if interaction.user.id != owner_id:
            await send_private(interaction, T.DRAW_YOUR_OWN.render(locale))
            return
        if self.draws.draining:
            await send_private(interaction, STOPPING.render(locale))
            return
        if action == "remix":
            await self.open_remix(interaction, job_id, index, locale)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = DeferredReply(interaction)
        with self.draws.in_flight.hold():
            try:
                data = await self.engine.job_image(job_id, index)
                if data is None:
                    await reply.refuse(T.PICTURE_GONE.render(locale))
                    return
                user_id, allow_nsfw = str(interaction.user.id), age_restricted(interaction)
                if action == "upscale":
                    like = await self.engine.upscale_request(data, user_id=user_id, allow_nsfw=allow_nsfw)
                else:
                    like = await self.engine.vary_request(
                        data, strength=VARY_STRENGTHS[action], user_id=user_id, allow_nsfw=allow_nsfw
                    )
            except Exception as exc:
                await reply.refuse(error_text(exc, locale, describe(interaction)))
                return
            # Loracle's own picture: every resource should match by hash; say so when not.
            unusual = [m for m in like.matches if m.how != "hash"]
            extra = picture_fields(unusual, like.warnings, locale)
            await self.draws.run(reply, stamp(like.request, interaction), interaction.user.id, locale, extra)

    async def open_remix(self, interaction: discord.Interaction, job_id: str, index: int, locale: str) -> None:
        original = self.draws.memory.get(job_id)
        if original is None:
            try:
                original = await asyncio.wait_for(asyncio.to_thread(self.engine.job_request, job_id), LOOKUP_TIMEOUT_S)
            except Exception as exc:  # a slow or failing disk: the click is answered anyway
                log.info("remix lookup of job %s failed: %s", job_id, exc)
        if original is None:
            await send_private(interaction, T.REROLL_UNKNOWN.render(locale))
            return
        await interaction.response.send_modal(RemixModal(self, original, index, locale))

    async def remix_submitted(
        self, interaction: discord.Interaction, original: DrawRequest, index: int, prompt: str, negative: str, loras: str
    ) -> None:
        locale = locale_of(interaction)
        settings = self.engine.settings
        try:
            check_prompt_text(prompt, negative, limit=settings.max_prompt_chars)
            parsed = parse_lora_list(loras, max_loras=settings.max_loras)
        except LoracleError as exc:
            await send_private(interaction, error_text(exc, locale, describe(interaction)))
            return
        # The same seed as the picture clicked (image i of a batch is drawn with seed + i),
        # so what changes is only what was edited.
        seed = None if original.seed is None else original.seed + index
        request = dataclasses.replace(original, prompt=prompt, negative=negative, loras=parsed, seed=seed, count=1)
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.draws.run(DeferredReply(interaction), stamp(request, interaction), interaction.user.id, locale)

    # -- message context menus -----------------------------------------------------------
    async def _picture_of(self, interaction: discord.Interaction, message: discord.Message, locale: str) -> discord.Attachment | None:
        """The message's picture, checked before reading; None when answered already."""
        attachment = picture_in(message)
        if attachment is None:
            await send_private(interaction, T.NO_PICTURE.render(locale))
            return None
        try:
            check_attachment(attachment, self.max_bytes)
        except LoracleError as exc:
            await send_private(interaction, error_text(exc, locale, describe(interaction)))
            return None
        return attachment

    async def draw_like(self, interaction: discord.Interaction, message: discord.Message) -> None:
        locale = locale_of(interaction)
        if self.draws.draining:
            await send_private(interaction, STOPPING.render(locale))
            return
        attachment = await self._picture_of(interaction, message, locale)
        if attachment is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = DeferredReply(interaction)
        with self.draws.in_flight.hold():
            try:
                like = await self.engine.like_request(
                    await read_attachment(attachment), user_id=str(interaction.user.id), allow_nsfw=age_restricted(interaction)
                )
            except Exception as exc:
                await reply.refuse(error_text(exc, locale, describe(interaction)))
                return
            extra = picture_fields(like.matches, like.warnings, locale)
            await self.draws.run(reply, stamp(like.request, interaction), interaction.user.id, locale, extra)

    async def image_info(self, interaction: discord.Interaction, message: discord.Message) -> None:
        locale = locale_of(interaction)
        attachment = await self._picture_of(interaction, message, locale)
        if attachment is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = DeferredReply(interaction)
        try:
            data = await read_attachment(attachment)
            # Verdicts against the checkpoint this user draws with: their default, else the admin's.
            defaults = await asyncio.to_thread(self.engine.user_defaults, str(interaction.user.id))
            info = await self.engine.image_info(data, checkpoint=defaults.checkpoint, allow_nsfw=age_restricted(interaction))
        except Exception as exc:
            await reply.refuse(error_text(exc, locale, describe(interaction)))
            return
        try:
            await interaction.edit_original_response(embed=image_info_embed(info, locale))
        except discord.HTTPException as exc:
            log.info("could not show image info to %s: %s", describe(interaction), exc)


class RemixModal(discord.ui.Modal):
    """Prompt, negative prompt and LoRAs of the picture, to edit; submitted, they are drawn
    with the picture's own seed. Lives in memory: after a restart, click Remix again."""

    def __init__(self, service: PictureService, original: DrawRequest, index: int, locale: str) -> None:
        super().__init__(title=limits.clip(T.REMIX_TITLE.render(locale), MODAL_TITLE_MAX), timeout=MODAL_TIMEOUT_S)
        self.service = service
        self.original = original
        self.index = index
        self.prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label=limits.clip(T.REMIX_PROMPT.render(locale), FIELD_LABEL_MAX),
            style=discord.TextStyle.paragraph,
            custom_id="remix:prompt",
            default=original.prompt[:TEXT_INPUT_MAX],
            max_length=TEXT_INPUT_MAX,
        )
        self.negative: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label=limits.clip(T.REMIX_NEGATIVE.render(locale), FIELD_LABEL_MAX),
            style=discord.TextStyle.paragraph,
            custom_id="remix:negative",
            default=original.negative[:TEXT_INPUT_MAX] or None,
            required=False,
            max_length=TEXT_INPUT_MAX,
        )
        self.loras: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label=limits.clip(T.REMIX_LORAS.render(locale), FIELD_LABEL_MAX),
            custom_id="remix:loras",
            default=lora_text(list(original.loras))[:TEXT_INPUT_MAX] or None,
            required=False,
            max_length=TEXT_INPUT_MAX,
        )
        for item in (self.prompt, self.negative, self.loras):
            self.add_item(item)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.service.remix_submitted(
            interaction, self.original, self.index, self.prompt.value, self.negative.value or "", self.loras.value or ""
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: Any = None, /) -> None:
        await send_private(interaction, error_text(error, locale_of(interaction), describe(interaction)))
