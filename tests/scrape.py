"""Scraping the real Prometheus endpoint (engine.metrics.serve) over loopback HTTP, the
way Prometheus does, and reading samples with prometheus_client's own text parser.

The registry is the process's: other tests move the same counters, so tests compare a
sample before and after what they do (`Scrape.delta`), never an absolute count.

    from tests.scrape import metrics_endpoint  # noqa: F401  (the fixture)
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series not created yet (Prometheus does the same)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


@dataclass
class Scrape:
    server: metrics.MetricsServer

    @property
    def url(self) -> str:
        return self.server.url

    def __call__(self) -> Samples:
        return scrape(self.url)

    def value(self, name: str, **labels: str) -> float:
        return value(self(), name, **labels)


@pytest.fixture
def metrics_endpoint() -> Iterator[Scrape]:
    """The real endpoint on a free loopback port, closed after the test."""
    server = metrics.serve(0, "127.0.0.1")
    assert server is not None
    try:
        yield Scrape(server)
    finally:
        server.close()
