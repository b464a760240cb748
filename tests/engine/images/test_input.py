"""Pictures from users (engine.images.input): normalised when usable, refused clearly when not."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.errors import ImageInputError
from engine.i18n import EN
from engine.images import input as inputs


def encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2))


def refused(data: bytes, **kw) -> str:
    with pytest.raises(ImageInputError) as err:
        inputs.normalise(data, max_side=kw.pop("max_side", 1024), **kw)
    return err.value.localized(EN)


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge picture whose data is a few bytes: a bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # one compressed row of zeros: decoders would inflate it to width*height*3 bytes
    data = zlib.compress(b"\0" * (1 + 3 * min(width, 4096)), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_a_jpeg_is_stored_as_rgb_png_with_sides_multiple_of_8(tmp_path):
    stored = inputs.store(encode(gradient(203, 150), "JPEG"), tmp_path, max_side=1024)
    path = tmp_path / f"{stored.id}.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (stored.width, stored.height) == (200, 144)  # centre crop, no stretch
        assert not image.info.get("exif")


def test_the_same_picture_is_stored_once(tmp_path):
    data = encode(gradient(128, 96))
    first = inputs.store(data, tmp_path, max_side=1024)
    second = inputs.store(data, tmp_path, max_side=1024)
    assert first == second and len(list(tmp_path.glob("*.png"))) == 1


def test_a_large_picture_is_scaled_down_keeping_its_aspect(tmp_path):
    stored = inputs.store(encode(gradient(2000, 1000)), tmp_path, max_side=1024)
    assert (stored.width, stored.height) == (1024, 512)


def test_exif_orientation_is_applied():
    image = gradient(160, 96)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    result = inputs.normalise(encode(image, "JPEG", exif=exif), max_side=1024)
    assert result.size == (96, 160)


def test_transparency_is_flattened_on_white():
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 64))
    result = np.asarray(inputs.normalise(encode(rgba), max_side=1024))
    assert tuple(result[10, 50]) == (255, 255, 255)  # transparent: white, not the hidden red
    assert tuple(result[10, 10]) == (0, 0, 255)


def test_a_palette_picture_with_a_transparent_index_is_flattened_too():
    p = Image.new("P", (64, 64), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.paste(1, (0, 0, 32, 64))
    result = np.asarray(inputs.normalise(encode(p, transparency=0), max_side=1024))
    assert tuple(result[10, 50]) == (255, 255, 255) and tuple(result[10, 10]) == (255, 0, 0)


def test_a_decompression_bomb_is_refused_from_its_header():
    message = refused(png_declaring(30_000, 30_000))
    assert "900 megapixels" in message and "up to 40 megapixels" in message


def test_huge_dimensions_past_our_cap_are_refused_even_below_pillows():
    assert "megapixels" in refused(png_declaring(8000, 6000), max_pixels=10_000_000)


def test_a_truncated_picture_is_refused():
    data = encode(gradient(256, 256), "JPEG")
    assert "damaged or incomplete" in refused(data[: len(data) // 2])


def test_a_truncated_png_is_refused():
    data = encode(gradient(256, 256))
    assert "damaged or incomplete" in refused(data[: len(data) - 200])


def test_text_sent_as_a_png_is_not_a_picture():
    assert "not a picture" in refused(b"<html><body>hello</body></html>")


def test_a_postscript_file_is_never_handed_to_ghostscript():
    assert "not a picture" in refused(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")


def test_an_animated_gif_is_refused():
    frames = [Image.new("RGB", (64, 64), color) for color in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert "animated (3 frames)" in refused(data)


def test_an_animated_png_is_refused():
    frames = [Image.new("RGB", (64, 64), color) for color in ("red", "blue")]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    assert "animated" in refused(data)


def test_a_single_frame_gif_is_fine():
    assert inputs.normalise(encode(Image.new("RGB", (64, 64), "red"), "GIF"), max_side=1024).size == (64, 64)


def test_a_tiny_or_thin_picture_is_refused():
    assert "at least 64" in refused(encode(gradient(40, 40)))
    assert "at least 64" in refused(encode(gradient(3000, 100)), max_side=1024)  # 1024x34 after fitting


def test_a_file_over_the_byte_limit_is_refused_before_reading(monkeypatch):
    monkeypatch.setattr(inputs, "MAX_INPUT_BYTES", 2**20)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8))
    assert "up to 1 MB" in refused(encode(noise))


def test_load_and_size_by_id(tmp_path):
    stored = inputs.store(encode(gradient(128, 64)), tmp_path, max_side=1024)
    assert inputs.load(tmp_path, stored.id).size == (128, 64)
    assert inputs.stored_size(tmp_path, stored.id) == (128, 64)


@pytest.mark.parametrize("image_id", ["../../etc/passwd", "a" * 63, "A" * 64, "0" * 64])
def test_an_unknown_or_hostile_id_is_refused(tmp_path, image_id):
    with pytest.raises(ImageInputError, match="no longer stored"):
        inputs.load(tmp_path, image_id)


def test_clean_up_keeps_waiting_jobs_pictures_and_recent_ones(tmp_path):
    old_kept, old_unused, recent = (
        inputs.store(encode(gradient(64 + 8 * i, 64)), tmp_path, max_side=1024).id for i in range(3)
    )
    day_ago = time.time() - 2 * 24 * 3600
    for image_id in (old_kept, old_unused):
        os.utime(tmp_path / f"{image_id}.png", (day_ago, day_ago))
    removed = inputs.clean_inputs(tmp_path, {old_kept})
    assert removed == [old_unused]
    assert {p.stem for p in tmp_path.glob("*.png")} == {old_kept, recent}
