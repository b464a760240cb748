"""The text a picture carries, read without trusting the picture.

Where each tool keeps its generation parameters:

- A1111, Forge, CivitAI, Loracle: a PNG `parameters` text chunk (tEXt, zTXt or iTXt);
  in JPEG and WEBP the EXIF UserComment, as A1111 writes it with piexif
  (`UNICODE\\0` then UTF-16 big-endian; some tools write little-endian or `ASCII\\0\\0\\0`).
- ComfyUI: PNG text chunks `prompt` (the API graph it ran) and `workflow` (the editor's).

A picture is a stranger's file. Before anything is decoded: the byte size is capped, the
dimensions the header claims are checked (a 100 000 x 100 000 PNG of zeros compresses to
a few KB), animations are refused, and each text is capped in length. A PNG is then
checked whole (every chunk's CRC up to IEND) without decompressing its pixels; a JPEG or
WEBP is decoded, within the pixel cap, because only decoding finds a truncated one.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from engine.errors import ImageInputError
from engine.i18n import Text

MAX_IMAGE_BYTES = 64 * 1024 * 1024
# Far above any picture a diffusion model draws (a 4x upscale of 1536², 6144², with room),
# far below a bomb; a JPEG or WEBP this size decodes in about 160 MB.
MAX_PIXELS = 40_000_000
MAX_SIDE = 16_384
# An infotext is a few KB; a ComfyUI workflow of many nodes a few hundred KB.
MAX_TEXT_CHARS = 2_000_000
FORMATS = ("PNG", "JPEG", "WEBP")
TEXT_KEYS = ("parameters", "prompt", "workflow")

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286

TOO_BIG = Text(
    "The file is {size} MB; pictures of up to {limit} MB are read.",
    "檔案大小為 {size} MB；只能讀取 {limit} MB 以內的圖片。",
)
NOT_AN_IMAGE = Text(
    "This file is not a picture Loracle can read (PNG, JPEG or WEBP), whatever its name says.",
    "這個檔案不是 Loracle 能讀取的圖片（PNG、JPEG 或 WEBP），無論它的副檔名是什麼。",
)
WRONG_FORMAT = Text(
    "This is a {format} picture; Loracle reads generation parameters from PNG, JPEG and WEBP only.",
    "這是 {format} 圖片；Loracle 只能從 PNG、JPEG 和 WEBP 讀取生成參數。",
)
TOO_MANY_PIXELS = Text(
    "The picture says it is {width}×{height} pixels, more than the {limit} million Loracle "
    "accepts (a picture this size is usually a decompression bomb).",
    "這張圖片標示為 {width}×{height} 像素，超過 Loracle 接受的 {limit} 百萬像素（這種尺寸通常是解壓縮炸彈）。",
)
BOMB = Text(
    "The picture claims more pixels than the {limit} million Loracle accepts (a decompression bomb).",
    "這張圖片標示的像素超過 Loracle 接受的 {limit} 百萬像素（解壓縮炸彈）。",
)
ANIMATED = Text(
    "This picture is animated ({frames} frames); use a still picture.",
    "這張圖片是動畫（{frames} 格）；請使用靜態圖片。",
)
DAMAGED = Text(
    "The picture is damaged or cut short ({reason}); save it again and retry.",
    "圖片已損壞或不完整（{reason}）；請重新儲存後再試。",
)
TEXT_TOO_LONG = Text(
    "The picture's “{key}” text is {chars} characters long, more than the {limit} Loracle reads.",
    "圖片的「{key}」文字長達 {chars} 個字元，超過 Loracle 可讀取的 {limit} 個字元。",
)


@dataclass(frozen=True)
class ImageTexts:
    """A checked picture's format, size and generation texts (by key, see TEXT_KEYS)."""

    format: str
    width: int
    height: int
    texts: dict[str, str] = field(default_factory=dict)


def read_image_texts(data: bytes) -> ImageTexts:
    """Check `data` is a whole, still PNG/JPEG/WEBP of sane size and read its texts;
    ImageInputError otherwise."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageInputError(TOO_BIG, size=round(len(data) / 1e6, 1), limit=MAX_IMAGE_BYTES // (1024 * 1024))
    with _open(data) as image:
        fmt = str(image.format or "")
        if fmt not in FORMATS:
            raise ImageInputError(WRONG_FORMAT, format=fmt or "unknown")
        width, height = image.size
        if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
            raise ImageInputError(TOO_MANY_PIXELS, width=width, height=height, limit=MAX_PIXELS // 1_000_000)
        frames = int(getattr(image, "n_frames", 1) or 1)
        if frames > 1:
            raise ImageInputError(ANIMATED, frames=frames)
        texts = _header_texts(image)
        if fmt != "PNG":
            _decode(image)
    if fmt == "PNG":
        _verify_png(data)
        if "parameters" not in texts and "prompt" not in texts:
            # Text after the pixels is legal PNG; only decoding reaches it (size checked).
            with _open(data) as image:
                _decode(image)
                texts.update(_png_texts(getattr(image, "text", {}) or {}))
    for key, value in texts.items():
        if len(value) > MAX_TEXT_CHARS:
            raise ImageInputError(TEXT_TOO_LONG, key=key, chars=len(value), limit=MAX_TEXT_CHARS)
    return ImageTexts(fmt, width, height, texts)


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(BOMB, limit=MAX_PIXELS // 1_000_000) from None
    except (UnidentifiedImageError, SyntaxError, ValueError, OSError, EOFError):
        raise ImageInputError(NOT_AN_IMAGE) from None


def _decode(image: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if image.format == "JPEG":
                # DCT scaling: decodes every block (so a cut-short file still fails) at
                # 1/8 of the memory.
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageInputError(DAMAGED, reason=_reason(exc)) from None


def _verify_png(data: bytes) -> None:
    image = _open(data)
    try:
        image.verify()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageInputError(DAMAGED, reason=_reason(exc)) from None
    finally:
        image.close()


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:120]


def _header_texts(image: Image.Image) -> dict[str, str]:
    texts = _png_texts(image.info) if image.format == "PNG" else {}
    if "parameters" not in texts:
        comment = _user_comment(image)
        if comment:
            texts["parameters"] = comment
    if "parameters" not in texts and image.format == "JPEG":
        raw = image.info.get("comment")  # a JPEG COM segment, which some tools use
        if isinstance(raw, bytes):
            texts["parameters"] = raw.decode("utf-8", "replace")
    return texts


def _png_texts(info: object) -> dict[str, str]:
    if not isinstance(info, dict):
        return {}
    texts: dict[str, str] = {}
    for key in TEXT_KEYS:
        value = info.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value.strip():
            texts[key] = value
    return texts


def _user_comment(image: Image.Image) -> str | None:
    # From the EXIF block the header holds: Image.getexif() on a PNG decodes the pixels to
    # look for one after them.
    block = image.info.get("exif")
    if not isinstance(block, bytes) or not block:
        return None
    try:
        exif = Image.Exif()
        exif.load(block)
        raw = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # a damaged EXIF block holds no parameters worth failing over
        return None
    if isinstance(raw, str):
        return raw.strip("\0").strip() or None
    if not isinstance(raw, bytes):
        return None
    text = decode_user_comment(raw)
    return text.strip() or None


def decode_user_comment(raw: bytes) -> str:
    """An EXIF UserComment: an 8-byte character-code prefix, then the text."""
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\0":
        return _utf16(body)
    if prefix in (b"ASCII\0\0\0", b"\0" * 8):
        return body.decode("utf-8", "replace").strip("\0")
    return raw.decode("utf-8", "replace").strip("\0")


def _utf16(body: bytes) -> str:
    if body[:2] == b"\xfe\xff":
        return body[2:].decode("utf-16-be", "replace")
    if body[:2] == b"\xff\xfe":
        return body[2:].decode("utf-16-le", "replace")
    # No BOM: A1111 (piexif) writes big-endian; a few tools write little-endian. Latin
    # text has its zero bytes first in big-endian, second in little-endian.
    even = body[0::2].count(0)
    odd = body[1::2].count(0)
    return body.decode("utf-16-le" if odd > even else "utf-16-be", "replace").strip("\0")
