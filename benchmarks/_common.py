"""What the CPU benchmarks share: a tiny offline library, an Engine over it, and timing.

Not a benchmark itself (run_all.py runs only `bench_*.py`). Every figure a benchmark prints
comes from variants run side by side in one process, alternating, repeated, and summarised
by their median: the machine is shared, so only ratios measured together mean anything.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
# Run as a plain script from a checkout, where the project may not be pip-installed.
sys.path.insert(0, str(ROOT))

CHECKPOINT = "benchTinyXL"
PROMPT = "masterpiece, best quality, 1girl, smile, long hair, flower, outdoors"
NEGATIVE = "lowres, bad anatomy, blurry"


def print_header(script: str, argv: Sequence[str] | None, what: str, threads: int) -> None:
    import torch

    shown = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"$ .venv/bin/python benchmarks/{script} {shown}".rstrip())
    print(what)
    print(
        f"machine: {platform.machine()}, {cpu_name()}, torch {torch.__version__} CPU fp32, "
        f"torch threads {threads}; python {platform.python_version()}\n"
    )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def set_threads(threads: int) -> None:
    import torch

    # Toy-sized matmuls gain nothing from threads; on a shared machine extra threads spin
    # against the other processes and add noise, not speed.
    torch.set_num_threads(threads)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """min..max, to show how noisy a median is."""
    return f"{min(values):.3f}..{max(values):.3f}"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def rotations(names: Sequence[str], rounds: int) -> list[list[str]]:
    """Each round runs every variant once; the order rotates so none is always first."""
    names = list(names)
    return [names[r % len(names):] + names[: r % len(names)] for r in range(rounds)]


def verdict(ratio: float, target: float) -> str:
    return f"target <= {target:.2f}: {'met' if ratio <= target else 'NOT met'}"


# -- the tiny library ---------------------------------------------------------------------


def build_library(root: Path, loras: int) -> dict[str, Path]:
    """A tiny SDXL checkpoint and `loras` tiny LoRAs (kohya SGM names, attention layers and
    both text encoders, rank 4) under `root`, as an admin would lay them out."""
    from engine.testing.lora_files import write_tiny_lora
    from engine.testing.tiny_sdxl import build_tiny_pipeline, write_tiny_checkpoint

    models, lora_dir = root / "models", root / "loras"
    models.mkdir(parents=True, exist_ok=True)
    lora_dir.mkdir(parents=True, exist_ok=True)
    pipe = build_tiny_pipeline(seed=0)
    files = {CHECKPOINT: write_tiny_checkpoint(models / f"{CHECKPOINT}.safetensors", pipe=pipe)}
    for i in range(loras):
        name = f"bench_lora_{i}"
        files[name] = write_tiny_lora(lora_dir / f"{name}.safetensors", pipe, seed=100 + i, scale=0.5)
    return files


def make_settings(root: Path, settings_class: Any = None, **overrides: Any):
    """Offline CPU settings under `root`; `settings_class` (default: the engine's Settings)
    may be the bot's BotSettings, which adds the Discord ones."""
    from engine.settings import Settings

    values: dict[str, Any] = {
        "data_dir": root,
        "offline": True,
        # Never reachable, in case anything ignored `offline`.
        "civitai_base_url": "http://127.0.0.1:9",
        "device": "cpu",
        "dtype": "float32",
    }
    values.update(overrides)
    return (settings_class or Settings)(_env_file=None, **values)


async def open_engine(settings: Any):
    """An Engine over a scanned library, the tiny checkpoint as its default."""
    from engine.api import Engine

    engine = Engine(settings)
    await engine.scan(civitai=False)
    engine.admin.set_default_checkpoint(CHECKPOINT)
    return engine


def make_generator(settings: Any):
    import torch

    from engine.pipeline.generator import Generator

    return Generator(device="cpu", dtype=torch.float32, cache_dir=settings.root / "cache")


def make_job(plan: Any, job_id: str):
    from engine.queue.job import QueuedJob

    return QueuedJob(
        id=job_id,
        user_id=plan.request.user_id,
        checkpoint=plan.checkpoint.sha256 or plan.checkpoint.name,
        request=plan.request.to_json(),
        payload=plan,
    )


class MethodTimer:
    """Records how long each call of `owner.method` takes, wherever it is called from.

    Wraps the class attribute for the benchmark's lifetime, so the figures are the engine's
    own calls (e.g. GpuRunner -> LoraPatcher.apply, Generator -> pipe.__call__), not a
    re-implementation of them. `calls` holds (id of the instance, seconds).

    `sync` (e.g. torch.cuda.synchronize) runs before the clock starts and before it stops:
    CUDA kernels run asynchronously, so without it a call that only queues GPU work (a LoRA
    merge) would look nearly free and its cost would land in whatever synchronises next.
    """

    def __init__(self, owner: type, method: str, *, sync: Callable[[], Any] | None = None) -> None:
        self.owner, self.method = owner, method
        self.calls: list[tuple[int, float]] = []
        self._original: Any = None
        self._sync = sync or (lambda: None)

    def __enter__(self) -> Self:
        original = self._original = self.owner.__dict__[self.method]
        calls, sync = self.calls, self._sync

        def timed_call(instance: Any, *args: Any, **kwargs: Any) -> Any:
            sync()
            started = time.perf_counter()
            try:
                return original(instance, *args, **kwargs)
            finally:
                sync()
                calls.append((id(instance), time.perf_counter() - started))

        setattr(self.owner, self.method, timed_call)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self.owner, self.method, self._original)

    def total_since(self, mark: int) -> float:
        """Seconds spent in calls recorded after `len(self.calls)` was `mark`."""
        return sum(seconds for _, seconds in self.calls[mark:])


def apply_timer(sync: Callable[[], Any] | None = None) -> MethodTimer:
    from engine.lora.patcher import LoraPatcher

    return MethodTimer(LoraPatcher, "apply", sync=sync)


def pipe_timer(sync: Callable[[], Any] | None = None) -> MethodTimer:
    from diffusers import StableDiffusionXLPipeline

    return MethodTimer(StableDiffusionXLPipeline, "__call__", sync=sync)
