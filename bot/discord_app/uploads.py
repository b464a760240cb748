"""Fitting finished pictures into the upload limit that arrives with each interaction.

Every interaction carries the largest upload Discord accepts there (25 MiB by default,
more in boosted servers, less elsewhere). An SDXL PNG is a few MB, but four of them, or a
large size, can exceed it. Rather than fail, we fall back to JPEG at falling quality and
then to smaller pictures; the original PNGs (with their generation data) stay on disk.
Encoding is CPU work: call `fit_images` in a thread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bot.discord_app import texts as T
from engine.i18n import Message

# Room left for the JSON part of the multipart request (embed, components, filenames):
# an embed is at most 6000 characters, 24 KB in UTF-8.
OVERHEAD = 32 * 1024
JPEG_QUALITIES = (92, 85, 75, 60)
SCALES = (0.75, 0.5, 0.35, 0.25)
MIN_SIDE = 128


@dataclass
class Upload:
    files: list[tuple[str, bytes]]  # (filename, content)
    format: str  # "png" or "jpeg"
    note: Message | None = None  # why the pictures are not the original PNGs

    @property
    def total(self) -> int:
        return sum(len(data) for _, data in self.files)


class TooLargeError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"pictures do not fit in {limit} bytes")
        self.limit = limit


def fit_images(paths: list[Path], limit: int, *, stem: str = "loracle") -> Upload:
    """The pictures as they fit in `limit` bytes together: the PNGs themselves if they
    fit, else JPEGs of falling quality, else smaller JPEGs. Raises TooLargeError."""
    budget = limit - min(OVERHEAD, limit // 10)
    pngs = [Path(p).read_bytes() for p in paths]
    names = [f"{stem}-{i + 1}" if len(paths) > 1 else stem for i in range(len(paths))]
    if sum(map(len, pngs)) <= budget:
        return Upload([(f"{n}.png", data) for n, data in zip(names, pngs, strict=True)], "png")
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data in pngs]
    for quality in JPEG_QUALITIES:
        jpegs = [_jpeg(image, quality) for image in images]
        if sum(map(len, jpegs)) <= budget:
            note = Message.of(T.FIT_JPEG, limit=T.human_size(limit))
            return Upload([(f"{n}.jpg", data) for n, data in zip(names, jpegs, strict=True)], "jpeg", note)
    for scale in SCALES:
        size = (max(int(images[0].width * scale), 1), max(int(images[0].height * scale), 1))
        if min(size) < MIN_SIDE:
            break
        jpegs = [_jpeg(image.resize(_scaled(image, scale), Image.Resampling.LANCZOS), 80) for image in images]
        if sum(map(len, jpegs)) <= budget:
            note = Message.of(T.FIT_SCALED, limit=T.human_size(limit), width=size[0], height=size[1])
            return Upload([(f"{n}.jpg", data) for n, data in zip(names, jpegs, strict=True)], "jpeg", note)
    raise TooLargeError(limit)


def _scaled(image: Image.Image, scale: float) -> tuple[int, int]:
    return max(int(image.width * scale), 1), max(int(image.height * scale), 1)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()
