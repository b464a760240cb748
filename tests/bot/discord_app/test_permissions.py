"""Who is a Loracle admin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.discord_app.permissions import AdminDirectory


@dataclass
class Obj:
    id: int
    roles: list[Any] = field(default_factory=list)


class Client:
    def __init__(self, info: Any) -> None:
        self.info = info
        self.calls = 0

    async def application_info(self) -> Any:
        self.calls += 1
        if isinstance(self.info, Exception):
            raise self.info
        return self.info


@dataclass
class Info:
    owner: Obj
    team: Any = None


@dataclass
class Team:
    members: list[Obj]


async def test_owner_ids_and_admin_roles_from_settings():
    directory = AdminDirectory(Client(Info(Obj(1))), owner_ids=[10], admin_role_ids=[500])
    assert await directory.is_admin(Obj(10))
    assert await directory.is_admin(Obj(20, roles=[Obj(500)]))
    assert not await directory.is_admin(Obj(20, roles=[Obj(501)]))
    assert not await directory.is_admin(Obj(1))  # explicit owner ids replace the application owner


async def test_application_owner_or_team_when_no_owner_ids_are_set():
    client = Client(Info(Obj(1)))
    directory = AdminDirectory(client, owner_ids=[], admin_role_ids=[])
    assert await directory.is_admin(Obj(1)) and not await directory.is_admin(Obj(2))
    assert client.calls == 1  # asked once
    team = AdminDirectory(Client(Info(Obj(1), Team([Obj(3), Obj(4)]))), owner_ids=[], admin_role_ids=[])
    assert await team.is_admin(Obj(4)) and not await team.is_admin(Obj(1))


async def test_denies_when_discord_cannot_say_who_owns_the_bot():
    directory = AdminDirectory(Client(OSError("offline")), owner_ids=[], admin_role_ids=[])
    assert not await directory.is_admin(Obj(1))
