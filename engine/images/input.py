"""A user's picture, checked and normalised before any job may start from it.

Pictures come from strangers, so everything is refused before it costs memory: the byte
size first, then the dimensions from the header (Pillow reads them without decoding), and
only then the pixels. Only plain raster formats are opened (`_FORMATS`): Pillow can also
read PostScript through Ghostscript, which is not a door to open to the internet.

Animated pictures (GIF, WebP, APNG) are refused rather than reduced to their first frame:
the first frame of an animation is often not what the user thinks they sent. Phone JPEGs
that carry a second "multi-picture" frame (MPO) are ordinary photos and keep frame one.

A stored picture is RGB (transparency flattened on white, as a browser shows it), turned
upright (EXIF orientation), no larger than the size limit on its long side, both sides a
multiple of 8 (SDXL's latent cells), saved as a PNG without metadata (a phone photo's EXIF
carries its GPS position) under `<data_dir>/inputs/<sha256>.png`.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.atomic import write_bytes_atomic
from engine.errors import ImageInputError
from engine.i18n import Text
from engine.images.types import StoredImage

_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO
# Discord's upload limit for servers without boosts; anything larger is not a picture a
# user meant to send, and reading it would only cost memory.
MAX_INPUT_BYTES = 25 * 1024 * 1024
# 8K x 5K: every camera and screenshot; a "bomb" (a tiny file declaring 50000x50000 pixels
# that would inflate to gigabytes) is refused from its header, before any decoding.
MAX_INPUT_PIXELS = 40_000_000
MIN_SIDE = 64
SIZE_STEP = 8
# A stored picture no waiting job needs is removed at start-up once it is this old.
KEEP_UNUSED_SECONDS = 24 * 3600
_ID = re.compile(r"^[0-9a-f]{64}$")

_TOO_BIG_FILE = Text(
    "This file is {size} MB; pictures up to {limit} MB can be used.",
    "這個檔案有 {size} MB；只能使用 {limit} MB 以內的圖片。",
)
_NOT_A_PICTURE = Text(
    "This file is not a picture Loracle can read (PNG, JPEG, WebP, GIF, BMP or TIFF).",
    "這個檔案不是 Loracle 能讀取的圖片（PNG、JPEG、WebP、GIF、BMP 或 TIFF）。",
)
_TOO_MANY_PIXELS = Text(
    "This picture says it is {width}×{height} pixels; pictures up to {limit} megapixels can be used. "
    "Save a smaller copy and try again.",
    "這張圖片標示為 {width}×{height} 像素；只能使用 {limit} 百萬像素以內的圖片。請另存較小的版本再試。",
)
_TOO_SMALL = Text(
    "This picture is {width}×{height} pixels; each side must be at least {low} pixels once it fits "
    "within {limit} pixels.",
    "這張圖片是 {width}×{height} 像素；縮放到 {limit} 像素以內後，每邊至少要 {low} 像素。",
)
_BOMB = Text(
    "This picture says it holds {megapixels} megapixels; pictures up to {limit} megapixels can be used. "
    "Save a smaller copy and try again.",
    "這張圖片標示有 {megapixels} 百萬像素；只能使用 {limit} 百萬像素以內的圖片。請另存較小的版本再試。",
)
_DAMAGED = Text(
    "This picture is damaged or incomplete (the file ends early or its data is corrupt). "
    "Send the original file again.",
    "這張圖片已損壞或不完整（檔案提早結束或資料錯誤）。請重新傳送原始檔案。",
)
_ANIMATED = Text(
    "This picture is animated ({frames} frames). Save the frame you want as a PNG and send that.",
    "這張圖片是動畫（{frames} 格）。請把想要的那一格存成 PNG 再傳送。",
)
_GONE = Text(
    "The picture this job starts from is no longer stored; send it again.",
    "這項工作所用的圖片已不存在；請重新傳送。",
)


def normalise(data: bytes, *, max_side: int, max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """The picture in `data` as an upright RGB image whose sides are multiples of 8 within
    `max_side`; ImageInputError for anything that cannot be used."""
    if len(data) > MAX_INPUT_BYTES:
        raise ImageInputError(
            _TOO_BIG_FILE, size=math.ceil(len(data) / 2**20), limit=MAX_INPUT_BYTES // 2**20
        )
    with warnings.catch_warnings():
        # Pillow warns (DecompressionBombWarning) between its two limits; ours is stricter.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_FORMATS)
        except Image.DecompressionBombError as exc:
            # Pillow's own ceiling (2 x MAX_IMAGE_PIXELS), hit before we could see the size
            found = re.search(r"\((\d+) pixels\)", str(exc))
            declared = round(int(found.group(1)) / 10**6) if found else "?"
            raise ImageInputError(_BOMB, megapixels=declared, limit=max_pixels // 10**6) from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ImageInputError(_NOT_A_PICTURE) from exc
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageInputError(_TOO_MANY_PIXELS, width=width, height=height, limit=max_pixels // 10**6)
            frames = int(getattr(image, "n_frames", 1) or 1)
            if getattr(image, "is_animated", False) and image.format != "MPO":
                raise ImageInputError(_ANIMATED, frames=frames)
            try:
                image.load()
                upright = ImageOps.exif_transpose(image) or image
                rgb = _flatten(upright)
            except Image.DecompressionBombError as exc:
                raise ImageInputError(_TOO_MANY_PIXELS, width=width, height=height, limit=max_pixels // 10**6) from exc
            except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated, corrupt data
                raise ImageInputError(_DAMAGED) from exc
    return fit(rgb, max_side)


def fit(image: Image.Image, max_side: int) -> Image.Image:
    """Scaled down (never up) so the long side fits `max_side`, then centre-cropped by at
    most 7 pixels per side to multiples of 8: the aspect is kept, nothing is stretched."""
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
    target = (scaled[0] // SIZE_STEP * SIZE_STEP, scaled[1] // SIZE_STEP * SIZE_STEP)
    if min(target) < MIN_SIDE:
        raise ImageInputError(_TOO_SMALL, width=width, height=height, low=MIN_SIDE, limit=max_side)
    if scaled != image.size:
        image = image.resize(scaled, Image.Resampling.LANCZOS)
    if target != scaled:
        left, top = (scaled[0] - target[0]) // 2, (scaled[1] - target[1]) // 2
        image = image.crop((left, top, left + target[0], top + target[1]))
    return image


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white (how the picture looked to its sender)."""
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode in ("RGB", "L") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def store(data: bytes, inputs_dir: Path, *, max_side: int, max_pixels: int = MAX_INPUT_PIXELS) -> StoredImage:
    """Normalise `data` and keep it as `<inputs_dir>/<sha256>.png` (the same picture once)."""
    image = normalise(data, max_side=max_side, max_pixels=max_pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    png = buffer.getvalue()
    digest = hashlib.sha256(png).hexdigest()
    inputs_dir.mkdir(parents=True, exist_ok=True)
    path = inputs_dir / f"{digest}.png"
    if path.exists():
        path.touch()  # in use again: the start-up clean-up measures age from here
    else:
        write_bytes_atomic(path, png)
    return StoredImage(id=digest, width=image.width, height=image.height)


def input_path(inputs_dir: Path, image_id: str) -> Path:
    """Where a stored picture lives; ImageInputError for an id that is not one of ours
    (ids travel through the queue's database and the bot's buttons: never a path)."""
    if not _ID.match(image_id):
        raise ImageInputError(_GONE)
    return inputs_dir / f"{image_id}.png"


def load(inputs_dir: Path, image_id: str) -> Image.Image:
    """A stored picture, decoded, for the runner."""
    path = input_path(inputs_dir, image_id)
    try:
        with Image.open(path, formats=("PNG",)) as image:
            return image.convert("RGB")
    except FileNotFoundError as exc:
        raise ImageInputError(_GONE) from exc


def stored_size(inputs_dir: Path, image_id: str) -> tuple[int, int]:
    """(width, height) of a stored picture from its header, for planning."""
    path = input_path(inputs_dir, image_id)
    try:
        with Image.open(path, formats=("PNG",)) as image:
            return image.size
    except FileNotFoundError as exc:
        raise ImageInputError(_GONE) from exc


def clean_inputs(
    inputs_dir: Path, keep: Iterable[str], *, older_than: float = KEEP_UNUSED_SECONDS, now: float | None = None
) -> list[str]:
    """Remove stored pictures no waiting job names (`keep`) and untouched for `older_than`
    seconds; returns the removed ids. Run at start-up, after the queue's recovery."""
    if not inputs_dir.is_dir():
        return []
    keep_ids = set(keep)
    limit = (time.time() if now is None else now) - older_than
    removed = []
    for path in inputs_dir.glob("*.png"):
        if path.stem in keep_ids:
            continue
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                removed.append(path.stem)
        except FileNotFoundError:
            continue
    return removed
