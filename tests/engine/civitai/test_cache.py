from __future__ import annotations

import json
import threading

import pytest

from engine.civitai.cache import CivitaiCache, by_hash_key, model_key, version_key
from engine.db import ThreadLocalDB
from tests.engine.civitai.conftest import Clock


def test_keys():
    assert by_hash_key(" ab12cd ") == "by-hash:AB12CD"
    assert version_key(5) == "version:5" and model_key("7") == "model:7"


def test_put_then_get_is_fresh_until_it_expires(cache: CivitaiCache, clock: Clock):
    assert cache.get("model:1") is None
    cache.put("model:1", 200, '{"id": 1}', ttl_s=60)
    entry = cache.get("model:1")
    assert entry is not None and entry.fresh and entry.status == 200 and entry.json() == {"id": 1}
    assert entry.fetched_at == clock.now and entry.expires_at == clock.now + 60
    clock.advance(61)
    stale = cache.get("model:1")
    assert stale is not None and not stale.fresh and stale.json() == {"id": 1}
    assert stale.age_s(clock.now) == 61


def test_misses_are_cached_with_their_own_ttl(cache: CivitaiCache, clock: Clock):
    cache.put("by-hash:AA", 404, None, ttl_s=10)
    entry = cache.get("by-hash:AA")
    assert entry is not None and entry.status == 404 and entry.body is None and entry.json() is None
    clock.advance(11)
    assert not cache.get("by-hash:AA").fresh


def test_a_stored_version_answers_for_every_hash(cache: CivitaiCache, clock: Clock, db_source):
    body = json.dumps({"id": 9, "files": []})
    cache.put_version(9, ["aa11", "BB22", " cc33 "], body, ttl_s=100)
    for h in ("AA11", "BB22", "CC33"):
        entry = cache.get(by_hash_key(h))
        assert entry is not None and entry.body == body and entry.fresh
    assert cache.get("version:9").body == body
    # The hash rows hold a reference, not another copy of the body.
    rows = {r["key"]: r["body"] for r in db_source.db["civitai_cache"].rows}
    assert len(rows["by-hash:AA11"]) < 40


def test_a_hash_row_is_as_old_as_the_version_it_points_to(cache: CivitaiCache, clock: Clock):
    cache.put_version(9, ["AA11"], '{"id": 9}', ttl_s=100)
    clock.advance(50)
    cache.put("version:9", 200, '{"id": 9, "name": "new"}', ttl_s=10)
    entry = cache.get("by-hash:AA11")
    assert entry is not None and entry.json()["name"] == "new" and entry.expires_at == clock.now + 10


def test_a_reference_to_a_missing_version_is_no_answer(cache: CivitaiCache):
    cache.put_version(9, ["AA11"], '{"id": 9}', ttl_s=100)
    cache.delete("version:9")
    assert cache.get("by-hash:AA11") is None


def test_a_later_miss_replaces_a_reference(cache: CivitaiCache):
    cache.put_version(9, ["AA11"], '{"id": 9}', ttl_s=100)
    cache.put("by-hash:AA11", 404, None, ttl_s=10)
    assert cache.get("by-hash:AA11").status == 404


def test_works_on_a_thread_local_file_database(tmp_path):
    source = ThreadLocalDB(tmp_path / "loracle.db")
    cache = CivitaiCache(source)
    cache.put_version(3, ["AA"], '{"id": 3}', ttl_s=100)
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(CivitaiCache(source).get("by-hash:AA")))
    thread.start()
    thread.join()
    assert seen[0] is not None and seen[0].json() == {"id": 3}


def test_a_cache_row_that_looks_like_a_reference_but_nests_deep_is_no_answer(cache: CivitaiCache):
    cache.put("by-hash:ABCDEF12", 200, '{"$ref": ' + "[" * 100_000 + "]" * 100_000 + "}", ttl_s=100)
    assert cache.get("by-hash:ABCDEF12") is not None  # a body, not a reference; reading it fails later
    from engine.civitai.body import BadBody

    with pytest.raises(BadBody):
        cache.get("by-hash:ABCDEF12").json()  # type: ignore[union-attr]
