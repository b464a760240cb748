"""The bot's settings (the engine's plus Discord's), and the documentation of all of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import BotSettings, load_settings
from engine.errors import SettingsError

ROOT = Path(__file__).parents[2]
VARIABLES = {f"LORACLE_{name.upper()}" for name in BotSettings.model_fields}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    import os

    for key in list(os.environ):
        if key.startswith("LORACLE_"):
            monkeypatch.delenv(key)


def test_engine_and_discord_settings_from_one_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LORACLE_OFFLINE=1\nLORACLE_OWNER_IDS=1, 2\n")
    s = load_settings()
    assert s.offline is True and s.owner_ids == [1, 2]


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("LORACLE_OWNER_IDS", "12, abc"),
        ("LORACLE_OWNER_IDS", "-5"),
        ("LORACLE_ADMIN_ROLE_IDS", "0"),
        ("LORACLE_GUILD_IDS", "1.5"),
        ("LORACLE_DISCORD_API_BASE", "proxy:8080"),
        ("LORACLE_DISCORD_GATEWAY_URL", "http://gateway:7878"),
        ("LORACLE_LOG_LEVEL", "verbose"),
        ("LORACLE_MAX_STEPS", "0"),  # the engine's own rules still apply
    ],
)
def test_bad_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert var in message and "\n" not in message


def test_good_urls_and_ids_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORACLE_DISCORD_API_BASE", "http://proxy:8080")
    monkeypatch.setenv("LORACLE_DISCORD_GATEWAY_URL", "wss://gateway.test")
    monkeypatch.setenv("LORACLE_GUILD_IDS", "[123456789012345678, 2]")
    s = load_settings()
    assert s.guild_ids == [123456789012345678, 2] and s.discord_gateway_url == "wss://gateway.test"


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORACLE_CIVITAI_API_KEY", "civitai-secret-123")
    monkeypatch.setenv("LORACLE_DISCORD_TOKEN", "discord-secret-456")
    s = load_settings()
    assert "secret" not in repr(s) and "secret" not in str(s.model_dump())


TOKEN = "MTQ1NjA3NDQ0Mzk4MDgwMTIzNA.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"


@pytest.mark.parametrize("var", ["LORACLE_OWNER_IDS", "LORACLE_ADMIN_ROLE_IDS", "LORACLE_GUILD_IDS"])
def test_a_token_pasted_into_an_id_list_is_not_printed_back(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, f"123, {TOKEN}")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert var in message and "not a Discord ID" in message
    assert TOKEN[:5] not in message and TOKEN[-6:] not in message
    assert "“MTQ1…”" in message  # enough to find the line, nothing to log in with


def test_a_short_bad_id_is_shown_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORACLE_OWNER_IDS", "12, abc")
    with pytest.raises(SettingsError, match="“abc” is not a Discord ID"):
        load_settings()


def test_misspelt_variables_are_checked_against_both_sets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    env.write_text("LORACLE_DISCORD_TOKN=x\nLORACLE_DISCORD_TOKEN=y\nLORACLE_OFLINE=1\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="loracle"):
        load_settings(_env_file=env)
    warnings = sorted(r.getMessage() for r in caplog.records)
    assert warnings == [
        "LORACLE_DISCORD_TOKN is not a Loracle setting and is ignored (did you mean LORACLE_DISCORD_TOKEN?)",
        "LORACLE_OFLINE is not a Loracle setting and is ignored (did you mean LORACLE_OFFLINE?)",
    ]


# -- the documentation states what the code does ----------------------------------------
def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    missing = [name for name in BotSettings.model_fields if f"LORACLE_{name.upper()}=" not in text]
    assert missing == []


def test_env_example_gives_the_code_defaults() -> None:
    example = BotSettings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    assert example.model_dump() == BotSettings(_env_file=None).model_dump()  # type: ignore[call-arg]


def test_env_example_names_only_real_settings_each_with_a_comment() -> None:
    blocks = (ROOT / ".env.example").read_text().split("\n\n")
    named = set()
    for block in blocks:
        lines = block.splitlines()
        names = [line.split("=", 1)[0] for line in lines if line.startswith("LORACLE_")]
        named.update(names)
        for name in names:
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}="))
            assert any(line.startswith("# ") and not line.startswith("# ---") for line in lines[:index]), name
    assert named == VARIABLES


def _readme_settings_rows() -> list[tuple[list[str], list[str]]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Settings") :]
    section = section[: section.index("\n## ", 1)]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`LORACLE_"):
            names = re.findall(r"`(LORACLE_[A-Z0-9_]+)`", cells[0])
            defaults = [d.strip().strip("`") for d in cells[1].split(",")]
            rows.append((names, defaults))
    return rows


def _same(documented: str, value: object) -> bool:
    if documented == "–":
        return value in (None, [])
    if isinstance(value, bool):
        return documented == str(int(value))
    if isinstance(value, (int, float)):
        return float(documented) == value
    if isinstance(value, Path):
        return Path(documented) == value
    return documented == str(value)


def test_readme_table_names_every_setting_by_its_full_name_with_its_default() -> None:
    defaults = BotSettings(_env_file=None)  # type: ignore[call-arg]
    documented = {}
    for names, values in _readme_settings_rows():
        if values == ["–"]:
            values = values * len(names)
        assert len(names) == len(values), names
        documented.update(zip(names, values, strict=False))
    assert set(documented) == VARIABLES
    for name, text in documented.items():
        assert _same(text, getattr(defaults, name.removeprefix("LORACLE_").lower())), (name, text)


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), (" AUTO ", "auto"), ("1", 1), ("16", 16)])
def test_shards_is_auto_or_a_count(monkeypatch: pytest.MonkeyPatch, value: str, expected: object) -> None:
    assert load_settings(_env_file=None).shards is None
    monkeypatch.setenv("LORACLE_SHARDS", value)
    assert load_settings(_env_file=None).shards == expected


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "true"])
def test_a_bad_shard_count_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LORACLE_SHARDS", value)
    with pytest.raises(SettingsError, match=r"^LORACLE_SHARDS: give auto or a number of shards \(1 or more\)$"):
        load_settings(_env_file=None)
