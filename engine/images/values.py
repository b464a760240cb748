"""Reading one value out of a stranger's parameters: numbers checked for sense, samplers
named as Loracle names them, and a warning for every value left out.

These bounds only throw out nonsense (a NaN CFG, a 10^9-step job, a negative size); the
admin's limits are applied later, when a request is built (engine/images/like.py).
"""

from __future__ import annotations

import math
from typing import Any

from engine.i18n import Message, Text
from engine.pipeline.samplers import DEFAULT_SAMPLER, SAMPLERS

MAX_STEPS = 1000
MAX_SIDE = 16_384
MAX_CFG = 100.0
MAX_SEED = 2**64 - 1  # ComfyUI's seeds are 64-bit; A1111's 32-bit
MAX_CLIP_SKIP = 12
MAX_HIRES = 8.0
MAX_WEIGHT = 100.0
_SHOWN = 60  # characters of a bad value quoted back

BAD_VALUE = Text(
    "The picture's {field} “{value}” makes no sense and was left out.",
    "圖片的 {field}「{value}」不合理，已略過。",
)
UNKNOWN_SAMPLER = Text(
    "The picture's sampler “{name}” is not one Loracle has; {default} is used instead.",
    "圖片的取樣器「{name}」不是 Loracle 提供的；改用 {default}。",
)
OTHER_SCHEDULE = Text(
    "The picture's sampler “{name}” with the “{schedule}” schedule is not one Loracle has; {used} is used instead.",
    "圖片的取樣器「{name}」搭配「{schedule}」排程不是 Loracle 提供的；改用 {used}。",
)


def bad(warnings: list[Message], field: str, value: Any) -> None:
    warnings.append(Message.of(BAD_VALUE, field=field, value=str(value)[:_SHOWN]))


def number(value: Any) -> float | None:
    """A finite float from a number or numeric text; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str) and 0 < len(value.strip()) <= 40:
        try:
            result = float(value.strip().replace("_", "x"))  # "1_0" is not ten
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def integer(warnings: list[Message], field: str, value: Any, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    exact = _exact_int(value)
    if exact is not None:
        if low <= exact <= high:
            return exact
        bad(warnings, field, value)
        return None
    found = number(value)
    if found is None or not found.is_integer() or not low <= found <= high:
        bad(warnings, field, value)
        return None
    return int(found)


def _exact_int(value: Any) -> int | None:
    """Whole numbers read exactly: a 64-bit seed does not survive a float."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isascii() and digits.isdigit() and len(digits) <= 40:
            return int(text)
    return None


def real(warnings: list[Message], field: str, value: Any, low: float, high: float) -> float | None:
    if value is None or value == "":
        return None
    found = number(value)
    if found is None or not low <= found <= high:
        bad(warnings, field, value)
        return None
    return found


def size(warnings: list[Message], value: str | None) -> tuple[int | None, int | None]:
    """A1111's "832x1216"."""
    if not value:
        return None, None
    width, sep, height = value.lower().partition("x")
    if not sep:
        bad(warnings, "Size", value)
        return None, None
    w = integer(warnings, "Size", width, 1, MAX_SIDE)
    h = integer(warnings, "Size", height, 1, MAX_SIDE)
    return (w, h) if w is not None and h is not None else (None, None)


def seed(warnings: list[Message], value: Any) -> int | None:
    """-1 (A1111's "random") and no seed at all read as None."""
    found = number(value)
    if found is not None and found == -1:
        return None
    return integer(warnings, "Seed", value, 0, MAX_SEED)


# -- samplers ------------------------------------------------------------------------
def _key(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).casefold()


_BY_NAME = {_key(s.name): s.name for s in SAMPLERS}
_BY_INFOTEXT = {(_key(s.infotext[0]), _key(s.infotext[1])): s.name for s in SAMPLERS}
# A1111 >= 1.9 writes "Automatic" for the sampler's own default schedule, Karras for these.
_KARRAS_BY_DEFAULT = {"dpm++ 2m", "dpm++ sde", "dpm++ 2m sde"}
# A1111's old short names (k_euler_a) as the API and some PNG writers still use them.
_ALIASES = {"k euler a": "Euler a", "k euler": "Euler", "k dpmpp 2m": "DPM++ 2M", "k dpmpp 2m ka": "DPM++ 2M Karras"}
# ComfyUI's KSampler names; the schedule ("karras", "normal", ...) is a separate input.
_COMFY = {
    "euler": "Euler",
    "euler ancestral": "Euler a",
    "dpmpp 2m": "DPM++ 2M",
    "dpmpp 2m sde": "DPM++ 2M SDE Karras",
    "dpmpp 2m sde gpu": "DPM++ 2M SDE Karras",
    "dpmpp sde": "DPM++ SDE Karras",
    "dpmpp sde gpu": "DPM++ SDE Karras",
    "ddim": "DDIM",
    "uni pc": "UniPC",
    "uni pc bh2": "UniPC",
}


def a1111_sampler(warnings: list[Message], name: str | None, schedule: str | None) -> str | None:
    """Loracle's sampler for A1111's `Sampler` (and `Schedule type`); unknown: a warning
    and None (the default)."""
    if not name:
        return None
    key = _key(name)
    sched = _key(schedule) if schedule else ""
    if sched == "automatic" and key in _KARRAS_BY_DEFAULT:
        sched = "karras"
    found = _BY_INFOTEXT.get((key, sched))
    if found is None and sched in ("", "automatic", "uniform", "normal"):
        found = _BY_NAME.get(key) or _ALIASES.get(key)
    if found is None and sched == "karras":
        found = _BY_NAME.get(f"{key} karras")
    if found is None:
        _unknown(warnings, name if not schedule else f"{name} ({schedule})")
    return found


def comfy_sampler(warnings: list[Message], name: str | None, scheduler: str | None) -> str | None:
    if not name or not isinstance(name, str):
        return None
    key = _key(name)
    base = _COMFY.get(key)
    if base is None:
        _unknown(warnings, name)
        return None
    sched = _key(scheduler) if isinstance(scheduler, str) else "normal"
    if base == "DPM++ 2M" and sched == "karras":
        return "DPM++ 2M Karras"
    plain = ("normal", "simple", "sgm uniform", "ddim uniform")
    if (sched != "karras") if base.endswith("Karras") else (sched not in plain):
        warnings.append(Message.of(OTHER_SCHEDULE, name=name, schedule=str(scheduler), used=base))
    return base


def _unknown(warnings: list[Message], name: str) -> None:
    warnings.append(Message.of(UNKNOWN_SAMPLER, name=name[:_SHOWN], default=DEFAULT_SAMPLER))
