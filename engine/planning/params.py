"""Generation parameters: defaults from the settings, bounds from the admin's limits."""

from __future__ import annotations

import math
import random
from typing import Any

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
    request: DrawRequest,
    prompt: str,
    negative: str,
    settings: Settings,
    limits: Limits,
    *,
    init_size: tuple[int, int] | None = None,
) -> GenerationParams:
    """`init_size`: the stored picture of an image-to-image or upscale job, whose size is
    the job's (first-pass) size unless the request names one."""
    s = settings
    steps = request.steps if request.steps is not None else min(s.default_steps, limits.max_steps)
    cfg = request.cfg if request.cfg is not None else s.default_cfg
    default_width, default_height = init_size or (min(s.default_width, limits.max_size), min(s.default_height, limits.max_size))
    width = request.width if request.width is not None else default_width
    height = request.height if request.height is not None else default_height
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
        **image_params(request, settings, limits, int(width), int(height), int(steps), has_image=init_size is not None),
        clip_skip=request.clip_skip,
    )


_HIRES_TOO_BIG = Text(
    "A hires scale of {scale} turns {width}×{height} into {final_width}×{final_height}, past the "
    "largest side allowed ({max_size} pixels). Use a scale up to {fits}, or a smaller size.",
    "高解析放大 {scale} 倍會把 {width}×{height} 變成 {final_width}×{final_height}，超過允許的最大邊長"
    "（{max_size} 像素）。請把倍率設在 {fits} 以內，或改用較小的尺寸。",
)
_STEPS_PER_STRENGTH = Text(
    "With {steps} steps at a {what} of {strength}, the {stage} would run no step at all (it runs "
    "steps × strength of them). Raise the steps or the {what}.",
    "{steps} 步、{what} 為 {strength} 時，{stage_zh}一步也不會執行（執行「步數 × 強度」步）。請提高步數或 {what}。",
)
LATENT, LANCZOS = "latent", "lanczos"


def image_params(
    request: DrawRequest, settings: Settings, limits: Limits, width: int, height: int, steps: int, *, has_image: bool
) -> dict[str, Any]:
    """The image-to-image and hires fields of GenerationParams, checked against the limits.

    A request that leaves `hires` unset gets the admin's default (LORACLE_HIRES_DEFAULT)
    when it draws from text; a job from a picture runs a hires pass only when asked.
    """
    s = settings
    fields: dict[str, Any] = {}
    scale = request.hires
    if scale is None:
        scale = s.hires_default_scale if s.hires_default and not has_image else 1.0
    check_range("hires", scale, 1, s.hires_max_scale)
    if scale <= 1:
        if has_image:  # image-to-image; an upscale job's second pass uses hires_denoise
            strength = request.strength if request.strength is not None else s.img2img_default_strength
            check_range("strength", strength, 0.01, 1)
            _check_second_pass(steps, float(strength), "strength")
            fields["strength"] = float(strength)
        return fields
    denoise = request.hires_denoise if request.hires_denoise is not None else s.hires_default_denoise
    check_range("hires_denoise", denoise, 0.01, 1)
    hires_steps = request.hires_steps or 0
    if hires_steps:
        check_range("hires_steps", hires_steps, 1, limits.max_steps)
    _check_second_pass(hires_steps or steps, float(denoise), "hires_denoise")
    final = (int(width * scale) // 8 * 8, int(height * scale) // 8 * 8)
    if max(final) > limits.max_size:
        fits = math.floor(limits.max_size / max(width, height) * 100) / 100
        raise LimitError(
            _HIRES_TOO_BIG, scale=scale, width=width, height=height, final_width=final[0], final_height=final[1],
            max_size=limits.max_size, fits=max(1.0, fits),
        )
    upscaler = (request.hires_upscaler or s.hires_default_upscaler).strip()
    if upscaler.lower() in (LATENT, LANCZOS):
        upscaler = upscaler.lower()
    if has_image and upscaler == LATENT:
        # An upscale job starts from pixels; resizing them is what "latent" would do to
        # their encoding, without a lossy VAE round trip.
        upscaler = LANCZOS
    fields.update(hires=float(scale), hires_denoise=float(denoise), hires_steps=int(hires_steps), hires_upscaler=upscaler)
    return fields


def _check_second_pass(steps: int, strength: float, what: str) -> None:
    if min(int(steps * strength), steps) < 1:
        raise LimitError(
            _STEPS_PER_STRENGTH, steps=steps, what=what, strength=strength,
            stage="image-to-image pass" if what == "strength" else "hires pass",
            stage_zh="圖生圖階段" if what == "strength" else "高解析階段",
        )
