"""Settings admins change at run time (from Discord or the CLI), kept in the `kv` table.

Environment settings are the defaults; a value set here wins until it is reset.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.db import ThreadLocalDB
from engine.errors import LimitError
from engine.i18n import Text
from engine.settings import Settings
from engine.text_input import clean_name


@dataclass
class Limits:
    max_steps: int
    max_size: int
    max_images: int
    queue_per_user: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_steps, settings.max_size, settings.max_images, settings.queue_per_user)


_BAD_LIMIT = Text(
    "{name} must be a whole number from 1 to {ceiling}.",
    "{name} 必須是 1 到 {ceiling} 之間的整數。",
)
_SIZE_NOT_8 = Text(
    "max_size must be a multiple of 8 (SDXL draws in blocks of 8 pixels), for example {suggestion}.",
    "max_size 必須是 8 的倍數（SDXL 以 8 像素為單位作畫），例如 {suggestion}。",
)
# Hard ceilings: an admin typo must not let one job hold the GPU for an hour.
_CEILINGS = {"max_steps": 150, "max_size": 4096, "max_images": 8, "queue_per_user": 50}


class AdminSettings:
    def __init__(self, dbs: ThreadLocalDB, settings: Settings) -> None:
        self.dbs = dbs
        self.settings = settings

    def _get(self, key: str) -> Any:
        rows = list(self.dbs.db.query("SELECT value FROM kv WHERE key = ?", [key]))
        return json.loads(rows[0]["value"]) if rows else None

    def _set(self, key: str, value: Any) -> None:
        if value is None:
            self.dbs.db.execute("DELETE FROM kv WHERE key = ?", [key])
        else:
            self.dbs.db.table("kv").upsert({"key": key, "value": json.dumps(value)}, pk="key")

    # -- limits ----------------------------------------------------------------------
    def limits(self) -> Limits:
        limits = Limits.from_settings(self.settings)
        stored = self._get("limits") or {}
        for f in fields(Limits):
            if isinstance(stored.get(f.name), int):
                setattr(limits, f.name, stored[f.name])
        return limits

    def set_limits(self, **values: int | None) -> Limits:
        stored = self._get("limits") or {}
        for name, value in values.items():
            if name not in _CEILINGS:
                raise ValueError(name)
            if value is None:
                stored.pop(name, None)
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _CEILINGS[name]:
                raise LimitError(_BAD_LIMIT, name=name, ceiling=_CEILINGS[name])
            if name == "max_size" and value % 8:
                # the default size is capped at max_size: every /draw without a size would fail
                raise LimitError(_SIZE_NOT_8, suggestion=max(64, value // 8 * 8))
            stored[name] = value
        self._set("limits", stored or None)
        return self.limits()

    # -- default checkpoint ----------------------------------------------------------
    def default_checkpoint(self) -> str | None:
        return self._get("default_checkpoint") or self.settings.default_checkpoint

    def set_default_checkpoint(self, name: str | None) -> None:
        self._set("default_checkpoint", name)

    # -- per-guild prompt blocklist --------------------------------------------------
    def blocklist(self, guild_id: str | None) -> list[str]:
        if not guild_id:
            return []
        return list(self._get(f"blocklist:{guild_id}") or [])

    def set_blocklist(self, guild_id: str, words: list[str]) -> list[str]:
        cleaned = sorted({clean_name(w).casefold() for w in words if clean_name(w)})
        self._set(f"blocklist:{guild_id}", cleaned or None)
        return cleaned

    def as_dict(self) -> dict[str, Any]:
        return {"limits": asdict(self.limits()), "default_checkpoint": self.default_checkpoint()}
