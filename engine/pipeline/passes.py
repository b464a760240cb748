"""The second pass of a job: image-to-image on the loaded checkpoint's own components.

Hires fix as A1111 defines it (modules/processing.py, StableDiffusionProcessingTxt2Img):
a first pass at the asked size, an upscale, then an image-to-image pass at the hires
denoising strength with the same seed, prompt and LoRAs. A1111's "Latent" upscaler
resizes the latents bilinearly (its default `latent_upscale_default_mode`, antialias
off); "Lanczos" and upscaler models work on the decoded pixels.

The image-to-image pipeline is diffusers' `StableDiffusionXLImg2ImgPipeline.from_pipe`:
the same UNet, text encoders and VAE objects as the text-to-image pipeline, so no second
copy is kept and the LoRA patcher's in-place weights serve both passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from engine.errors import LimitError
from engine.i18n import Text

if TYPE_CHECKING:
    from PIL.Image import Image

# An upscaler model: the picture and the (width, height) it must come out at.
PixelUpscaler = Callable[["Image", tuple[int, int]], "Image"]

_TOO_FEW_STEPS = Text(
    "With {steps} steps at a denoising strength of {strength}, the second pass would run no step "
    "at all (A1111 runs steps × strength of them). Raise the steps or the strength.",
    "{steps} 步、重繪強度 {strength} 時，第二階段一步也不會執行（A1111 執行「步數 × 強度」步）。請提高步數或強度。",
)

# A1111's names for the upscalers in its infotext (`Hires upscaler`); models keep theirs.
INFOTEXT_UPSCALERS = {"latent": "Latent", "lanczos": "Lanczos"}


class _NoEmptyFp32Notice(logging.Filter):
    """diffusers' image-to-image casts the VAE to float32 and back on every job and each
    cast warns that "these modules should be kept in float32: []": an empty list, i.e.
    nothing to say, twice per job in the log. Notices naming real modules still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []." not in record.getMessage()


def build_img2img(pipe: Any) -> Any:
    """The image-to-image pipeline over `pipe`'s components (shared, not copied)."""
    from diffusers import StableDiffusionXLImg2ImgPipeline
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # from_pipe's notes on unused components
    try:
        img2img = StableDiffusionXLImg2ImgPipeline.from_pipe(pipe)
    finally:
        diffusers_logging.set_verbosity(level)
    img2img.set_progress_bar_config(disable=True)
    modeling = logging.getLogger("diffusers.models.modeling_utils")
    if not any(isinstance(f, _NoEmptyFp32Notice) for f in modeling.filters):
        modeling.addFilter(_NoEmptyFp32Notice())
    return img2img


def denoised_steps(steps: int, strength: float) -> int:
    """How many steps an image-to-image pass at `strength` runs (diffusers' and A1111's rule)."""
    return min(int(steps * strength), steps)


def check_second_pass(steps: int, strength: float) -> None:
    if denoised_steps(steps, strength) < 1:
        raise LimitError(_TOO_FEW_STEPS, steps=steps, strength=strength)


def upscale_latents(latents: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A1111's "Latent" hires upscale: bilinear on the latents, no antialiasing."""
    width, height = size
    return F.interpolate(latents, size=(height // 8, width // 8), mode="bilinear", antialias=False, align_corners=False)


def resize_pixels(image: Image, size: tuple[int, int]) -> Image:
    """Lanczos, A1111's "Lanczos" upscaler; also fits an upscaler model's fixed scale."""
    from PIL import Image as PILImage

    return image if image.size == size else image.resize(size, PILImage.Resampling.LANCZOS)


class StepCounter:
    """Progress over both passes as one count: `on_step(done, total)`.

    The second pass's length is known from the plan (steps × strength) before it starts,
    so the total is stable from the first step; a sampler that evaluates twice per step
    (DPM++ SDE) scales both passes alike.
    """

    def __init__(self, on_step: Callable[[int, int], None] | None, first_steps: int, second: int) -> None:
        self.on_step = on_step
        self.first_steps = first_steps  # the asked steps of the first pass (0: no first pass)
        self.second = second  # the steps the second pass will run (0: no second pass)
        self.offset = 0

    def first(self, i: int, n: int) -> None:
        if self.on_step is not None:
            per_step = n / self.first_steps if self.first_steps else 1
            self.on_step(i, n + round(self.second * per_step))
        self.offset = n

    def later(self, i: int, n: int) -> None:
        if self.on_step is not None:
            self.on_step(self.offset + i, self.offset + n)
