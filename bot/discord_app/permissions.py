"""Who counts as a Loracle admin.

`/admin` is registered with `default_member_permissions=Manage Server`, which only hides
it: a server's admins can grant it to anyone in Server Settings → Integrations. The GPU
and the model library belong to whoever runs the bot, not to each server that invited it,
so every admin action is checked again here against the bot's own settings.
"""

from __future__ import annotations

from typing import Any

import discord

# Team members who may run the application (as discord.py's own Bot.is_owner decides):
# read-only members can look at the app in the developer portal, not administer it.
_TEAM_ADMIN_ROLES = ("admin", "developer")


def role_ids(user: Any) -> set[int]:
    """The ids of the member's roles, as the interaction payload lists them.

    `Member.roles` resolves each id through the guild cache and silently drops the ones
    it cannot find; an interaction can come from a guild that is not (yet) cached (still
    unavailable after a reconnect, or the bot was invited with `applications.commands`
    only), and then only the ids are known. They are all an admin check needs.
    """
    ids = getattr(user, "_roles", None)
    if ids is not None:
        try:
            return {int(role_id) for role_id in ids}
        except (TypeError, ValueError):
            pass
    return {role.id for role in getattr(user, "roles", None) or []}


def _team_admins(team: Any) -> set[int]:
    ids = set()
    for member in team.members:
        role = getattr(getattr(member, "role", None), "value", getattr(member, "role", None))
        state = getattr(getattr(member, "membership_state", None), "name", None)
        # No role at all: an older payload, where every member was an administrator.
        if (role is None or str(role) in _TEAM_ADMIN_ROLES) and state != "invited":
            ids.add(member.id)
    owner_id = getattr(team, "owner_id", None)
    if owner_id is not None:
        ids.add(int(owner_id))
    return ids


class AdminDirectory:
    """Bot owners (LORACLE_OWNER_IDS, else the application's owner or the admins and
    developers of its team) and members holding one of LORACLE_ADMIN_ROLE_IDS."""

    def __init__(self, client: discord.Client, owner_ids: list[int], admin_role_ids: list[int]) -> None:
        self._client = client
        self._owner_ids = set(owner_ids)
        self._role_ids = set(admin_role_ids)
        self._app_owner_ids: set[int] | None = None

    async def owners(self) -> set[int]:
        if self._owner_ids:
            return self._owner_ids
        if self._app_owner_ids is None:
            info = await self._client.application_info()
            team = getattr(info, "team", None)
            if team is not None:
                self._app_owner_ids = _team_admins(team)
            else:
                self._app_owner_ids = {info.owner.id}
        return self._app_owner_ids

    async def is_admin(self, user: Any) -> bool:
        if self._role_ids and role_ids(user) & self._role_ids:
            return True
        try:
            return user.id in await self.owners()
        except Exception:  # no application info (e.g. Discord unreachable): deny
            return False
