"""Small readers of what the bot did in a SimCord world."""

from __future__ import annotations

from typing import Any

import discord
import simcord
from simcord.backend.errors import BackendError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UNKNOWN_MESSAGE = 10008  # Discord's JSON error code


def callback_types(env: simcord.Env) -> list[int]:
    """Interaction callback types the bot sent, in order (5 = deferred, 4 = message, ...)."""
    return [
        r.json["type"]
        for r in env.http_requests
        if r.method == "POST" and r.path.endswith("/callback") and isinstance(r.json, dict)
    ]


def attachment_bytes(env: simcord.Env, attachment: discord.Attachment) -> bytes:
    data = env.backend.cdn.get(attachment.url)
    assert data is not None, f"no stored upload at {attachment.url}"
    return data


def field(embed: discord.Embed, name: str) -> str:
    for item in embed.fields:
        if item.name == name:
            return item.value or ""
    raise AssertionError(f"no field {name!r} in {[f.name for f in embed.fields]}")


def button_ids(message: discord.Message) -> list[str]:
    return [
        child.custom_id or ""
        for row in message.components
        for child in getattr(row, "children", [])
        if isinstance(child, discord.Button)
    ]


def private_text(result: simcord.InteractionResult) -> str:
    """The ephemeral text the user got, as a reply or as a follow-up."""
    messages = [m for m in [result.response, *result.followups] if m is not None and m.ephemeral]
    assert messages, f"no ephemeral answer in {result!r}"
    return messages[-1].content


def edits_of_original(env: simcord.Env) -> list[Any]:
    return [r.json for r in env.http_requests if r.method == "PATCH" and r.path.endswith("/messages/@original")]


def public(result: simcord.InteractionResult) -> discord.Message:
    """The public message a command or button produced (a follow-up of its private reply)."""
    messages = [m for m in result.followups if not m.ephemeral]
    assert messages, f"no public message in {result!r}"
    return messages[-1].message


def progress_text(result: simcord.InteractionResult) -> str:
    """The private "thinking…" reply as it stands (queue position, steps, errors)."""
    assert result.response is not None, "the private reply is gone"
    assert result.response.ephemeral
    return result.response.content


def still_exists(env: simcord.Env, message: discord.Message) -> bool:
    """False only for Discord's "Unknown Message" (10008); any other failure is raised, so
    `assert not still_exists(...)` cannot pass on an unrelated error."""
    try:
        env.backend.get_message(message.channel.id, message.id)
    except BackendError as exc:
        if exc.code != UNKNOWN_MESSAGE:
            raise
        return False
    return True


def callback_flags(env: simcord.Env) -> list[int]:
    return [
        int((r.json.get("data") or {}).get("flags") or 0)
        for r in env.http_requests
        if r.method == "POST" and r.path.endswith("/callback") and isinstance(r.json, dict)
    ]


def command_id(world: Any, name: str) -> int:
    """The id Discord gave a synced top-level command."""
    return next(command.id for command in world.bot.synced if command.name == name)


def acknowledged(env: simcord.Env) -> bool:
    """Whether the newest interaction has been answered (deferred or replied) by now;
    for checks made from inside an engine call, which may run in a thread."""
    latest = max(env.backend.interactions.values(), key=lambda record: record.id)
    return bool(latest.responded)
