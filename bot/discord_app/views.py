"""Buttons under pictures: cancel (while queued or drawing), reroll and delete, and per
picture upscale, vary (subtle/strong) and remix.

They are `DynamicItem`s: everything a click needs (action, job id, requester) is in the
custom_id, and the classes are registered with the client at start-up, so buttons on
messages sent before a restart keep working without re-attaching views.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.discord_app import texts as T
from bot.discord_app.replies import describe, error_text, send_private
from bot.discord_app.texts import locale_of
from engine.i18n import Text

if TYPE_CHECKING:
    from bot.discord_app.client import LoracleBot
    from bot.discord_app.images import PictureService
    from bot.discord_app.jobs import DrawService
    from engine.queue.job_queue import QueueEntry

Button = discord.ui.Button[discord.ui.View]

_JOB = r"(?P<job>[0-9a-f]{8,64})"
_USER = r"(?P<user>[0-9]{1,20})"


def _label(item: discord.ui.Item[Any], default: str) -> str:
    # The clicked button as Discord sent it back: its label is in the user's language.
    return (item.label if isinstance(item, discord.ui.Button) else None) or default


def _service(interaction: discord.Interaction) -> DrawService:
    return cast("LoracleBot", interaction.client).draws


async def _guarded(interaction: discord.Interaction, action: Awaitable[None]) -> None:
    # Button callbacks run outside the command tree's error handler.
    try:
        await action
    except Exception as exc:
        await send_private(interaction, error_text(exc, locale_of(interaction), describe(interaction)))


class CancelButton(discord.ui.DynamicItem[Button], template=re.compile(rf"^loracle:cancel:{_JOB}:{_USER}$")):
    def __init__(self, job_id: str, user_id: int, label: str = "Cancel") -> None:
        super().__init__(
            discord.ui.Button(
                label=label, emoji="✖️", style=discord.ButtonStyle.secondary, custom_id=f"loracle:cancel:{job_id}:{user_id}"
            )
        )
        self.job_id = job_id
        self.user_id = user_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]) -> CancelButton:
        return cls(match["job"], int(match["user"]), label=_label(item, "Cancel"))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _guarded(interaction, _service(interaction).on_cancel(interaction, self.job_id, self.user_id))


class RerollButton(discord.ui.DynamicItem[Button], template=re.compile(rf"^loracle:reroll:{_JOB}:{_USER}$")):
    def __init__(self, job_id: str, user_id: int, label: str = "Reroll") -> None:
        super().__init__(
            discord.ui.Button(
                label=label, emoji="🎲", style=discord.ButtonStyle.primary, custom_id=f"loracle:reroll:{job_id}:{user_id}"
            )
        )
        self.job_id = job_id
        self.user_id = user_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]) -> RerollButton:
        return cls(match["job"], int(match["user"]), label=_label(item, "Reroll"))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _guarded(interaction, _service(interaction).on_reroll(interaction, self.job_id))


class DeleteButton(discord.ui.DynamicItem[Button], template=re.compile(rf"^loracle:delete:{_JOB}:{_USER}$")):
    def __init__(self, job_id: str, user_id: int, label: str = "Delete") -> None:
        super().__init__(
            discord.ui.Button(
                label=label, emoji="🗑️", style=discord.ButtonStyle.danger, custom_id=f"loracle:delete:{job_id}:{user_id}"
            )
        )
        self.job_id = job_id
        self.user_id = user_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]) -> DeleteButton:
        return cls(match["job"], int(match["user"]), label=_label(item, "Delete"))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _guarded(interaction, _service(interaction).on_delete(interaction, self.job_id, self.user_id))


# action -> (label, emoji, style); the action is the custom_id's second part.
PICTURE_ACTIONS: dict[str, tuple[Text, str, discord.ButtonStyle]] = {
    "upscale": (T.BUTTON_UPSCALE, "🔍", discord.ButtonStyle.success),
    "vary-subtle": (T.BUTTON_VARY_SUBTLE, "🌱", discord.ButtonStyle.secondary),
    "vary-strong": (T.BUTTON_VARY_STRONG, "🌪️", discord.ButtonStyle.secondary),
    "remix": (T.BUTTON_REMIX, "✏️", discord.ButtonStyle.secondary),
}
PICTURES_WITH_BUTTONS = 4  # Discord allows five rows: reroll/delete, then one per picture
_ACTION = r"(?P<action>upscale|vary-subtle|vary-strong|remix)"


def _pictures(interaction: discord.Interaction) -> PictureService:
    return cast("LoracleBot", interaction.client).pictures


class PictureButton(
    discord.ui.DynamicItem[Button], template=re.compile(rf"^loracle:{_ACTION}:{_JOB}:(?P<index>[0-9]):{_USER}$")
):
    """Upscale, vary or remix one picture of a finished job (its index in the custom_id)."""

    def __init__(self, action: str, job_id: str, index: int, user_id: int, label: str | None = None, row: int | None = None) -> None:
        text, emoji, style = PICTURE_ACTIONS[action]
        super().__init__(
            discord.ui.Button(
                label=label or text.en, emoji=emoji, style=style, custom_id=f"loracle:{action}:{job_id}:{index}:{user_id}"
            ),
            row=row,
        )
        self.action = action
        self.job_id = job_id
        self.index = index
        self.user_id = user_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]) -> PictureButton:
        action = match["action"]
        return cls(action, match["job"], int(match["index"]), int(match["user"]), label=_label(item, PICTURE_ACTIONS[action][0].en))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _guarded(
            interaction, _pictures(interaction).on_picture(interaction, self.action, self.job_id, self.index, self.user_id)
        )


DYNAMIC_ITEMS = (CancelButton, RerollButton, DeleteButton, PictureButton)


def progress_view(job_id: str, user_id: int, locale: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id, user_id, T.BUTTON_CANCEL.render(locale)))
    return view


def result_view(job_id: str, user_id: int, locale: str, count: int = 1) -> discord.ui.View:
    """Reroll and delete, then a row per picture (the first four) to upscale, vary or remix it."""
    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(job_id, user_id, T.BUTTON_REROLL.render(locale)))
    view.add_item(DeleteButton(job_id, user_id, T.BUTTON_DELETE.render(locale)))
    for index in range(min(count, PICTURES_WITH_BUTTONS)):
        suffix = f" {index + 1}" if count > 1 else ""
        for action, (text, _, _) in PICTURE_ACTIONS.items():
            view.add_item(PictureButton(action, job_id, index, user_id, text.render(locale) + suffix, row=index + 1))
    return view


def queue_view(entries: Sequence[QueueEntry], user_id: int, locale: str) -> discord.ui.View | None:
    """Cancel buttons for a user's jobs in /queue (at most one row of five)."""
    items = entries[:5]
    if not items:
        return None
    view = discord.ui.View(timeout=None)
    for index, entry in enumerate(items, start=1):
        label = f"{T.BUTTON_CANCEL.render(locale)} {index}"
        view.add_item(CancelButton(entry.job.id, user_id, label))
    return view


class ConfirmView(discord.ui.View):
    """Two buttons, usable only by the person who asked; `result` is True, False or None
    (no answer before the timeout).

    A click is acknowledged at once (a deferred update): what it confirms (deleting a
    7 GB file, a database write) can outlast the 3 seconds Discord gives a click, so the
    outcome is shown later by editing the question, through the command's own token."""

    def __init__(self, owner_id: int, confirm_label: str, cancel_label: str, timeout: float = 120.0) -> None:
        super().__init__(timeout=timeout)
        self.owner_id = owner_id
        self.result: bool | None = None
        self.answer: discord.Interaction | None = None
        confirm: Button = discord.ui.Button(label=confirm_label, style=discord.ButtonStyle.danger)
        cancel: Button = discord.ui.Button(label=cancel_label, style=discord.ButtonStyle.secondary)
        confirm.callback = self._confirm  # type: ignore[method-assign]
        cancel.callback = self._cancel  # type: ignore[method-assign]
        self.add_item(confirm)
        self.add_item(cancel)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.owner_id

    async def _confirm(self, interaction: discord.Interaction) -> None:
        await self._answer(interaction, True)

    async def _cancel(self, interaction: discord.Interaction) -> None:
        await self._answer(interaction, False)

    async def _answer(self, interaction: discord.Interaction, result: bool) -> None:
        self.result, self.answer = result, interaction
        try:
            await interaction.response.defer()
        except discord.HTTPException:
            pass  # the click came too late to acknowledge; the outcome is shown anyway
        finally:
            self.stop()
