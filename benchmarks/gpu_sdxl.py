"""Full-size SDXL on a CUDA GPU: seconds per image with 0 and 3 LoRAs, and LoRA switching.

Nothing is downloaded. The SDXL base 1.0 architecture is built from the configs shipped in
engine/pipeline/sdxl_config (random weights, bfloat16, on the GPU), with the real CLIP
tokenizer vocabulary built offline. Optionally (on by default) it is saved as one
CivitAI-style .safetensors and loaded back through the engine's own loader, which times a
checkpoint load. The file is stored in float16, as CivitAI checkpoints are, so the load
also converts it to the pipeline's bfloat16, as a real one does. Three rank-32 LoRAs in
kohya's SDXL layout (attention layers of the UNet and both text encoders, like kohya's
default network) are written for it with engine.testing.lora_files.write_tiny_lora.

Then, alternating, with everything loaded and warmed up, at 1024x1024, 28 steps, Euler a:

  direct   pipe(...) on the same pipeline (no PNG, no engine);
  0 LoRAs  GpuRunner.__call__, the engine's job body (PNG encode + save included);
  3 LoRAs  GpuRunner.__call__ on a second copy of the pipeline with the three LoRAs
           applied once and unchanged since (the steady state).

And the LoRA application: first time, again from the LoRA cache, again from disk, and
switching between four different sets with and without the cache. Then the sections of
_gpu_extras.py (each skippable with --skip, each with its peak GPU memory):

  hires          1024² + A1111's 1.5x hires fix with the three LoRAs: s/image and peak
                 VRAM by Latent, Lanczos and an ESRGAN 4x, next to the plain job; a tiled
                 2x ESRGAN upscale of the 1536-px result and its peak
  restore_modes  switch time and memory with originals re-read from the checkpoint file
                 (the default) vs copies in VRAM vs copies in RAM
  peer           diffusers + peft on copies of the same pipeline, the same rank-32 files at
                 0.8 / -0.5 / 0.6: per image (unfused, fused) and switching (kept adapters +
                 set_adapters, unfuse + set + fuse, unload + load + set)
  attention      SDPA (diffusers' default) vs the classic attention processor
  vae_large      VAE decode at 1536 and 2048 px whole vs tiled, a batch of 4 sliced or not
  compile        torch.compile'd UNet across a LoRA switch: recompiles, speed, correctness

A JSON summary is printed last (and written to --json when given, also after every
section, so a run cut short leaves what it measured). Designed to finish within 8 minutes
on one H100 (about 3 for the first part, 4-5 for the sections, compile the longest).

Run from the repository root on a machine with a CUDA GPU:

    python benchmarks/gpu_sdxl.py [--json gpu_sdxl.json] [--no-load-checkpoint] [--skip compile ...]

`--tiny` runs the same code on the tiny SDXL (on the CPU when there is no GPU), to check
the script itself in seconds. Every GPU timing is taken between torch.cuda.synchronize()
calls. Progress goes to stderr, the JSON summary to stdout, also when a step failed (it
then names the error). Exit status: 0 when everything ran, 1 when a step failed (the
checkpoint save or load included), 2 when there is no GPU to run on.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # puts the repository root on sys.path too
import _gpu_extras as extras

LORA_WEIGHTS = (0.8, 0.6, 0.4)
# Four sets over the three LoRAs, taken in turn: each apply is a real switch.
SWITCH_SETS: tuple[tuple[tuple[int, float], ...], ...] = (
    ((0, 0.8), (1, 0.6), (2, 0.4)),
    ((1, 0.7),),
    ((0, 0.5), (2, 0.9)),
    ((2, 1.0), (0, 0.3), (1, -0.4)),
)
TARGET_ENGINE = 1.03
TARGET_LORAS = 1.02


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny SDXL: a quick check of this script")
    parser.add_argument("--size", type=int, default=None, help="width = height (default 1024; tiny 64)")
    parser.add_argument("--steps", type=int, default=None, help="default 28; tiny 4")
    parser.add_argument("--rounds", type=int, default=None, help="images per variant (default 5; tiny 2)")
    parser.add_argument("--rank", type=int, default=None, help="LoRA rank (default 32; tiny 4)")
    parser.add_argument("--switch-cycles", type=int, default=3, help="passes over the four LoRA sets")
    parser.add_argument("--peer-rounds", type=int, default=None,
                        help="images per variant in the peer and attention sections (default 2; tiny 1)")
    parser.add_argument("--skip", nargs="*", choices=extras.SECTIONS, default=[],
                        help="sections of _gpu_extras.py not to run")
    parser.add_argument("--no-load-checkpoint", action="store_true",
                        help="skip saving the model as a single file and loading it through the engine")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    parser.add_argument("--workdir", type=Path, default=None, help="where files go (default: a temp dir)")
    args = parser.parse_args(argv)
    for name, full, tiny in (("size", 1024, 64), ("steps", 28, 4), ("rounds", 5, 2), ("rank", 32, 4),
                             ("peer_rounds", 2, 1)):
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)

    import torch

    if torch.cuda.is_available():
        # What the engine picks on this GPU (engine.pipeline.device): bf16 where it is native.
        native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        device, dtype = torch.device("cuda"), torch.bfloat16 if native_bf16 else torch.float16
    elif args.tiny:
        device, dtype = torch.device("cpu"), torch.float32
        c.set_threads(1)  # toy tensors: threads only spin against other processes
    else:
        print("gpu_sdxl.py needs a CUDA GPU, and torch sees none here "
              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
              "Run it on a GPU machine, or add --tiny to check the script on the CPU.", file=sys.stderr)
        return 2
    shown = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"$ python benchmarks/gpu_sdxl.py {shown}".rstrip(), flush=True)

    summary: dict[str, Any] = {}
    failed = False
    # ignore_cleanup_errors: a PNG thread still closing a file must not turn a finished
    # run into a traceback after the summary.
    with tempfile.TemporaryDirectory(prefix="loracle-gpu-bench-", ignore_cleanup_errors=True) as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            run(args, work, device, dtype, summary)
        except Exception as exc:
            traceback.print_exc()
            summary["error"] = f"{type(exc).__name__}: {exc}"[:1000]
            failed = True
    failed = failed or "error" in summary.get("checkpoint", {})
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    if failed:
        log("FAILED: " + (summary.get("error") or summary["checkpoint"]["error"]))
    return 1 if failed else 0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def build_pipeline(folder: Path, device: Any, dtype: Any) -> Any:
    """SDXL (or the tiny one) from a config folder, random weights, straight on `device`."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    from engine.pipeline.device import ensure_vae_upcast
    from engine.pipeline.loader import hub_offline

    with hub_offline():
        torch.manual_seed(0)
        with device:  # parameters are created (and randomly initialised) on the GPU
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
            text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder", local_files_only=True))
            text_encoder_2 = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(folder / "text_encoder_2", local_files_only=True))
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
        tokenizer_2 = CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True)
        scheduler = EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(folder / "scheduler"))
    for model in (unet, vae, text_encoder, text_encoder_2):
        model.to(dtype=dtype).eval().requires_grad_(False)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler)
    ensure_vae_upcast(pipe, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(args: argparse.Namespace, work: Path, device: Any, dtype: Any, summary: dict[str, Any]) -> None:
    """Measure, filling `summary` as it goes (so a failure still reports what ran)."""
    import diffusers
    import torch

    from engine.lora.cache import LoraCache
    from engine.pipeline.generator import Generator, free_memory
    from engine.pipeline.loader import CheckpointSpec, ConfigFolders
    from engine.pipeline.single_file import write_single_file
    from engine.testing.lora_files import write_tiny_lora
    from engine.workers.local import GpuRunner

    summary.update({
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({c.cpu_name()})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "model": "tiny SDXL (script check)" if args.tiny else "SDXL base 1.0 architecture, random weights",
        "python": platform.python_version(),
        "size": args.size, "steps": args.steps, "sampler": "Euler a", "cfg": 6.0, "rounds": args.rounds,
    })
    if device.type == "cuda":
        summary["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    folders = ConfigFolders(work / "cache")
    folder = folders.tiny() if args.tiny else folders.sdxl()

    log("building the pipeline from config")
    started = time.perf_counter()
    pipe = build_pipeline(folder, device, dtype)
    summary["build_seconds"] = round(time.perf_counter() - started, 2)

    ckpt_path = work / "models" / "bench_sdxl_random.safetensors"
    spec = CheckpointSpec(name="bench_sdxl_random", path=ckpt_path, format="safetensors", sha256="BENCH")
    generator = Generator(device=device, dtype=dtype, cache_dir=work / "cache")
    checkpoint: dict[str, Any] = {}
    summary["checkpoint"] = checkpoint
    if not args.no_load_checkpoint:
        # float16 on disk, like CivitAI's files: 2 bytes a parameter, plus room to spare.
        needed = 2 * sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2)
                         for p in m.parameters()) + 2**30
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(ckpt_path.parent).free
        checkpoint["disk_free_gib"] = round(free / 2**30, 1)
        if free < needed:
            checkpoint["error"] = (f"not enough disk space in {ckpt_path.parent} for the {needed / 2**30:.1f} GiB "
                                   "checkpoint; pass --workdir on a bigger disk, or --no-load-checkpoint")
            log(checkpoint["error"])
        else:
            try:
                log(f"saving the model as one float16 .safetensors (CivitAI layout, {needed / 2**30:.1f} GiB)")
                started = time.perf_counter()
                write_single_file(pipe, ckpt_path, dtype=torch.float16)
                checkpoint["write_seconds"] = round(time.perf_counter() - started, 2)
                checkpoint["file_gib"] = round(ckpt_path.stat().st_size / 2**30, 3)
                checkpoint["stored_dtype"] = "float16"
                log("loading it through the engine (Generator.ensure_checkpoint)")
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                sync(device)
                started = time.perf_counter()
                generator.ensure_checkpoint(spec)
                sync(device)
                checkpoint["load_seconds"] = round(time.perf_counter() - started, 2)
                checkpoint["loaded_dtype"] = str(generator.pipe.unet.dtype).removeprefix("torch.")
                if device.type == "cuda":
                    checkpoint["peak_gpu_memory_gib (built + loaded)"] = round(
                        torch.cuda.max_memory_allocated() / 2**30, 2)
            except Exception as exc:
                traceback.print_exc()
                checkpoint["error"] = f"{type(exc).__name__}: {exc}"[:500]
                generator.unload()
    if generator.pipe is not None:
        del pipe  # from here on, the pipeline the engine itself loaded
        free_memory()
    else:
        # Hand the built pipeline to the generator as if it had loaded `spec`, so the runner
        # finds its checkpoint already loaded (what the benchmark needs: no load in a job).
        generator.pipe, generator.loaded = pipe, spec
        generator._base_scheduler_config = dict(pipe.scheduler.config)
        del pipe
    pipe = generator.pipe

    log(f"writing three rank-{args.rank} LoRAs")
    started = time.perf_counter()
    lora_paths = [write_tiny_lora(work / "loras" / f"bench_rank{args.rank}_{i}.safetensors", pipe,
                                  rank=args.rank, alpha=args.rank / 2, seed=10 + i, scale=0.3)
                  for i in range(3)]
    summary["lora_write_seconds"] = round(time.perf_counter() - started, 2)

    # A second copy of the same weights, for the runner that keeps three LoRAs applied.
    generator3 = Generator(device=device, dtype=dtype, cache_dir=work / "cache")
    generator3.pipe, generator3.loaded = copy.deepcopy(pipe), spec
    generator3._base_scheduler_config = dict(generator._base_scheduler_config)
    if "load_seconds" in checkpoint:
        from engine.lora.restore import remember_source

        # The copy has the loaded weights: its patcher may read originals back from the file too.
        remember_source(generator3.pipe, ckpt_path, "safetensors")
    runner0 = GpuRunner(generator, LoraCache(16), work / "outputs" / "none")
    runner3 = GpuRunner(generator3, LoraCache(16), work / "outputs" / "three")
    try:
        _measure(args, work, device, summary, generator, runner0, runner3, spec, lora_paths)
        context = extras.Context(args=args, work=work, device=device, dtype=dtype, pipe=generator.pipe,
                                 lora_pipe=generator3.pipe, patcher=runner3._patcher, lora_paths=lora_paths,
                                 switch_sets=SWITCH_SETS, log=log)
        if not extras.run_extras(context, summary, args.json):
            summary["error"] = "a section failed: " + ", ".join(
                k for k in extras.SECTIONS if "error" in summary.get(k, {}))
    finally:
        runner0.close()
        runner3.close()


def _measure(args: argparse.Namespace, work: Path, device: Any, summary: dict[str, Any], generator: Any,
             runner0: Any, runner3: Any, spec: Any, lora_paths: list[Path]) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from engine.kinds import Architecture
    from engine.lora.patcher import LoraSpec
    from engine.pipeline.samplers import make_scheduler
    from engine.planning.lora_weights import LoraStatus
    from engine.png_info import save_png
    from engine.queue.job import Progress
    from engine.requests import DrawPlan, DrawRequest, GenerationParams, PlannedCheckpoint, PlannedLora

    pipe = generator.pipe

    def plan(loras: list[tuple[int, float]], n: int) -> Any:
        request = DrawRequest(prompt=c.PROMPT, negative=c.NEGATIVE, seed=1234, steps=args.steps, cfg=6.0,
                              width=args.size, height=args.size, user_id="bench")
        planned = [PlannedLora(name=lora_paths[i].stem, label=lora_paths[i].stem, path=lora_paths[i],
                               sha256=f"BENCH-LORA-{i}", autov3=None, requested_weight=w, applied_weight=w,
                               status=LoraStatus.APPLIED, verdict="unknown") for i, w in loras]
        return c.make_job(DrawPlan(
            request=request,
            checkpoint=PlannedCheckpoint(name=spec.name, label=spec.name, path=spec.path, format=spec.format,
                                         sha256=spec.sha256, autov2=None, architecture=Architecture.SDXL,
                                         base_model=None, family=None, family_label=None),
            loras=planned,
            params=GenerationParams(prompt=c.PROMPT, negative=c.NEGATIVE, seed=1234, steps=args.steps, cfg=6.0,
                              width=args.size, height=args.size, count=1, sampler="Euler a"),
        ), f"job-{n}")

    three = list(enumerate(LORA_WEIGHTS))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()  # from here: two pipelines loaded, drawing
    direct_scheduler = make_scheduler("Euler a", generator._base_scheduler_config)

    def direct(output_type: str = "pil") -> Any:
        pipe.scheduler = direct_scheduler
        return pipe(prompt=c.PROMPT, negative_prompt=c.NEGATIVE, num_inference_steps=args.steps,
                    guidance_scale=6.0, width=args.size, height=args.size, num_images_per_prompt=1,
                    generator=[torch.Generator(device="cpu").manual_seed(1234)], output_type=output_type).images[0]

    jobs: list[Any] = []  # the runners' futures: each PNG is checked once written

    def job(runner: Any, loras: list[tuple[int, float]], n: int) -> Any:
        future = runner(plan(loras, n), Progress())
        jobs.append(future)
        return future

    variants = {
        "direct": direct,
        # the GPU part of a job; its PNG is written on the runner's output thread meanwhile
        "engine_0_loras": lambda n: job(runner0, [], n),
        "engine_3_loras": lambda n: job(runner3, three, n),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    outside: dict[str, list[float]] = {name: [] for name in variants}
    def synced():
        return (sync(device))
    with c.apply_timer(sync=synced) as applies, c.pipe_timer() as in_pipe:
        log("warm-up (the first job of runner 3 applies the three LoRAs)")
        direct()
        variants["engine_0_loras"](-1)
        sync(device)
        mark = len(applies.calls)
        first_job = variants["engine_3_loras"](-2).result()
        summary_first_apply = applies.total_since(mark)
        log(f"measuring {args.rounds} rounds")
        for n, order in enumerate(c.rotations(list(variants), args.rounds)):
            for name in order:
                mark = len(in_pipe.calls)
                sync(device)
                started = time.perf_counter()
                if name == "direct":
                    direct()
                else:
                    variants[name](n)
                sync(device)
                seconds = time.perf_counter() - started
                times[name].append(seconds)
                outside[name].append(seconds - in_pipe.total_since(mark))
            log(f"round {n + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
        last_pixels = direct("np")  # floats in [0, 1], before any rounding hides a NaN
    written = [result.images for result in (future.result() for future in jobs)]
    summary["pngs_written"] = sum(len(paths) for paths in written)
    if not all(path.is_file() for paths in written for path in paths):
        raise RuntimeError("a job reported a PNG that is not on disk")

    base = c.median(times["direct"])
    summary["seconds_per_image"] = {name: round(c.median(v), 4) for name, v in times.items()}
    summary["all_seconds"] = {name: [round(s, 4) for s in v] for name, v in times.items()}
    ratio_engine = c.median(times["engine_0_loras"]) / base
    ratio_loras = c.median(times["engine_3_loras"]) / c.median(times["engine_0_loras"])
    summary["ratios"] = {
        "engine_0_loras / direct": round(ratio_engine, 4),
        "engine_3_loras / engine_0_loras": round(ratio_loras, 4),
        "engine_3_loras / direct": round(c.median(times["engine_3_loras"]) / base, 4),
    }
    summary["targets"] = {
        f"engine / direct <= {TARGET_ENGINE}": ratio_engine <= TARGET_ENGINE,
        f"3 LoRAs / 0 LoRAs <= {TARGET_LORAS}": ratio_loras <= TARGET_LORAS,
    }
    summary["ms_outside_pipe_per_job"] = {name: round(1000 * c.median(v), 1) for name, v in outside.items()}
    last_image = Image.fromarray((np.nan_to_num(last_pixels) * 255).round().clip(0, 255).astype("uint8"))
    png_ms = [c.timed(lambda: save_png(last_image, work / "outputs" / "png-check.png", "x" * 400))[0]
              for _ in range(5)]
    summary["png_save_ms"] = round(1000 * c.median(png_ms), 1)

    # -- LoRA application and switching, timed around the patcher with the GPU synced ----
    patcher = runner3._patcher
    cache = patcher.cache

    def specs(chosen: tuple[tuple[int, float], ...] | list[tuple[int, float]]) -> list[Any]:
        return [LoraSpec(key=f"BENCH-LORA-{i}", path=lora_paths[i], weight=w, name=lora_paths[i].stem)
                for i, w in chosen]

    def timed_apply(chosen: Any, *, clear: bool = False) -> float:
        if clear:
            cache.clear()
        sync(device)
        started = time.perf_counter()
        patcher.apply(specs(chosen))
        sync(device)
        return time.perf_counter() - started

    log("timing LoRA application and switches")
    from_cache, from_disk = [], []
    for _ in range(3):
        timed_apply([])
        from_cache.append(timed_apply(three))
        timed_apply([])
        from_disk.append(timed_apply(three, clear=True))
    switch_cached, switch_disk = [], []
    timed_apply(SWITCH_SETS[-1])
    for _ in range(args.switch_cycles):
        for chosen in SWITCH_SETS:
            switch_cached.append(timed_apply(chosen))
        for chosen in SWITCH_SETS:
            switch_disk.append(timed_apply(chosen, clear=True))
    reports = {l.name: l.matched_modules for l in first_job.plan.loras}
    summary["lora"] = {
        "rank": args.rank,
        "file_mib": [round(p.stat().st_size / 2**20, 1) for p in lora_paths],
        "modules_matched": reports,
        "first_apply_ms (in the first job)": round(1000 * summary_first_apply, 1),
        "apply_3_from_cache_ms": round(1000 * c.median(from_cache), 1),
        "apply_3_from_disk_ms": round(1000 * c.median(from_disk), 1),
        "switch_cached_ms": round(1000 * c.median(switch_cached), 1),
        "switch_from_disk_ms": round(1000 * c.median(switch_disk), 1),
        "switch_from_disk / cached": round(c.median(switch_disk) / c.median(switch_cached), 2),
        "pristine_copies_mib": round(patcher.pristine_bytes / 2**20, 1),
        "reread_from_checkpoint_mib": round(patcher.reread_bytes / 2**20, 1),
    }
    if device.type == "cuda":
        summary["peak_gpu_memory_gib (two pipelines, drawing, switching)"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    # Random weights draw noise, but finite noise: NaN or a flat image means a broken pipeline
    # (e.g. a float16 VAE overflowing).
    summary["last_image_finite_pixels"] = bool(np.isfinite(last_pixels).all() and last_pixels.std() > 0)


if __name__ == "__main__":
    raise SystemExit(main())
