"""Who counts as a Loracle admin.

`/admin` is registered with `default_member_permissions=Manage Server`, which only hides
it: a server's admins can grant it to anyone in Server Settings → Integrations. The GPU
and the model library belong to whoever runs the bot, not to each server that invited it,
so every admin action is checked again here against the bot's own settings.
"""

from __future__ import annotations

from typing import Any


class AdminDirectory:
    """Bot owners (LORACLE_OWNER_IDS, else the application's owner or team) and members
    holding one of LORACLE_ADMIN_ROLE_IDS."""

    def __init__(self, client: Any, owner_ids: list[int], admin_role_ids: list[int]) -> None:
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
                self._app_owner_ids = {member.id for member in team.members}
            else:
                self._app_owner_ids = {info.owner.id}
        return self._app_owner_ids

    async def is_admin(self, user: Any) -> bool:
        if self._role_ids:
            roles = getattr(user, "roles", None) or []
            if any(role.id in self._role_ids for role in roles):
                return True
        try:
            return user.id in await self.owners()
        except Exception:  # no application info (e.g. Discord unreachable): deny
            return False
