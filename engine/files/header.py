"""Read a safetensors file's header (names, dtypes, shapes, metadata) without its tensors.

A safetensors file is: 8 bytes little-endian N, N bytes of UTF-8 JSON (the header, maybe
padded with spaces), then the raw tensor bytes. Header offsets are relative to the start
of that data section. Everything here reads the first 8 + N bytes only, so a 7 GB
checkpoint is inspected in milliseconds, and validates the header as strictly as the
reference loader would, because files come from strangers: truncated downloads, web pages
saved under a model's name, and pickles renamed to `.safetensors` (engine/files/sniff.py
names those). This is the one header type: the scanner, the loader and the demo all read
headers here.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import CorruptFileError
from engine.files.sniff import SAFETENSORS_SUFFIXES as SAFETENSORS_SUFFIXES
from engine.files.sniff import SNIFF_BYTES, refuse_impostor
from engine.i18n import Text
from engine.text_input import shorten

MAX_HEADER_BYTES = 100 * 1024 * 1024
"""Kohya files with a large ss_tag_frequency have headers of several MB; 100 MiB is far
above anything real and still bounded, so a hostile length cannot exhaust memory."""


# Bits per element, as the safetensors spec names the dtypes (sub-byte floats included).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}

_MAX_NDIM = 16
_MAX_DIM = 2**31
"""No real tensor has a dimension this long (the largest vocabularies are ~2**18); a
zero-sized tensor could otherwise declare [2**70, 0] and pass the byte-size check, and the
number would overflow SQLite and arithmetic later."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in the header; offsets are relative to the data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    file_size: int
    header_size: int
    data_offset: int  # 8 + header_size: where the tensor bytes start
    metadata: dict[str, str]
    tensors: dict[str, TensorInfo]

    @property
    def data_size(self) -> int:
        return self.file_size - self.data_offset

    def shape(self, key: str) -> tuple[int, ...] | None:
        info = self.tensors.get(key)
        return info.shape if info else None

    def has_prefix(self, prefix: str) -> bool:
        return any(key.startswith(prefix) for key in self.tensors)


# --- messages -------------------------------------------------------------------------

_DOWNLOAD_AGAIN_EN = " Download it again, or remove it from the library."
_DOWNLOAD_AGAIN_ZH = "請重新下載，或將它從模型庫移除。"

_MSG_EMPTY = Text(
    "“{name}” is empty (0 bytes), so it cannot be a model." + _DOWNLOAD_AGAIN_EN,
    "「{name}」是空檔案（0 位元組），不可能是模型。" + _DOWNLOAD_AGAIN_ZH,
)
_MSG_TOO_SHORT = Text(
    "“{name}” is only {size} bytes long: too short to be a safetensors file." + _DOWNLOAD_AGAIN_EN,
    "「{name}」只有 {size} 位元組，太短，不可能是 safetensors 檔案。" + _DOWNLOAD_AGAIN_ZH,
)
_MSG_HEADER_TOO_BIG = Text(
    "“{name}” says its header is {declared} bytes, more than the {limit} bytes we accept; "
    "the file is damaged or not a safetensors file.",
    "「{name}」聲稱標頭有 {declared} 位元組，超過可接受的 {limit} 位元組；檔案已損壞或不是 safetensors 檔案。",
)
_MSG_HEADER_BEYOND_FILE = Text(
    "“{name}” says its header is {declared} bytes, but the whole file is only {size} bytes: "
    "it is cut short (an unfinished download?) or not a safetensors file." + _DOWNLOAD_AGAIN_EN,
    "「{name}」聲稱標頭有 {declared} 位元組，但整個檔案只有 {size} 位元組：檔案不完整（下載未完成？）"
    "或不是 safetensors 檔案。" + _DOWNLOAD_AGAIN_ZH,
)
_MSG_NOT_UTF8 = Text(
    "“{name}” has a header that is not UTF-8 text; the file is damaged or not a safetensors file.",
    "「{name}」的標頭不是 UTF-8 文字；檔案已損壞或不是 safetensors 檔案。",
)
_MSG_NOT_JSON = Text(
    "“{name}” has a header that is not valid JSON ({detail}); the file is damaged or not a "
    "safetensors file.",
    "「{name}」的標頭不是有效的 JSON（{detail}）；檔案已損壞或不是 safetensors 檔案。",
)
_MSG_TOO_DEEP = Text(
    "“{name}” has an absurdly deeply nested header; it was refused as hostile or damaged.",
    "「{name}」的標頭巢狀層數多得離譜，已視為惡意或損壞的檔案而拒絕。",
)
_MSG_NOT_OBJECT = Text(
    "“{name}” has a header that is a JSON {kind} instead of an object; it is not a safetensors file.",
    "「{name}」的標頭是 JSON {kind}，而不是物件；它不是 safetensors 檔案。",
)
_MSG_BAD_ENTRY = Text(
    "“{name}” has a broken entry for tensor “{tensor}”: {detail_en}." + _DOWNLOAD_AGAIN_EN,
    "「{name}」中張量「{tensor}」的項目有問題：{detail_zh}。" + _DOWNLOAD_AGAIN_ZH,
)
_MSG_OVERLAP = Text(
    "“{name}” is damaged: the bytes of tensors “{first}” and “{second}” overlap." + _DOWNLOAD_AGAIN_EN,
    "「{name}」已損壞：張量「{first}」與「{second}」的資料範圍重疊。" + _DOWNLOAD_AGAIN_ZH,
)
_MSG_GAP = Text(
    "“{name}” is damaged: the bytes before tensor “{tensor}” belong to no tensor, so safetensors "
    "loaders refuse the file." + _DOWNLOAD_AGAIN_EN,
    "「{name}」已損壞：張量「{tensor}」之前有一段不屬於任何張量的資料，safetensors 載入程式會拒絕這個檔案。"
    + _DOWNLOAD_AGAIN_ZH,
)
_MSG_TRAILING = Text(
    "“{name}” has {extra} bytes after its last tensor that belong to nothing, so safetensors loaders "
    "refuse the file (a download written twice?)." + _DOWNLOAD_AGAIN_EN,
    "「{name}」在最後一個張量之後還有 {extra} 位元組不屬於任何張量，safetensors 載入程式會拒絕這個檔案"
    "（下載時重複寫入？）。" + _DOWNLOAD_AGAIN_ZH,
)
_MSG_TRUNCATED_DATA = Text(
    "“{name}” is cut short: tensor “{tensor}” should be at bytes {start}–{end} but the file ends "
    "earlier." + _DOWNLOAD_AGAIN_EN,
    "「{name}」不完整：張量「{tensor}」應位於第 {start}–{end} 位元組，但檔案提前結束。" + _DOWNLOAD_AGAIN_ZH,
)
_ENTRY_DETAILS: dict[str, tuple[str, str]] = {
    "not_object": ("the entry is not a JSON object", "項目不是 JSON 物件"),
    "dtype": ("unknown data type {dtype}", "未知的資料型別 {dtype}"),
    "shape": (
        "the shape is not a list of at most 16 whole numbers from 0 to 2^31",
        "形狀不是最多 16 個介於 0 與 2^31 之間的整數",
    ),
    "offsets": ("the byte offsets are not two whole numbers", "位元組位移不是兩個整數"),
    "range": (
        "its bytes {start}–{end} lie beyond the {size} bytes of data the file holds, so the file is "
        "cut short or damaged",
        "其資料範圍 {start}–{end} 超出檔案實際的 {size} 位元組資料，檔案不完整或已損壞",
    ),
    "size": (
        "{dtype} × shape {shape} needs {expected} bytes but the entry spans {actual}",
        "{dtype} × 形狀 {shape} 需要 {expected} 位元組，但項目只涵蓋 {actual} 位元組",
    ),
}


def _bad_entry(path: Path, tensor: str, reason: str, **detail: Any) -> CorruptFileError:
    en, zh = _ENTRY_DETAILS[reason]
    return CorruptFileError(
        _MSG_BAD_ENTRY,
        name=path.name,
        tensor=shorten(tensor, 120),
        detail_en=en.format(**detail),
        detail_zh=zh.format(**detail),
    )


# --- the header -----------------------------------------------------------------------


def read_header(
    path: str | os.PathLike[str], *, max_header_bytes: int = MAX_HEADER_BYTES
) -> SafetensorsHeader:
    """Read and validate the header of a safetensors file (never the tensors).

    Raises UnsafeFileError for pickled content, CorruptFileError for anything else that is
    not a well-formed safetensors file.
    """
    p = Path(path)
    with open(p, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        head = f.read(SNIFF_BYTES)
        refuse_impostor(p, head, file_size)
        if file_size == 0:
            raise CorruptFileError(_MSG_EMPTY, name=p.name)
        if file_size < 8:
            raise CorruptFileError(_MSG_TOO_SHORT, name=p.name, size=file_size)
        header_size = int.from_bytes(head[:8], "little")
        if header_size > max_header_bytes:
            raise CorruptFileError(
                _MSG_HEADER_TOO_BIG, name=p.name, declared=header_size, limit=max_header_bytes
            )
        if 8 + header_size > file_size:
            raise CorruptFileError(
                _MSG_HEADER_BEYOND_FILE, name=p.name, declared=header_size, size=file_size
            )
        f.seek(8)
        raw = f.read(header_size)
    if len(raw) != header_size:  # the file shrank between stat and read
        raise CorruptFileError(_MSG_HEADER_BEYOND_FILE, name=p.name, declared=header_size, size=file_size)
    data_offset = 8 + header_size
    metadata, tensors = _parse_header(p, raw, file_size - data_offset)
    return SafetensorsHeader(
        path=p,
        file_size=file_size,
        header_size=header_size,
        data_offset=data_offset,
        metadata=metadata,
        tensors=tensors,
    )


def _parse_header(path: Path, raw: bytes, data_size: int) -> tuple[dict[str, str], dict[str, TensorInfo]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptFileError(_MSG_NOT_UTF8, name=path.name) from None
    try:
        parsed = json.loads(text)  # trailing space padding is legal JSON whitespace
    except RecursionError:
        raise CorruptFileError(_MSG_TOO_DEEP, name=path.name) from None
    except ValueError as exc:
        detail = f"{exc.msg} at byte {exc.pos}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise CorruptFileError(_MSG_NOT_JSON, name=path.name, detail=shorten(detail, 80)) from None
    if not isinstance(parsed, dict):
        kind = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
            type(parsed), "null"
        )
        raise CorruptFileError(_MSG_NOT_OBJECT, name=path.name, kind=kind)

    metadata = _coerce_metadata(parsed.get("__metadata__"))
    tensors: dict[str, TensorInfo] = {}
    for name, entry in parsed.items():
        if name == "__metadata__":
            continue
        tensors[name] = _parse_entry(path, name, entry, data_size)
    _check_layout(path, tensors, data_size)
    return metadata, tensors


def _coerce_metadata(raw: Any) -> dict[str, str]:
    # The spec says string -> string, but exporters write numbers, bools and nested
    # objects; keep them as JSON text rather than refusing an otherwise fine file.
    if not isinstance(raw, dict):
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            try:
                value = json.dumps(value, ensure_ascii=False)
            except (ValueError, RecursionError):
                value = str(value)
        out[_encodable(str(key))] = _encodable(value)
    return out


def _encodable(text: str) -> str:
    # JSON "\ud800" escapes decode to lone surrogates, which cannot be written back as
    # UTF-8 (SQLite, Discord); replace them here once rather than fail later
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_entry(path: Path, name: str, entry: Any, data_size: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise _bad_entry(path, name, "not_object")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise _bad_entry(path, name, "dtype", dtype=shorten(repr(dtype), 40))
    shape = entry.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_NDIM
        or not all(_is_int(d) and 0 <= d <= _MAX_DIM for d in shape)
    ):
        raise _bad_entry(path, name, "shape")
    offsets = entry.get("data_offsets")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise _bad_entry(path, name, "offsets")
    start, end = offsets
    if start < 0 or end < start or end > data_size:
        raise _bad_entry(path, name, "range", start=start, end=end, size=data_size)
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != end - start:
        raise _bad_entry(
            path, name, "size", dtype=dtype, shape=list(shape), expected=math.ceil(bits / 8), actual=end - start
        )
    return TensorInfo(dtype=dtype, shape=tuple(shape), start=start, end=end)


def _check_layout(path: Path, tensors: dict[str, TensorInfo], data_size: int) -> None:
    # The reference loader (what diffusers and ComfyUI open files with) wants the tensors
    # to tile the data section exactly: no overlap, no gap, nothing after the last one.
    # Refusing here names the problem at scan time instead of failing mid-generation.
    spans = sorted((t.start, t.end, n) for n, t in tensors.items())
    covered, last = 0, None
    for start, end, name in spans:
        if start < covered:
            raise CorruptFileError(_MSG_OVERLAP, name=path.name, first=shorten(last or "", 120), second=shorten(name, 120))
        if start > covered:
            raise CorruptFileError(_MSG_GAP, name=path.name, tensor=shorten(name, 120))
        covered, last = end, name
    if covered != data_size:
        raise CorruptFileError(_MSG_TRAILING, name=path.name, extra=data_size - covered)


# --- reading a few tensor bytes -------------------------------------------------------


def read_tensor_bytes(header: SafetensorsHeader, name: str, max_bytes: int = 64) -> bytes:
    """The raw bytes of one small tensor (e.g. a LoRA's `.alpha`), read straight from disk.

    `max_bytes` guards against being asked for a real weight matrix by mistake.
    """
    return read_tensors_bytes(header, [name], max_bytes=max_bytes)[name]


def read_tensors_bytes(
    header: SafetensorsHeader, names: Iterable[str], max_bytes: int = 64
) -> dict[str, bytes]:
    """Like read_tensor_bytes for several tensors, opening the file once."""
    wanted = [(n, header.tensors[n]) for n in names]
    for n, info in wanted:
        if info.nbytes > max_bytes:
            raise ValueError(f"tensor {n!r} is {info.nbytes} bytes, more than max_bytes={max_bytes}")
    out: dict[str, bytes] = {}
    with open(header.path, "rb") as f:
        for n, info in wanted:
            f.seek(header.data_offset + info.start)
            raw = f.read(info.nbytes)
            if len(raw) != info.nbytes:
                raise CorruptFileError(
                    _MSG_TRUNCATED_DATA,
                    name=header.path.name,
                    tensor=shorten(n, 120),
                    start=header.data_offset + info.start,
                    end=header.data_offset + info.end,
                )
            out[n] = raw
    return out


# Integers too: kohya's svd_merge_lora.py stores each `.alpha` as torch.tensor(rank), an I64.
_STRUCT_FORMATS = {
    "F16": "<e", "F32": "<f", "F64": "<d",
    "I8": "<b", "U8": "<B", "I16": "<h", "U16": "<H", "I32": "<i", "U32": "<I", "I64": "<q", "U64": "<Q",
}  # fmt: skip
SCALAR_DTYPES = ("BF16", *_STRUCT_FORMATS)  # what decode_scalar reads


def decode_scalar(dtype: str, raw: bytes) -> float:
    """Decode a one-element little-endian float or integer tensor to a Python float."""
    if dtype == "BF16":
        if len(raw) != 2:
            raise ValueError(f"BF16 scalar needs 2 bytes, got {len(raw)}")
        # bfloat16 is the top half of a float32
        return float(struct.unpack("<f", b"\x00\x00" + raw)[0])
    fmt = _STRUCT_FORMATS.get(dtype)
    if fmt is None:
        raise ValueError(f"cannot decode a {dtype} scalar")
    if len(raw) != struct.calcsize(fmt):
        raise ValueError(f"{dtype} scalar needs {struct.calcsize(fmt)} bytes, got {len(raw)}")
    return float(struct.unpack(fmt, raw)[0])


def read_scalars(header: SafetensorsHeader, names: Iterable[str]) -> dict[str, float]:
    """Values of one-element numeric tensors among `names`, as floats; others are skipped."""
    usable = [
        n
        for n in names
        if n in header.tensors and header.tensors[n].dtype in SCALAR_DTYPES and header.tensors[n].numel == 1
    ]
    raw = read_tensors_bytes(header, usable, max_bytes=8)
    return {n: decode_scalar(header.tensors[n].dtype, b) for n, b in raw.items()}
