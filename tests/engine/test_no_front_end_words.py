"""Engine texts never name a front end's commands: fixes travel as codes (engine.i18n.Fix)
and each front end words its own hint (bot/discord_app/hints.py, bot/cli/hints.py)."""

from __future__ import annotations

import importlib
import pkgutil

import engine
from engine.i18n import Text


def _texts(value: object) -> list[str]:
    if isinstance(value, Text):
        return [value.en, value.zh_tw]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, tuple | list):
        return [t for v in value for t in _texts(v)] if not all(isinstance(v, str) for v in value) else list(value)
    return []


def test_no_engine_text_names_a_slash_command_or_a_cli_command() -> None:
    found = []
    for info in pkgutil.walk_packages(engine.__path__, "engine."):
        if info.name.startswith(("engine.pipeline", "engine.lora", "engine.queue.worker")):
            continue  # torch-heavy; their messages are checked with the rest of their tests
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            for text in _texts(value):
                if "/admin" in text or "loracle library" in text:
                    found.append(f"{info.name}.{name}: {text[:80]}")
    assert found == []
