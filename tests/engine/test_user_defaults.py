"""Per-user defaults in a real SQLite file (engine.user_defaults, migration 6)."""

from __future__ import annotations

import threading

import pytest

from engine import db as dbmod
from engine.admin_settings import AdminSettings
from engine.db import ThreadLocalDB
from engine.errors import LimitError, RequestError, WeightError
from engine.planning.lora_weights import LoraRequest
from engine.settings import Settings, load
from engine.user_defaults import UserDefaults, UserDefaultsStore


@pytest.fixture
def settings(tmp_path):
    return load(Settings, data_dir=tmp_path / "data", offline=True, max_steps=40, max_size=1536, max_loras=3)


@pytest.fixture
def dbs(settings):
    settings.ensure_dirs()
    return ThreadLocalDB(settings.db_path)


@pytest.fixture
def store(dbs, settings):
    return UserDefaultsStore(dbs, settings)


@pytest.fixture
def limits(dbs, settings):
    return AdminSettings(dbs, settings).limits()


def test_migration_6_creates_the_table(dbs):
    assert dbmod.schema_version(dbs.db) >= 6
    assert set(dbs.db.table("user_defaults").columns_dict) == {"user_id", "defaults", "updated_at"}


def test_nothing_set_is_empty(store):
    defaults = store.get("1")
    assert defaults == UserDefaults() and defaults.empty and defaults.set_names() == []


def test_set_keeps_values_per_user_and_across_connections(store, limits, settings):
    store.set("1", limits, steps=30, width=832, height=1216, cfg=5.5, sampler="dpm++ 2m karras",
              negative="blurry", loras="detail:0.8, style", hires=1.5)
    store.set("2", limits, steps=12)
    # A new connection (another thread) reads what was written.
    seen: list[UserDefaults] = []
    fresh = UserDefaultsStore(ThreadLocalDB(settings.db_path), settings)
    thread = threading.Thread(target=lambda: seen.append(fresh.get("1")))
    thread.start()
    thread.join()
    [alice] = seen
    assert alice.steps == 30 and (alice.width, alice.height) == (832, 1216) and alice.cfg == 5.5
    assert alice.sampler == "DPM++ 2M Karras"  # the engine's own spelling
    assert alice.negative == "blurry" and alice.hires == 1.5
    assert alice.loras == [LoraRequest("detail", 0.8), LoraRequest("style", None)]
    assert alice.set_names() == ["width", "height", "steps", "cfg", "sampler", "negative", "loras", "hires"]
    assert store.get("2") == UserDefaults(steps=12)


def test_setting_one_keeps_the_others_and_none_clears_one(store, limits):
    store.set("1", limits, steps=30, cfg=7.0)
    store.set("1", limits, cfg=None, sampler="Euler")
    assert store.get("1") == UserDefaults(steps=30, sampler="Euler")
    store.set("1", limits, steps=None, sampler=None)
    assert store.get("1").empty
    assert store.dbs.db.table("user_defaults").count == 0  # an empty row is removed


def test_clear_forgets_everything_of_one_user(store, limits):
    store.set("1", limits, steps=30)
    store.set("2", limits, steps=20)
    store.clear("1")
    assert store.get("1").empty and store.get("2").steps == 20


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"steps": 41}, LimitError),  # over the admin's max_steps
        ({"steps": 0}, LimitError),
        ({"steps": 2.5}, LimitError),
        ({"width": 1544}, LimitError),  # over max_size
        ({"width": 1000 + 1}, LimitError),  # not a multiple of 8
        ({"cfg": 31.0}, LimitError),
        ({"cfg": float("nan")}, LimitError),
        ({"hires": 2.5}, LimitError),
        ({"hires": 0.5}, LimitError),
        ({"sampler": "warp drive"}, RequestError),
        ({"loras": "a, b, c, d"}, WeightError),  # more than max_loras
        ({"loras": "a:9"}, LimitError),  # outside the weight range
        ({"loras": "a:x"}, WeightError),
        ({"negative": "(bad:1.2.3)"}, RequestError),
        ({"negative": "x" * 3000}, LimitError),
        ({"colour": "red"}, RequestError),
    ],
)
def test_bad_values_are_refused_and_nothing_is_kept(store, limits, values, error):
    store.set("1", limits, steps=20)
    with pytest.raises(error):
        store.set("1", limits, **{"sampler": "Euler", **values})
    assert store.get("1") == UserDefaults(steps=20)


def test_lowered_admin_limit_refuses_a_new_value(store, dbs, settings):
    admin = AdminSettings(dbs, settings)
    store.set("1", admin.limits(), steps=35)
    admin.set_limits(max_steps=30)
    with pytest.raises(LimitError, match="30"):
        store.set("1", admin.limits(), steps=35)


def test_a_damaged_row_reads_as_no_defaults(store, limits):
    store.set("1", limits, steps=30)
    store.dbs.db.execute("UPDATE user_defaults SET defaults = 'not json' WHERE user_id = '1'")
    assert store.get("1").empty
    store.dbs.db.execute("""UPDATE user_defaults SET defaults = '{"steps": 9, "future": 1}' WHERE user_id = '1'""")
    assert store.get("1") == UserDefaults(steps=9)  # unknown keys from another version are ignored


async def test_engine_facade_resolves_the_checkpoint_by_name(demo_settings):
    from engine.api import Engine
    from engine.errors import UnknownNameError

    engine = Engine(demo_settings)
    try:
        await engine.scan(civitai=False)
        checkpoint = next(e for e in engine.entries("checkpoint") if e.error is None)
        saved = engine.set_user_defaults("7", checkpoint=checkpoint.name.upper(), steps=10)
        assert saved.checkpoint == checkpoint.name and engine.user_defaults("7").steps == 10
        with pytest.raises(UnknownNameError):
            engine.set_user_defaults("7", checkpoint="no_such_model")
        engine.clear_user_defaults("7")
        assert engine.user_defaults("7").empty
    finally:
        await engine.close()
