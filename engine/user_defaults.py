"""Per-user drawing defaults (`/settings` in the bot): what a person's draws use when they
leave an option out.

One row per user in the `user_defaults` table (migration 6), the values as one JSON
object, so adding a default later needs no migration. Every value is checked when it is
set, against the same rules and admin limits a draw meets; the planner checks the request
again at draw time, so a limit an admin lowers afterwards still applies.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.admin_settings import Limits
from engine.db import ThreadLocalDB
from engine.errors import LimitError, RequestError
from engine.i18n import Text
from engine.pipeline.samplers import get_sampler
from engine.planning.lora_weights import LoraRequest, parse_lora_list
from engine.planning.prompt_checks import check_prompt_syntax, check_prompt_text
from engine.settings import Settings

TABLE = "user_defaults"
# A1111 and Forge offer hires scales up to 4, but an SDXL second pass above 2x leaves
# the sizes the model was trained on; the planner enforces the admin's own maximum.
HIRES_MIN, HIRES_MAX = 1.0, 2.0
CFG_MAX = 30.0
MIN_SIZE = 64

_UNKNOWN_KEY = Text(
    "“{name}” is not a default you can set. These are: {choices}.",
    "「{name}」不是可以設定的預設值。可以設定的有：{choices}。",
)
_BAD_STEPS = Text(
    "Default steps must be a whole number from 1 to {high} (the admin's limit).",
    "預設步數必須是 1 到 {high} 之間的整數（管理員的上限）。",
)
_BAD_SIZE = Text(
    "A default size must be from {low} to {high} pixels per side, in multiples of 8 (for example 832x1216).",
    "預設尺寸每邊必須介於 {low} 到 {high} 像素，且為 8 的倍數（例如 832x1216）。",
)
_BAD_CFG = Text(
    "The default CFG must be a number from 0 to {high}.",
    "預設 CFG 必須是 0 到 {high} 之間的數字。",
)
_BAD_HIRES = Text(
    "The default hires scale must be from {low:g} (off) to {high:g}.",
    "預設高解析放大倍率必須介於 {low:g}（關閉）到 {high:g} 之間。",
)
_BAD_WEIGHT = Text(
    "“{name}” has weight {weight:g}; LoRA weights must be between {low:g} and {high:g}.",
    "「{name}」的權重是 {weight:g}；LoRA 權重必須介於 {low:g} 和 {high:g} 之間。",
)


@dataclass
class UserDefaults:
    """A user's defaults; None (or an empty list) means "not set": the admin's default."""

    checkpoint: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    negative: str | None = None
    loras: list[LoraRequest] = field(default_factory=list)
    hires: float | None = None  # the scale; 1.0 = off, None = the admin's default

    @property
    def empty(self) -> bool:
        return self == UserDefaults()

    def set_names(self) -> list[str]:
        """The names of the defaults that are set, in the order of the fields."""
        return [f.name for f in fields(self) if getattr(self, f.name) not in (None, [])]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["loras"] = [{"name": l.name, "weight": l.weight} for l in self.loras]
        return {key: value for key, value in data.items() if value not in (None, [])}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserDefaults:
        # A row written by another version may carry keys this one does not know.
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["loras"] = [LoraRequest(str(item["name"]), item.get("weight")) for item in values.get("loras") or []]
        return cls(**values)


KEYS = tuple(f.name for f in fields(UserDefaults))


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def check_value(name: str, value: Any, *, settings: Settings, limits: Limits) -> Any:
    """`value` cleaned for default `name`, or a RequestError/LimitError saying what to fix.
    A checkpoint is only cleaned here (the library decides whether it exists)."""
    if name == "steps":
        steps = _int(value)
        if steps is None or not 1 <= steps <= limits.max_steps:
            raise LimitError(_BAD_STEPS, high=limits.max_steps)
        return steps
    if name in ("width", "height"):
        size = _int(value)
        if size is None or not MIN_SIZE <= size <= limits.max_size or size % 8:
            raise LimitError(_BAD_SIZE, low=MIN_SIZE, high=limits.max_size)
        return size
    if name == "cfg":
        cfg = _number(value)
        if cfg is None or not 0 <= cfg <= CFG_MAX:
            raise LimitError(_BAD_CFG, high=CFG_MAX)
        return cfg
    if name == "hires":
        scale = _number(value)
        if scale is None or not HIRES_MIN <= scale <= HIRES_MAX:
            raise LimitError(_BAD_HIRES, low=HIRES_MIN, high=HIRES_MAX)
        return scale
    if name == "sampler":
        return get_sampler(str(value)).name
    if name == "negative":
        _, negative = check_prompt_text("x", str(value), limit=settings.max_prompt_chars)
        check_prompt_syntax(negative, "negative")
        return negative or None
    if name == "loras":
        loras = parse_lora_list(value, max_loras=settings.max_loras) if isinstance(value, str) else list(value)
        for lora in loras:
            if lora.weight is not None and not settings.lora_weight_min <= lora.weight <= settings.lora_weight_max:
                raise LimitError(
                    _BAD_WEIGHT, name=lora.name, weight=lora.weight, low=settings.lora_weight_min, high=settings.lora_weight_max
                )
        return loras
    if name == "checkpoint":
        return str(value).strip() or None
    raise RequestError(_UNKNOWN_KEY, name=name, choices=", ".join(KEYS))


class UserDefaultsStore:
    """The `user_defaults` table. Synchronous (SQLite): front ends call it in a thread."""

    def __init__(self, dbs: ThreadLocalDB, settings: Settings) -> None:
        self.dbs = dbs
        self.settings = settings

    def get(self, user_id: str) -> UserDefaults:
        rows = list(self.dbs.db.query(f"SELECT defaults FROM {TABLE} WHERE user_id = ?", [user_id]))
        if not rows:
            return UserDefaults()
        try:
            data = json.loads(rows[0]["defaults"])
        except (TypeError, ValueError):
            return UserDefaults()  # a damaged row must not stop the user from drawing
        return UserDefaults.from_json(data) if isinstance(data, dict) else UserDefaults()

    def set(self, user_id: str, limits: Limits, **values: Any) -> UserDefaults:
        """Change the named defaults (None clears one); all are checked before any is kept."""
        current = self.get(user_id)
        for name, value in values.items():
            if name not in KEYS:
                raise RequestError(_UNKNOWN_KEY, name=name, choices=", ".join(KEYS))
            if value is None or (name == "loras" and value in ("", [])):
                setattr(current, name, [] if name == "loras" else None)
            else:
                setattr(current, name, check_value(name, value, settings=self.settings, limits=limits))
        if current.empty:
            self.clear(user_id)
        else:
            self.dbs.db.table(TABLE).upsert(
                {"user_id": user_id, "defaults": json.dumps(current.to_json()), "updated_at": time.time()}, pk="user_id"
            )
        return current

    def clear(self, user_id: str) -> None:
        self.dbs.db.execute(f"DELETE FROM {TABLE} WHERE user_id = ?", [user_id])
