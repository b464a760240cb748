"""The throttle and progress lines."""

from __future__ import annotations

from bot.discord_app.progress import Throttle, bar, download_text, event_text
from engine.queue.handle import Done, Loading, Queued, Started, Step


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_allows_one_action_per_interval():
    clock = Clock()
    throttle = Throttle(1.5, clock)
    assert throttle.ready() and throttle.wait_time() == 0
    throttle.mark()
    clock.now += 1.0
    assert not throttle.ready() and throttle.wait_time() == 0.5
    clock.now += 0.5
    assert throttle.ready()


def test_event_lines():
    assert event_text(Queued(1), "en") == "⏳ Queued: you are next."
    assert event_text(Queued(4), "zh-TW") == "⏳ 排隊中：第 4 位。"
    assert event_text(Started(), "en") == "🎨 Starting…"  # no load is claimed: it may not happen
    assert event_text(Loading("ponyDiffusionV6XL"), "en") == "📦 Loading checkpoint ponyDiffusionV6XL…"
    assert "ponyDiffusionV6XL" in event_text(Loading("ponyDiffusionV6XL"), "zh-TW")
    assert event_text(Step(7, 28), "en") == "🎨 Drawing… step 7/28\n▰▰▰▱▱▱▱▱▱▱▱▱"
    assert event_text(Done(None), "en") is None


def test_bar():
    assert bar(0, 10) == "▱" * 12
    assert bar(10, 10) == "▰" * 12
    assert bar(5, 0) == "▱" * 12


def test_download_text():
    assert download_text(1_500_000, 3_000_000, "en") == "⬇️ Downloading… 1.5 MB of 3.0 MB (50%)"
    assert download_text(2048, None, "en") == "⬇️ Downloading… 2.0 KB"
