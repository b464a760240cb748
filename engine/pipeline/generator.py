"""The one place that runs diffusers: load a checkpoint, draw images, report progress.

A `Generator` belongs to the single GPU worker thread; nothing here is thread-safe and
nothing needs to be. It keeps one checkpoint loaded at a time and survives failed jobs:
after an exception (out of memory included) the same pipeline draws the next job exactly
as a freshly loaded one would.

Seeds follow A1111: image i of a batch uses `seed + i`, from its own torch.Generator created
on the CPU, so a seed reproduces the same picture on any GPU (or none) and image 2 of a
batch equals a single image drawn with `seed + 1`.
"""

from __future__ import annotations

import gc
import math
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch

from engine.errors import JobCancelledError, JobFailedError, LimitError, LoracleError
from engine.i18n import Text
from engine.pipeline import prepare_environment
from engine.pipeline.loader import CheckpointSpec, SingleFileInfo, load_pipeline
from engine.pipeline.passes import (
    PixelUpscaler,
    StepCounter,
    build_img2img,
    check_second_pass,
    denoised_steps,
    resize_pixels,
    upscale_latents,
)
from engine.pipeline.prompt_encoder import DroppedTokens, plan_prompts, prompt_inputs
from engine.pipeline.samplers import get_sampler, make_scheduler
from engine.requests import GenerationParams

if TYPE_CHECKING:
    from PIL.Image import Image

# A diffusers Pipeline. diffusers is untyped and its pipelines set their
# parts (unet, vae, scheduler, text encoders) at run time, so its class tells mypy nothing.
Pipeline: TypeAlias = Any

# SDXL's VAE turns each latent cell into 8x8 pixels, and diffusers insists on whole cells.
SIZE_MULTIPLE = 8
MIN_SIZE = 64
_MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed accepts unsigned 64-bit seeds
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class NonFiniteImageError(JobFailedError):
    """The denoise or the decode produced NaN or infinite values: the picture would be black.

    diffusers turns NaN pixels into 0 when it converts them to 8-bit, so without this check
    an overflowed job would "succeed" with an all-black image. The check runs on what
    diffusers hands back, i.e. after its own rescue (the float32 VAE upcast of fp16), so
    only pictures that really are lost fail. `stage` is "latents" or "pixels".
    """

    default_text = Text(
        "The picture came out empty (NaN values: a number overflowed while drawing).",
        "圖片是空的（數值溢位，出現 NaN）。",
    )

    def __init__(self, stage: str) -> None:
        self.stage = stage
        super().__init__()


class _Cancelled(Exception):
    """Raised from the step callback to leave the denoising loop at once.

    Setting `pipe._interrupt` would only skip the remaining steps and still spend a full VAE
    decode on a picture nobody wants.
    """


def release_frames(exc: BaseException | None) -> None:
    """Drop the local variables of every frame `exc` (and what it chains to) passed through.

    A traceback keeps each frame it crossed alive, and with them what those frames held:
    activations and latents of a failed denoise, a half-moved checkpoint, a whole state
    dict. The JobFailedError we raise keeps the original as its `__cause__`, and the queue
    hands that error on to the front end, so without this an out-of-memory job would keep
    its memory for as long as someone holds the error, and the next job would run out too
    (the PyTorch FAQ's "my out of memory exception handler can't allocate memory"). The
    cleared traceback still prints every file and line.
    """
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips frames still running
        pending += [current.__cause__, current.__context__]


def free_memory() -> None:
    """Return cached accelerator memory to the driver after dropping references."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        mps.empty_cache()


class Generator:
    """Holds the loaded pipeline and runs jobs on it, one at a time."""

    def __init__(
        self,
        *,
        device: torch.device | str,
        dtype: torch.dtype,
        cache_dir: Path,
        config_dir_for: Callable[[SingleFileInfo], Path] | None = None,
    ) -> None:
        prepare_environment()  # before the first load imports diffusers
        self.device = torch.device(device)
        self.dtype = dtype
        self.cache_dir = Path(cache_dir)
        self.config_dir_for = config_dir_for
        self.loaded: CheckpointSpec | None = None
        self.pipe: Pipeline | None = None
        self.last_dropped: DroppedTokens = DroppedTokens()
        self._base_scheduler_config: dict[str, Any] = {}
        self._img2img: Pipeline | None = None
        self._img2img_of: Pipeline | None = None  # the pipeline it shares components with

    # -- checkpoints -------------------------------------------------------------------

    def ensure_checkpoint(self, spec: CheckpointSpec) -> bool:
        """Make `spec` the loaded checkpoint; True if it had to be loaded."""
        if self.pipe is not None and self.loaded == spec:
            return False
        # Free the old pipeline before loading the new one: two SDXLs rarely fit in VRAM.
        self.unload()
        try:
            pipe = load_pipeline(
                spec,
                device=self.device,
                dtype=self.dtype,
                cache_dir=self.cache_dir,
                config_dir_for=self.config_dir_for,
            )
        except LoracleError as exc:
            # e.g. CorruptFileError, whose cause still holds the file's state dict
            release_frames(exc)
            free_memory()
            raise
        except Exception as exc:  # out of memory while moving weights to the GPU, mostly
            release_frames(exc)
            free_memory()
            raise _failure(exc) from exc
        self.pipe, self.loaded = pipe, spec
        self._base_scheduler_config = dict(self._require_pipe().scheduler.config)
        return True

    def unload(self) -> None:
        self._img2img = self._img2img_of = None
        self.pipe = None
        self.loaded = None
        self._base_scheduler_config = {}
        free_memory()

    # -- generation --------------------------------------------------------------------

    def dropped_tokens(self, params: GenerationParams) -> DroppedTokens:
        """How many prompt / negative tokens a job would lose past the chunk ceiling
        (prompt_encoder.MAX_CHUNKS); the negative prompt counts only where CFG reads it."""
        return plan_prompts(self._require_pipe(), params.prompt, params.negative, guided=params.cfg > 1).dropped

    def generate(
        self,
        params: GenerationParams,
        *,
        init_image: Image | None = None,
        upscaler: PixelUpscaler | None = None,
        on_step: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> list[Image]:
        """Draw `params.count` images in one batch; `on_step(i, n)` after each of n steps.

        n counts every denoising step the job runs: `params.steps` for most samplers, about
        twice that for DPM++ SDE (two model calls per step), plus the second pass of a
        hires or image-to-image job (steps × strength, as A1111 counts them).

        The kinds of job (DrawRequest.kind): text only; hires (`params.hires` > 1: a first
        pass, an upscale, a second pass, see engine.pipeline.passes); image-to-image from
        `init_image` at `params.strength`; upscale (`init_image` and hires: the upscale and
        the second pass only). `upscaler` upscales pixels when the plan names a model.

        Raises LimitError for impossible parameters, JobCancelledError when `should_cancel`
        turns true, JobFailedError for anything that goes wrong while drawing.

        Prompts are read as A1111 reads them (weights, BREAK, chunks of 75 tokens; see
        prompt_encoder), encoded once for the whole job (both passes). Tokens past the
        chunk ceiling are reported in `last_dropped` (the caller warns the user).
        """
        pipe = self._require_pipe()
        self._validate(pipe, params)
        hires = params.hires > 1
        if init_image is not None and not hires and params.strength is None:
            raise LimitError(Text("An image-to-image job needs a strength.", "圖生圖需要重繪強度。"))
        second_strength = params.hires_denoise if hires else params.strength
        if second_strength is not None:
            check_second_pass(params.second_pass_steps if hires else params.steps, second_strength)
        sampler = get_sampler(params.sampler)
        if should_cancel is not None and should_cancel():
            raise JobCancelledError()
        prompts = plan_prompts(pipe, params.prompt, params.negative, guided=params.cfg > 1)
        self.last_dropped = prompts.dropped
        seeds = [params.seed + i for i in range(params.count)]
        second_steps = params.second_pass_steps if hires else params.steps
        counter = StepCounter(
            on_step,
            params.steps if init_image is None else 0,
            denoised_steps(second_steps, second_strength) if second_strength is not None else 0,
        )

        def stepper(report: Callable[[int, int], None]) -> Callable[..., dict[str, Any]]:
            def step_end(p: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                report(i + 1, p.num_timesteps)
                if should_cancel is not None and should_cancel():
                    raise _Cancelled
                return kwargs

            return step_end

        def check_latents(module: Any, args: tuple[Any, ...]) -> None:
            # On the decoder's input, i.e. once the denoise is over: one device sync per
            # job, and a NaN never turns finite again. (Asking the step callback for the
            # latents would make diffusers keep them in a locals() snapshot that outlives
            # a cancelled job.)
            if not bool(torch.isfinite(args[0]).all()):
                raise NonFiniteImageError("latents")

        hook = pipe.vae.decoder.register_forward_pre_hook(check_latents)
        try:
            with torch.inference_mode():
                # Strings where diffusers encodes them as A1111 would, else the
                # embeddings; an empty negative prompt is all zeros, as in A1111.
                # Encoded once: both passes read the same prompt.
                inputs = prompt_inputs(pipe, prompts, clip_skip=params.clip_skip)
                common = {**inputs, "guidance_scale": params.cfg, "num_images_per_prompt": params.count}
                if init_image is None:
                    latent_hires = hires and params.hires_upscaler == "latent"
                    self._set_scheduler(pipe, sampler.name, seeds)
                    first = pipe(
                        **common,
                        num_inference_steps=params.steps,
                        width=params.width,
                        height=params.height,
                        generator=_generators(seeds),
                        callback_on_step_end=stepper(counter.first),
                        callback_on_step_end_tensor_inputs=[],
                        # Floats, not PIL: the conversion to 8-bit would turn NaN into black.
                        output_type="latent" if latent_hires else "np",
                    )
                    if not hires:
                        return self._finish(pipe, first.images)
                    if latent_hires:
                        latents = first.images
                        if not bool(torch.isfinite(latents).all()):
                            raise NonFiniteImageError("latents")
                        start: Any = upscale_latents(latents, params.hires_size)
                    else:
                        start = [self._upscale(pic, params, upscaler) for pic in self._to_pil(pipe, first.images)]
                    del first
                else:
                    source = resize_pixels(init_image.convert("RGB"), (params.width, params.height))
                    start = [self._upscale(source, params, upscaler) if hires else source] * params.count
                img2img = self.img2img()
                self._set_scheduler(img2img, sampler.name, seeds)
                # A1111 seeds the second pass's noise like the first: same seeds, fresh generators.
                result = img2img(
                    **common,
                    image=start,
                    strength=second_strength,
                    num_inference_steps=second_steps,
                    generator=_generators(seeds),
                    callback_on_step_end=stepper(counter.later),
                    callback_on_step_end_tensor_inputs=[],
                    output_type="np",
                )
                return self._finish(pipe, result.images)
        except _Cancelled as exc:
            self._recover(exc)
            raise JobCancelledError() from None
        except LoracleError as exc:
            self._recover(exc)
            raise
        except Exception as exc:
            self._recover(exc)
            raise _failure(exc) from exc
        finally:
            hook.remove()

    def img2img(self) -> Pipeline:
        """The image-to-image pipeline over the loaded checkpoint's components, built once
        per loaded checkpoint (cheap: no weights are copied) and dropped with it."""
        pipe = self._require_pipe()
        if self._img2img is None or self._img2img_of is not pipe:
            self._img2img, self._img2img_of = build_img2img(pipe), pipe
        return self._img2img

    def _set_scheduler(self, pipe: Pipeline, name: str, seeds: list[int]) -> None:
        pipe.scheduler = make_scheduler(name, self._base_scheduler_config)
        if hasattr(pipe.scheduler, "noise_sampler_seed"):
            # DPM++ SDE draws its noise from Brownian trees, not from `generator`; one tree
            # per image, seeded like the image, keeps batches equal to single runs.
            pipe.scheduler.noise_sampler_seed = seeds

    @staticmethod
    def _to_pil(pipe: Pipeline, pixels: Any) -> list[Image]:
        if not np.isfinite(pixels).all():
            raise NonFiniteImageError("pixels")
        return list(pipe.image_processor.numpy_to_pil(pixels))

    def _finish(self, pipe: Pipeline, pixels: Any) -> list[Image]:
        return self._to_pil(pipe, pixels)

    @staticmethod
    def _upscale(image: Image, params: GenerationParams, upscaler: PixelUpscaler | None) -> Image:
        size = params.hires_size
        if upscaler is not None and params.hires_upscaler not in ("latent", "lanczos"):
            # a model has a fixed scale (2x, 4x): Lanczos takes its output to the asked size
            return resize_pixels(upscaler(image, size), size)
        return resize_pixels(image, size)

    # -- internals ---------------------------------------------------------------------

    def _require_pipe(self) -> Pipeline:
        if self.pipe is None:
            raise JobFailedError(
                Text(
                    "No checkpoint is loaded, so nothing can be drawn.",
                    "尚未載入任何主模型，無法繪圖。",
                )
            )
        return self.pipe

    def _recover(self, exc: BaseException) -> None:
        release_frames(exc)  # before free_memory: the frames still hold the job's tensors
        pipe = self.pipe
        if self._img2img is not None:
            self._img2img._interrupt = False
        if pipe is not None:
            pipe._interrupt = False
            # diffusers upcasts the VAE to float32 for the decode and casts it back after;
            # an exception in between would leave it in float32 and break the next job.
            if pipe.vae.dtype != self.dtype:
                pipe.vae.to(dtype=self.dtype)
        free_memory()

    @staticmethod
    def _validate(pipe: Pipeline, params: GenerationParams) -> None:
        def limit(en: str, zh: str, **values: Any) -> LimitError:
            return LimitError(Text(en, zh), **values)

        for side, value in (("width", params.width), ("height", params.height)):
            if value < MIN_SIZE or value % SIZE_MULTIPLE:
                raise limit(
                    "The {side} must be a multiple of {step} pixels and at least {low} (got {value}). "
                    "Try {nearest}.",
                    "{side_zh}必須是 {step} 像素的倍數，且至少 {low}（收到 {value}）。可改用 {nearest}。",
                    side=side,
                    side_zh="寬度" if side == "width" else "高度",
                    step=SIZE_MULTIPLE,
                    low=MIN_SIZE,
                    value=value,
                    nearest=max(MIN_SIZE, (value + SIZE_MULTIPLE // 2) // SIZE_MULTIPLE * SIZE_MULTIPLE),
                )
        if params.steps < 1:
            raise limit(
                "The number of steps must be at least 1 (got {steps}).",
                "步數至少要 1（收到 {steps}）。",
                steps=params.steps,
            )
        if params.count < 1:
            raise limit(
                "The number of images must be at least 1 (got {count}).",
                "圖片數量至少要 1（收到 {count}）。",
                count=params.count,
            )
        if not math.isfinite(params.cfg) or params.cfg < 0:
            raise limit(
                "The CFG scale must be a number of 0 or more (got {cfg}).",
                "CFG 值必須是 0 或以上的數字（收到 {cfg}）。",
                cfg=params.cfg,
            )
        if params.seed < 0 or params.seed + params.count - 1 > _MAX_SEED:
            raise limit(
                "The seed must be between 0 and {top} (got {seed}).",
                "種子必須介於 0 與 {top} 之間（收到 {seed}）。",
                top=_MAX_SEED - params.count + 1,
                seed=params.seed,
            )
        second = (("strength", params.strength), ("hires_denoise", params.hires_denoise if params.hires > 1 else None))
        for what, fraction in second:
            if fraction is not None and not (math.isfinite(fraction) and 0 < fraction <= 1):
                raise limit(
                    "The {what} must be above 0 and at most 1 (got {value}).",
                    "{what} 必須大於 0 且不超過 1（收到 {value}）。",
                    what=what,
                    value=fraction,
                )
        if not (math.isfinite(params.hires) and params.hires >= 1) or min(params.hires_size) < MIN_SIZE:
            raise limit(
                "The hires scale must be 1 or more (got {value}).",
                "高解析放大倍率必須至少為 1（收到 {value}）。",
                value=params.hires,
            )
        if params.clip_skip is not None:
            layers = int(pipe.text_encoder.config.num_hidden_layers)
            if not 1 <= params.clip_skip <= layers:
                raise limit(
                    "Clip skip must be between 1 and {layers} for this checkpoint (got {value}).",
                    "此主模型的 Clip skip 必須介於 1 與 {layers} 之間（收到 {value}）。",
                    layers=layers,
                    value=params.clip_skip,
                )


def _generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator(device="cpu").manual_seed(s) for s in seeds]


def effective_cfg(cfg: float) -> float:
    """The CFG scale a job is really drawn with, as A1111 would write it.

    diffusers guides only above 1 (`do_classifier_free_guidance` is `guidance_scale > 1`);
    at or below 1 it denoises with the prompt alone and never encodes the negative prompt.
    That is exactly A1111's CFG 1 (uncond + 1 * (cond - uncond)), whereas A1111's 0.5 would
    lean towards the negative prompt and its 0 would draw the negative prompt alone. So a
    scale below 1 draws a CFG-1 image, and the PNG must say 1 for anyone to reproduce it.
    """
    return max(float(cfg), 1.0)


def _failure(exc: Exception) -> JobFailedError:
    if isinstance(exc, _OOM) or "out of memory" in str(exc).lower():
        return JobFailedError(
            Text(
                "The GPU ran out of memory while drawing. Try fewer images, a smaller size, "
                "or fewer LoRAs.",
                "繪圖時顯示卡記憶體不足。請減少圖片數量、縮小尺寸，或減少 LoRA 數量。",
            )
        )
    return JobFailedError(
        Text(
            "Drawing failed: {reason}",
            "繪圖失敗：{reason}",
        ),
        reason=f"{type(exc).__name__}: {exc}"[:300],
    )
