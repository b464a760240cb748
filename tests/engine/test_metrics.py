"""engine.metrics: the real HTTP endpoint on loopback, scraped and parsed as Prometheus does."""

from __future__ import annotations

import socket
import threading

import pytest

from engine import metrics
from engine.errors import SettingsError
from engine.settings import Settings
from tests.scrape import Scrape, metrics_endpoint, scrape, value  # noqa: F401


def test_off_unless_a_port_is_set() -> None:
    assert metrics.serve(None) is None
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.metrics_port is None and settings.metrics_host == "127.0.0.1"


def test_port_and_host_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORACLE_METRICS_PORT", "9464")
    monkeypatch.setenv("LORACLE_METRICS_HOST", "0.0.0.0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.metrics_port, settings.metrics_host) == (9464, "0.0.0.0")
    monkeypatch.setenv("LORACLE_METRICS_PORT", "70000")
    with pytest.raises(Exception, match="less than or equal to 65535"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_serves_on_loopback_only_by_default(metrics_endpoint: Scrape) -> None:
    server = metrics_endpoint.server
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/metrics"
    assert server._server.socket.getsockname()[0] == "127.0.0.1"
    assert ("loracle_queue_depth", frozenset()) in metrics_endpoint()


def test_a_busy_port_is_a_clear_settings_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError) as info:
            metrics.serve(port, "127.0.0.1")
    assert "LORACLE_METRICS_PORT" in str(info.value) and f"127.0.0.1:{port}" in str(info.value)
    assert "LORACLE_METRICS_PORT" in info.value.localized("zh-TW") and "連接埠" in info.value.localized("zh-TW")


def test_queue_depth_is_read_from_the_queue_on_each_scrape(metrics_endpoint: Scrape) -> None:
    depth = [3]
    metrics.track_queue(lambda: depth[0])
    try:
        assert metrics_endpoint.value("loracle_queue_depth") == 3
        depth[0] = 7
        assert metrics_endpoint.value("loracle_queue_depth") == 7

        def broken() -> int:
            raise RuntimeError("queue stopped")

        metrics.track_queue(broken)  # a stopped queue does not break the scrape
        assert metrics_endpoint.value("loracle_queue_depth") == 0
    finally:
        metrics.track_queue(None)
    assert metrics_endpoint.value("loracle_queue_depth") == 0


def test_job_histograms_loads_and_busy_seconds_by_label(metrics_endpoint: Scrape) -> None:
    before = metrics_endpoint()
    metrics.job_started("draw", 4.0)
    metrics.job_started("draw", -1.0)  # a clock step backwards counts as no wait
    metrics.job_finished("draw", "done", 2.5, worker="t-gpu-0", checkpoint_loaded=True)
    metrics.job_finished("draw", "failed", 0.5, worker="t-gpu-0")
    after = metrics_endpoint()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("loracle_job_wait_seconds_count", kind="draw") == 2
    assert delta("loracle_job_wait_seconds_sum", kind="draw") == 4.0
    assert delta("loracle_job_wait_seconds_bucket", kind="draw", le="5.0") == 2
    assert delta("loracle_job_wait_seconds_bucket", kind="draw", le="2.0") == 1
    assert delta("loracle_job_duration_seconds_count", kind="draw", outcome="done") == 1
    assert delta("loracle_job_duration_seconds_count", kind="draw", outcome="failed") == 1
    assert delta("loracle_checkpoint_loads_total", worker="t-gpu-0") == 1
    assert delta("loracle_worker_busy_seconds_total", worker="t-gpu-0") == 3.0
    metrics.worker_stopped("t-gpu-0")


def test_busy_ratio_is_the_share_of_the_workers_life_at_scrape_time(
    metrics_endpoint: Scrape, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(metrics._workers, "clock", lambda: now[0])
    metrics.worker_started("t-ratio")
    now[0] += 10
    metrics.job_finished("draw", "done", 4.0, worker="t-ratio")
    assert metrics_endpoint.value("loracle_worker_busy_ratio", worker="t-ratio") == pytest.approx(0.4)
    now[0] += 10  # idle: the share falls without any new job
    assert metrics_endpoint.value("loracle_worker_busy_ratio", worker="t-ratio") == pytest.approx(0.2)

    # A worker never announced has lived at least since its first job began.
    metrics.job_finished("draw", "done", 5.0, worker="t-unannounced")
    now[0] += 5
    assert metrics.worker_busy_ratio("t-unannounced") == pytest.approx(0.5)

    metrics.worker_stopped("t-ratio")
    metrics.worker_stopped("t-unannounced")
    left = {labels for name, labels in metrics_endpoint() if name.startswith("loracle_worker_busy")}
    assert not any(("worker", w) in labels for labels in left for w in ("t-ratio", "t-unannounced"))


def test_lora_cache_and_civitai_helpers_keep_labels_bounded(metrics_endpoint: Scrape) -> None:
    before = metrics_endpoint()
    metrics.lora_cache_lookup(hit=True)
    metrics.lora_cache_lookup(hit=False)
    metrics.lora_cache_lookup(hit=False)
    metrics.civitai_attempt("image-of-a-user", "ok")  # an unknown kind is not a new series
    after = metrics_endpoint()
    assert value(after, "loracle_lora_cache_requests_total", result="hit") - value(
        before, "loracle_lora_cache_requests_total", result="hit"
    ) == 1
    assert value(after, "loracle_lora_cache_requests_total", result="miss") - value(
        before, "loracle_lora_cache_requests_total", result="miss"
    ) == 2
    assert value(after, "loracle_civitai_requests_total", kind="api", outcome="ok") - value(
        before, "loracle_civitai_requests_total", kind="api", outcome="ok"
    ) == 1
    kinds = {dict(labels).get("kind") for name, labels in after if name.startswith("loracle_civitai")}
    assert kinds <= set(metrics.CIVITAI_KINDS)


@pytest.mark.parametrize(
    ("status", "accepted", "error", "outcome"),
    [
        (200, True, None, "ok"),
        (404, True, None, "ok"),  # the API's "not known" is an answer
        (429, False, None, "rate_limited"),
        (500, False, None, "5xx"),
        (503, False, None, "5xx"),
        (404, False, None, "4xx"),
        (302, False, None, "3xx"),
        (None, False, "timeout", "timeout"),
        (None, False, "unreachable", "unreachable"),
        (None, False, "something else", "unreachable"),
        (999, False, None, "5xx"),
    ],
)
def test_civitai_outcome(status: int | None, accepted: bool, error: str | None, outcome: str) -> None:
    assert metrics.civitai_outcome(status, accepted=accepted, error=error) == outcome
    assert outcome in metrics.CIVITAI_OUTCOMES


def test_every_loracle_series_uses_only_bounded_label_names(metrics_endpoint: Scrape) -> None:
    # No user id, prompt, checkpoint or URL can become a label: only these names exist.
    metrics.job_finished("draw", "done", 1.0, worker="t-labels")
    metrics.lora_cache_lookup(hit=True)
    metrics.civitai_attempt("api", "ok")
    allowed = {"kind", "outcome", "worker", "result", "le"}
    samples = metrics_endpoint()
    ours = {label for name, labels in samples if name.startswith("loracle_") for label, _ in labels}
    assert ours == allowed, ours ^ allowed
    metrics.worker_stopped("t-labels")


def test_scrapes_from_threads_while_jobs_finish(metrics_endpoint: Scrape) -> None:
    errors: list[BaseException] = []

    def scrape_many() -> None:
        try:
            for _ in range(20):
                scrape(metrics_endpoint.url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scrape_many) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(200):
        metrics.job_finished("draw", "done", 0.01, worker=f"t-w{i % 2}")
    for t in threads:
        t.join()
    assert errors == []
    for w in ("t-w0", "t-w1"):
        metrics.worker_stopped(w)


def test_readme_lists_every_metric_with_its_type_and_labels() -> None:
    import re
    from pathlib import Path

    from prometheus_client.metrics import MetricWrapperBase

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("## Metrics")
    section = readme[start : readme.index("\n## ", start)]
    documented = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`loracle_"):
            labels = set(re.findall(r"`(\w+)`", cells[2]))
            documented[cells[0].strip("`")] = (cells[1], labels)
    real = {}
    for thing in vars(metrics).values():
        if isinstance(thing, MetricWrapperBase):
            name = thing._name + ("_total" if thing._type == "counter" else "")
            real[name] = (thing._type, set(thing._labelnames))
    assert documented == real
    assert "LORACLE_METRICS_PORT" in section and "LORACLE_METRICS_HOST" in section
    assert "scrape_configs:" in section
    civitai = next(line for line in section.splitlines() if line.startswith("| `loracle_civitai_requests_total`"))
    for value_name in (*metrics.CIVITAI_KINDS, *metrics.CIVITAI_OUTCOMES):
        assert f"`{value_name}`" in civitai, value_name
