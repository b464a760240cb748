"""What three LoRAs cost a job once they are applied, and what applying them costs once.

Two job runners (GpuRunner, each with its own pipeline of the same tiny SDXL checkpoint
and its own LoRA cache) draw the same image alternately: one with no LoRA, one with three
LoRAs (rank 4, attention layers and both text encoders, weights 0.8 / 0.6 / 0.4). The
LoRA set never changes, so after the first job each job of the second runner finds it
already applied: the steady state of a user drawing again with the same LoRAs. The
patcher merges LoRAs into the weights, so the target is that such a job costs no more
than a job without LoRAs (ratio <= 1.02).

Also reported, once: the first application (files read, pristine copies made), applying
the set again from the LoRA cache and from disk after removing it, and the memory the
pristine copies take.

    .venv/bin/python benchmarks/bench_lora_cost.py [--size 256] [--steps 20] [--rounds 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

TARGET = 1.02
WEIGHTS = (0.8, 0.6, 0.4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="width = height in pixels")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10, help="images per variant")
    parser.add_argument("--reps", type=int, default=9, help="repetitions of each one-off cost")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    c.set_threads(args.threads)
    c.print_header(
        "bench_lora_cost.py", argv,
        f"tiny SDXL, {args.size}x{args.size}, {args.steps} steps; no LoRA vs three LoRAs "
        f"(weights {', '.join(map(str, WEIGHTS))}), {args.rounds} images each, alternating",
        args.threads,
    )
    with tempfile.TemporaryDirectory(prefix="loracle-bench-") as tmp:
        root = Path(tmp)
        c.build_library(root, loras=3)
        import asyncio

        asyncio.run(_run(args, root))
    return 0


async def _run(args: argparse.Namespace, root: Path) -> None:
    import numpy as np
    from PIL import Image

    from engine.lora.cache import LoraCache
    from engine.lora.patcher import LoraSpec
    from engine.planning.lora_weights import LoraRequest
    from engine.queue.job import Progress
    from engine.requests import DrawRequest
    from engine.workers.local import GpuRunner

    settings = c.make_settings(root)
    engine = await c.open_engine(settings)  # plans only: the runners below do the drawing
    try:
        def request(loras: list[LoraRequest]) -> DrawRequest:
            return DrawRequest(prompt=c.PROMPT, negative=c.NEGATIVE, seed=77, steps=args.steps, cfg=6.0,
                               width=args.size, height=args.size, loras=loras, user_id="bench")

        three = request([LoraRequest(f"bench_lora_{i}", w) for i, w in enumerate(WEIGHTS)])
        none = request([])
        runners = {
            "no LoRA": GpuRunner(c.make_generator(settings), LoraCache(16), settings.outputs_dir / "none"),
            "3 LoRAs": GpuRunner(c.make_generator(settings), LoraCache(16), settings.outputs_dir / "three"),
        }
        plans = {"no LoRA": none, "3 LoRAs": three}

        def job(variant: str, n: int) -> tuple[float, float, Any]:
            job = c.make_job(engine.plan(plans[variant]), f"{variant[0]}-{n}")
            wall, cpu = time.perf_counter(), time.process_time()
            pending = runners[variant](job, Progress())  # the GPU part; PNGs are written after
            return time.perf_counter() - wall, time.process_time() - cpu, pending.result()

        with c.apply_timer() as applies:
            job("no LoRA", -1)  # loads the checkpoint
            mark = len(applies.calls)
            first_seconds, _, first = job("3 LoRAs", -1)  # loads it too, then the first application
            first_apply = applies.total_since(mark)
            loaded = [l for l in first.plan.loras if l.matched_modules]
            assert len(loaded) == 3, "every LoRA must find layers of the tiny model"

            times: dict[str, list[float]] = {name: [] for name in runners}
            cpu: dict[str, list[float]] = {name: [] for name in runners}
            steady: list[float] = []
            images: dict[str, Any] = {}
            for n, order in enumerate(c.rotations(list(runners), args.rounds)):
                for variant in order:
                    mark = len(applies.calls)
                    seconds, cpu_seconds, result = job(variant, n)
                    if variant == "3 LoRAs":
                        steady.append(applies.total_since(mark))
                    times[variant].append(seconds)
                    cpu[variant].append(cpu_seconds)
                    images[variant] = np.asarray(Image.open(result.images[0]))

        patcher = runners["3 LoRAs"]._patcher
        specs = [LoraSpec(key=l.sha256 or "", path=l.path, weight=l.applied_weight, name=l.name)
                 for l in first.plan.applied_loras]
        from_cache, from_disk = [], []
        for _ in range(args.reps):
            patcher.apply([])  # back to the pristine weights
            from_cache.append(c.timed(lambda: patcher.apply(specs))[0])
            patcher.apply([])
            patcher.cache.clear()
            from_disk.append(c.timed(lambda: patcher.apply(specs))[0])
        pipe = runners["3 LoRAs"].generator.pipe
        model_bytes = sum(p.numel() * p.element_size()
                          for part in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2)
                          for p in part.parameters())
        lora_bytes = sum(Path(l.path).stat().st_size for l in first.plan.applied_loras)
    finally:
        await engine.close()

    base, cpu_base = c.median(times["no LoRA"]), c.median(cpu["no LoRA"])
    print(f"{'variant':<9}{'s/image':>9}{'min..max':>14}{'ratio':>7}{'paired':>8}{'CPU s':>8}{'CPU ratio':>11}")
    for variant, values in times.items():
        paired = c.median([v / b for v, b in zip(values, times["no LoRA"], strict=True)])
        print(f"{variant:<9}{c.median(values):>9.3f}{c.spread(values):>14}{c.median(values) / base:>7.3f}"
              f"{paired:>8.3f}{c.median(cpu[variant]):>8.3f}{c.median(cpu[variant]) / cpu_base:>11.3f}")
    ratio = c.median(times["3 LoRAs"]) / base
    print(f"LoRAs change the image: {'yes' if not np.array_equal(images['no LoRA'], images['3 LoRAs']) else 'NO'}; "
          f"modules matched per LoRA: {', '.join(str(l.matched_modules) for l in loaded)}")
    print(f"3 LoRAs / no LoRA = {ratio:.3f} ({c.verdict(ratio, TARGET)})")
    print(f"steady state: LoraPatcher.apply of the unchanged set, median {1000 * c.median(steady):.3f} ms per job")

    print(f"\none-off cost of applying the three LoRAs ({lora_bytes / 1024:.0f} KiB of files):")
    print(f"  first application (read files, check originals re-read, merge){1000 * first_apply:8.1f} ms "
          f"(its whole job: {first_seconds:.2f} s, with the checkpoint load)")
    print(f"  again from the LoRA cache (merge only), median of {args.reps}          "
          f"{1000 * c.median(from_cache):8.1f} ms")
    print(f"  again from disk (cache cleared), median of {args.reps}                 "
          f"{1000 * c.median(from_disk):8.1f} ms")
    print(f"  originals copied in memory while applied: {patcher.pristine_bytes / 2**20:.2f} MiB "
          f"= {100 * patcher.pristine_bytes / model_bytes:.0f}% of the UNet + text encoder weights "
          f"({patcher.touched_params} tensors)")


if __name__ == "__main__":
    raise SystemExit(main())
