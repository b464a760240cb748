"""LoraCache: LRU by content hash, counted hits / misses / loads."""

from __future__ import annotations

import os

import pytest

from engine.errors import CorruptFileError
from engine.lora.cache import LoraCache, file_identity_key
from engine.testing.lora_files import write_tiny_lora


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from engine.testing.tiny_sdxl import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("cache")
    pipe = build_tiny_pipeline(0)
    return [write_tiny_lora(folder / f"l{i}.safetensors", pipe, seed=i, text_encoders=False) for i in range(3)]


def test_hits_misses_and_lru_eviction(files):
    cache = LoraCache(2)
    a = cache.get("a", files[0])
    assert cache.get("a", files[0]) is a
    cache.get("b", files[1])
    cache.get("a", files[0])  # a is now the most recent
    cache.get("c", files[2])  # evicts b
    assert "a" in cache and "c" in cache and "b" not in cache
    assert (cache.stats.hits, cache.stats.misses, cache.stats.loads, cache.stats.evictions) == (2, 3, 3, 1)
    cache.get("b", files[1])
    assert cache.stats.loads == 4 and len(cache) == 2


def test_content_key_is_trusted_over_the_path(files):
    cache = LoraCache(4)
    first = cache.get("same-hash", files[0])
    assert cache.get("same-hash", files[1]) is first  # same content hash: no read


def test_fallback_key_changes_when_file_changes(tmp_path, files):
    path = tmp_path / "x.safetensors"
    path.write_bytes(files[0].read_bytes())
    before = file_identity_key(path)
    path.write_bytes(files[1].read_bytes())
    os.utime(path, ns=(1, 1))
    assert file_identity_key(path) != before
    cache = LoraCache(4)
    cache.get(None, path)
    cache.get(None, path)
    assert (cache.stats.loads, cache.stats.hits) == (1, 1)


def test_failed_load_is_not_cached(tmp_path):
    cache = LoraCache(2)
    with pytest.raises(CorruptFileError):
        cache.get("k", tmp_path / "missing.safetensors")
    with pytest.raises(CorruptFileError):
        cache.get(None, tmp_path / "missing.safetensors")
    assert len(cache) == 0 and cache.stats.loads == 0


def test_nbytes_counts_the_tensors_of_cached_files(files):
    cache = LoraCache(1)
    assert cache.nbytes == 0
    first = cache.get("a", files[0])
    assert cache.nbytes == first.nbytes > 0
    second = cache.get("b", files[1])  # evicts a
    assert cache.nbytes == second.nbytes
    cache.clear()
    assert cache.nbytes == 0


def test_the_kind_the_scan_stored_is_what_the_parser_reports(files):
    # The scan decides what a file is; the parser trusts that answer instead of deciding
    # again on the GPU thread (a disagreement could otherwise first appear mid-job).
    from engine.kinds import FileKind

    cache = LoraCache(2)
    assert cache.get("guessed", files[0]).kind == FileKind.LORA
    assert cache.get("stored", files[1], kind=FileKind.LOCON).kind == FileKind.LOCON


def test_hits_and_misses_reach_the_metrics_endpoint(files):
    from engine import metrics
    from tests.scrape import scrape, value

    server = metrics.serve(0, "127.0.0.1")
    assert server is not None
    try:
        name = "loracle_lora_cache_requests_total"
        before = scrape(server.url)
        cache = LoraCache(1)
        cache.get("a", files[0])  # miss
        cache.get("a", files[0])  # hit
        cache.get("b", files[1])  # miss, evicts a
        cache.get("a", files[0])  # miss again
        after = scrape(server.url)
    finally:
        server.close()
    assert value(after, name, result="hit") - value(before, name, result="hit") == cache.stats.hits == 1
    assert value(after, name, result="miss") - value(before, name, result="miss") == cache.stats.misses == 3
