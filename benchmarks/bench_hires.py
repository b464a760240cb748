"""What the hires fix and image-to-image cost: time, setup and peak memory.

One job runner (GpuRunner over the tiny SDXL checkpoint) draws, alternately, the same job
without and with A1111's hires fix (1.5x, denoise 0.5, Latent, second-pass steps = steps):
the time ratio is printed next to the pixel-count ratio (2.25) and the ratio of denoising
work the two passes do (1 + denoise x 2.25 for a UNet whose cost follows the pixel count).

Image-to-image setup cost: what a job from a stored picture spends reading it (the
runner's call, timed where it is made) and in `Generator.generate` outside the denoising
(`pipe.__call__` of both diffusers pipelines, timed by wrapping them), minus the same for
a draw from text, as a share of a 20-step draw (target < 1 %); and building the
image-to-image pipeline itself (`from_pipe`, once per loaded checkpoint). The VAE encode
of the picture happens inside the image-to-image call and is counted as denoising work.

Peak memory: each variant once more in a fresh process (so memory freed by an earlier
job, kept by the allocator, hides nothing): the peak resident set (VmHWM from
/proc/self/status, reset by writing 5 to /proc/self/clear_refs once the checkpoint is
loaded) above the resident set before the job. CPU memory, all allocators included
(tracemalloc would miss torch's tensors).

    .venv/bin/python benchmarks/bench_hires.py [--size 256] [--steps 20] [--rounds 5]
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

TARGET_SETUP_SHARE = 0.01
HIRES, DENOISE = 1.5, 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="first-pass width = height in pixels")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="jobs per variant")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peak", choices=("plain", "hires", "img2img"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    c.set_threads(args.threads)
    if args.peak:
        return _peak_child(args)
    c.print_header(
        "bench_hires.py", argv,
        f"tiny SDXL, {args.size}x{args.size}, {args.steps} steps, Euler a; plain vs hires {HIRES}x "
        f"(denoise {DENOISE}, Latent) vs image-to-image (strength {DENOISE}); {args.rounds} jobs each, alternating",
        args.threads,
    )
    with tempfile.TemporaryDirectory(prefix="loracle-bench-") as tmp:
        root = Path(tmp)
        c.build_library(root, loras=0)
        asyncio.run(_run(args, root))
    return 0


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


async def _run(args: argparse.Namespace, root: Path) -> None:
    import numpy as np
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
    from PIL import Image

    from engine.lora.cache import LoraCache
    from engine.pipeline.generator import Generator
    from engine.pipeline.passes import build_img2img
    from engine.queue.job import Progress
    from engine.requests import DrawRequest
    from engine.workers import local
    from engine.workers.local import GpuRunner

    settings = c.make_settings(root, max_size=max(1536, int(args.size * HIRES) // 8 * 8 + 8))
    engine = await c.open_engine(settings)  # plans only: the runner below draws
    try:
        source = Image.fromarray(np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")
        stored = await engine.store_image(buffer.getvalue())

        def request(**kw: Any) -> DrawRequest:
            base: dict[str, Any] = dict(prompt=c.PROMPT, negative=c.NEGATIVE, seed=77, steps=args.steps, cfg=6.0,
                                        width=args.size, height=args.size, user_id="bench")
            base.update(kw)
            return DrawRequest(**base)

        requests = {
            "plain": request(),
            "hires": request(hires=HIRES, hires_denoise=DENOISE, hires_upscaler="latent"),
            "img2img": request(init_image=stored.id, strength=DENOISE, width=None, height=None),
        }
        runner = GpuRunner(c.make_generator(settings), LoraCache(4), settings.outputs_dir, inputs_dir=settings.inputs_dir)
        timers = [c.MethodTimer(StableDiffusionXLPipeline, "__call__"), c.MethodTimer(StableDiffusionXLImg2ImgPipeline, "__call__")]
        generate = c.MethodTimer(Generator, "generate")
        # The runner's own call that reads the stored picture, timed where it is called.
        loads: list[float] = []
        real_load = local.load_input

        def timed_load(*a: Any, **kw: Any) -> Any:
            seconds, image = c.timed(lambda: real_load(*a, **kw))
            loads.append(seconds)
            return image

        local.load_input = timed_load

        def job(variant: str, n: int) -> tuple[float, float, int, Any]:
            queued = c.make_job(engine.plan(requests[variant]), f"{variant}-{n}")
            marks = [len(t.calls) for t in timers]
            mark_generate, mark_loads = len(generate.calls), len(loads)
            base_rss = _rss_kib("VmRSS")
            _reset_peak()
            started = time.perf_counter()
            result = runner(queued, Progress()).result()
            seconds = time.perf_counter() - started
            peak = _rss_kib("VmHWM") - base_rss
            in_pipes = sum(t.total_since(m) for t, m in zip(timers, marks, strict=True))
            # setup = the runner reading the picture + Generator.generate outside the pipelines
            setup = generate.total_since(mark_generate) - in_pipes + sum(loads[mark_loads:])
            return seconds, setup, peak, result

        for timer in (*timers, generate):
            timer.__enter__()
        try:
            for variant in requests:
                job(variant, -1)  # warm-up: loads the checkpoint, builds the img2img pipeline
            times: dict[str, list[float]] = {name: [] for name in requests}
            outside: dict[str, list[float]] = {name: [] for name in requests}
            sizes: dict[str, tuple[int, int]] = {}
            for n, order in enumerate(c.rotations(list(requests), args.rounds)):
                for variant in order:
                    seconds, out_s, _, result = job(variant, n)
                    times[variant].append(seconds)
                    outside[variant].append(out_s)
                    with Image.open(result.images[0]) as image:
                        sizes[variant] = image.size
        finally:
            for timer in (*timers, generate):
                timer.__exit__()
            local.load_input = real_load
        generator = runner.generator
        builds = []
        for _ in range(5):
            builds.append(c.timed(lambda: build_img2img(generator.pipe))[0])
        peak_reset_works = _reset_peak()
        runner.close()
    finally:
        await engine.close()

    plain = c.median(times["plain"])
    print(f"{'variant':<9}{'size':>11}{'s/job':>9}{'min..max':>16}{'ratio':>7}{'setup ms':>10}")
    for variant, values in times.items():
        w, h = sizes[variant]
        print(f"{variant:<9}{f'{w}x{h}':>11}{c.median(values):>9.3f}{c.spread(values):>16}{c.median(values) / plain:>7.3f}"
              f"{1000 * c.median(outside[variant]):>10.1f}")
    pixel_ratio = HIRES * HIRES
    work_ratio = 1 + DENOISE * pixel_ratio
    print(f"\nhires / plain: time {c.median(times['hires']) / plain:.2f}x; pixel count {pixel_ratio:.2f}x; "
          f"denoising work (1 + {DENOISE} x {pixel_ratio:.2f}) {work_ratio:.2f}x")
    setup = c.median(outside["img2img"]) - c.median(outside["plain"])
    share = setup / plain
    print(f"image-to-image setup per job (reading the picture + Generator.generate outside the pipelines, "
          f"beyond a draw's): {1000 * setup:.1f} ms = "
          f"{100 * share:.2f} % of a {args.steps}-step draw (target < {100 * TARGET_SETUP_SHARE:.0f} %: "
          f"{'met' if share < TARGET_SETUP_SHARE else 'NOT met'})")
    print(f"building the image-to-image pipeline (from_pipe, once per loaded checkpoint): "
          f"{1000 * c.median(builds):.2f} ms ({c.spread(builds)} s)")
    fresh = {variant: _peak_in_child(args, variant) for variant in ("plain", "hires", "img2img")}
    print("peak memory of one job above the loaded model, each in a fresh process (peak RSS, CPU): "
          + ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in fresh.items())
          + f"; hires / plain {fresh['hires'] / max(fresh['plain'], 1):.2f}x"
          + ("" if peak_reset_works else " (clear_refs not writable: peaks include the load)"))


def _peak_in_child(args: argparse.Namespace, variant: str) -> int:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, __file__, "--peak", variant, "--size", str(args.size), "--steps", str(args.steps),
         "--threads", str(args.threads)],
        check=True, capture_output=True, text=True,
    ).stdout
    return int(out.strip().splitlines()[-1])


def _peak_child(args: argparse.Namespace) -> int:
    """One job of `args.peak` in this fresh process; prints its peak RSS increase in KiB."""
    with tempfile.TemporaryDirectory(prefix="loracle-bench-") as tmp:
        root = Path(tmp)
        c.build_library(root, loras=0)
        asyncio.run(_one_peak(args, root))
    return 0


async def _one_peak(args: argparse.Namespace, root: Path) -> None:
    import numpy as np
    from PIL import Image

    from engine.lora.cache import LoraCache
    from engine.queue.job import Progress
    from engine.requests import DrawRequest
    from engine.workers.local import GpuRunner

    settings = c.make_settings(root, max_size=max(1536, int(args.size * HIRES) // 8 * 8 + 8))
    engine = await c.open_engine(settings)
    try:
        kw: dict[str, Any] = {}
        if args.peak == "hires":
            kw = dict(hires=HIRES, hires_denoise=DENOISE, hires_upscaler="latent")
        elif args.peak == "img2img":
            buffer = io.BytesIO()
            Image.fromarray(np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)).save(
                buffer, format="PNG")
            kw = dict(init_image=(await engine.store_image(buffer.getvalue())).id, strength=DENOISE)
        request = DrawRequest(prompt=c.PROMPT, negative=c.NEGATIVE, seed=77, steps=args.steps, cfg=6.0,
                              width=args.size, height=args.size, user_id="bench", **kw)
        plan = engine.plan(request)
        runner = GpuRunner(c.make_generator(settings), LoraCache(4), settings.outputs_dir, inputs_dir=settings.inputs_dir)
        # Loads the checkpoint as a job does; 64 px, 1 step: too small to hide the job's peak.
        warm = DrawRequest(prompt=c.PROMPT, seed=1, steps=1, width=64, height=64, user_id="bench")
        runner(c.make_job(engine.plan(warm), "warm"), Progress()).result()
        base = _rss_kib("VmRSS")
        _reset_peak()
        runner(c.make_job(plan, "peak"), Progress()).result()
        print(_rss_kib("VmHWM") - base)
        runner.close()
    finally:
        await engine.close()


if __name__ == "__main__":
    raise SystemExit(main())
