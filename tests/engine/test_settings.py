from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import SettingsError
from engine.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    import os

    for key in list(os.environ):
        if key.startswith("LORACLE_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = load_settings()
    assert s.data_dir == Path("./data") and s.civitai_base_url == "https://civitai.com"
    assert s.lora_weight_min < 0 < s.lora_weight_max and s.offline is False


def test_env_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LORACLE_OFFLINE=1\nLORACLE_MAX_LORAS=3\nLORACLE_CIVITAI_API_KEY=\n")
    monkeypatch.setenv("LORACLE_CIVITAI_BASE_URL", "http://mirror.test/")
    s = load_settings()
    assert s.offline is True and s.max_loras == 3
    assert s.civitai_api_key is None  # "KEY=" means unset
    assert s.civitai_base_url == "http://mirror.test"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("LORACLE_LORA_WEIGHT_MAX", "lots"),
        ("LORACLE_OFFLINE", "perhaps"),
        ("LORACLE_CIVITAI_BASE_URL", "civitai.com"),
        ("LORACLE_DEVICE", "tpu"),
        ("LORACLE_MAX_STEPS", "0"),
        # floats that parse but mean nothing: a nan weight range clamps nothing
        ("LORACLE_LORA_WEIGHT_MIN", "nan"),
        ("LORACLE_LORA_WEIGHT_MAX", "inf"),
        ("LORACLE_CIVITAI_TIMEOUT_S", "inf"),
        ("LORACLE_DEFAULT_CFG", "inf"),
        # the engine refuses CFG above 30 and sizes off the 8-pixel grid: such a default
        # would make every /draw without those options fail
        ("LORACLE_DEFAULT_CFG", "31"),
        ("LORACLE_DEFAULT_WIDTH", "1020"),
        ("LORACLE_DEFAULT_HEIGHT", "2048"),
        ("LORACLE_MAX_SIZE", "1532"),
        ("LORACLE_LORA_PRISTINE", "gpu"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert var in message and "\n" not in message


def test_weight_range_must_be_ordered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORACLE_LORA_WEIGHT_MIN", "3")
    with pytest.raises(SettingsError, match="LORACLE_LORA_WEIGHT_MIN"):
        load_settings()


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORACLE_CIVITAI_API_KEY", "civitai-secret-123")
    s = load_settings()
    assert "secret" not in repr(s) and "secret" not in str(s.model_dump())


def test_a_bad_value_never_echoes_a_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LORACLE_DISCORD_TOKEN=discord-secret-456\nLORACLE_MAX_STEPS=lots\n")
    monkeypatch.setenv("LORACLE_CIVITAI_API_KEY", "civitai-secret-123")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "LORACLE_MAX_STEPS" in str(err.value) and "secret" not in str(err.value)


def test_an_env_file_that_is_not_utf8_is_one_line_without_its_bytes(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"LORACLE_DISCORD_TOKEN=s\xe9cret-token\n")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert ".env" in message and "UTF-8" in message and "\n" not in message and "cret" not in message


def test_misspelt_variables_are_named_with_the_closest_real_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    env.write_text("LORACLE_OFLINE=1\nLORACLE_DATA_DIR=./data\nOTHER_APP_KEY=x\n", encoding="utf-8")
    monkeypatch.setenv("LORACLE_LORA_WEIGTH_MAX", "3")
    with caplog.at_level("WARNING", logger="loracle"):
        settings = load_settings(_env_file=env)
    assert settings.lora_weight_max == 2.0  # ignored, as the warning says
    warnings = [r.getMessage() for r in caplog.records]
    assert "LORACLE_LORA_WEIGTH_MAX is not a Loracle setting and is ignored (did you mean LORACLE_LORA_WEIGHT_MAX?)" in warnings
    assert "LORACLE_OFLINE is not a Loracle setting and is ignored (did you mean LORACLE_OFFLINE?)" in warnings
    assert len(warnings) == 2  # real settings and other programs' variables are left alone


def test_the_engine_alone_reads_no_discord_setting() -> None:
    assert not [name for name in Settings.model_fields if "discord" in name or name.endswith("_ids")]
