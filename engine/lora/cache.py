"""A small LRU of parsed LoRA files, so a recently used LoRA applies without the disk."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine import metrics
from engine.errors import CorruptFileError
from engine.i18n import Text
from engine.kinds import FileKind
from engine.lora.formats import ParsedLora, load_lora

_MSG_MISSING = Text(
    "The LoRA file “{name}” is missing or cannot be opened.",
    "找不到 LoRA 檔案「{name}」，或無法開啟。",
)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    loads: int = 0  # files actually read (a miss whose read failed counts as a miss only)
    evictions: int = 0


def file_identity_key(path: Path | str) -> str:
    """A cache key for a file whose content hash is not known: path, size and mtime."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise CorruptFileError(_MSG_MISSING, name=path.name) from exc
    return f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


class LoraCache:
    """LRU of ParsedLora keyed by content hash (or `file_identity_key` when none is given).

    Holds parsed tensors on the CPU; `max_items` bounds how many files stay in memory
    (0 keeps none: every apply reads the file).
    Safe to share between threads, though the engine only uses it from the GPU worker.
    """

    def __init__(self, max_items: int = 8, *, loader: Callable[..., ParsedLora] = load_lora) -> None:
        if max_items < 0:
            raise ValueError("max_items must not be negative")
        self.max_items = max_items
        self.stats = CacheStats()
        self._loader = loader
        self._items: OrderedDict[str, ParsedLora] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str | None, path: Path | str, *, name: str | None = None, kind: FileKind | None = None) -> ParsedLora:
        """The parsed LoRA for `key`, read from `path` only when it is not cached."""
        cache_key = key or file_identity_key(path)
        with self._lock:
            parsed = self._items.get(cache_key)
            if parsed is not None:
                self._items.move_to_end(cache_key)
                self.stats.hits += 1
                metrics.lora_cache_lookup(hit=True)
                return parsed
            self.stats.misses += 1
            metrics.lora_cache_lookup(hit=False)
            parsed = self._loader(Path(path), name=name, kind=kind)
            self.stats.loads += 1
            self._items[cache_key] = parsed
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
                self.stats.evictions += 1
            return parsed

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of tensors the cached files hold (what the cache costs in memory)."""
        with self._lock:
            return sum(parsed.nbytes for parsed in self._items.values())

    def discard(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
