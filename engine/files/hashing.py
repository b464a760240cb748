"""The hashes CivitAI and the webuis use to recognise a model file, in one streaming pass.

- SHA256: of the whole file; what kohya writes as `ss_new_sd_model_hash` and what
  CivitAI's `/model-versions/by-hash/{hash}` accepts.
- AutoV2: the first 10 hex digits of SHA256 (A1111's short hash).
- AutoV1: A1111's legacy "model hash": SHA256 of the 64 KiB at offset 1 MiB, 8 hex digits;
  kohya writes it as `ss_sd_model_hash`.
- AutoV3: SHA256 of the bytes after the safetensors header, first 12 hex digits (the
  "addnet" hash; stable when only the metadata is edited).

All hex is UPPERCASE, as CivitAI shows it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LibraryError
from engine.i18n import Text

CHUNK_SIZE = 8 * 1024 * 1024

AUTOV1_OFFSET = 0x100000
AUTOV1_LENGTH = 0x10000

_MSG_NO_WEIGHTS = Text(
    "The folder “{name}” holds no .safetensors weight files to identify it by.",
    "資料夾「{name}」裡沒有可用來辨識的 .safetensors 權重檔。",
)


@dataclass(frozen=True)
class FileHashes:
    sha256: str
    autov1: str | None
    autov2: str
    autov3: str | None


def autov2_from_sha256(sha256: str) -> str:
    return sha256[:10].upper()


def autov3_from_digest(hexdigest: str) -> str:
    return hexdigest[:12].upper()


def hash_file(
    path: str | os.PathLike[str],
    data_offset: int | None,
    *,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> FileHashes:
    """Hash a file once from start to end; `data_offset` (a safetensors header's) enables AutoV3.

    `progress`, if given, is called with the number of bytes read so far after each chunk.
    """
    whole = hashlib.sha256()
    tensors = hashlib.sha256() if data_offset is not None else None
    legacy = hashlib.sha256()
    legacy_end = AUTOV1_OFFSET + AUTOV1_LENGTH
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    pos = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            chunk = view[:n]
            end = pos + n
            whole.update(chunk)
            if tensors is not None and end > data_offset:  # type: ignore[operator]
                tensors.update(chunk[max(0, data_offset - pos) :])  # type: ignore[operator]
            lo, hi = max(pos, AUTOV1_OFFSET), min(end, legacy_end)
            if lo < hi:
                legacy.update(chunk[lo - pos : hi - pos])
            pos = end
            if progress is not None:
                progress(pos)
    sha = whole.hexdigest().upper()
    return FileHashes(
        sha256=sha,
        # A1111 hashes whatever lies at 1 MiB, even a partial window; below 1 MiB it would
        # hash nothing, which identifies nothing.
        autov1=legacy.hexdigest()[:8].upper() if pos > AUTOV1_OFFSET else None,
        autov2=autov2_from_sha256(sha),
        autov3=autov3_from_digest(tensors.hexdigest()) if tensors is not None else None,
    )


def folder_weight_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The .safetensors files under a diffusers folder, in a stable (relative path) order."""
    root = Path(folder)
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".safetensors"]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def hash_folder(
    path: str | os.PathLike[str],
    *,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> FileHashes:
    """A stable SHA256 over the relative paths, sizes and contents of a folder's weight files.

    Renaming the folder keeps the hash; renaming or changing any weight file changes it.
    """
    root = Path(path)
    files = folder_weight_files(root)
    if not files:
        raise LibraryError(_MSG_NO_WEIGHTS, name=root.name)
    digest = hashlib.sha256()
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    done = 0
    for file in files:
        rel = file.relative_to(root).as_posix().encode("utf-8")
        # length-prefixed fields, so no two different folders feed the same byte stream
        digest.update(len(rel).to_bytes(8, "little") + rel)
        digest.update(file.stat().st_size.to_bytes(8, "little"))
        with open(file, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                digest.update(view[:n])
                done += n
                if progress is not None:
                    progress(done)
    sha = digest.hexdigest().upper()
    return FileHashes(sha256=sha, autov1=None, autov2=autov2_from_sha256(sha), autov3=None)
