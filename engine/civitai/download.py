"""Downloading a model version's .safetensors file from CivitAI, safely.

The file is streamed into a hidden temporary file next to its destination while its
SHA256 is computed, checked against the hash CivitAI published, and only then renamed into
place, so a crash, a cut connection or a tampered file never leaves a partial or wrong
file under a name the library scanner would pick up. Pickled formats are refused outright:
loading them can run arbitrary code.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from engine.civitai.client import CivitaiClient
from engine.civitai.models import ModelFile, ModelVersion
from engine.civitai.notes import ARCHIVED
from engine.civitai.transport import TransportError
from engine.errors import CivitaiError, CorruptFileError, LibraryError, LimitError, UnsafeFileError
from engine.i18n import Text
from engine.partial_files import PART_PREFIX, PART_SUFFIX, remove_stale_parts

Progress = Callable[[int, int | None], None]

CHUNK = 1024 * 1024
SUFFIX = ".safetensors"
_MODEL_FILE_TYPES = ("Model", "Pruned Model")

PICKLED = Text(
    "“{name}” is a pickled file ({format}). Pickled files can run code when loaded, so "
    "Loracle only downloads .safetensors files.",
    "「{name}」是 pickle 格式的檔案（{format}）。載入 pickle 檔案可能執行任意程式碼，"
    "所以 Loracle 只下載 .safetensors 檔案。",
)
NO_SAFETENSORS = Text(
    "CivitAI version {version} has no .safetensors model file to download.",
    "CivitAI 版本 {version} 沒有可下載的 .safetensors 模型檔案。",
)
NO_URL = Text(
    "CivitAI gives no download link for version {version}.",
    "CivitAI 沒有提供版本 {version} 的下載連結。",
)
TOO_BIG = Text(
    "“{name}” is {size}, more than the download limit of {limit}.",
    "「{name}」大小為 {size}，超過下載上限 {limit}。",
)
BROKE_OFF = Text(
    "The download of “{name}” broke off; please try again.",
    "「{name}」的下載中斷了，請再試一次。",
)
HASH_MISMATCH = Text(
    "The downloaded “{name}” does not match the SHA256 that CivitAI published for it, "
    "so it was deleted.",
    "下載的「{name}」與 CivitAI 公布的 SHA256 不符，已刪除。",
)
WRITE_FAILED = Text(
    "Could not save “{name}”: {reason}.", "無法儲存「{name}」：{reason}。"
)


def pick_file(version: ModelVersion) -> ModelFile:
    """The .safetensors model file to download, the primary one first."""
    if not version.files and version.model is not None and version.model.archived:
        raise CivitaiError(ARCHIVED)
    files = [f for f in version.files if (f.type or "Model") in _MODEL_FILE_TYPES]
    files.sort(key=lambda f: not f.primary)
    for file in files:
        if file.is_safetensors:
            return file
    pickled = next((f for f in files if f.is_pickle), None)
    if pickled is not None:
        name = pickled.name or f"version {version.id}"
        raise UnsafeFileError(PICKLED, name=name, format=pickled.metadata.format or Path(name).suffix)
    raise CivitaiError(NO_SAFETENSORS, version=version.id)


# RFC 6266 Content-Disposition: filename*=UTF-8''%E8%A3%B8... (RFC 5987) beats filename="...".
_DISPOSITION_EXT = re.compile(r"filename\*\s*=\s*([\w!#$%&+^`{}~-]+)'[^']*'([^;\s]+)", re.IGNORECASE)
_DISPOSITION = re.compile(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.IGNORECASE)


def disposition_name(header: str | None) -> str | None:
    """The file name a Content-Disposition header gives, decoded; None when it gives none."""
    if not header:
        return None
    ext = _DISPOSITION_EXT.search(header)
    if ext:
        try:
            codecs.lookup(ext.group(1))
            return unquote(ext.group(2), encoding=ext.group(1), errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass  # a charset we do not know: fall back to the plain filename
    plain = _DISPOSITION.search(header)
    if not plain:
        return None
    return re.sub(r"\\(.)", r"\1", plain.group(1)) if plain.group(1) is not None else plain.group(2)


def safe_file_name(name: str | None, fallback: str) -> str:
    """A plain file name ending in .safetensors: no directories, no "..", no control chars."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFC", name or ""))[-1]
    base = "".join(ch if ch.isprintable() and ch not in '<>:"|?*' else "_" for ch in base)
    base = re.sub(r"\.{2,}", ".", base).strip()
    stem = base[: -len(SUFFIX)] if base.lower().endswith(SUFFIX) else base
    stem = stem.strip(" ._")
    if not stem:
        stem = fallback
    # File systems limit names to 255 bytes; Chinese and Japanese names run 3 bytes a char.
    while len(stem.encode("utf-8")) > 200:
        stem = stem[:-1]
    return stem + SUFFIX


async def download_version(
    client: CivitaiClient,
    version: ModelVersion,
    dest_dir: Path,
    *,
    max_bytes: int,
    progress: Progress | None = None,
) -> Path:
    """Download the version's .safetensors into `dest_dir`; returns the final path."""
    file = pick_file(version)
    name = safe_file_name(file.name, f"civitai-{version.id}")
    if file.size_bytes is not None and file.size_bytes > max_bytes:
        raise LimitError(TOO_BIG, name=name, size=_size(file.size_bytes), limit=_size(max_bytes))
    url = file.download_url or version.download_url
    if not url:
        raise CivitaiError(NO_URL, version=version.id)

    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(dest_dir)
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=PART_PREFIX, suffix=PART_SUFFIX)
    except OSError as exc:
        raise LibraryError(WRITE_FAILED, name=name, reason=exc.strerror or type(exc).__name__) from None
    tmp = Path(tmp_name)
    try:
        digest, served_name = await _stream(client, url, fd, name, max_bytes, file.size_bytes, progress)
        expected = file.hashes.sha256
        if expected and digest != expected:
            raise CorruptFileError(HASH_MISMATCH, name=name)
        if not file.name and served_name:
            # CivitAI's files[].name is the name its storage serves; only when the body
            # lacks it is the Content-Disposition worth reading.
            name = safe_file_name(served_name, name[: -len(SUFFIX)])
        final = _free_path(dest_dir, name, version.id)
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LibraryError(WRITE_FAILED, name=name, reason=exc.strerror or type(exc).__name__) from None
    except BaseException:
        # Cancellation included: a half-written file must not survive under any name.
        tmp.unlink(missing_ok=True)
        raise
    return final


async def _stream(
    client: CivitaiClient,
    url: str,
    fd: int,
    name: str,
    max_bytes: int,
    expected_size: int | None,
    progress: Progress | None,
) -> tuple[str, str | None]:
    """Stream `url` into `fd`: the upper-case SHA256 and the name the server gave it."""
    digest = hashlib.sha256()
    done = 0
    # Plain blocking writes: chunks are 1 MiB and land in the page cache, which costs
    # less than handing every chunk to a thread.
    with os.fdopen(fd, "wb") as out:
        async with client.open_download(url) as resp:
            served_name = disposition_name(resp.headers.get("Content-Disposition"))
            length = resp.content_length
            if length is not None and length > max_bytes:
                raise LimitError(TOO_BIG, name=name, size=_size(length), limit=_size(max_bytes))
            total = length if length is not None else expected_size
            if progress is not None:
                progress(0, total)
            try:
                async for chunk in resp.iter_chunks(CHUNK):
                    done += len(chunk)
                    if done > max_bytes:
                        raise LimitError(TOO_BIG, name=name, size=f"> {_size(max_bytes)}", limit=_size(max_bytes))
                    digest.update(chunk)
                    out.write(chunk)
                    if progress is not None:
                        progress(done, total)
            except (TimeoutError, TransportError):
                raise CivitaiError(BROKE_OFF, name=name) from None
            if length is not None and done != length:
                raise CivitaiError(BROKE_OFF, name=name)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest().upper(), served_name


def _free_path(dest_dir: Path, name: str, version_id: int) -> Path:
    """`name` in `dest_dir`, or a variant of it when a different file already has it."""
    path = dest_dir / name
    if not path.exists():
        return path
    stem = name[: -len(SUFFIX)]
    path = dest_dir / f"{stem}-v{version_id}{SUFFIX}"
    counter = 2
    while path.exists():
        path = dest_dir / f"{stem}-v{version_id}-{counter}{SUFFIX}"
        counter += 1
    return path


def _size(n: int) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GiB"
    if n >= 1024**2:
        return f"{n / 1024**2:.1f} MiB"
    return f"{n / 1024:.0f} KiB"
