"""Scanning the library folders: what is new, changed, broken or gone.

Split from engine/library.py, which holds the entries and their lookup. A scan inspects a
file's header only (engine/files) and stores what it found, then hashes the new files in a
second pass (scan_folders says why); everything one file
can do wrong (any exception while inspecting, hashing or storing it, numbers too large
for SQLite) ends as one ScanProblem for that file and the walk goes on, because every
CLI command and the bot's start scan first.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import LoracleError
from engine.files.hashing import hash_file, hash_folder
from engine.files.header import SAFETENSORS_SUFFIXES
from engine.files.modelfile import ModelFileInfo, inspect_path
from engine.files.sniff import REFUSED_SUFFIXES
from engine.kinds import Architecture, Category, FileKind
from engine.partial_files import is_stale_part

if TYPE_CHECKING:
    from engine.library import Library

Stat = tuple[int, float, str]  # size, mtime (shown to people), change key (compared)

CHANGE_POLICY = """A file is taken as unchanged, and not hashed again, only when its change key is
the one stored: size, mtime_ns, ctime_ns and inode number together. mtime alone can be set
back by anyone (os.utime, `touch -d`, cp -p, rsync -t), so a file rewritten in place with
its size and mtime restored would keep its old hash and a verdict could claim an exact
SHA-256 match it no longer has. ctime cannot be set by a user process: any write, rename
onto the path or metadata change moves it, and a replaced file gets a new inode. The price
is an occasional needless rehash (after chmod/chown, a restore from backup, or a library
copied to another disk). A diffusers folder's key covers every file in it."""

# Metadata values bigger than this are not kept verbatim: some trainers embed base64
# preview images or whole dataset listings, and the DB row is read on every lookup.
_MAX_META_VALUE = 32 * 1024
_DIFFUSERS_MARKERS = ("model_index.json",)
# stored for a file that could not even be stat'ed: no real file matches it, so the next
# scan looks at the file again
_UNREADABLE = (-1, -1.0, "")
FACTS_VERSION = 2
"""Bumped when the scan stores new facts: rows written by an older scan are examined again
(1: before zero_terminal_snr / has_vae were stored for the loader)."""


@dataclass
class ScanProblem:
    rel_path: str
    message: str


@dataclass
class ScanReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    hashed: int = 0
    problems: list[ScanProblem] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[Any] = field(default_factory=list)  # CivitAI trouble, as engine.i18n.Message
    removed_partials: list[str] = field(default_factory=list)  # see engine.partial_files

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{self.unchanged} unchanged, {len(self.problems)} problem(s); "
            f"hashed {self.hashed} file(s) in {self.seconds:.2f} s"
            + (f"; removed {len(self.removed_partials)} stale partial download(s)" if self.removed_partials else "")
        )


class ScanWatcher(Protocol):
    """Told how far a scan is (engine/indexing.py); called from the scan's thread."""

    def headers_stored(self, to_hash: int) -> None: ...

    def file_hashed(self) -> None: ...


@dataclass
class _Pending:
    """A file whose header pass stored its row; its hash comes in the second pass."""

    path: Path
    rel: str
    default_category: Category
    stat: Stat
    row: dict[str, Any]
    data_offset: int


def scan_folders(
    library: Library,
    progress: Callable[[str], None] | None = None,
    *,
    headers_stored: Callable[[], None] | None = None,
    watcher: ScanWatcher | None = None,
) -> ScanReport:
    """Walk data/models and data/loras; examine new and changed files; forget vanished ones.

    Two passes: the first reads headers only and stores every new or changed file at once
    (name, kind, architecture; its hash marked pending, see HASH_PENDING), so a bot that
    scans at start-up knows every name within a second or two; the second hashes them,
    which takes minutes for a new library. `headers_stored` runs between the two.

    Whatever one file contains, the walk goes on: any failure while inspecting, hashing or
    storing a file becomes one ScanProblem for that file.
    """
    started = time.perf_counter()
    report = ScanReport()
    db = library.dbs.db
    known = {row["path"]: row for row in db.table("files").rows}
    seen: set[str] = set()
    pending: list[_Pending] = []
    for folder, default_category in (
        (library.models_dir, Category.CHECKPOINT),
        (library.loras_dir, Category.LORA),
        (library.root / "upscalers", Category.UPSCALER),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        stale: list[Path] = []
        for path in _candidates(folder, stale):
            rel = path.relative_to(library.root).as_posix()
            row = known.get(rel)
            try:
                stat = _folder_stat(path) if path.is_dir() else stat_tuple(path)
            except OSError as exc:
                if not os.path.lexists(path):
                    continue  # deleted since the walk listed it: forgotten below
                # a broken link, a link loop, no permission: keep it listed as broken
                # (not as the usable file it may once have been) and look again next time
                message = f"cannot read: {exc.strerror or exc}"
                seen.add(rel)
                if not (row and row["size"] == -1 and row.get("error") == message):
                    broken = _row(path, rel, default_category, _UNREADABLE, error=message)
                    db.table("files").upsert(broken, pk="path")
                report.problems.append(ScanProblem(rel, message))
                continue
            if row and _stored_change_key(row) == stat[2] and _current(row):
                seen.add(rel)
                report.unchanged += 1
                if row.get("error"):
                    report.problems.append(ScanProblem(rel, row["error"]))
                continue
            if progress:
                progress(rel)
            examined = _examine_header(path, rel, default_category, stat, report)
            if examined is None:
                continue  # it vanished while we read it
            new_row, data_offset = examined
            seen.add(rel)
            stored = _store(db, path, rel, default_category, stat, new_row, report)
            if stored and data_offset is not None:
                pending.append(_Pending(path, rel, default_category, stat, new_row, data_offset))
            (report.updated if row else report.added).append(rel)
        _remove_partials(library.root, stale, report)
    for rel in set(known) - seen:
        db.table("files").delete(rel)
        report.removed.append(rel)
    if headers_stored is not None:
        headers_stored()
    if watcher is not None:
        watcher.headers_stored(len(pending))
    for item in pending:
        if progress:
            progress(item.rel)
        _hash_pending(db, item, report)
        if watcher is not None:
            watcher.file_hashed()
    report.seconds = time.perf_counter() - started
    return report


HASH_PENDING = "hash_pending"
"""Key in a row's info: the header pass stored the row, the hashing pass has not reached
it yet. Such a row is never taken as current, so a scan stopped in between hashes it next
time; lookups treat it as not indexed yet (no hash: no admin override, no CivitAI facts)."""


def _row(
    path: Path, rel: str, default_category: Category, stat: Stat, *, error: str | None = None
) -> dict[str, Any]:
    """A files row with nothing known yet but where the file is (and why it is broken)."""
    return {
        "path": rel,
        "name": stem(path),
        "category": default_category.value,
        "format": "diffusers" if path.is_dir() else "safetensors",
        "kind": FileKind.UNKNOWN.value,
        "architecture": Architecture.UNKNOWN.value,
        "size": stat[0],
        "mtime": stat[1],
        "sha256": None,
        "autov1": None,
        "autov2": None,
        "autov3": None,
        "rank": None,
        "alpha": None,
        "metadata": "{}",
        "info": json.dumps({"change_key": stat[2]}),
        "error": error,
        "scanned_at": time.time(),
    }

def _examine_header(
    path: Path,
    rel: str,
    default_category: Category,
    stat: Stat,
    report: ScanReport,
) -> tuple[dict[str, Any], int | None] | None:
    """The row for a new or changed file from its header alone, with where its tensor
    data starts (None when the file cannot be used and is not hashed), or None when the
    file vanished meanwhile."""
    row = _row(path, rel, default_category, stat)
    if default_category == Category.UPSCALER:
        return _examine_upscaler(path, rel, row, stat, report)
    try:
        info = inspect_path(path)
    except Exception as exc:  # anything one file does is that file's problem, not the scan's
        if not os.path.lexists(path):
            return None  # deleted or moved away mid-scan: not a broken file
        row["error"] = _problem_text(exc)
        report.problems.append(ScanProblem(rel, row["error"]))
        return row, None
    category = default_category
    if info.kind.is_lora:
        category = Category.LORA
    elif info.kind == FileKind.CHECKPOINT:
        category = Category.CHECKPOINT
    row.update(
        category=category.value,
        format=info.format,
        kind=info.kind.value,
        architecture=info.architecture.value,
        rank=bounded_int(info.rank),
        alpha=bounded_float(info.alpha),
        metadata=json.dumps(_bounded_metadata(info)),
        info=json.dumps({**_info_dict(info), "change_key": stat[2], HASH_PENDING: True}),
    )
    if info.kind == FileKind.UNKNOWN:
        row["error"] = "not a checkpoint or LoRA this bot can use (" + (
            "; ".join(info.notes) or "no recognisable weights"
        ) + ")"
        report.problems.append(ScanProblem(rel, row["error"]))
    return row, (-1 if info.format == "diffusers" else info.data_offset)


def _examine_upscaler(
    path: Path, rel: str, row: dict[str, Any], stat: Stat, report: ScanReport
) -> tuple[dict[str, Any], int | None] | None:
    """An upscaler model's row: its header checked (pickles refused with how to convert
    them), its architecture left to spandrel when it is first loaded."""
    from engine.images.upscalers import inspect_upscaler

    try:
        data_offset = inspect_upscaler(path)
    except Exception as exc:  # anything one file does is that file's problem, not the scan's
        if not os.path.lexists(path):
            return None
        row["error"] = _problem_text(exc)
        report.problems.append(ScanProblem(rel, row["error"]))
        return row, None
    row.update(
        kind=FileKind.UPSCALER.value,
        architecture=Architecture.OTHER.value,
        # facts_version too, or every later scan would take the row as stale and hash again
        info=json.dumps({"change_key": stat[2], "facts_version": FACTS_VERSION, HASH_PENDING: True}),
    )
    return row, data_offset


def _hash_pending(db: Any, item: _Pending, report: ScanReport) -> None:
    """The second pass for one file: hash it and store the row without HASH_PENDING."""
    row = dict(item.row)
    info = json.loads(row["info"])
    info.pop(HASH_PENDING, None)
    try:
        hashes = hash_folder(item.path) if item.data_offset < 0 else hash_file(item.path, item.data_offset)
    except Exception as exc:  # anything one file does is that file's problem, not the scan's
        if not os.path.lexists(item.path):
            db.table("files").delete(item.rel)  # gone since the header pass
            return
        message = _problem_text(exc)
        report.problems.append(ScanProblem(item.rel, message))
        db.table("files").upsert(_row(item.path, item.rel, item.default_category, item.stat, error=message), pk="path")
        return
    report.hashed += 1
    row.update(
        sha256=hashes.sha256,
        autov1=hashes.autov1,
        autov2=hashes.autov2,
        autov3=hashes.autov3,
        info=json.dumps(info),
    )
    # the name the header pass's rows were given (see Library._assign_names) stays
    row.pop("name", None)
    db.table("files").update(item.rel, row)


# SQLite stores signed 64-bit integers and Python ints are unbounded: a header can declare
# a rank of 2**70. Anything beyond these bounds is no real rank/alpha and is stored as unknown.
_INT_LIMIT = 2**31
_FLOAT_LIMIT = 1e12


def bounded_int(value: int | None) -> int | None:
    return value if value is not None and -_INT_LIMIT <= value <= _INT_LIMIT else None


def bounded_float(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and abs(value) <= _FLOAT_LIMIT else None


def _problem_text(exc: BaseException) -> str:
    if isinstance(exc, LoracleError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot read the file: {exc.strerror or exc}"
    # a bug or a file nobody anticipated: name it, keep the message short
    return f"could not be inspected ({type(exc).__name__}: {str(exc)[:200]})"


def _store(
    db: Any,
    path: Path,
    rel: str,
    default_category: Category,
    stat: Stat,
    row: dict[str, Any],
    report: ScanReport,
) -> bool:
    """Whether the row was stored as it is (not replaced by a broken one)."""
    try:
        db.table("files").upsert(row, pk="path")
    except Exception as exc:  # e.g. OverflowError for a number SQLite cannot hold
        message = _problem_text(exc)
        db.table("files").upsert(_row(path, rel, default_category, stat, error=message), pk="path")
        report.problems.append(ScanProblem(rel, message))
        return False
    return True


def _candidates(folder: Path, stale_parts: list[Path] | None = None) -> Iterator[Path]:
    """Model files and diffusers folders below `folder`, skipping hidden and partial files;
    stale partial downloads (engine.partial_files) are added to `stale_parts`.

    Linked folders are followed (admins link in a ComfyUI or A1111 models folder), each real
    folder once, so a link loop or a second link to the same folder lists nothing twice."""
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = Path(dirpath)
        real = os.path.realpath(here)
        if real in visited:
            dirnames.clear()
            continue
        visited.add(real)
        if any(marker in filenames for marker in _DIFFUSERS_MARKERS) and here != folder:
            dirnames.clear()
            yield here
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                # in-flight downloads are written as hidden temp files
                if stale_parts is not None and is_stale_part(here / filename):
                    stale_parts.append(here / filename)
                continue
            lower = filename.lower()
            if lower.endswith(SAFETENSORS_SUFFIXES) or lower.endswith(REFUSED_SUFFIXES):
                yield here / filename


def _remove_partials(root: Path, stale: list[Path], report: ScanReport) -> None:
    for path in stale:
        if not is_stale_part(path):
            continue  # written to since the walk saw it
        try:
            path.unlink()
        except OSError:
            continue  # gone already, or not ours to remove: next scan looks again
        report.removed_partials.append(path.relative_to(root).as_posix())


def _folder_stat(path: Path) -> Stat:
    size, mtime = 0, path.stat().st_mtime
    keys = []
    for child in sorted(path.rglob("*")):
        if child.is_file():
            st = child.stat()
            size += st.st_size
            mtime = max(mtime, st.st_mtime)
            keys.append(f"{child.relative_to(path).as_posix()}={_change_key(st)}")
    return size, mtime, hashlib.sha256("\n".join(keys).encode("utf-8", "replace")).hexdigest()


def _change_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def _stored_change_key(row: dict[str, Any]) -> str | None:
    try:
        key = json.loads(row.get("info") or "{}").get("change_key")
    except ValueError:
        return None
    return key if isinstance(key, str) and key else None


def _current(row: dict[str, Any]) -> bool:
    """Whether a row's stored facts are what this version of the scan stores."""
    if is_hash_pending(row):
        return False  # a scan stopped between its two passes: hash it now
    if row.get("error"):
        return True  # nothing was classified; examined again when the file changes
    try:
        return bool(json.loads(row.get("info") or "{}").get("facts_version") == FACTS_VERSION)
    except ValueError:
        return False


def is_hash_pending(row: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(row.get("info") or "{}").get(HASH_PENDING))
    except ValueError:
        return False


def _bounded_metadata(info: ModelFileInfo) -> dict[str, str]:
    kept: dict[str, str] = {}
    for key, value in info.metadata.items():
        if len(value) <= _MAX_META_VALUE:
            kept[key] = value
        elif key == "ss_tag_frequency":
            # keep what the tag lint and /lora info use: the most frequent tags
            kept[key] = json.dumps({"merged": info.training.tag_frequency})
    return kept


def _info_dict(info: ModelFileInfo) -> dict[str, Any]:
    return {
        "architecture_evidence": info.architecture_evidence,
        "tensor_count": info.tensor_count,
        "dtypes": info.dtypes,
        "targets": info.targets,
        "v_prediction": info.v_prediction,
        "zero_terminal_snr": info.zero_terminal_snr,
        "has_vae": info.has_vae,
        "notes": info.notes,
        "facts_version": FACTS_VERSION,
    }


def stat_tuple(path: Path) -> Stat:
    """(size, mtime, change key) of a file; see CHANGE_POLICY."""
    st = path.stat()
    return st.st_size, st.st_mtime, _change_key(st)


def stem(path: Path) -> str:
    # Only model suffixes are stripped: a diffusers folder "animagine-xl-3.1" keeps its dot.
    lower = path.name.lower()
    for suffix in (*SAFETENSORS_SUFFIXES, *REFUSED_SUFFIXES):
        if lower.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name
