"""Engine path vs a direct diffusers call: what does Loracle add to drawing one image?

The tiny SDXL (engine/testing/tiny_sdxl.py) is saved as a CivitAI-style single file, scanned
into a library and loaded once by the engine. Then, alternating, with the checkpoint
already loaded, the same image (same prompt, negative, seed, steps, CFG, size, sampler
"Euler a") is drawn three ways:

  direct  `pipe(...)` on the engine's own pipeline object, the scheduler built beforehand;
  runner  GpuRunner.__call__ until the GPU worker is free for the next job: LoRA set check,
          Generator.generate with its prompt plan, scheduler and progress callback
          (the PNG is then encoded and written on the runner's output thread, not timed);
  engine  Engine.draw through the queue: planning, the job store, the worker thread, ...

The three must give identical pixels (checked). Reported: seconds per image (median), the
ratios to `direct` (target <= 1.03) and, separately, the fixed per-job costs in ms.

    .venv/bin/python benchmarks/bench_engine_overhead.py [--size 256] [--steps 20] [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

TARGET = 1.03


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="width = height in pixels")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=12, help="images per variant")
    parser.add_argument("--reps", type=int, default=30, help="repetitions of each fixed cost")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    c.set_threads(args.threads)
    c.print_header(
        "bench_engine_overhead.py", argv,
        f"tiny SDXL, {args.size}x{args.size}, {args.steps} steps, Euler a, CFG 6; "
        f"{args.rounds} images per variant, alternating",
        args.threads,
    )
    with tempfile.TemporaryDirectory(prefix="loracle-bench-") as tmp:
        root = Path(tmp)
        c.build_library(root, loras=0)
        asyncio.run(_run(args, root))
    return 0


async def _run(args: argparse.Namespace, root: Path) -> None:
    import numpy as np

    from engine.pipeline.samplers import make_scheduler
    from engine.queue.job import Progress
    from engine.requests import DrawRequest

    engine = await c.open_engine(c.make_settings(root))
    try:
        await engine.start()
        request = DrawRequest(
            prompt=c.PROMPT, negative=c.NEGATIVE, seed=1234, steps=args.steps, cfg=6.0,
            width=args.size, height=args.size, user_id="bench",
        )
        first = await engine.draw(request)  # loads the checkpoint: not part of any figure
        assert first.checkpoint_loaded
        runner = engine.runner
        generator = runner.generator
        pipe = generator.pipe
        direct_scheduler = make_scheduler("Euler a", generator._base_scheduler_config)

        def direct() -> tuple[float, Any]:
            import torch

            pipe.scheduler = direct_scheduler  # what the engine swaps in per job, built once
            started = time.perf_counter()
            image = pipe(
                prompt=request.prompt, negative_prompt=request.negative,
                num_inference_steps=args.steps, guidance_scale=6.0,
                width=args.size, height=args.size, num_images_per_prompt=1,
                generator=[torch.Generator(device="cpu").manual_seed(1234)],
                output_type="pil",
            ).images[0]
            return time.perf_counter() - started, image

        def run_job(n: int) -> tuple[float, Any]:
            job = c.make_job(engine.plan(request), f"runner-{n}")
            started = time.perf_counter()
            pending = runner(job, Progress())  # returns once the GPU part is done
            seconds = time.perf_counter() - started
            return seconds, pending.result()

        times: dict[str, list[float]] = {"direct": [], "runner": [], "engine": []}
        cpu: dict[str, list[float]] = {name: [] for name in times}
        images: dict[str, Any] = {}
        outside: dict[str, list[float]] = {name: [] for name in times}  # job time not in pipe()
        await asyncio.to_thread(direct)  # warm the direct path too
        with c.pipe_timer() as in_pipe:
            await _rounds(args, engine, request, direct, run_job, times, cpu, outside, images, in_pipe)
        same = all(np.array_equal(images["direct"], images[v]) for v in ("runner", "engine"))

        base, cpu_base = c.median(times["direct"]), c.median(cpu["direct"])
        print(f"{'variant':<9}{'s/image':>9}{'min..max':>14}{'ratio':>7}{'paired':>8}"
              f"{'CPU s':>8}{'CPU ratio':>11}")
        for variant, values in times.items():
            paired = c.median([v / d for v, d in zip(values, times["direct"], strict=True)])
            print(f"{variant:<9}{c.median(values):>9.3f}{c.spread(values):>14}"
                  f"{c.median(values) / base:>7.3f}{paired:>8.3f}"
                  f"{c.median(cpu[variant]):>8.3f}{c.median(cpu[variant]) / cpu_base:>11.3f}")
        print("(s/image: wall-clock median; ratio: of the medians; paired: median of the per-round "
              "ratios;\n CPU: process CPU time, all threads, less disturbed by other processes)")
        print(f"identical pixels in all three: {'yes' if same else 'NO'}")
        for variant in ("runner", "engine"):
            ratio = c.median(times[variant]) / base
            print(f"{variant} / direct = {ratio:.3f} ({c.verdict(ratio, TARGET)})")
        print(f"fixed cost per job (wall time outside pipe(), median): runner "
              f"{1000 * c.median(outside['runner']):.1f} ms = "
              f"{100 * c.median(outside['runner']) / base:.1f}% of an image; engine "
              f"{1000 * c.median(outside['engine']):.1f} ms = {100 * c.median(outside['engine']) / base:.1f}%")

        print(f"\nfixed per-job costs, median of {args.reps} (ms):")
        for label, ms in _fixed_costs(engine, request, images["direct"], args.reps):
            print(f"  {label:<58}{ms:>8.2f}")
    finally:
        await engine.close()


async def _rounds(args: argparse.Namespace, engine: Any, request: Any, direct: Any, run_job: Any,
                  times: dict[str, list[float]], cpu: dict[str, list[float]],
                  outside: dict[str, list[float]], images: dict[str, Any], in_pipe: Any) -> None:
    import numpy as np
    from PIL import Image

    for n, order in enumerate(c.rotations(list(times), args.rounds)):
        for variant in order:
            cpu_started, mark = time.process_time(), len(in_pipe.calls)
            if variant == "direct":
                seconds, image = await asyncio.to_thread(direct)
                images["direct"] = np.asarray(image)
            elif variant == "runner":
                seconds, result = await asyncio.to_thread(run_job, n)
                images["runner"] = np.asarray(Image.open(result.images[0]))
            else:
                started = time.perf_counter()
                result = await engine.draw(request)
                seconds = time.perf_counter() - started
                images["engine"] = np.asarray(Image.open(result.images[0]))
            times[variant].append(seconds)
            cpu[variant].append(time.process_time() - cpu_started)
            outside[variant].append(seconds - in_pipe.total_since(mark))
            await asyncio.sleep(0.05)  # let the store's writes settle between variants


def _fixed_costs(engine: Any, request: Any, pixels: Any, reps: int) -> list[tuple[str, float]]:
    import numpy as np
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from engine.pipeline.samplers import make_scheduler
    from engine.png_info import format_parameters, save_png
    from engine.requests import GenerationParams

    generator = engine.runner.generator
    plan = engine.plan(request)
    p = plan.params
    params = GenerationParams(prompt=p.prompt, negative=p.negative, seed=p.seed, steps=p.steps,
                              cfg=p.cfg, width=p.width, height=p.height)
    image = Image.fromarray(pixels)
    text = format_parameters(prompt=p.prompt, negative=p.negative, steps=p.steps, sampler=p.sampler,
                             cfg=p.cfg, seed=p.seed, width=p.width, height=p.height,
                             model_name=plan.checkpoint.name, model_hash=plan.checkpoint.autov2, loras=[])
    out = engine.settings.outputs_dir / "bench-fixed"
    rng = np.random.default_rng(0)
    noise_1024 = Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8))
    smooth_1024 = image.resize((1024, 1024), Image.BICUBIC)

    def encode(img: Any, level: int = 6) -> None:  # 6: Pillow's default, what save_png uses
        info = PngInfo()
        info.add_text("parameters", text)
        img.save(io.BytesIO(), format="PNG", pnginfo=info, compress_level=level)

    def ms(fn: Any) -> float:
        return 1000 * c.median([c.timed(fn)[0] for _ in range(reps)])

    return [
        ("Engine.plan (names, verdicts, limits; SQLite reads)", ms(lambda: engine.plan(request))),
        ("Generator: prompt plan (tokenize + chunk, both prompts)", ms(lambda: generator.dropped_tokens(params))),
        ("Generator: scheduler built from config", ms(lambda: make_scheduler(p.sampler, generator._base_scheduler_config))),
        ("PNG infotext (format_parameters)", ms(lambda: format_parameters(
            prompt=p.prompt, negative=p.negative, steps=p.steps, sampler=p.sampler, cfg=p.cfg, seed=p.seed,
            width=p.width, height=p.height, model_name="m", model_hash=None, loras=[]))),
        (f"PNG encode only, {image.width}x{image.height}", ms(lambda: encode(image))),
        (f"PNG encode + atomic save with fsync, {image.width}x{image.height}",
         ms(lambda: save_png(image, out / "a.png", text))),
        # SDXL draws 1024x1024: what the same job body costs on a GPU machine, per image.
        ("1024x1024 (upscaled output): PNG encode only", ms(lambda: encode(smooth_1024))),
        ("1024x1024 (upscaled output): PNG encode, compress_level=1", ms(lambda: encode(smooth_1024, 1))),
        ("1024x1024 (upscaled output): save_png (encode + fsync)", ms(lambda: save_png(smooth_1024, out / "b.png", text))),
        ("1024x1024 (random noise): save_png (encode + fsync)", ms(lambda: save_png(noise_1024, out / "c.png", text))),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
