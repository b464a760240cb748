"""The model library: files under data/models and data/loras, known to SQLite.

A scan walks both folders, inspects new or changed `.safetensors` files and diffusers
folders (header only, never loading tensors) and stores them at once, then hashes them
in a second pass, and forgets files that vanished (engine/library_scan.py). A file is unchanged when its size,
mtime_ns, ctime_ns and inode match the stored ones (library_scan.CHANGE_POLICY says why),
so rescanning an unchanged library hashes nothing. Admin settings live in
the `overrides` table keyed by SHA256, so a renamed or moved file keeps them.

All methods are synchronous and may block on disk: front ends call them from a thread.
"""

from __future__ import annotations

import difflib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.confusables import skeleton
from engine.db import ThreadLocalDB, library_version
from engine.errors import LibraryError, UnknownNameError
from engine.files.classify import CheckpointFacts
from engine.files.training import TrainingMetadata, parse_training_metadata
from engine.i18n import Text
from engine.kinds import Architecture, Category, FileKind
from engine.library_scan import ScanProblem as ScanProblem
from engine.library_scan import ScanReport as ScanReport
from engine.library_scan import ScanWatcher, is_hash_pending, scan_folders, stem
from engine.text_input import clean_name


@dataclass(frozen=True)
class LibraryEntry:
    name: str
    category: Category
    path: Path
    rel_path: str
    format: str
    kind: FileKind
    architecture: Architecture
    size: int
    mtime: float
    sha256: str | None = None
    autov1: str | None = None
    autov2: str | None = None
    autov3: str | None = None
    rank: int | None = None
    alpha: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    display_name: str | None = None
    base_model_override: str | None = None
    weight_override: float | None = None
    nsfw: bool | None = None  # an admin's word; None: CivitAI's rating decides
    enabled: bool = True
    hash_pending: bool = False  # listed by a running scan's header pass, not hashed yet

    @property
    def label(self) -> str:
        return self.display_name or self.name

    @property
    def usable(self) -> bool:
        return self.error is None and self.enabled

    @property
    def v_prediction(self) -> bool:
        return bool(self.info.get("v_prediction"))

    @property
    def checkpoint_facts(self) -> CheckpointFacts:
        """The scan's classification, as the loader trusts it (see engine/files)."""
        return CheckpointFacts(
            architecture=self.architecture,
            kind=self.kind,
            v_prediction=self.v_prediction,
            zero_terminal_snr=bool(self.info.get("zero_terminal_snr")),
            has_vae=bool(self.info.get("has_vae")),
        )

    @cached_property
    def training(self) -> TrainingMetadata:
        return parse_training_metadata(self.metadata)

    @cached_property
    def folded_names(self) -> tuple[str, str, str]:
        """Name, display name and file stem in the form typed names are compared in;
        computed once per library snapshot, not on every lookup."""
        return _fold(self.name), _fold(self.display_name or ""), _fold(Path(self.rel_path).stem)


_OVERRIDE_FIELDS = ("display_name", "base_model", "weight", "nsfw", "enabled")

_NOT_USABLE = Text(
    "“{name}” cannot be used: {reason}",
    "「{name}」無法使用：{reason}",
)
_DISABLED = Text(
    "“{name}” is disabled by an admin.",
    "「{name}」已被管理員停用。",
)
_NAME_TAKEN = Text(
    "The name “{name}” looks the same as “{other}” ({category}) and would show as a second, "
    "identical entry. Choose a name that differs in more than case, look-alike letters or "
    "invisible characters.",
    "名稱「{name}」看起來與「{other}」（{category}）相同，會出現兩個一模一樣的選項。"
    "請選擇一個不只是大小寫、形近字或隱形字元不同的名稱。",
)
_WRONG_CATEGORY = Text(
    "“{name}” is a {actual}, not a {wanted}.",
    "「{name}」是 {actual}，不是 {wanted}。",
)


class Library:
    def __init__(self, root: Path, dbs: ThreadLocalDB) -> None:
        self.root = Path(root)
        self.dbs = dbs
        # Every entry, rebuilt only when the database's library version moves: lookups,
        # autocomplete and planning stay cheap however big the library grows.
        self._snapshot: tuple[int, list[LibraryEntry]] = (-1, [])
        self._snapshot_lock = threading.Lock()

    def version(self) -> int:
        return library_version(self.dbs.db)

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def loras_dir(self) -> Path:
        return self.root / "loras"

    # -- scanning --------------------------------------------------------------------
    def scan(self, progress: Callable[[str], None] | None = None, watcher: ScanWatcher | None = None) -> ScanReport:
        """Both passes (see library_scan.scan_folders); names are assigned as soon as the
        headers are stored, so lookups find new files while they are being hashed."""
        report = scan_folders(self, progress, headers_stored=self._assign_names, watcher=watcher)
        self._assign_names()  # files that vanished while being hashed
        return report

    def _assign_names(self) -> None:
        """Names are file stems; when two files in one category share a stem, both get
        their relative path instead (see _group_names), so no name is ever ambiguous."""
        db = self.dbs.db
        rows = list(db.query("SELECT path, category, name, error FROM files"))
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            # Stems that merely look alike ("style" and "ѕtyle" in Cyrillic) collide too.
            by_key.setdefault((row["category"], skeleton(stem(Path(row["path"])))), []).append(row)
        # An admin's display name keeps its meaning: a file added later whose name looks
        # like it is numbered, or autocomplete would show two identical entries.
        shown = {
            (r["category"], skeleton(r["display_name"])): r["path"]
            for r in db.query(
                "SELECT f.path, f.category, o.display_name FROM files f "
                "JOIN overrides o ON o.sha256 = f.sha256 WHERE o.display_name IS NOT NULL"
            )
        }
        for group in by_key.values():
            for row, wanted in zip(group, _group_names(group), strict=True):
                holder = shown.get((row["category"], skeleton(wanted)))
                if holder is not None and holder != row["path"]:
                    wanted = f"{wanted} (2)"
                if wanted != row["name"]:
                    db.table("files").update(row["path"], {"name": wanted})

    # -- reading ---------------------------------------------------------------------
    def entries(self, category: Category | str | None = None, *, include_broken: bool = True) -> list[LibraryEntry]:
        return [
            e
            for e in self._all()
            if (not category or e.category == category) and (include_broken or e.error is None)
        ]

    def _all(self) -> list[LibraryEntry]:
        version = self.version()
        with self._snapshot_lock:
            if self._snapshot[0] == version:
                return self._snapshot[1]
        sql = (
            "SELECT f.*, o.display_name, o.base_model AS base_model_override, "
            "o.weight AS weight_override, o.nsfw, o.enabled "
            "FROM files f LEFT JOIN overrides o ON o.sha256 = f.sha256 "
            "ORDER BY f.category, lower(f.name)"
        )
        found = [self._entry(row) for row in self.dbs.db.query(sql)]
        with self._snapshot_lock:
            self._snapshot = (version, found)
        return found

    def _entry(self, row: dict[str, Any]) -> LibraryEntry:
        return LibraryEntry(
            name=row["name"],
            category=Category(row["category"]),
            path=self.root / row["path"],
            rel_path=row["path"],
            format=row["format"],
            kind=FileKind(row["kind"]),
            architecture=Architecture(row["architecture"]),
            size=row["size"],
            mtime=row["mtime"],
            sha256=row["sha256"],
            autov1=row["autov1"],
            autov2=row["autov2"],
            autov3=row["autov3"],
            rank=row["rank"],
            alpha=row["alpha"],
            metadata=json.loads(row["metadata"] or "{}"),
            info=json.loads(row["info"] or "{}"),
            error=row["error"],
            display_name=row.get("display_name"),
            base_model_override=row.get("base_model_override"),
            weight_override=row.get("weight_override"),
            nsfw=None if row.get("nsfw") is None else bool(row["nsfw"]),
            enabled=row.get("enabled") is None or bool(row["enabled"]),
            hash_pending=is_hash_pending(row),
        )

    def find(self, name: str, category: Category | str | None = None) -> LibraryEntry:
        """Resolve what a user typed: name, display name, file name or hash prefix."""
        wanted = name.strip()
        found = self._match(wanted, self.entries(category))
        if found is not None:
            return found
        if category:
            elsewhere = self._match(wanted, self.entries())
            if elsewhere is not None:
                raise LibraryError(_WRONG_CATEGORY, name=elsewhere.name, actual=elsewhere.category, wanted=category)
        raise UnknownNameError(
            str(category) if category else "model", wanted, self.suggest(wanted, category)
        )

    @staticmethod
    def _match(wanted: str, candidates: list[LibraryEntry]) -> LibraryEntry | None:
        typed = _fold(wanted)
        key = typed.removesuffix(".safetensors")
        folded = [(e, *e.folded_names) for e in candidates]
        matchers: tuple[Callable[[LibraryEntry, str, str, str], bool], ...] = (
            lambda e, name, _d, _s: name == typed,  # "x.ckpt" when it sits beside "x.safetensors"
            lambda e, name, _d, _s: name == key,
            lambda e, _n, display, _s: display == key,
            lambda e, _n, _d, stem: stem == key,
            lambda e, _n, _d, _s: len(key) >= 8 and (e.sha256 or "").lower().startswith(key),
        )
        for match in matchers:
            hits = [f[0] for f in folded if match(*f)]
            if len(hits) == 1:
                return hits[0]
        return None

    def get_usable(self, name: str, category: Category) -> LibraryEntry:
        entry = self.find(name, category)
        if entry.error:
            raise LibraryError(_NOT_USABLE, name=entry.name, reason=entry.error)
        if not entry.enabled:
            raise LibraryError(_DISABLED, name=entry.label)
        return entry

    def suggest(self, text: str, category: Category | str | None = None, limit: int = 3) -> list[str]:
        names = [e.name for e in self.entries(category) if e.error is None]
        lowered = {_fold(n): n for n in names}
        key = _fold(text)
        close = difflib.get_close_matches(key, list(lowered), n=limit, cutoff=0.5)
        contains = [n for n in lowered if key and key in n and n not in close]
        return [lowered[n] for n in (close + contains)[:limit]]

    def by_sha256(self, sha256: str) -> list[LibraryEntry]:
        return [e for e in self.entries() if e.sha256 and e.sha256.upper() == sha256.upper()]

    # -- admin -----------------------------------------------------------------------
    def set_override(self, entry: LibraryEntry, *, by: str | None = None, **values: Any) -> LibraryEntry:
        unknown = set(values) - set(_OVERRIDE_FIELDS)
        if unknown:
            raise ValueError(f"unknown override fields: {sorted(unknown)}")
        if not entry.sha256:
            raise LibraryError(_NOT_USABLE, name=entry.name, reason=entry.error or "not hashed yet")
        if values.get("display_name") is not None:
            values["display_name"] = clean_name(str(values["display_name"])) or None
            if values["display_name"] is not None:
                self._check_unique_label(entry, values["display_name"])
        db = self.dbs.db
        existing = db.table("overrides").get(entry.sha256) if _has_row(db, entry.sha256) else {}
        row = {f: existing.get(f) for f in _OVERRIDE_FIELDS}
        for key, value in values.items():
            if isinstance(value, bool):
                value = int(value)
            row[key] = value
        db.table("overrides").upsert(
            {"sha256": entry.sha256, **row, "updated_at": time.time(), "updated_by": by},
            pk="sha256",
        )
        return self.find(entry.name, entry.category)

    def _check_unique_label(self, entry: LibraryEntry, display_name: str) -> None:
        """A display name may not look like any other file's name or display name."""
        wanted = skeleton(display_name)
        for other in self.entries():
            if other.rel_path == entry.rel_path or (entry.sha256 and other.sha256 == entry.sha256):
                continue  # itself (or the same file twice): no second entry to confuse it with
            for shown in (other.name, other.display_name):
                if shown and skeleton(shown) == wanted:
                    raise LibraryError(_NAME_TAKEN, name=display_name, other=shown, category=other.category)

    def remove(self, entry: LibraryEntry) -> None:
        """Delete the file (or folder) from disk and forget it; overrides stay, keyed by
        hash, in case the same file comes back."""
        path = entry.path
        if path.is_symlink():
            path.unlink()  # a link to a model kept elsewhere: drop the link, keep the model
        elif path.is_dir():
            import shutil

            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        self.dbs.db.table("files").delete(entry.rel_path)


def _fold(text: str) -> str:
    # what users type goes through clean_name (NFKC), and file names may be NFD (macOS)
    # or full-width (CJK names): compare both sides in the same normal form
    return clean_name(text).casefold()


def _group_names(group: list[dict[str, Any]]) -> list[str]:
    """Names for rows whose stems look alike (engine.confusables): the relative path without
    the top folder; when even that collides (`x.safetensors` beside `x.ckpt` or `x.sft`), the
    one usable file keeps it and the others add their extension, so a broken twin never hides
    a good file. Names that still look alike (look-alike letters in one folder) are numbered."""
    if len(group) == 1:
        return [stem(Path(group[0]["path"]))]
    qualified = [_qualified(Path(row["path"]), stem(Path(row["path"]))) for row in group]
    names = list(qualified)
    for key in {_fold(q) for q in qualified}:
        same = [i for i, q in enumerate(qualified) if _fold(q) == key]
        if len(same) < 2:
            continue
        usable = [i for i in same if not group[i].get("error")]
        for i in same:
            if not (len(usable) == 1 and usable[0] == i):
                rel = Path(group[i]["path"])
                names[i] = _qualified(rel, rel.name)
    for key in {skeleton(n) for n in names}:
        # Plain ASCII first, then by path: the file most people mean keeps the bare name.
        same = sorted(
            (i for i, n in enumerate(names) if skeleton(n) == key),
            key=lambda i: (not names[i].isascii(), group[i]["path"]),
        )
        for number, i in enumerate(same[1:], start=2):
            names[i] = f"{names[i]} ({number})"
    return names


def _qualified(rel: Path, name: str) -> str:
    """`name` in the file's folder, the top folder (models/ or loras/) left out."""
    return (rel.parent / name).as_posix().split("/", 1)[-1]


def _has_row(db: Any, sha256: str) -> bool:
    return bool(list(db.query("SELECT 1 FROM overrides WHERE sha256 = ?", [sha256])))
