"""Turning /draw options into an engine DrawRequest, refusing bad input early.

These checks are cheap and run before the interaction is deferred, so their answers can
be private (ephemeral); everything that needs the library (names, NSFW flags,
compatibility, limits) is left to `Engine.plan`, which runs after the defer. No rule is
kept here: the prompt check is the engine's (engine.planning.prompt_checks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.discord_app import limits
from bot.discord_app import texts as T
from engine.errors import RequestError
from engine.planning.lora_weights import parse_lora_list
from engine.planning.prompt_checks import check_prompt_text
from engine.requests import DrawRequest, Origin
from engine.text_input import clean_name

# One `\s*` per gap: two in a row (`\s*(?:px)?\s*$`) would try every split of a long run.
_SIZE = re.compile(r"^\s*(\d{2,5})\s*[x×*X,]\s*(\d{2,5})\s*(?:px\s*)?$")


@dataclass
class DrawOptions:
    """The /draw options exactly as Discord delivered them."""

    prompt: str
    negative: str | None = None
    checkpoint: str | None = None
    loras: str | None = None
    size: str | None = None
    steps: int | None = None
    cfg: float | None = None
    seed: int | None = None
    count: int | None = None
    image: Any = None  # a discord.Attachment: draw from this picture (image-to-image)
    strength: float | None = None
    hires: float | None = None
    like: Any = None  # a discord.Attachment: draw like this picture; the options above override it


def parse_size(text: str) -> tuple[int, int]:
    """"832x1216", "832 × 1216", "８３２ｘ１２１６" -> (832, 1216)."""
    match = _SIZE.match(clean_name(text))
    if not match:
        raise RequestError(T.BAD_SIZE, value=limits.clip(clean_name(text), 40))
    return int(match.group(1)), int(match.group(2))


def build_request(
    options: DrawOptions,
    *,
    user_id: str,
    scope: str | None,
    origin: Origin | None,
    locale: str,
    allow_nsfw: bool,
    max_loras: int,
    max_prompt_chars: int,
) -> DrawRequest:
    """A DrawRequest, or a RequestError/WeightError/LimitError saying what to fix."""
    # The engine's own check (the planner runs it again): answered before the defer, so
    # the refusal is private.
    if options.like is not None and not options.prompt.strip():
        # the picture brings its prompt; only the negative is checked here
        check_prompt_text("x", options.negative or "", limit=max_prompt_chars)
    else:
        check_prompt_text(options.prompt, options.negative or "", limit=max_prompt_chars)
    if options.strength is not None and options.image is None:
        raise RequestError(T.STRENGTH_NEEDS_IMAGE)
    loras = parse_lora_list(options.loras or "", max_loras=max_loras)
    width = height = None
    if options.size:
        width, height = parse_size(options.size)
    checkpoint = clean_name(options.checkpoint) if options.checkpoint else None
    return DrawRequest(
        prompt=options.prompt,
        negative=options.negative or "",
        checkpoint=checkpoint or None,
        loras=loras,
        seed=options.seed,
        steps=options.steps,
        cfg=options.cfg,
        width=width,
        height=height,
        count=options.count or 1,
        strength=options.strength,
        hires=options.hires,
        user_id=user_id,
        scope=scope,
        origin=origin,
        locale=locale,
        allow_nsfw=allow_nsfw,
    )
