"""The real Engine and the fake both provide what bot.discord_app.port.EnginePort lists,
with call signatures the bot can use; so the fake cannot drift from the engine."""

from __future__ import annotations

import inspect

import pytest

from bot.discord_app.port import EnginePort
from tests.bot.fakes import FakeEngine

METHODS = [
    name
    for name, value in vars(EnginePort).items()
    if callable(value) and not name.startswith("_")
]
ATTRIBUTES = ["settings", "admin", "queue", "recovered"]


def engine_class():
    from engine.api import Engine

    return Engine


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("implementation", [engine_class, lambda: FakeEngine], ids=["Engine", "FakeEngine"])
def test_methods_exist_with_compatible_signatures(implementation, name):
    cls = implementation()
    wanted = inspect.signature(getattr(EnginePort, name))
    actual = inspect.signature(getattr(cls, name))
    assert inspect.iscoroutinefunction(getattr(cls, name)) == inspect.iscoroutinefunction(getattr(EnginePort, name)), name
    for parameter in wanted.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in actual.parameters.values()), name
            continue
        assert parameter.name in actual.parameters, f"{cls.__name__}.{name} lacks {parameter.name}"
        if parameter.default is not inspect.Parameter.empty:
            assert actual.parameters[parameter.name].default is not inspect.Parameter.empty, (name, parameter.name)


async def test_attributes_exist(settings):
    from engine.api import Engine

    for engine in (Engine(settings), FakeEngine(settings)):
        for attribute in ATTRIBUTES:
            assert hasattr(engine, attribute), (type(engine).__name__, attribute)
        if isinstance(engine, Engine):
            await engine.close()
