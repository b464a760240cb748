"""The image loop of the fake engine (`FakeEngine` inherits it): pictures in, requests out.

Believable, not clever: pictures are really opened with Pillow (not an image, animated or
too many pixels is refused like the engine does), kept as PNG under <data>/inputs/, and
their A1111 `parameters` text is read with the engine's own reader (engine.png_info).
Resources are matched against the fake library by hash first (AutoV2/AutoV3/full), then
by name. The FakeEngine writes the same infotext into every picture it "draws", so a
picture it made can be drawn again, varied and upscaled.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from engine.errors import ImageInputError, LibraryError
from engine.i18n import Message, Text
from engine.images.types import (
    ImageInfo,
    ImageParameters,
    LikeRequest,
    ResourceMatch,
    ResourceRef,
    StoredImage,
)
from engine.kinds import Category
from engine.planning.lora_weights import LoraRequest
from engine.png_info import PARAMETERS_KEY, lora_tags, parse_lora_hashes, parse_parameters
from engine.requests import DrawRequest
from engine.user_defaults import UserDefaults, UserDefaultsStore

if TYPE_CHECKING:
    from tests.bot.fakes import FakeEntry

MAX_PIXELS = 4096 * 4096
HIRES_DEFAULT = 1.5  # the fake admin's default hires scale

NOT_AN_IMAGE = Text("This file is not a picture Loracle can read.", "這個檔案不是 Loracle 能讀取的圖片。")
ANIMATED = Text("Animated pictures cannot be used; send a still PNG, JPEG or WEBP.", "不能使用動態圖片；請傳靜態的 PNG、JPEG 或 WEBP。")
TOO_MANY_PIXELS = Text("The picture is {width}×{height}; at most {limit} pixels are read.", "圖片為 {width}×{height}；最多只讀取 {limit} 像素。")
NO_PARAMETERS = Text(
    "This picture carries no generation parameters (no A1111, ComfyUI or CivitAI data).",
    "這張圖片沒有生成參數（沒有 A1111、ComfyUI 或 CivitAI 的資料）。",
)
MISSING = Text("“{name}” is not in the library; it was left out.", "「{name}」不在模型庫中，已略過。")


class FakeImageLoop:
    """Mixed into FakeEngine; uses its `settings`, `library`, `jobs`, `dbs`, `admin`,
    `find`, `calls`, `_maybe_fail`."""

    settings: Any
    library: list[FakeEntry]
    jobs: list[Any]
    dbs: Any
    admin: Any
    calls: list[tuple[str, Any]]
    civitai_by_hash: dict[str, str]

    def find(self, name: str, category: Category | str | None = None) -> FakeEntry: ...  # FakeEngine's

    def _maybe_fail(self, method: str) -> None: ...  # FakeEngine's

    # -- pictures --------------------------------------------------------------------
    def _open(self, data: bytes) -> Image.Image:
        try:
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise ImageInputError(TOO_MANY_PIXELS, width=image.width, height=image.height, limit=MAX_PIXELS)
            if getattr(image, "n_frames", 1) > 1:
                raise ImageInputError(ANIMATED)
            image.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageInputError(NOT_AN_IMAGE) from exc
        return image

    def _store(self, data: bytes) -> StoredImage:
        image = self._open(data).convert("RGB")
        width, height = max(64, image.width // 8 * 8), max(64, image.height // 8 * 8)
        image = image.resize((width, height))
        out = io.BytesIO()
        image.save(out, format="PNG")
        png = out.getvalue()
        digest = hashlib.sha256(png).hexdigest()
        folder = self.settings.root / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{digest}.png").write_bytes(png)
        return StoredImage(digest, width, height)

    async def store_image(self, data: bytes) -> StoredImage:
        self._maybe_fail("store_image")
        self.calls.append(("store_image", len(data)))
        return await asyncio.to_thread(self._store, data)

    def stored_size(self, image_id: str) -> tuple[int, int] | None:
        path = self.settings.root / "inputs" / f"{image_id}.png"
        if not path.exists():
            return None
        with Image.open(path) as image:
            return image.size

    def upscalers(self) -> list[str]:
        return ["latent", "lanczos"]

    async def job_image(self, job_id: str, index: int = 0) -> bytes | None:
        path = self.settings.outputs_dir / f"{job_id}-{index}.png"
        return await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else None)

    # -- reading a picture's parameters ------------------------------------------------
    def _parameters(self, data: bytes) -> ImageParameters:
        text = self._open(data).info.get(PARAMETERS_KEY)
        if not isinstance(text, str) or not text.strip():
            raise ImageInputError(NO_PARAMETERS)
        fields = parse_parameters(text)
        prompt = fields.get("Prompt", "")
        hashes = parse_lora_hashes(fields.get("Lora hashes", ""))
        loras = [ResourceRef("lora", name, hashes.get(name), weight) for name, weight in lora_tags(prompt)]
        size = fields.get("Size", "")
        width, _, height = size.partition("x")
        return ImageParameters(
            source="loracle" if fields.get("Version", "").startswith("loracle") else "a1111",
            prompt=_without_tags(prompt),
            negative=fields.get("Negative prompt", ""),
            seed=_int(fields.get("Seed")),
            steps=_int(fields.get("Steps")),
            cfg=_float(fields.get("CFG scale")),
            sampler=fields.get("Sampler"),
            width=_int(width),
            height=_int(height),
            checkpoint=ResourceRef("checkpoint", fields.get("Model"), fields.get("Model hash"))
            if fields.get("Model") or fields.get("Model hash")
            else None,
            loras=loras,
        )

    def _match(self, ref: ResourceRef) -> tuple[FakeEntry | None, str]:
        category = Category.CHECKPOINT if ref.kind == "checkpoint" else Category.LORA
        candidates = [e for e in self.library if e.category == category]
        if ref.hash:
            digest = ref.hash.upper()
            for entry in candidates:
                if entry.sha256.startswith(digest):
                    return entry, "hash"
        if ref.name:
            try:
                return self.find(ref.name, category), "name"
            except LibraryError:
                pass
        return None, "missing"

    def _info(self, data: bytes, checkpoint: str | None) -> tuple[ImageParameters, list[ResourceMatch], FakeEntry | None]:
        from tests.bot.fakes import verdict

        params = self._parameters(data)
        matches: list[ResourceMatch] = []
        ckpt: FakeEntry | None = None
        if params.checkpoint is not None:
            ckpt, how = self._match(params.checkpoint)
            matches.append(self._resource(params.checkpoint, ckpt, how, None))
        target = ckpt
        if checkpoint:
            target = self.find(checkpoint, Category.CHECKPOINT)
        elif target is None:
            target = self.find(self.admin.default_checkpoint() or "nova_orange", Category.CHECKPOINT)
        for ref in params.loras:
            entry, how = self._match(ref)
            matches.append(self._resource(ref, entry, how, verdict(entry, target) if entry else None))
        return params, matches, ckpt

    def _resource(self, ref: ResourceRef, entry: FakeEntry | None, how: str, verdict: str | None) -> ResourceMatch:
        url = self.civitai_by_hash.get((ref.hash or "").lower()) if entry is None else None
        return ResourceMatch(ref, how, entry.name if entry else None, verdict, url)  # type: ignore[arg-type]

    async def image_info(self, data: bytes, *, checkpoint: str | None = None, allow_nsfw: bool = True) -> ImageInfo:
        self._maybe_fail("image_info")
        self.calls.append(("image_info", checkpoint))
        params, matches, _ = await asyncio.to_thread(self._info, data, checkpoint)
        return ImageInfo(params, matches)

    async def like_request(self, data: bytes, *, user_id: str, allow_nsfw: bool = True) -> LikeRequest:
        self._maybe_fail("like_request")
        self.calls.append(("like_request", user_id))
        params, matches, ckpt = await asyncio.to_thread(self._info, data, None)
        weights = {(ref.name or "").lower(): ref.weight for ref in params.loras}
        loras = [
            LoraRequest(m.matched, weights.get((m.ref.name or "").lower()))
            for m in matches
            if m.ref.kind == "lora" and m.matched
        ]
        warnings = [Message.of(MISSING, name=m.ref.name or m.ref.hash or "?") for m in matches if m.how == "missing"]
        request = DrawRequest(
            prompt=params.prompt,
            negative=params.negative,
            checkpoint=ckpt.name if ckpt else None,
            loras=loras,
            seed=params.seed,
            steps=params.steps,
            cfg=params.cfg,
            width=params.width,
            height=params.height,
            sampler=params.sampler,
            user_id=user_id,
            allow_nsfw=allow_nsfw,
        )
        return LikeRequest(request, matches, warnings)

    async def vary_request(self, data: bytes, *, strength: float, user_id: str, allow_nsfw: bool = True) -> LikeRequest:
        self.calls.append(("vary_request", strength))
        like = await self.like_request(data, user_id=user_id, allow_nsfw=allow_nsfw)
        stored = await self.store_image(data)
        like.request.init_image, like.request.strength = stored.id, strength
        like.request.seed = random.randint(0, 2**32 - 1)
        return like

    async def upscale_request(
        self,
        data: bytes,
        *,
        user_id: str,
        scale: float | None = None,
        upscaler: str | None = None,
        allow_nsfw: bool = True,
    ) -> LikeRequest:
        self.calls.append(("upscale_request", scale))
        like = await self.like_request(data, user_id=user_id, allow_nsfw=allow_nsfw)
        stored = await self.store_image(data)
        like.request.init_image = stored.id
        like.request.hires = scale if scale is not None else HIRES_DEFAULT
        like.request.hires_upscaler = upscaler
        return like

    # -- per-user defaults: the engine's own store, over the fake's SQLite file ----------
    def user_defaults(self, user_id: str) -> UserDefaults:
        return UserDefaultsStore(self.dbs, self.settings).get(user_id)

    def set_user_defaults(self, user_id: str, **values: Any) -> UserDefaults:
        self.calls.append(("set_user_defaults", (user_id, values)))
        if isinstance(values.get("checkpoint"), str) and values["checkpoint"].strip():
            values["checkpoint"] = self.find(values["checkpoint"], Category.CHECKPOINT).name
        return UserDefaultsStore(self.dbs, self.settings).set(user_id, self.admin.limits(), **values)

    def clear_user_defaults(self, user_id: str) -> None:
        UserDefaultsStore(self.dbs, self.settings).clear(user_id)


def _without_tags(prompt: str) -> str:
    import re

    return re.sub(r"\s*<lora:[^>]*>", "", prompt).strip()


def _int(text: str | None) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(str(text).strip())
    except (TypeError, ValueError):
        return None
