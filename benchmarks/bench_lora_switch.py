"""Switching LoRA sets between jobs: with the LoRA cache vs reading the files every time.

Four different sets (2 to 4 of six tiny LoRAs, overlapping, different weights) take turns
for 40 jobs, as when several users with their own favourite LoRAs share the bot; every
job therefore switches the set. Two job runners (GpuRunner, each with its own pipeline of
the same tiny SDXL) run the same 40 jobs alternately:

  cached    LoraCache(16): every file is parsed once, then merged from memory;
  no cache  every LoRA read from disk on every switch (what LORACLE_LORA_CACHE_SIZE=0 means;
            LoraCache itself refuses 0, so this runner's cache is emptied before each job).

Jobs are small (few steps) because the switch is what is measured: the time of the
engine's own LoraPatcher.apply calls, per job, and the whole job for reference.

    .venv/bin/python benchmarks/bench_lora_switch.py [--jobs 40] [--size 64] [--steps 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

SETS: tuple[tuple[tuple[int, float], ...], ...] = (
    ((0, 0.8), (1, 0.6), (2, 0.4)),
    ((3, 0.7), (4, 0.5)),
    ((0, 0.5), (5, 0.9), (3, 0.3)),
    ((1, 1.0), (2, 0.6), (4, 0.4), (5, 0.2)),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="jobs per mode (sets take turns)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    c.set_threads(args.threads)
    c.print_header(
        "bench_lora_switch.py", argv,
        f"tiny SDXL, {args.size}x{args.size}, {args.steps} steps; {len(SETS)} LoRA sets in turn over "
        f"{args.jobs} jobs per mode, the two modes alternating job by job",
        args.threads,
    )
    with tempfile.TemporaryDirectory(prefix="loracle-bench-") as tmp:
        root = Path(tmp)
        c.build_library(root, loras=6)
        asyncio.run(_run(args, root))
    return 0


async def _run(args: argparse.Namespace, root: Path) -> None:
    import numpy as np
    from PIL import Image

    from engine.lora.cache import LoraCache
    from engine.planning.lora_weights import LoraRequest
    from engine.queue.job import Progress
    from engine.requests import DrawRequest
    from engine.workers.local import GpuRunner

    settings = c.make_settings(root)
    engine = await c.open_engine(settings)  # plans only: the runners below do the drawing
    try:
        requests = [
            DrawRequest(prompt=c.PROMPT, negative=c.NEGATIVE, seed=5, steps=args.steps, cfg=6.0,
                        width=args.size, height=args.size, user_id="bench",
                        loras=[LoraRequest(f"bench_lora_{i}", w) for i, w in chosen])
            for chosen in SETS
        ]
        runners = {
            "cached": GpuRunner(c.make_generator(settings), LoraCache(16), settings.outputs_dir / "cached"),
            "no cache": GpuRunner(c.make_generator(settings), LoraCache(1), settings.outputs_dir / "uncached"),
        }
        warm = DrawRequest(prompt=c.PROMPT, seed=5, steps=1, width=64, height=64, user_id="bench")
        for name, runner in runners.items():
            runner(c.make_job(engine.plan(warm), f"warm-{name}"), Progress()).result()  # loads the checkpoint

        apply_ms: dict[str, list[float]] = {name: [] for name in runners}
        job_s: dict[str, list[float]] = {name: [] for name in runners}
        last: dict[str, Any] = {}
        with c.apply_timer() as applies:
            for n in range(args.jobs):
                plan_request = requests[n % len(requests)]
                for name in (list(runners) if n % 2 == 0 else list(reversed(runners))):
                    runner = runners[name]
                    if name == "no cache":
                        runner.lora_cache.clear()
                    job = c.make_job(engine.plan(plan_request), f"{name}-{n}")
                    mark, started = len(applies.calls), time.perf_counter()
                    result = runner(job, Progress()).result()
                    job_s[name].append(time.perf_counter() - started)
                    apply_ms[name].append(1000 * applies.total_since(mark))
                    last[name] = result
        same = np.array_equal(*(np.asarray(Image.open(last[name].images[0])) for name in runners))
        stats = {name: runner.lora_cache.stats for name, runner in runners.items()}
        files = sorted((root / "loras").glob("*.safetensors"))
    finally:
        await engine.close()

    print(f"{'mode':<10}{'apply ms/switch':>17}{'min..max':>18}{'job s':>8}{'files read':>12}")
    for name in runners:
        print(f"{name:<10}{c.median(apply_ms[name]):>17.2f}{c.spread(apply_ms[name]):>18}"
              f"{c.median(job_s[name]):>8.3f}{stats[name].loads:>12}")
    ratio = c.median(apply_ms["no cache"]) / c.median(apply_ms["cached"])
    paired = c.median([u / k for u, k in zip(apply_ms["no cache"], apply_ms["cached"], strict=True)])
    print(f"switch time, no cache / cached = {ratio:.2f}x (paired median {paired:.2f}x); "
          f"the cache saves {c.median(apply_ms['no cache']) - c.median(apply_ms['cached']):.1f} ms per switch")
    print(f"same image with and without the cache: {'yes' if same else 'NO'}")
    print(f"LoRA files: {len(files)} of {sum(f.stat().st_size for f in files) / len(files) / 1024:.0f} KiB "
          f"each (rank 4 on the tiny model; a real SDXL LoRA is 20-400 MiB, see gpu_sdxl.py)")


if __name__ == "__main__":
    raise SystemExit(main())
