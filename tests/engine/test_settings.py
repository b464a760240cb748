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
    (tmp_path / ".env").write_text("LORACLE_OFFLINE=1\nLORACLE_OWNER_IDS=1, 2\nLORACLE_CIVITAI_API_KEY=\n")
    monkeypatch.setenv("LORACLE_CIVITAI_BASE_URL", "http://mirror.test/")
    s = load_settings()
    assert s.offline is True and s.owner_ids == [1, 2]
    assert s.civitai_api_key is None  # "KEY=" means unset
    assert s.civitai_base_url == "http://mirror.test"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("LORACLE_LORA_WEIGHT_MAX", "lots"),
        ("LORACLE_OFFLINE", "perhaps"),
        ("LORACLE_OWNER_IDS", "12, abc"),
        ("LORACLE_CIVITAI_BASE_URL", "civitai.com"),
        ("LORACLE_DEVICE", "tpu"),
        ("LORACLE_MAX_STEPS", "0"),
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
    monkeypatch.setenv("LORACLE_DISCORD_TOKEN", "discord-secret-456")
    s = load_settings()
    assert "secret" not in repr(s) and "secret" not in str(s.model_dump())


def test_env_example_documents_every_setting() -> None:
    text = (Path(__file__).parents[2] / ".env.example").read_text()
    missing = [name for name in Settings.model_fields if f"LORACLE_{name.upper()}=" not in text]
    assert missing == []
