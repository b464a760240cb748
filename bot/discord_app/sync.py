"""Registering the slash commands with Discord, only when something changed.

A bulk overwrite (`CommandTree.sync`) on every start is what discord.py's docs warn
against: the endpoint is rate-limited, every command Discord has to create counts against
a daily limit (200 a day, per guild for guild commands), and `restart: unless-stopped`
turns a crash loop into a sync loop. So the bot remembers what it registered last
(<data dir>/discord-commands.json: a digest of the exact translated payload, and the ids
and versions Discord gave back) and syncs a target (global, or one of LORACLE_GUILD_IDS)
only when the payload changed or Discord's list is no longer the one it registered (a
command deleted in the portal, another copy of the bot syncing with the same token).
Asking Discord is one GET per target; deleting the file forces a full sync.

Commands left where they are no longer wanted are removed: global ones once the bot syncs
per guild (else every listed server shows each command twice: its own copy and the
global one), and the copies in a server that left LORACLE_GUILD_IDS.

A target that cannot be synced (a guild id the bot was never invited to) is logged and
skipped: the other targets and the bot itself carry on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import discord
from discord import app_commands

from engine.atomic import write_text_atomic

log = logging.getLogger("loracle.bot")

STATE_FILE = "discord-commands.json"
GLOBAL = "global"


def state_path(data_root: Path) -> Path:
    return data_root / STATE_FILE


@dataclass
class SyncReport:
    synced: list[app_commands.AppCommand] = field(default_factory=list)  # as Discord returned them
    updated: list[str] = field(default_factory=list)  # targets written ("global" or a guild id)
    unchanged: list[str] = field(default_factory=list)  # targets already up to date
    cleared: list[str] = field(default_factory=list)  # targets whose stale commands were removed
    failed: list[str] = field(default_factory=list)


def load_state(path: Path, application_id: int) -> dict[str, Any]:
    """The recorded targets, {} when there is no (readable) record for this application."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("application_id") != str(application_id):
        return {}
    targets = data.get("targets")
    return targets if isinstance(targets, dict) else {}


def save_state(path: Path, application_id: int, targets: dict[str, Any]) -> None:
    payload = json.dumps({"application_id": str(application_id), "targets": targets}, indent=1, sort_keys=True)
    write_text_atomic(path, payload)


async def command_payload(tree: app_commands.CommandTree, guild: discord.abc.Snowflake | None) -> list[dict[str, Any]]:
    """Exactly what `tree.sync(guild=guild)` would send (translations included)."""
    commands = tree.get_commands(guild=guild)
    translator = tree.translator
    if translator is not None:
        return [await command.get_translated_payload(tree, translator) for command in commands]
    return [command.to_dict(tree) for command in commands]


def digest(payload: list[dict[str, Any]]) -> str:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def registered(commands: list[dict[str, Any]]) -> list[list[str]]:
    """What identifies a registered list: each command's id and version (the version
    changes whenever anyone edits the command)."""
    return sorted([str(c.get("id")), str(c.get("version"))] for c in commands)


class CommandSync:
    def __init__(self, client: discord.Client, tree: app_commands.CommandTree, path: Path) -> None:
        self.client = client
        self.tree = tree
        self.path = path

    async def run(self, guild_ids: list[int], *, force: bool = False) -> SyncReport:
        """Sync every target whose commands changed; `force` syncs them all."""
        app_id = self.client.application_id
        if app_id is None:
            raise app_commands.MissingApplicationID
        state = await asyncio.to_thread(load_state, self.path, app_id)
        report = SyncReport()
        for guild_id in guild_ids:
            self.tree.copy_global_to(guild=discord.Object(id=guild_id))
        targets: dict[str, Any] = {}
        places: list[int | None] = [*guild_ids] or [None]  # None: global
        for place in places:
            key = _key(place)
            wanted = digest(await command_payload(self.tree, None if place is None else discord.Object(id=place)))
            recorded = state.get(key)
            if not force and isinstance(recorded, dict) and recorded.get("digest") == wanted:
                remote = await self._remote(place)
                if remote is not None and registered(remote) == recorded.get("registered"):
                    report.unchanged.append(key)
                    targets[key] = recorded
                    continue
            if await self._put(place, report):
                remote = await self._remote(place)
                targets[key] = {"digest": wanted, "registered": registered(remote) if remote is not None else None}
                report.updated.append(key)
        # Commands where they are no longer wanted: the global ones once syncing per guild
        # (asked of Discord, since a start before this record existed may have registered
        # them), and those of guilds recorded earlier that have left the list.
        stale: list[int | None] = [int(key) for key in state if key.isdigit() and int(key) not in guild_ids]
        if guild_ids and (GLOBAL in state or await self._remote(None)):
            stale.append(None)
        for stale_id in stale:
            if await self._put(stale_id, report, clear=True):
                report.cleared.append(_key(stale_id))
            else:  # try again next start
                targets[_key(stale_id)] = {"digest": None}
        try:
            await asyncio.to_thread(save_state, self.path, app_id, targets)
        except OSError as exc:  # the next start syncs again; not a reason to stop this one
            log.warning("could not record the synced commands in %s: %s", self.path, exc)
        return report

    async def _remote(self, guild_id: int | None) -> list[dict[str, Any]] | None:
        """The commands Discord has registered there (None: could not ask)."""
        http, app_id = self.client.http, self.client.application_id
        try:
            # discord.py types these as its TypedDicts; the sync compares them as plain JSON.
            if guild_id is None:
                return cast("list[dict[str, Any]]", await http.get_global_commands(app_id))  # type: ignore[arg-type]
            return cast("list[dict[str, Any]]", await http.get_guild_commands(app_id, guild_id))  # type: ignore[arg-type]
        except discord.HTTPException as exc:
            log.info("could not list the commands registered %s: %s", _where(guild_id), exc)
            return None

    async def _put(self, guild_id: int | None, report: SyncReport, *, clear: bool = False) -> bool:
        http, app_id = self.client.http, self.client.application_id
        try:
            if not clear:
                report.synced += await self.tree.sync(guild=None if guild_id is None else discord.Object(id=guild_id))
            elif guild_id is None:
                await http.bulk_upsert_global_commands(app_id, payload=[])  # type: ignore[arg-type]
            else:
                await http.bulk_upsert_guild_commands(app_id, guild_id, payload=[])  # type: ignore[arg-type]
        except discord.Forbidden as exc:
            log.error(
                "cannot register commands %s (%s): is the bot in that server, invited with the "
                "applications.commands scope? Check LORACLE_GUILD_IDS.",
                _where(guild_id),
                exc,
            )
        except discord.HTTPException as exc:
            log.error("could not register commands %s: %s", _where(guild_id), exc)
        else:
            return True
        report.failed.append(_key(guild_id))
        return False


def _key(guild_id: int | None) -> str:
    return GLOBAL if guild_id is None else str(guild_id)


def _where(guild_id: int | None) -> str:
    return "globally" if guild_id is None else f"in server {guild_id}"
