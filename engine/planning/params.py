"""Generation parameters: defaults from the settings, bounds from the admin's limits."""

from __future__ import annotations

import random

from engine.admin_settings import Limits
from engine.errors import LimitError
from engine.i18n import Text
from engine.pipeline.samplers import get_sampler
from engine.requests import DrawRequest, GenerationParams
from engine.settings import Settings

MAX_SEED = 2**32 - 1

OUT_OF_RANGE = Text(
    "{what} must be between {low} and {high} (you asked for {value}).",
    "{what} 必須介於 {low} 和 {high} 之間（您給的是 {value}）。",
)
_SIZE_STEP = Text(
    "Width and height must be multiples of 8 (you asked for {width}×{height}).",
    "寬和高必須是 8 的倍數（您給的是 {width}×{height}）。",
)


def check_range(what: str, value: float, low: float, high: float) -> None:
    if value != value or not low <= value <= high:
        raise LimitError(OUT_OF_RANGE, what=what, low=low, high=high, value=value)


def generation_params(
    request: DrawRequest, prompt: str, negative: str, settings: Settings, limits: Limits
) -> GenerationParams:
    s = settings
    steps = request.steps if request.steps is not None else min(s.default_steps, limits.max_steps)
    cfg = request.cfg if request.cfg is not None else s.default_cfg
    width = request.width if request.width is not None else min(s.default_width, limits.max_size)
    height = request.height if request.height is not None else min(s.default_height, limits.max_size)
    check_range("steps", steps, 1, limits.max_steps)
    check_range("cfg", cfg, 0, 30)
    check_range("width", width, 64, limits.max_size)
    check_range("height", height, 64, limits.max_size)
    check_range("count", request.count, 1, limits.max_images)
    if width % 8 or height % 8:
        raise LimitError(_SIZE_STEP, width=width, height=height)
    seed = request.seed if request.seed is not None else random.randint(0, MAX_SEED)
    check_range("seed", seed, 0, MAX_SEED)
    return GenerationParams(
        prompt=prompt,
        negative=negative,
        seed=int(seed),
        steps=int(steps),
        cfg=float(cfg),
        width=int(width),
        height=int(height),
        count=int(request.count),
        sampler=get_sampler(request.sampler).name,
        clip_skip=request.clip_skip,
    )
