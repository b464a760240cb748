"""Name what a file really is when it is not a safetensors file.

Files come from strangers: pickles renamed to `.safetensors`, web pages saved under a
model's name, Git LFS pointers, GGUF files. Reading their first bytes as a safetensors
header length gives absurd numbers ("header is 7000655448998175784 bytes"), so each is
recognised by its own magic first and named in the message. Pickled formats
(.ckpt/.pt/.bin...) can run arbitrary code when loaded; they are refused by name and by
content and never unpickled.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.errors import CorruptFileError, UnsafeFileError
from engine.i18n import Text

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")

REFUSED_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
_MSG_WEB_PAGE = Text(
    "“{name}” is a web page or text, not a model: the download probably failed (a login page "
    "or an error message was saved instead). Download it again from the model's page.",
    "「{name}」是網頁或文字檔，不是模型：下載很可能失敗了（存下來的是登入頁或錯誤訊息）。"
    "請從模型頁面重新下載。",
)
_MSG_LFS_POINTER = Text(
    "“{name}” is a Git LFS pointer (a tiny placeholder), not the model itself. Download the real "
    "file (for example with `git lfs pull`).",
    "「{name}」只是 Git LFS 指標（小小的佔位檔），不是模型本身。請下載真正的檔案（例如執行 `git lfs pull`）。",
)
_MSG_GGUF = Text(
    "“{name}” is a GGUF (quantized) file with a .safetensors name; Loracle only reads real "
    ".safetensors files and diffusers folders.",
    "「{name}」是改成 .safetensors 名稱的 GGUF（量化）檔案；Loracle 只讀取真正的 .safetensors 檔案與 diffusers 資料夾。",
)
_MSG_UNSAFE = Text(
    "“{name}” is a pickled PyTorch file ({what}). Loading such files can run any code hidden in "
    "them, so Loracle never opens them. Download the .safetensors version of this model instead "
    "(CivitAI and Hugging Face offer one for almost every model), or convert it yourself on a "
    "machine you trust.",
    "「{name}」是 pickle 格式的 PyTorch 檔案（{what_zh}）。載入這種檔案可能執行其中夾帶的任意程式碼，"
    "因此 Loracle 絕不開啟。請改下載這個模型的 .safetensors 版本（CivitAI 與 Hugging Face 幾乎都有提供），"
    "或在您信任的電腦上自行轉換。",
)

_MSG_RENAMED = Text(
    "“{name}” is a {what} renamed to {suffix}, not a safetensors file. Loading it could run any "
    "code hidden in it, so Loracle never opens it. Download the .safetensors version of this "
    "model instead (CivitAI and Hugging Face offer one for almost every model), or convert it "
    "yourself on a machine you trust.",
    "「{name}」其實是改名為 {suffix} 的 pickle 檔（{what_zh}），不是 safetensors 檔案。載入它可能執行其中夾帶的"
    "任意程式碼，因此 Loracle 絕不開啟。請改下載這個模型的 .safetensors 版本，或在您信任的電腦上自行轉換。",
)
_MSG_IMAGE = Text(
    "“{name}” is a {kind} image, not a model: a preview picture saved under the model's name? "
    "Download the model file itself.",
    "「{name}」是 {kind} 圖片，不是模型：可能是把預覽圖存成了模型的名稱？請下載模型檔案本身。",
)
_MSG_JSON = Text(
    "“{name}” is JSON text, not a model: an API answer or a model-info file saved under the "
    "model's name? Download the model file itself.",
    "「{name}」是 JSON 文字，不是模型：可能是 API 回應或模型資訊檔被存成了模型的名稱？請下載模型檔案本身。",
)
_MSG_TEXT = Text(
    "“{name}” is a plain text file, not a model. Download the model file itself.",
    "「{name}」是純文字檔，不是模型。請下載模型檔案本身。",
)


# --- pickle and other impostors -------------------------------------------------------

SNIFF_BYTES = 512


def _sniff(head: bytes, file_size: int) -> str | None:
    """Name the container format of a file that is NOT a plausible safetensors file."""
    if _plausible_safetensors(head, file_size):
        return None
    if head.startswith(b"PK\x03\x04"):
        return "zip"  # torch.save's default format since 1.6: a zip holding a pickle
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"  # torch.save's legacy tar format
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # pickle protocol 2-5 (legacy torch.save, raw pickle.dump)
    if _TEXT_PICKLE.match(head):
        return "text-pickle"
    return None


# Pickle protocols 0 and 1 have no header: they start with an opcode. Recognised here: a
# GLOBAL ("cmodule\nname\n", how objects and OrderedDicts begin), a MARK followed by a
# dict / list / instance / another MARK / GLOBAL ("(dp0\n", "(lp0\n", "((l"), and
# protocol 1's EMPTY_DICT / EMPTY_LIST followed by BINPUT or MARK ("}q\x00", "](").
_TEXT_PICKLE = re.compile(
    rb"c[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n"
    rb"|\((?:dp\d|lp\d|\(|i[A-Za-z_]|c[A-Za-z_][\w.]*\n)"
    rb"|[}\]](?:q[\x00-\xff]|\()",
)


def _plausible_safetensors(head: bytes, file_size: int) -> bool:
    # A real safetensors file's header length is small and its JSON starts with "{", so a
    # header length whose first byte happens to be 0x80 is not mistaken for a pickle.
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 8 + n <= file_size


def _sniff_path(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
        size = os.fstat(f.fileno()).st_size
    return _sniff(head, size)


def is_pickle_file(path: str | os.PathLike[str]) -> bool:
    """True when the file's first bytes say it is a pickle (zip/tar/raw), whatever its name."""
    return _sniff_path(Path(path)) is not None


_SNIFFED_EN = {
    "zip": "a zip holding a pickle",
    "tar": "a tar holding a pickle",
    "pickle": "pickle data",
    "text-pickle": "text pickle data, protocol 0/1",
}
_SNIFFED_ZH = {
    "zip": "zip 封裝的 pickle",
    "tar": "tar 封裝的 pickle",
    "pickle": "pickle 資料",
    "text-pickle": "文字格式（protocol 0/1）的 pickle 資料",
}
_RENAMED_EN = {
    "zip": "PyTorch pickle (zip)",
    "tar": "PyTorch pickle (tar)",
    "pickle": "Python/PyTorch pickle (binary protocol 2-5)",
    "text-pickle": "Python pickle (text protocol 0/1)",
}


def unsafe_file_error(path: str | os.PathLike[str], what: str | None = None) -> UnsafeFileError:
    """The error for a pickled file; `what` names the evidence (suffix or sniffed format)."""
    p = Path(path)
    what = what or (p.suffix.lower() or "pickle")
    if what in _RENAMED_EN and p.suffix.lower() in SAFETENSORS_SUFFIXES:
        return UnsafeFileError(
            _MSG_RENAMED, name=p.name, what=_RENAMED_EN[what], what_zh=_SNIFFED_ZH[what], suffix=p.suffix
        )
    return UnsafeFileError(_MSG_UNSAFE, name=p.name, what=_SNIFFED_EN.get(what, what), what_zh=_SNIFFED_ZH.get(what, what))


def check_not_pickle(path: str | os.PathLike[str]) -> None:
    """Raise UnsafeFileError for a refused suffix or for pickle content under any name."""
    p = Path(path)
    if p.suffix.lower() in REFUSED_SUFFIXES:
        raise unsafe_file_error(p, p.suffix.lower())
    found = _sniff_path(p)
    if found:
        raise unsafe_file_error(p, found)


def _looks_like_text(head: bytes) -> str | None:
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"version https://git-lfs"):
        return "lfs"
    lowered = stripped[:64].lower()
    if lowered.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        return "html"
    if stripped.startswith((b"{\"error", b"{\"message", b"{\"detail")):
        return "html"  # a JSON error body from an API saved as the model
    if stripped[:1] in (b"{", b"["):
        return "json"
    try:
        # a cut at the sniff window may split a UTF-8 sequence: ignore the last 3 bytes
        text = head[: max(1, len(head) - 3)].decode("utf-8") if len(head) >= SNIFF_BYTES else head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return "text"
    return None


# Magic numbers of pictures (a preview image saved under the model's name).
_IMAGES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"))


def _image(head: bytes) -> str | None:
    for magic, kind in _IMAGES:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None




def refuse_impostor(path: Path, head: bytes, file_size: int) -> None:
    """Raise the error naming what `head` (a file's first bytes) is, if not safetensors."""
    found = _sniff(head, file_size)
    if found:
        raise unsafe_file_error(path, found)
    text_kind = None if _plausible_safetensors(head, file_size) else _looks_like_text(head)
    if text_kind == "lfs":
        raise CorruptFileError(_MSG_LFS_POINTER, name=path.name)
    if text_kind == "html":
        raise CorruptFileError(_MSG_WEB_PAGE, name=path.name)
    if text_kind == "json":
        raise CorruptFileError(_MSG_JSON, name=path.name)
    if head.startswith(b"GGUF"):  # its magic read as a length would be ~14 GB
        raise CorruptFileError(_MSG_GGUF, name=path.name)
    image = None if _plausible_safetensors(head, file_size) else _image(head)
    if image:
        raise CorruptFileError(_MSG_IMAGE, name=path.name, kind=image)
    if text_kind == "text":
        raise CorruptFileError(_MSG_TEXT, name=path.name)
