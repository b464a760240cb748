"""The bot's settings: the engine's (engine.settings.Settings) plus Discord's.

Same prefix, same `.env`, same rules: a bad value stops start-up with one line naming the
variable, and a `LORACLE_` variable neither the engine nor the bot reads is named in a
warning. Settings errors never echo a value that may be a secret (a token pasted into the
wrong line): at most its first few characters.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from engine.settings import Settings, load, with_scheme

IdList = Annotated[list[int], NoDecode]

# A Discord ID has at most 20 digits; anything longer pasted here is likely a token, and
# four characters identify which line is wrong without giving any of it away.
_SHOWN_CHARS = 4


def masked(text: str) -> str:
    """`text` quoted if it is short, else its first few characters and how long it is."""
    if len(text) <= _SHOWN_CHARS:
        return f"“{text}”"
    return f"“{text[:_SHOWN_CHARS]}…” ({len(text)} characters)"


def _split_ids(value: object) -> object:
    # Admins write "123, 456" in .env; JSON lists are accepted too.
    if isinstance(value, str):
        text = value.strip().strip("[]")
        parts = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
        bad = [part for part in parts if not part.isdecimal()]
        if bad:
            raise ValueError(f"{masked(bad[0])} is not a Discord ID (give numbers separated by commas)")
        return [int(part) for part in parts]
    if isinstance(value, int):
        return [value]
    return value


def _check_ids(value: list[int]) -> list[int]:
    if any(i <= 0 for i in value):
        raise ValueError("Discord IDs are positive numbers")
    return value


def _parse_shards(value: object) -> object:
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if not text.isdecimal():
            raise ValueError("give auto or a number of shards (1 or more)")
        value = int(text)
    if isinstance(value, bool) or (isinstance(value, int) and value < 1):
        raise ValueError("give auto or a number of shards (1 or more)")
    return value


class BotSettings(Settings):
    # -- Discord ---------------------------------------------------------------------
    discord_token: SecretStr | None = None
    owner_ids: IdList = Field(default_factory=list)
    admin_role_ids: IdList = Field(default_factory=list)
    guild_ids: IdList = Field(default_factory=list)
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # -- Discord sharding --------------------------------------------------------------
    # Unset: one gateway connection (discord.Client), enough below ~2,500 servers, where
    # Discord starts requiring shards. "auto": AutoShardedClient with the count Discord
    # recommends; a number N: AutoShardedClient with N shards.
    shards: int | Literal["auto"] | None = None

    @field_validator("shards", mode="before")
    @classmethod
    def _check_shards(cls, value: object) -> object:
        return _parse_shards(value)

    # -- pictures people send (/draw image/like, the context menus) ------------------------
    # Refused before any byte is read when larger; Discord's own limit (25 MiB) caps it.
    max_attachment_mb: int = Field(default=20, ge=1, le=25)

    @field_validator("owner_ids", "admin_role_ids", "guild_ids", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _split_ids(value)

    @field_validator("owner_ids", "admin_role_ids", "guild_ids")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        return _check_ids(value)

    @field_validator("discord_api_base")
    @classmethod
    def _check_api_base(cls, value: str | None) -> str | None:
        return value if value is None else with_scheme(value, "http", "https")

    @field_validator("discord_gateway_url")
    @classmethod
    def _check_gateway(cls, value: str | None) -> str | None:
        return value if value is None else with_scheme(value, "ws", "wss")


def load_settings(**overrides: Any) -> BotSettings:
    """Every setting, the engine's and the bot's; one line per bad variable."""
    return load(BotSettings, **overrides)
