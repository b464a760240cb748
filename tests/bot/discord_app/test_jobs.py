"""DrawService pieces that SimCord cannot reach: the throttled follow loop in real time,
the cancel guard for hand-made button ids, and the request memory."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bot.discord_app.jobs import DrawService, RequestMemory
from engine.queue.handle import Cancelled, Loading, Queued, Started, Step
from engine.requests import DrawRequest


@dataclass
class RecordingReply:
    upload_limit: int = 25 * 1024 * 1024
    shown: list[str] = field(default_factory=list)
    private_texts: list[str] = field(default_factory=list)

    async def progress(self, content: str, view: Any) -> None:
        self.shown.append(content)

    async def private(self, content: str) -> None:
        self.private_texts.append(content)

    async def refuse(self, text: str) -> None:
        self.private_texts.append(text)

    async def publish(self, **kwargs: Any) -> None:
        raise AssertionError("nothing to publish in these tests")


class TimedHandle:
    """Events arriving with given delays (seconds), like a real job."""

    id = "0123456789abcdef0123456789abcdef"

    def __init__(self, timeline: list[tuple[float, Any]]) -> None:
        self.timeline = timeline

    async def events(self):
        for delay, event in self.timeline:
            await asyncio.sleep(delay)
            yield event


def service(interval: float) -> DrawService:
    return DrawService(client=None, engine=None, interval=interval)


async def test_fast_events_collapse_into_few_edits_and_the_latest_is_shown():
    steps = [(0.005, Step(i, 40)) for i in range(1, 41)]
    timeline = [(0, Queued(2)), (0, Queued(1)), (0, Started()), *steps, (0.15, Cancelled())]
    reply = RecordingReply()
    started = time.perf_counter()
    await service(0.06).follow(TimedHandle(timeline), reply, 1, "en")
    elapsed = time.perf_counter() - started
    # One edit per 0.06 s at most (plus the first), instead of one per event (43).
    assert 2 <= len(reply.shown) <= elapsed / 0.06 + 1, (len(reply.shown), elapsed)
    assert reply.shown[0] == "⏳ Queued: position 2."
    assert reply.shown[-1].startswith("🎨 Drawing… step 40/40")  # shown after the pause
    assert reply.private_texts == ["✖️ Cancelled."]


async def test_unthrottled_follow_shows_every_change_once():
    timeline = [
        (0, Queued(1)), (0, Queued(1)), (0, Started()), (0, Loading("ponyXL")), (0, Step(1, 2)), (0, Cancelled()),
    ]
    reply = RecordingReply()
    await service(0).follow(TimedHandle(timeline), reply, 1, "en")
    assert reply.shown == [
        "⏳ Queued: you are next.",
        "🎨 Starting…",
        "📦 Loading checkpoint ponyXL…",
        "🎨 Drawing… step 1/2\n▰▰▰▰▰▰▱▱▱▱▱▱",
    ]


async def test_a_broken_event_stream_ends_with_a_private_error(caplog):
    class Broken:
        id = "ab" * 16

        async def events(self):
            yield Queued(1)
            raise OSError("worker vanished")

    reply = RecordingReply()
    await service(0).follow(Broken(), reply, 1, "en")
    assert reply.private_texts[0].startswith("Something went wrong on our side (reference ")
    assert "worker vanished" in caplog.text


@dataclass
class StubUser:
    id: int
    roles: list[Any] = field(default_factory=list)


class StubResponse:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bool]] = []
        self.deferred = False

    def is_done(self) -> bool:
        return bool(self.sent) or self.deferred

    async def send_message(self, content: str, *, ephemeral: bool = False, **kwargs: Any) -> None:
        self.sent.append((content, ephemeral))

    async def defer(self, *, ephemeral: bool = False, thinking: bool = False) -> None:
        self.deferred = True


class StubFollowup:
    def __init__(self, response: StubResponse) -> None:
        self._response = response

    async def send(self, content: str, *, ephemeral: bool = False, **kwargs: Any) -> None:
        self._response.sent.append((content, ephemeral))


class StubInteraction:
    def __init__(self, user_id: int) -> None:
        self.user = StubUser(user_id)
        self.response = StubResponse()
        self.followup = StubFollowup(self.response)
        self.locale = None
        self.guild_id = self.channel_id = None
        self.data = {"custom_id": "loracle:cancel:..."}


class StubAdmins:
    def __init__(self, admins: set[int]) -> None:
        self.admins = admins

    async def is_admin(self, user: Any) -> bool:
        return user.id in self.admins


class StubEngine:
    def __init__(self) -> None:
        self.cancelled: list[tuple[str, str, bool]] = []

    def cancel(self, job_id: str, *, user_id: str, is_admin: bool = False) -> bool:
        self.cancelled.append((job_id, user_id, is_admin))
        return True


async def test_a_hand_made_cancel_button_cannot_cancel_someone_elses_job():
    engine = StubEngine()
    client = type("Client", (), {"admins": StubAdmins({99})})()
    draws = DrawService(client, engine, interval=0)
    stranger = StubInteraction(5)
    await draws.on_cancel(stranger, "f" * 32, owner_id=7)
    assert stranger.response.sent == [("Only the person who asked for this picture (or an admin) can cancel it.", True)]
    assert engine.cancelled == []
    admin = StubInteraction(99)
    await draws.on_cancel(admin, "f" * 32, owner_id=7)
    assert engine.cancelled == [("f" * 32, "99", True)]
    owner = StubInteraction(7)
    await draws.on_cancel(owner, "f" * 32, owner_id=7)
    assert engine.cancelled[-1] == ("f" * 32, "7", False)


def test_request_memory_is_bounded_and_keeps_copies():
    memory = RequestMemory(size=2)
    first = DrawRequest(prompt="one")
    memory.remember("a", first)
    first.prompt = "changed"
    memory.remember("b", DrawRequest(prompt="two"))
    assert memory.get("a").prompt == "one"
    memory.remember("c", DrawRequest(prompt="three"))
    assert memory.get("a") is None and memory.get("c").prompt == "three"
