"""Several GPUs through Ray (LORACLE_CLUSTER=ray): the bot side.

The bot keeps the one queue, the job store and the scheduler; Ray places, runs and
supervises the workers. `RayCluster.connect()` joins (or starts) a Ray cluster and starts
LORACLE_WORKERS actors (engine.workers.ray_actor.DrawWorker), `num_gpus=1` each on a GPU
cluster; each becomes a queue Lane through a `RayWorkerProxy`, whose `run` is called in that
lane's thread: it sends the job, relays progress by polling the actor (the event loop never
waits on Ray), and turns a dead actor into WorkerLostError so the queue retries the job.
Ray restarts a dead actor (max_restarts); the proxy notices when it answers again.

ray is imported here only, and only when connecting: local mode never needs it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from engine.errors import SettingsError
from engine.i18n import Text
from engine.queue.job import Progress, QueuedJob
from engine.queue.lanes import Lane, ModelMissingError, WorkerLostError
from engine.workers.ray_actor import DrawWorker, RunnerFactory, WorkerConfig

log = logging.getLogger(__name__)

RAY_MISSING = Text(
    "LORACLE_CLUSTER=ray needs Ray: install the optional extra with `pip install 'loracle[cluster]'`.",
    "LORACLE_CLUSTER=ray 需要 Ray：請以 `pip install 'loracle[cluster]'` 安裝選用套件。",
)
# How often a running job's progress is fetched from its worker.
POLL_S = 0.1
# Ray restarts a crashed worker this many times; each restart re-creates its pipeline.
MAX_RESTARTS = 5
# A worker that does not answer this fast is taken for restarting (or gone).
PING_TIMEOUT_S = 2.0
# Workers lost longer than this (none answers again) make drawing unavailable.
RESTART_GRACE_S = 60.0
_PROBE_TIMEOUT_S = 3.0
_START_TIMEOUT_S = 300.0  # a new worker imports torch and diffusers

# Settings a worker reads to build its pipeline (the rest stays in the bot).
WORKER_SETTINGS = ("data_dir", "device", "dtype", "lora_cache_size", "lora_pristine")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SettingsError(RAY_MISSING) from None
    return ray


def _lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    exc = ray.exceptions
    names = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError",
             "NodeDiedError", "ObjectLostError", "OwnerDiedError", "OutOfMemoryError", "RaySystemError")
    return tuple(getattr(exc, name) for name in names if hasattr(exc, name))


class RayWorkerProxy:
    """One GPU worker actor as seen from the bot: the runner and questions of a Lane."""

    def __init__(self, ray: Any, actor: Any, worker_id: str, outputs_dir: Path) -> None:
        self.ray = ray
        self.actor = actor
        self.worker_id = worker_id
        self.outputs_dir = outputs_dir
        self.info: dict[str, Any] = {}
        self.state = "starting"  # up, lost (Ray restarts it), dead (restarts used up)
        self.lost_since: float | None = None
        self._loaded: str | None = None
        self._lost = _lost_errors(ray)

    def lane(self) -> Lane:
        return Lane(self.worker_id, self.run, loaded_checkpoint=self.loaded, available=self.available,
                    describe=self.describe)

    # -- lane questions ----------------------------------------------------------------

    def loaded(self) -> str | None:
        return self._loaded  # cached: asked under the queue's lock

    def describe(self) -> dict[str, Any]:
        return {"node": self.info.get("node", "?"), "gpu": self.info.get("gpu"), "state": self.state}

    def available(self) -> bool:
        """Up; or, after a loss, answering again (Ray restarted it). Called in its lane thread."""
        if self.state == "up":
            return True
        if self.state == "dead":
            return False
        return self.ping()

    def ping(self, timeout: float = PING_TIMEOUT_S) -> bool:
        try:
            info = self.ray.get(self.actor.info.remote(), timeout=timeout)
        except self.ray.exceptions.ActorDiedError:
            self.state = "dead"
            return False
        except Exception:
            return False
        self.info, self.state, self._loaded, self.lost_since = info, "up", info.get("loaded"), None
        return True

    # -- the job -----------------------------------------------------------------------

    def _inputs_of(self, job: QueuedJob) -> dict[str, bytes]:
        """The stored pictures a job starts from, sent with it: the bot's data folder is
        not the worker's (only the model library is shared)."""
        from engine.images.input import input_path

        image_id = getattr(getattr(job.payload, "request", None), "init_image", None)
        if not image_id:
            return {}
        return {image_id: input_path(self.outputs_dir.parent / "inputs", image_id).read_bytes()}

    def run(self, job: QueuedJob, progress: Progress) -> Any:
        ray = self.ray
        try:
            ref = self.actor.run.remote(replace(job, origin=None), self._inputs_of(job))
            cancel_sent = False
            while not ray.wait([ref], timeout=POLL_S)[0]:
                if progress.cancelled and not cancel_sent:
                    self.actor.cancel.remote(job.id)
                    cancel_sent = True
                self._relay(ray.get(self.actor.poll.remote(job.id), timeout=30), progress)
            outcome = ray.get(ref)
        except self._lost as exc:
            self.state, self._loaded, self.lost_since = "lost", None, time.monotonic()
            raise WorkerLostError(f"worker {self.worker_id}: {type(exc).__name__}") from exc
        tag = outcome[0]
        if tag == "missing":
            raise ModelMissingError(outcome[1], outcome[2])
        if tag == "error":
            raise outcome[1]
        _, result, pngs, loaded = outcome
        self._loaded = loaded if loaded is not None else job.checkpoint
        return self._deliver(job, result, pngs)

    def _relay(self, events: list[tuple[Any, ...]], progress: Progress) -> None:
        for event in events:
            if event[0] == "loading":
                progress.loading(event[1])
            elif event[0] == "step":
                progress.step(event[1], event[2], event[3])

    def _deliver(self, job: QueuedJob, result: Any, pngs: list[bytes] | None) -> Any:
        """Write the images the worker sent into the bot's outputs, as a local run would."""
        if pngs is None:
            return result
        folder = self.outputs_dir / date.today().isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, data in enumerate(pngs):
            path = folder / f"{job.id}-{index}.png"
            tmp = path.with_name(f".{path.name}.part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            paths.append(path)
        return replace(result, images=paths)


class RayCluster:
    """Connects to Ray and holds the worker actors; see the module doc."""

    def __init__(
        self,
        *,
        address: str | None,
        workers: int | None,
        outputs_dir: Path,
        settings: dict[str, Any] | None = None,
        factory: RunnerFactory | None = None,
        verify_hashes: bool = True,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        self.address = (address or "").strip() or None
        self.wanted = workers
        self.outputs_dir = outputs_dir
        self.settings = settings or {}
        self.factory = factory
        self.verify_hashes = verify_hashes
        self.init_options = init_options or {}
        self.ray: Any = None
        self.proxies: list[RayWorkerProxy] = []
        self.error: str | None = None  # why the cluster cannot be used, if it cannot
        self.started_ray = False
        self._gpus = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next_id = 0

    @property
    def connected(self) -> bool:
        return self.ray is not None and self.error is None

    def available(self) -> bool:
        """Whether drawing can be accepted: connected, and some worker up or restarting
        since less than RESTART_GRACE_S (a cluster whose workers all stay gone is down)."""
        now = time.monotonic()
        return self.connected and any(
            proxy.state == "up"
            or (proxy.state == "lost" and proxy.lost_since is not None and now - proxy.lost_since < RESTART_GRACE_S)
            for proxy in self.proxies
        )

    def refresh(self) -> bool:
        """Ask the workers that were lost whether they answer again (blocking, a few
        seconds at most); then `available()`."""
        for proxy in list(self.proxies):
            if proxy.state == "lost":
                proxy.ping()
        return self.available()

    # -- connecting --------------------------------------------------------------------

    def connect(self) -> list[Lane]:
        """Join or start Ray and start the workers; blocking (run it in a thread).

        Raises SettingsError when Ray is not installed; any other failure (the cluster
        unreachable) is kept in `error` and no lane is returned.
        """
        ray = import_ray()
        try:
            self._probe()
            if not ray.is_initialized():
                options = {"include_dashboard": False, "log_to_driver": False, **self.init_options}
                ray.init(address=self.address, **options)
                self.started_ray = self.address is None
            self.ray = ray
            self._gpus = int(ray.cluster_resources().get("GPU", 0))
            count = self.wanted or max(1, self._gpus)
            proxies = [self._spawn() for _ in range(count)]  # they start side by side
            lanes = [self._admit(proxy) for proxy in proxies]
        except SettingsError:
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("Ray cluster at %s is unreachable: %s", self.address or "(local)", self.error)
            return []
        self.error = None
        return lanes

    def _probe(self) -> None:
        """Fail fast on an address nobody answers: Ray itself would retry for minutes."""
        address = self.address
        if address is None or address == "auto" or ("://" in address and not address.startswith("ray://")):
            return
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=_PROBE_TIMEOUT_S):
                pass
        except (OSError, ValueError) as exc:
            raise ConnectionError(f"nothing answers at {address} ({exc})") from None

    def add_worker(self) -> Lane:
        """Start one more worker actor (blocking until it answers) and return its lane."""
        return self._admit(self._spawn())

    def _spawn(self) -> RayWorkerProxy:
        ray = self.ray
        with self._lock:
            worker_id = f"w{self._next_id}"
            self._next_id += 1
        # On a CPU-only cluster (tests, demos) a worker reserves no CPU, so a worker added
        # later or a restarted one is never left waiting for a free core.
        resources: dict[str, Any] = {"num_gpus": 1} if self._gpus else {"num_cpus": 0}
        actor_class = ray.remote(max_concurrency=4, max_restarts=MAX_RESTARTS, max_task_retries=0, **resources)(DrawWorker)
        actor = actor_class.remote(WorkerConfig(worker_id, self.settings, self.verify_hashes), self.factory)
        return RayWorkerProxy(ray, actor, worker_id, self.outputs_dir)

    def _admit(self, proxy: RayWorkerProxy) -> Lane:
        if not proxy.ping(timeout=_START_TIMEOUT_S):
            raise RuntimeError(f"worker {proxy.worker_id} did not start")
        with self._lock:
            self.proxies.append(proxy)
        return proxy.lane()

    def reconnect_in_background(self, on_lanes: Callable[[list[Lane]], None], every_s: float = 30.0) -> None:
        """While the cluster is unreachable, try again every `every_s`; hand new lanes over."""

        def retry() -> None:
            while not self._stop.wait(every_s):
                if self.connected:
                    return
                self.error = None
                lanes = self.connect()
                if lanes:
                    on_lanes(lanes)
                    return

        threading.Thread(target=retry, name="loracle-ray-reconnect", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        if self.ray is None:
            return
        for proxy in self.proxies:
            try:
                self.ray.kill(proxy.actor)
            except Exception:  # already gone
                log.debug("could not kill worker %s", proxy.worker_id, exc_info=True)
        if self.started_ray:
            self.ray.shutdown()

    def describe(self) -> str:
        where = self.address or "a local Ray instance"
        if self.error:
            return f"Ray at {where} is unreachable: {self.error}"
        alive = sum(proxy.state == "up" for proxy in self.proxies)
        return f"Ray at {where}: {alive} of {len(self.proxies)} workers up, {self._gpus} GPU(s) in the cluster"


def worker_settings(settings: Any) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in WORKER_SETTINGS}


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    """Poll `check` until it is true or `timeout` passes (for tests and the CLI)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()
