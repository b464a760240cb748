"""A user's picture kept for image-to-image: checked, normalised and stored as PNG.

MINIMAL STAND-IN written by the "like" branch so vary/upscale requests can be tested; the
"img" branch owns this module and its version replaces this one when both merge.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

from engine.errors import ImageInputError
from engine.i18n import Text
from engine.images.image_text import read_image_texts
from engine.images.types import StoredImage

_NOT_DECODED = Text("The picture could not be decoded ({reason}).", "無法解碼圖片（{reason}）。")


def store_image(data: bytes, inputs_dir: Path, max_size: int) -> StoredImage:
    """Check `data` (as read_image_texts does), flatten it to RGB, fit it within
    `max_size` on each side at multiples of 8, and keep it as <inputs_dir>/<sha256>.png."""
    read_image_texts(data)  # size, bombs, animation, truncation
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "P"):
                rgba = image.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
                image = flat
            image = image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageInputError(_NOT_DECODED, reason=str(exc)[:120]) from None
    scale = min(1.0, max_size / max(image.size))
    width = max(64, int(image.width * scale) // 8 * 8)
    height = max(64, int(image.height * scale) // 8 * 8)
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    png = buffer.getvalue()
    digest = hashlib.sha256(png).hexdigest()
    inputs_dir.mkdir(parents=True, exist_ok=True)
    target = inputs_dir / f"{digest}.png"
    if not target.exists():
        fd, tmp = tempfile.mkstemp(dir=inputs_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(png)
        os.replace(tmp, target)
    return StoredImage(digest, width, height)
