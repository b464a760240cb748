"""Hostile and damaged pictures are refused with a clear message before any decoding
that could cost memory; the texts of good ones are read whatever the container."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.errors import ImageInputError
from engine.images import image_text
from engine.images.image_text import decode_user_comment, read_image_texts


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_claiming(width: int, height: int, text: bytes = b"parameters\0a cat\nSteps: 1, Seed: 1, Size: 8x8") -> bytes:
    """A few hundred bytes whose header claims `width` x `height` (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"tEXt", text) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _png(size: tuple[int, int] = (64, 64), **texts: str) -> bytes:
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.effect_noise(size, 50).convert("RGB").save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _refused(data: bytes, words: str) -> None:
    with pytest.raises(ImageInputError) as caught:
        read_image_texts(data)
    assert words in str(caught.value), str(caught.value)
    assert caught.value.localized("zh-TW") != str(caught.value)


def test_a_good_png_gives_its_texts_and_size() -> None:
    found = read_image_texts(_png((80, 64), parameters="a cat\nSteps: 1", prompt="{}", other="ignored"))
    assert (found.format, found.width, found.height) == ("PNG", 80, 64)
    assert found.texts == {"parameters": "a cat\nSteps: 1", "prompt": "{}"}


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (7_000, 7_000), (20_000, 64)])
def test_bombs_are_refused_from_the_header(width: int, height: int) -> None:
    _refused(_png_claiming(width, height), "million")


def test_truncated_pictures_are_refused() -> None:
    whole = _png((128, 128), parameters="a cat\nSteps: 1, Seed: 1, Size: 8x8")
    for cut in (len(whole) - 8, len(whole) // 2):  # into IEND; into the pixels
        _refused(whole[:cut], "damaged or cut short")
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 50).convert("RGB").save(buffer, "JPEG", quality=90)
    _refused(buffer.getvalue()[: len(buffer.getvalue()) // 2], "damaged or cut short")


def test_a_corrupted_chunk_is_refused() -> None:
    data = bytearray(_png(parameters="a cat\nSteps: 1"))
    data[data.index(b"IDAT") + 10] ^= 0xFF  # the CRC no longer matches
    _refused(bytes(data), "damaged or cut short")


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF"])
def test_animations_are_refused(fmt: str) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:])
    _refused(buffer.getvalue(), "animated" if fmt != "GIF" else "GIF")


def test_other_formats_and_non_pictures_are_refused_whatever_their_name() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "BMP")
    _refused(buffer.getvalue(), "BMP")
    _refused(b"\x00\x01 not an image, though it was called cat.png", "not a picture")
    _refused(b'{"__metadata__": {}}' + b"\0" * 64, "not a picture")  # a safetensors header
    _refused(b"", "not a picture")


def test_oversized_files_and_texts_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_text, "MAX_IMAGE_BYTES", 1000)
    _refused(b"\x89PNG" + b"\0" * 2000, "MB")
    monkeypatch.setattr(image_text, "MAX_IMAGE_BYTES", 64 * 1024 * 1024)
    monkeypatch.setattr(image_text, "MAX_TEXT_CHARS", 100)
    _refused(_png(parameters="x" * 101), "characters")


def test_text_after_the_pixels_is_found() -> None:
    head = _png((16, 16))
    iend = head.rindex(b"IEND") - 4
    text = _chunk(b"tEXt", b"parameters\0late cat\nSteps: 2, Seed: 1, Size: 16x16")
    found = read_image_texts(head[:iend] + text + head[iend:])
    assert found.texts["parameters"].startswith("late cat")


def test_user_comment_encodings() -> None:
    text = "貓, cat"
    assert decode_user_comment(b"UNICODE\0" + text.encode("utf-16-be")) == text
    assert decode_user_comment(b"UNICODE\0" + text.encode("utf-16-le")) == text
    assert decode_user_comment(b"UNICODE\0\xff\xfe" + text.encode("utf-16-le")) == text
    assert decode_user_comment(b"ASCII\0\0\0cat\0") == "cat"
    assert decode_user_comment(b"cat") == "cat"
