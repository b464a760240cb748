"""A loopback fake of Discord's REST API and gateway (aiohttp on 127.0.0.1).

Just enough of Discord for a bot to log in, sync commands, connect, receive READY and an
INTERACTION_CREATE, and answer it: the path `loracle run` takes with
LORACLE_DISCORD_API_BASE and LORACLE_DISCORD_GATEWAY_URL pointing here. SimCord replaces
discord.py's HTTP client and websocket instead, so it cannot test those settings.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

APP_ID = 4242
BOT_USER = {"id": str(APP_ID), "username": "Loracle", "discriminator": "0", "avatar": None, "bot": True, "global_name": None}
OWNER = {"id": "77", "username": "owner", "discriminator": "0", "avatar": None, "global_name": None}


@dataclass
class Request:
    method: str
    path: str
    body: Any
    auth: str | None


@dataclass
class FakeDiscord:
    requests: list[Request] = field(default_factory=list)
    identified: asyncio.Event = field(default_factory=asyncio.Event)
    callbacks: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    identify: dict[str, Any] | None = None  # the last IDENTIFY
    identifies: list[dict[str, Any]] = field(default_factory=list)  # all of them, in order
    recommended_shards: int = 1  # what GET /gateway/bot recommends (LORACLE_SHARDS=auto)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by path, as registered
    files: dict[str, bytes] = field(default_factory=dict)  # attachments on the "CDN", by name
    port: int = 0
    _runner: web.AppRunner | None = None
    _seq: int = 0
    _version: int = 0
    _message_id: int = 5000
    _shard_of: dict[int, int] = field(default_factory=dict)  # id(socket) -> shard id

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/{name}", self._cdn)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def attachment(self, name: str, data: bytes, content_type: str = "image/png") -> dict[str, Any]:
        """An attachment payload whose URL this server answers (as Discord's CDN would)."""
        self.files[name] = data
        url = f"{self.api_base}/cdn/{name}"
        return {"id": str(7000 + len(self.files)), "filename": name, "size": len(data), "url": url, "proxy_url": url,
                "content_type": content_type}

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        data = self.files.get(request.match_info["name"])
        return web.Response(body=data) if data is not None else web.Response(status=404)

    # -- REST ------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body: Any = None
        if request.content_type == "application/json":
            body = await request.json()
        elif request.content_type.startswith("multipart/"):
            body = await self._multipart_json(request)
        self.requests.append(Request(request.method, path, body, request.headers.get("Authorization")))
        if path == "/gateway/bot":
            # A gateway URL Discord would give; a sharded bot must still use the one it
            # was configured with (LORACLE_DISCORD_GATEWAY_URL), so this one is unreachable.
            return _json(
                {
                    "url": "wss://gateway.invalid",
                    "shards": self.recommended_shards,
                    "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
                }
            )
        if path == "/users/@me":
            return _json(BOT_USER)
        if path == "/oauth2/applications/@me":
            return _json(
                {
                    "id": str(APP_ID),
                    "name": "Loracle",
                    "description": "",
                    "icon": None,
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "owner": OWNER,
                    "team": None,
                    "verify_key": "0" * 64,
                    "flags": 0,
                }
            )
        if request.method == "PUT" and path.endswith("/commands"):
            self._version += 1
            synced = [
                # Discord answers context menus (which are sent without one) with an empty description.
                {"description": "", **command, "id": str(1000 + i), "application_id": str(APP_ID), "version": str(self._version)}
                for i, command in enumerate(body or [])
            ]
            self.commands[path] = synced
            return _json(synced)
        if request.method == "GET" and path.endswith("/commands"):
            return _json(self.commands.get(path, []))
        if request.method == "POST" and path.startswith("/interactions/") and path.endswith("/callback"):
            await self.callbacks.put(body)
            # discord.py asks for the callback response (?with_response=1), as Discord sends it.
            flags = int((body.get("data") or {}).get("flags") or 0)
            return _json(
                {
                    "interaction": {
                        "id": path.split("/")[2],
                        "type": 2,
                        "response_message_loading": body["type"] == 5,
                        "response_message_ephemeral": bool(flags & 64),
                    },
                    "resource": {"type": body["type"]},
                }
            )
        if path.startswith("/webhooks/"):  # interaction follow-ups and edits of the reply
            if request.method == "DELETE":
                return web.Response(status=204)
            if request.method in ("POST", "PATCH"):
                return _json(self._message(body))
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _message(self, body: Any) -> dict[str, Any]:
        """A message as Discord returns it for a webhook send or edit."""
        body = body if isinstance(body, dict) else {}
        self._message_id += 1
        attachments = [
            {"id": str(i + 1), "filename": a.get("filename") or "file", "size": 1, "url": "https://cdn.invalid/f", "proxy_url": "https://cdn.invalid/f"}
            for i, a in enumerate(body.get("attachments") or [])
        ]
        return {
            "id": str(self._message_id),
            "channel_id": "55",
            "type": 0,
            "content": body.get("content") or "",
            "author": {**BOT_USER, "id": str(APP_ID)},
            "webhook_id": str(APP_ID),
            "application_id": str(APP_ID),
            "timestamp": "2026-01-01T00:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": body.get("embeds") or [],
            "pinned": False,
            "flags": int(body.get("flags") or 0),
            "components": [],
        }

    @staticmethod
    async def _multipart_json(request: web.Request) -> Any:
        reader = await request.multipart()
        async for part in reader:
            if part.name == "payload_json":  # type: ignore[union-attr]
                return json.loads(await part.text())  # type: ignore[union-attr]
        return None

    # -- gateway ---------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if data["op"] == 1:
                await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
            elif data["op"] == 2:
                self.identify = data["d"]
                self.identifies.append(data["d"])
                # A bot without shards sends none: it is shard 0 of 1.
                shard = list(data["d"].get("shard") or [0, 1])
                self._shard_of[id(ws)] = shard[0]
                self._seq += 1
                ready = {
                    "v": 10,
                    "user": BOT_USER,
                    "guilds": [],
                    "session_id": f"session-{shard[0]}",
                    "resume_gateway_url": self.gateway_url,
                    "application": {"id": str(APP_ID), "flags": 0},
                }
                if data["d"].get("shard"):
                    ready["shard"] = shard
                await ws.send_json({"op": 0, "t": "READY", "s": self._seq, "d": ready})
                if len({self._shard_of.get(id(w)) for w in self.sockets if not w.closed}) >= shard[1]:
                    self.identified.set()
        return ws

    async def dispatch(self, event: str, data: dict[str, Any], *, shard: int = 0) -> None:
        """Send an event on `shard`'s connection, as Discord does (DMs go to shard 0)."""
        self._seq += 1
        for ws in self.sockets:
            if not ws.closed and self._shard_of.get(id(ws), 0) == shard:
                await ws.send_json({"op": 0, "t": event, "s": self._seq, "d": data})


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py only decodes bodies whose Content-Type is exactly "application/json".
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


def slash_interaction(
    name: str, *, interaction_id: int = 9001, locale: str = "en-US", **options: str
) -> dict[str, Any]:
    """An INTERACTION_CREATE for a top-level slash command with string options, in a DM."""
    data: dict[str, Any] = {"id": "1004", "name": name, "type": 1}
    if options:
        data["options"] = [{"name": key, "type": 3, "value": value} for key, value in options.items()]
    return {
        "id": str(interaction_id),
        "application_id": str(APP_ID),
        "type": 2,
        "token": "interaction-token",
        "version": 1,
        "data": data,
        "channel_id": "55",
        "channel": {"id": "55", "type": 1, "recipients": [OWNER]},
        "user": OWNER,
        "locale": locale,
        "app_permissions": "0",
        "entitlements": [],
        "authorizing_integration_owners": {},
        "context": 1,
        "attachment_size_limit": 10485760,
    }


def message_menu_interaction(
    name: str, attachments: list[dict[str, Any]], *, interaction_id: int = 9002, locale: str = "en-US"
) -> dict[str, Any]:
    """An INTERACTION_CREATE for a message context-menu command on a message (in a DM)
    carrying `attachments` (see FakeDiscord.attachment)."""
    payload = slash_interaction(name, interaction_id=interaction_id, locale=locale)
    message = {
        "id": "6001", "channel_id": "55", "type": 0, "content": "", "author": OWNER, "timestamp": "2026-01-01T00:00:00+00:00",
        "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
        "attachments": attachments, "embeds": [], "pinned": False, "flags": 0, "components": [],
    }
    payload["data"] = {"id": "1005", "name": name, "type": 3, "target_id": "6001", "resolved": {"messages": {"6001": message}}}
    return payload
