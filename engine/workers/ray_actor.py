"""The GPU worker as a Ray actor: one pipeline and one LoRA patcher (a GpuRunner), one job
at a time, on whatever node Ray placed it.

This module runs inside the Ray worker process; the bot talks to it through
engine.workers.ray_cluster. It never imports ray itself (the bot wraps the class with
`ray.remote`), so it is plain, testable Python.

- `run(job)` draws and returns a tagged tuple, never raises for a job's own failure:
  ("ok", result, pngs, loaded) where a DrawResult travels without its local file paths and
  the PNG bytes travel beside it, through Ray's object store (the bot writes them to its
  outputs; no shared disk is assumed for outputs); ("missing", name, detail) when this node
  lacks a model file or holds a different one; ("error", exception) for anything else.
- `poll(job_id)` returns the progress events since the last poll (loading, the latest step)
  and `cancel(job_id)` asks the running job to stop at its next step. The actor is
  threaded (max_concurrency > 1), so both answer while `run` draws.
- Before a file's first use on this node its sha256 is checked against the library's
  record; the answer is cached per file (size and mtime), so a checkpoint is hashed once.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import JobFailedError, LoracleError
from engine.i18n import Text
from engine.queue.job import Progress, QueuedJob, Runner

_HASH_CHUNK = 8 * 1024 * 1024
_INPUT_DAMAGED = Text(
    "The picture this job starts from did not reach the GPU worker intact. Send it again.",
    "這項工作的起始圖片未完整送達 GPU 工作節點，請重新傳送。",
)


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs from the bot's settings (the rest stays in the bot)."""

    worker_id: str
    settings: dict[str, Any] = field(default_factory=dict)  # engine.settings.Settings fields
    verify_hashes: bool = True


RunnerFactory = Callable[[WorkerConfig], Runner]


def gpu_runner(config: WorkerConfig) -> Runner:
    """The real job body: a Generator and a LoRA cache on this node's GPU (or CPU)."""
    from engine.lora.cache import LoraCache
    from engine.pipeline.device import pristine_on_cpu, pristine_read_back, resolve_device, resolve_dtype
    from engine.pipeline.generator import Generator
    from engine.settings import Settings
    from engine.workers.local import GpuRunner

    settings = Settings(_env_file=None, **config.settings)  # type: ignore[call-arg]  # pydantic-settings' init kwarg
    device = resolve_device(settings)
    generator = Generator(device=device, dtype=resolve_dtype(settings, device), cache_dir=settings.root / "cache")
    outputs = Path(tempfile.mkdtemp(prefix=f"loracle-{config.worker_id}-"))
    return GpuRunner(
        generator,
        LoraCache(settings.lora_cache_size),
        outputs,
        pristine_on_cpu=pristine_on_cpu(settings, generator.device),
        read_back=pristine_read_back(settings),
        inputs_dir=outputs / "inputs",  # filled from what each job brings (DrawWorker.run)
    )


class _Missing(Exception):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(name, detail)
        self.name = name
        self.detail = detail


class DrawWorker:
    """Wrapped by `ray.remote(...)` in engine.workers.ray_cluster; see the module doc."""

    def __init__(self, config: WorkerConfig, factory: RunnerFactory | None = None) -> None:
        self.config = config
        self.runner = (factory or gpu_runner)(config)
        self._lock = threading.Lock()
        self._events: dict[str, list[tuple[Any, ...]]] = {}
        self._progress: dict[str, Progress] = {}
        self._verified: dict[str, tuple[tuple[int, int], str]] = {}  # path -> ((size, mtime), sha256)

    # -- questions (answered while a job runs) -----------------------------------------

    def info(self) -> dict[str, Any]:
        gpu = None
        try:
            import torch

            if torch.cuda.is_available():
                gpu = torch.cuda.get_device_name(0)
        except Exception:  # no torch build with CUDA: a CPU worker
            gpu = None
        return {
            "worker": self.config.worker_id,
            "node": socket.gethostname(),
            "pid": os.getpid(),
            "gpu": gpu,
            "loaded": self.loaded(),
        }

    def loaded(self) -> str | None:
        read = getattr(self.runner, "loaded_checkpoint", None)
        return read() if callable(read) else None

    def poll(self, job_id: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._events.pop(job_id, [])

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            progress = self._progress.get(job_id)
        if progress is None:
            return False
        progress.request_cancel()
        return True

    # -- the job -----------------------------------------------------------------------

    def run(self, job: QueuedJob, inputs: dict[str, bytes] | None = None) -> tuple[Any, ...]:
        """Run one job; `inputs` are the stored pictures it starts from, by id."""
        progress = Progress(on_step=self._stepper(job.id), on_loading=self._loader(job.id))
        with self._lock:
            self._progress[job.id] = progress
            self._events[job.id] = []
        try:
            self._keep_inputs(inputs or {})
            self._verify(job.payload)
            value = self.runner(job, progress)
            if isinstance(value, Future):
                value = value.result()
            result, pngs = _detach_images(value)
            return ("ok", result, pngs, self.loaded())
        except _Missing as missing:
            return ("missing", missing.name, missing.detail)
        except BaseException as exc:
            return ("error", _portable(exc))
        finally:
            with self._lock:
                self._progress.pop(job.id, None)

    def _stepper(self, job_id: str) -> Callable[[int, int, str | None], None]:
        def step(i: int, n: int, note: str | None) -> None:
            with self._lock:
                events = self._events.setdefault(job_id, [])
                if events and events[-1][0] == "step":
                    events[-1] = ("step", i, n, note)  # only the latest step matters
                else:
                    events.append(("step", i, n, note))

        return step

    def _loader(self, job_id: str) -> Callable[[str], None]:
        def loading(name: str) -> None:
            with self._lock:
                self._events.setdefault(job_id, []).append(("loading", name))

        return loading

    def _keep_inputs(self, inputs: dict[str, bytes]) -> None:
        """Write the job's pictures where this node's runner reads them. Ids are the
        pictures' sha256, so a picture is written once and checked against its name."""
        from engine.atomic import write_bytes_atomic
        from engine.images.input import input_path

        folder = getattr(self.runner, "inputs_dir", None)
        for image_id, data in inputs.items():
            if folder is None or hashlib.sha256(data).hexdigest() != image_id:
                raise JobFailedError(_INPUT_DAMAGED)
            path = input_path(folder, image_id)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(path, data)

    def _verify(self, plan: Any) -> None:
        """Every model file the plan reads is here and is the file the library hashed."""
        checkpoint = getattr(plan, "checkpoint", None)
        if checkpoint is None or not self.config.verify_hashes:
            return
        files = [(checkpoint.name, checkpoint.path, checkpoint.sha256)]
        files += [(lora.name, lora.path, lora.sha256) for lora in getattr(plan, "applied_loras", [])]
        for name, path, sha256 in files:
            if path is not None:
                self._verify_file(name, Path(path), sha256)

    def _verify_file(self, name: str, path: Path, sha256: str | None) -> None:
        node = socket.gethostname()
        try:
            stat = path.stat()
        except OSError:
            raise _Missing(name, f"{path} is not on node {node}") from None
        stamp = (stat.st_size, stat.st_mtime_ns)
        if path.is_dir() or not sha256:
            return  # a diffusers folder has no one hash; its files were checked at scan
        cached = self._verified.get(str(path))
        if cached is not None and cached[0] == stamp:
            digest = cached[1]
        else:
            hasher = hashlib.sha256()
            with open(path, "rb") as fh:
                while chunk := fh.read(_HASH_CHUNK):
                    hasher.update(chunk)
            digest = hasher.hexdigest()
            self._verified[str(path)] = (stamp, digest)
        if digest != sha256.lower():
            raise _Missing(name, f"{path} on node {node} is a different file (sha256 differs)")


def _detach_images(value: Any) -> tuple[Any, list[bytes] | None]:
    """A DrawResult's PNG files as bytes, and the result without its worker-local paths."""
    from engine.requests import DrawResult

    if not isinstance(value, DrawResult):
        return value, None
    pngs = []
    for path in value.images:
        pngs.append(Path(path).read_bytes())
        Path(path).unlink(missing_ok=True)
    return replace(value, images=[]), pngs


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a plain one that says the same."""
    try:
        # Our own bytes, just made: a round trip that Ray will also do (no file is read).
        pickle.loads(pickle.dumps(exc))  # noqa: S301
        return exc
    except Exception:
        if isinstance(exc, LoracleError):
            return JobFailedError(str(exc))
        return RuntimeError(f"{type(exc).__name__}: {exc}")
