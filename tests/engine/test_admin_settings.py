"""Run-time admin settings kept in SQLite: limits, default checkpoint, blocklists."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.admin_settings import AdminSettings
from engine.db import ThreadLocalDB
from engine.errors import LimitError
from engine.settings import load_settings


@pytest.fixture
def admin(tmp_path: Path) -> AdminSettings:
    settings = load_settings(_env_file=None, data_dir=tmp_path, offline=True)
    return AdminSettings(ThreadLocalDB(settings.db_path), settings)


def test_limits_change_and_clear(admin: AdminSettings) -> None:
    default = admin.limits()
    assert admin.set_limits(max_steps=20, max_images=2).max_steps == 20
    assert admin.limits().max_images == 2
    assert admin.set_limits(max_steps=None).max_steps == default.max_steps


@pytest.mark.parametrize(("name", "value"), [("max_steps", 0), ("max_steps", 10_000), ("max_images", -1), ("max_size", True)])
def test_absurd_limits_are_refused(admin: AdminSettings, name: str, value: int) -> None:
    with pytest.raises(LimitError, match=name):
        admin.set_limits(**{name: value})


def test_max_size_must_be_a_multiple_of_8(admin: AdminSettings) -> None:
    # Default sizes are capped at max_size: 1001 would make every /draw without a size fail.
    with pytest.raises(LimitError, match=r"multiple of 8 .*for example 1000") as err:
        admin.set_limits(max_size=1001)
    assert "8 的倍數" in err.value.localized("zh-TW")
    assert admin.set_limits(max_size=1000).max_size == 1000


def test_blocklists_are_per_server_and_normalised(admin: AdminSettings) -> None:
    assert admin.set_blocklist("1", ["Gore", " ｂｌｏｏｄ ", "\u200b", "gore"]) == ["blood", "gore"]
    assert admin.blocklist("1") == ["blood", "gore"]
    assert admin.blocklist("2") == [] and admin.blocklist(None) == []
