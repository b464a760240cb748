"""What the client keeps from CivitAI's answers, and what it falls back on without one.

An old answer beats none: when CivitAI cannot be asked, the last cached answer is used
however old it is, with a note saying so. And a worse answer does not replace a better
one: a refresh that lost a fact the cached answer had (a version's base model, its files'
hashes) keeps the cached answer, because a family check that turned from "same family" to
"unknown" on the strength of a broken body helps nobody.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from engine.civitai.cache import CacheEntry, CivitaiCache, by_hash_key
from engine.civitai.models import Model, ModelVersion, parse_version
from engine.civitai.notes import Lookup, Source, Trouble, age_words, stale_note
from engine.i18n import Text
from engine.settings import Settings

log = logging.getLogger(__name__)

Parse = Callable[[Any], Any]

WORSE_ANSWER = Text(
    "CivitAI's new answer lacked what we knew ({lost}), so the answer cached {age} ago was kept.",
    "CivitAI 新的回應缺少原有的資料（{lost}），因此保留 {age}前快取的資料。",
)


class CachePolicy:
    def __init__(self, cache: CivitaiCache, settings: Settings) -> None:
        self.cache = cache
        self.settings = settings

    def hit_ttl(self) -> float:
        return self.settings.civitai_cache_ttl_hours * 3600.0

    def miss_ttl(self) -> float:
        return self.settings.civitai_miss_ttl_hours * 3600.0

    def from_entry(
        self, entry: CacheEntry, parse: Parse, source: Source, note: Text | None = None
    ) -> Lookup[Any] | None:
        if entry.status == 404:
            return Lookup(None, "not_found", source, note, entry.fetched_at)
        if entry.status != 200 or entry.body is None:
            return None
        try:
            value = parse(entry.json())
        except (ValueError, ValidationError):  # BadBody is a ValueError
            return None  # a cached body this version of the code cannot read is no answer
        return Lookup(value, "found", source, note, entry.fetched_at)

    def fallback(self, entry: CacheEntry | None, parse: Parse, trouble: Trouble) -> Lookup[Any]:
        if entry is not None:
            note = stale_note(trouble.note, entry.age_s(self.cache.clock()))
            hit = self.from_entry(entry, parse, "cache" if entry.fresh else "stale_cache", note)
            if hit is not None:
                return hit
        return Lookup(None, "unavailable", "none", trouble.note)

    def keep_miss(self, key: str) -> Lookup[Any]:
        stored = self.cache.put(key, 404, None, self.miss_ttl())
        return Lookup(None, "not_found", "network", fetched_at=stored.fetched_at)

    def keep_found(
        self,
        key: str,
        value: Any,
        text: str,
        entry: CacheEntry | None,
        parse: Parse,
        requested_hash: str | None = None,
    ) -> Lookup[Any]:
        """Cache a fresh answer, unless it is worse than the cached one it would replace."""
        old = self.from_entry(entry, parse, "cache") if entry is not None else None
        lost = lost_facts(old.value, value) if old is not None else []
        if old is not None and lost:
            assert entry is not None
            log.warning("CivitAI's answer for %s lost %s; keeping the cached one", key, ", ".join(lost))
            age = entry.age_s(self.cache.clock())
            age_en, age_zh = age_words(age)
            note = Text(
                WORSE_ANSWER.en.format(lost=", ".join(lost), age=age_en),
                WORSE_ANSWER.zh_tw.format(lost=", ".join(lost), age=age_zh),
            )
            source: Source = "cache" if entry.fresh else "stale_cache"
            return Lookup(old.value, "found", source, note, entry.fetched_at)
        if isinstance(value, ModelVersion):
            hashes = value.all_hashes() | ({requested_hash} if requested_hash else set())
            self.cache.put_version(value.id, hashes, text, self.hit_ttl())
        else:
            self.cache.put(key, 200, text, self.hit_ttl())
        return Lookup(value, "found", "network", fetched_at=self.cache.clock())

    def keep_batch_hit(
        self, version: ModelVersion, item: Any, requested: str, entry: CacheEntry | None
    ) -> Lookup[ModelVersion]:
        text = json.dumps(item, ensure_ascii=False)
        got: Lookup[ModelVersion] = self.keep_found(
            by_hash_key(requested), version, text, entry, parse_version, requested
        )
        return got


def lost_facts(old: Any, new: Any) -> list[str]:
    """The facts `old` had that `new` lacks, for answers about the same thing."""
    if isinstance(old, ModelVersion) and isinstance(new, ModelVersion):
        if old.id != new.id:
            return []  # a different version: news, not a worse answer
        lost = []
        if old.base_model and not new.base_model:
            lost.append("base model")
        archived = new.model is not None and new.model.archived
        if old.all_hashes() and not new.all_hashes() and not archived:
            lost.append("file hashes")  # an archived model's files really are gone
        return lost
    if isinstance(old, Model) and isinstance(new, Model):
        if old.id != new.id:
            return []
        lost = []
        if old.model_versions and not new.model_versions:
            lost.append("versions")
        known = {v.id for v in old.model_versions if v.base_model}
        if any(v.id in known and not v.base_model for v in new.model_versions):
            lost.append("base model")
        return lost
    return []

