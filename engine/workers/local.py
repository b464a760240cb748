"""The job body that runs on the GPU worker thread: checkpoint, LoRAs, denoise; then the
PNGs are encoded and written on a separate thread.

Only the queue's single worker thread calls `GpuRunner`, so the pipeline, the LoRA patcher
and the generator are never touched concurrently. PNG encoding costs a few hundred ms per
1024x1024 image; done on the worker it would leave the GPU idle, so the runner hands it to
its output thread and returns a future (the queue settles the job when it completes).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Literal

import torch
from PIL.Image import Image

from engine.errors import JobFailedError
from engine.i18n import Message, Text
from engine.images.input import load as load_input
from engine.images.upscalers import UpscalerModel
from engine.lora.cache import LoraCache
from engine.lora.patcher import LoraPatcher, LoraSpec
from engine.pipeline.generator import (
    Generator,
    NonFiniteImageError,
    effective_cfg,
    free_memory,
    release_frames,
)
from engine.pipeline.loader import CheckpointSpec
from engine.pipeline.passes import INFOTEXT_UPSCALERS, PixelUpscaler
from engine.pipeline.prompt_encoder import MAX_TOKENS
from engine.pipeline.prompt_weights import parse_prompt_attention
from engine.pipeline.samplers import get_sampler
from engine.planning.lora_weights import LoraStatus
from engine.png_info import format_number, format_parameters, save_png
from engine.queue.job import Progress, QueuedJob
from engine.requests import DrawPlan, DrawResult, GenerationParams, PlannedLora
from engine.text_input import clean_prompt, shorten

_UNMATCHED = Text(
    "{name}: {count} of its weights match no layer of this checkpoint and were skipped.",
    "{name}：有 {count} 組權重對不上此模型的任何一層，已略過。",
)
_NOTHING_MATCHED = Text(
    "{name} was not applied: none of its weights match a layer of this checkpoint, so the image "
    "was drawn without it. It was probably made for another kind of model.",
    "{name} 沒有套用：它的權重沒有一組對得上此模型的任何一層，因此圖片是在沒有它的情況下繪製的。"
    "它可能是為其他種類的模型製作的。",
)
# Long prompts are read in chunks of 75 tokens, as A1111 reads them; only past the chunk
# ceiling (prompt_encoder.MAX_TOKENS) is anything lost, and then the user is told what.
_TRUNCATED = Text(
    "The prompt is longer than the {limit} tokens Loracle reads; the last {dropped} token(s) "
    "were ignored: “{text}”. Move the tags that matter to the front, or shorten the prompt.",
    "提示詞超過 Loracle 可讀的 {limit} 個 token，最後 {dropped} 個 token 被忽略了：「{text}」。"
    "請把重要的標籤移到前面，或縮短提示詞。",
)
_NEGATIVE_TRUNCATED = Text(
    "The negative prompt is longer than the {limit} tokens Loracle reads; the last {dropped} "
    "token(s) were ignored: “{text}”.",
    "負面提示詞超過 Loracle 可讀的 {limit} 個 token，最後 {dropped} 個 token 被忽略了：「{text}」。",
)
_LOW_CFG = Text(
    "A CFG scale of {cfg} draws the same as 1: below 1 the image follows the prompt alone and the "
    "negative prompt is not used. The image's settings say CFG 1, so it can be reproduced.",
    "CFG 值 {cfg} 的效果與 1 相同：低於 1 時只依提示詞繪圖，不使用負面提示詞。圖片的參數記錄為 CFG 1，以便重現。",
)
_FORMATS: dict[str, Literal["safetensors", "diffusers"]] = {"safetensors": "safetensors", "diffusers": "diffusers"}


_OVERFLOW = Text(
    "The picture came out black: numbers overflowed (NaN) while {stage}, so nothing was delivered. "
    "Likely cause: {causes_en}. Lower the weights and try again.",
    "圖片變成全黑：{stage_zh}時數值溢位（NaN），因此沒有送出任何圖片。可能原因：{causes_zh}。請降低權重後再試。",
)
# Above this an A1111 attention weight is unusual enough to be named as a suspect.
_SUSPECT_PROMPT_WEIGHT = 2.0


def _overflow_failure(exc: NonFiniteImageError, plan: DrawPlan, dtype: torch.dtype) -> JobFailedError:
    """What most likely overflowed, named so the user can change it: the LoRAs and their
    weights, extreme prompt weights, and half precision itself."""
    en: list[str] = []
    zh: list[str] = []
    loras = [f"{lora.name} at weight {format_number(lora.applied_weight)}" for lora in plan.applied_loras]
    if loras:
        en.append("the LoRAs applied (" + ", ".join(loras) + ")")
        zh.append("套用的 LoRA（" + "、".join(l.replace(" at weight ", " 權重 ") for l in loras) + "）")
    extreme = _extreme_prompt_weight(plan.params.prompt, plan.params.negative)
    if extreme is not None:
        en.append(f"a prompt weight of {format_number(extreme)}")
        zh.append(f"提示詞權重 {format_number(extreme)}")
    if dtype in (torch.float16, torch.bfloat16):
        name = "float16" if dtype == torch.float16 else "bfloat16"
        en.append(f"{name} overflow (half precision holds numbers only up to a limit)")
        zh.append(f"{name} 溢位（半精度可表示的數值有上限）")
    if not en:
        en.append("a number too large for the model")
        zh.append("數值超出模型可處理的範圍")
    drawing = exc.stage == "latents"
    return JobFailedError(
        _OVERFLOW,
        stage="drawing" if drawing else "decoding the picture",
        stage_zh="繪圖" if drawing else "解碼圖片",
        causes_en="; or ".join(en),
        causes_zh="；或".join(zh),
    )


def _extreme_prompt_weight(*prompts: str) -> float | None:
    """The attention weight farthest from 1 in the prompts, if it is far enough to suspect."""
    weights = [w for text in prompts for frag, w in parse_prompt_attention(text) if (frag, w) != ("BREAK", -1.0)]

    def distance(w: float) -> float:
        return abs(math.log(abs(w))) if w and math.isfinite(w) else math.inf

    worst = max(weights, key=distance, default=1.0)
    return worst if distance(worst) >= math.log(_SUSPECT_PROMPT_WEIGHT) else None


def _lora_spec(lora: PlannedLora) -> LoraSpec:
    if lora.path is None:  # planned from the library, which knows every file's path
        raise ValueError(f"LoRA {lora.name} was planned without a file")
    return LoraSpec(key=lora.sha256 or "", path=lora.path, weight=lora.applied_weight, name=lora.name, kind=lora.kind)


def _extra_fields(p: GenerationParams) -> dict[str, object]:
    """A1111's infotext fields beyond the basic ones, in its order (create_infotext, then
    the hires fix's extra_generation_params); `Size` stays the first pass's size."""
    extra: dict[str, object] = {}
    strength = p.hires_denoise if p.hires > 1 else p.strength
    if strength is not None:
        extra["Denoising strength"] = format_number(strength)
    if p.clip_skip and p.clip_skip > 1:  # A1111 writes it only above 1, its default
        extra["Clip skip"] = p.clip_skip
    if p.hires > 1:
        extra["Hires upscale"] = format_number(p.hires)
        if p.hires_steps:  # A1111 writes it only when it differs from "same as steps"
            extra["Hires steps"] = p.hires_steps
        extra["Hires upscaler"] = INFOTEXT_UPSCALERS.get(p.hires_upscaler, p.hires_upscaler)
    return extra


# Dropped text is quoted back to the user; a whole pasted essay would bury the message.
_DROPPED_TEXT_CHARS = 300


class GpuRunner:
    def __init__(
        self,
        generator: Generator,
        lora_cache: LoraCache,
        outputs_dir: Path,
        *,
        pristine_on_cpu: bool = False,
        read_back: bool = True,
        inputs_dir: Path | None = None,
    ) -> None:
        self.generator = generator
        self.lora_cache = lora_cache
        self.outputs_dir = outputs_dir
        # Where Engine.store_image keeps the pictures image-to-image jobs start from.
        self.inputs_dir = inputs_dir if inputs_dir is not None else outputs_dir.parent / "inputs"
        self._upscaler: UpscalerModel | None = None  # the last upscaler model used, kept loaded
        self.pristine_on_cpu = pristine_on_cpu
        self.read_back = read_back
        self._patcher: LoraPatcher | None = None
        self._output = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loracle-png")

    def close(self) -> None:
        self._output.shutdown(wait=True)

    def loaded_checkpoint(self) -> str | None:
        loaded = self.generator.loaded
        return (loaded.sha256 or loaded.name) if loaded else None

    def __call__(self, job: QueuedJob, progress: Progress) -> Future[DrawResult]:
        plan: DrawPlan = job.payload
        started = time.perf_counter()
        progress.check_cancelled()
        cp = plan.checkpoint
        spec = CheckpointSpec(
            name=cp.name,
            path=cp.path,
            format=_FORMATS[cp.format],
            sha256=cp.sha256,
            v_prediction=cp.v_prediction,
            vae_path=cp.vae_path,
            facts=cp.facts,
        )
        if self.generator.loaded != spec or self.generator.pipe is None:
            progress.loading(cp.name)
        if self.generator.loaded != spec:
            # The patcher holds the old pipeline and its pristine copies; dropped only
            # after the load, they would keep two SDXLs on the GPU while the new one loads.
            self._patcher = None
        loaded = self.generator.ensure_checkpoint(spec)
        if loaded or self._patcher is None or self._patcher.pipe is not self.generator.pipe:
            self._patcher = LoraPatcher(
                self.generator.pipe, self.lora_cache, pristine_on_cpu=self.pristine_on_cpu, read_back=self.read_back
            )
        applied = plan.applied_loras
        try:
            reports = self._patcher.apply(
                [_lora_spec(l) for l in applied]
            )
        except Exception as exc:
            # Out of memory for the pristine copies, mostly: the patcher has put every weight
            # back; the memory its frames still hold goes back too, before the next job.
            release_frames(exc)
            free_memory()
            raise
        warnings = list(plan.warnings)
        for lora, report in zip(applied, reports, strict=True):
            lora.matched_modules = report.matched_modules
            lora.unmatched_keys = len(report.unmatched_keys)
            if report.matched_modules == 0 and lora.applied_weight != 0:
                # Drawn without it: saying "applied" (and naming it in the PNG) would be a lie.
                lora.status = LoraStatus.NOT_APPLIED
                msg = Message.of(_NOTHING_MATCHED, name=lora.name)
                lora.warnings.append(msg)
                warnings.append(msg)
            elif report.unmatched_keys:
                msg = Message.of(_UNMATCHED, name=lora.name, count=len(report.unmatched_keys))
                lora.warnings.append(msg)
                warnings.append(msg)
        init_image = load_input(self.inputs_dir, plan.request.init_image) if plan.request.init_image else None
        upscaler = self._upscaler_for(plan, progress)
        try:
            images = self.generator.generate(
                plan.params,
                init_image=init_image,
                upscaler=upscaler,
                on_step=progress.step,
                should_cancel=lambda: progress.cancelled,
            )
        except NonFiniteImageError as exc:
            raise _overflow_failure(exc, plan, self.generator.dtype) from exc
        dropped = self.generator.last_dropped
        if dropped.prompt:
            warnings.append(
                Message.of(_TRUNCATED, limit=MAX_TOKENS, dropped=dropped.prompt, text=shorten(dropped.prompt_text, _DROPPED_TEXT_CHARS))
            )
        if dropped.negative:  # only counted where CFG > 1 reads the negative prompt
            warnings.append(
                Message.of(
                    _NEGATIVE_TRUNCATED, limit=MAX_TOKENS, dropped=dropped.negative, text=shorten(dropped.negative_text, _DROPPED_TEXT_CHARS)
                )
            )
        if plan.params.cfg < 1:
            warnings.append(Message.of(_LOW_CFG, cfg=format_number(plan.params.cfg)))
        seconds = time.perf_counter() - started
        return self._output.submit(self._save, job, plan, images, warnings, seconds, loaded)

    def _upscaler_for(self, plan: DrawPlan, progress: Progress) -> PixelUpscaler | None:
        """The plan's upscaler model, loaded once and kept until another one is asked for
        (an ESRGAN is tens of MB: nothing next to the checkpoint)."""
        path = plan.upscaler_path
        if path is None:
            return None
        if self._upscaler is None or self._upscaler.path != path:
            self._upscaler = None
            self._upscaler = UpscalerModel(path, device=self.generator.device, dtype=self.generator.dtype)
        model = self._upscaler

        def upscale(image: Image, size: tuple[int, int]) -> Image:
            return model(image, size, should_cancel=lambda: progress.cancelled)

        return upscale

    def _save(
        self, job: QueuedJob, plan: DrawPlan, images: list[Image], warnings: list[Message], seconds: float, loaded: bool
    ) -> DrawResult:
        p, cp = plan.params, plan.checkpoint
        applied = plan.applied_loras
        seeds = [p.seed + i for i in range(len(images))]
        folder = self.outputs_dir / date.today().isoformat()
        paths: list[Path] = []
        text = ""
        sampler, schedule_type = get_sampler(p.sampler).infotext
        for index, (image, seed) in enumerate(zip(images, seeds, strict=True)):
            text = format_parameters(
                # as written, pasted <lora:...> tags in place; LoRAs from options are appended
                prompt=clean_prompt(plan.request.prompt),
                negative=p.negative,
                steps=p.steps,
                sampler=sampler,
                schedule_type=schedule_type,
                cfg=effective_cfg(p.cfg),
                seed=seed,
                width=p.width,
                height=p.height,
                model_name=cp.name,
                model_hash=cp.autov2,
                loras=[(l.name, l.applied_weight, l.autov3) for l in applied],
                extra=_extra_fields(p),
            )
            paths.append(save_png(image, folder / f"{job.id}-{index}.png", text))
        return DrawResult(
            job_id=job.id,
            images=paths,
            seeds=seeds,
            plan=plan,
            warnings=warnings,
            parameters=text,
            seconds=seconds,
            queued_seconds=max(0.0, time.time() - job.created_at - seconds),
            checkpoint_loaded=loaded,
        )
