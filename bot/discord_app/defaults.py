"""A user's /settings defaults applied to a /draw, and how they are shown.

Pure functions: the defaults are read by the caller (SQLite, in a thread). An option given
in /draw always wins; a default fills only what the option left out, and each one used is
named in the reply ("using your default: steps 30").
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.discord_app import limits
from bot.discord_app import texts as T
from bot.discord_app.parsing import DrawOptions
from engine.planning.lora_weights import LoraRequest
from engine.requests import DrawRequest
from engine.user_defaults import UserDefaults


def lora_text(loras: Sequence[LoraRequest]) -> str:
    """`name:0.8, other` as /draw's loras option takes it."""
    parts = []
    for lora in loras:
        name, weight = lora.name, lora.weight
        parts.append(name if weight is None else f"{name}:{weight:g}")
    return ", ".join(parts)


def shown_values(defaults: UserDefaults, locale: str) -> list[tuple[str, str]]:
    """(key, value as shown) for each default that is set, size as one item."""
    out: list[tuple[str, str]] = []
    if defaults.checkpoint:
        out.append(("checkpoint", defaults.checkpoint))
    if defaults.width and defaults.height:
        out.append(("size", f"{defaults.width}×{defaults.height}"))
    if defaults.steps is not None:
        out.append(("steps", str(defaults.steps)))
    if defaults.cfg is not None:
        out.append(("cfg", f"{defaults.cfg:g}"))
    if defaults.sampler:
        out.append(("sampler", defaults.sampler))
    if defaults.negative:
        out.append(("negative", limits.clip(defaults.negative, 60)))
    if defaults.loras:
        out.append(("loras", lora_text(defaults.loras)))
    if defaults.hires is not None:
        out.append(("hires", T.HIRES_OFF.render(locale) if defaults.hires <= 1 else f"{defaults.hires:g}×"))
    return out


def apply_defaults(request: DrawRequest, options: DrawOptions, defaults: UserDefaults) -> list[str]:
    """Fill what /draw left out from `defaults` (in place); the keys of the defaults used."""
    used: list[str] = []
    if options.checkpoint is None and defaults.checkpoint:
        request.checkpoint = defaults.checkpoint
        used.append("checkpoint")
    if options.size is None and defaults.width and defaults.height and request.init_image is None:
        # image-to-image draws at the picture's own size unless a size is given
        request.width, request.height = defaults.width, defaults.height
        used.append("size")
    if options.steps is None and defaults.steps is not None:
        request.steps = defaults.steps
        used.append("steps")
    if options.cfg is None and defaults.cfg is not None:
        request.cfg = defaults.cfg
        used.append("cfg")
    if request.sampler is None and defaults.sampler:
        request.sampler = defaults.sampler
        used.append("sampler")
    if options.negative is None and defaults.negative:
        request.negative = defaults.negative
        used.append("negative")
    if options.loras is None and defaults.loras:
        request.loras = list(defaults.loras)
        used.append("loras")
    if options.hires is None and defaults.hires is not None:
        request.hires = defaults.hires
        used.append("hires")
    return used


def used_text(defaults: UserDefaults, used: list[str], locale: str) -> str | None:
    """"Using your default: steps 30, size 832×1216. …", or None when none was used."""
    if not used:
        return None
    shown = dict(shown_values(defaults, locale))
    items = ", ".join(f"{T.default_name(key, locale)} {shown[key]}" for key in used if key in shown)
    return T.USING_DEFAULTS.render(locale, items=items)
