"""The image loop's engine side: pictures users send (kept for image-to-image), the
upscalers a job may name, and requests rebuilt from a picture's generation parameters
(draw like this, vary, upscale). Both front ends reach it through the Engine facade.

Reading runs in a thread: decoding and SQLite must not hold up the bot's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import LoracleError
from engine.images.types import ImageInfo, ImageParameters, LikeRequest, StoredImage
from engine.kinds import Category

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.images.matching import Resolved


class Pictures:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- pictures in: what image-to-image starts from --------------------------------
    async def store_image(self, data: bytes) -> StoredImage:
        """Check and normalise a user's picture (engine.images.input) and keep it under
        <data_dir>/inputs/ for a job to start from; raises ImageInputError."""
        from engine.images.input import store

        pixels = int(self.engine.settings.max_input_megapixels * 1_000_000)

        def keep() -> StoredImage:  # the limit is read from SQLite: off the event loop too
            return store(data, self.engine.settings.inputs_dir, max_side=self.engine.admin.limits().max_size, max_pixels=pixels)

        return await asyncio.to_thread(keep)

    def upscalers(self) -> list[str]:
        """Names valid for `hires_upscaler`: "latent", "lanczos", then the library's usable
        upscaler models."""
        from engine.images.upscalers import BUILT_IN

        models = [e.name for e in self.engine.library.entries(Category.UPSCALER) if e.usable]
        return [*BUILT_IN, *models]

    def clean_inputs(self, store: Any) -> None:
        """Stored pictures no waiting job needs, untouched for a day, go (at start-up)."""
        from engine.images.input import clean_inputs

        waiting = store.rows(status=("queued", "running"))
        keep = {row.request.get("init_image") for row in waiting if isinstance(row.request, dict)}
        clean_inputs(self.engine.settings.inputs_dir, {k for k in keep if isinstance(k, str)})

    # -- from a picture to a request ----------------------------------------------------
    # Reading runs in a thread: decoding and SQLite must not hold up the bot's event loop.
    async def image_info(self, data: bytes, *, checkpoint: str | None = None, allow_nsfw: bool = True) -> ImageInfo:
        """A picture's parameters and each resource's match (hash, name or missing, with
        its CivitAI page) and verdict against `checkpoint` (None: the picture's own, else
        the default)."""
        from engine.images.like import notes_for, nsfw_notes
        from engine.images.parameters import read_image_parameters

        params = await asyncio.to_thread(read_image_parameters, data)
        resolved = await self.resolve(params, checkpoint)
        notes = [*params.warnings, *notes_for(resolved)]
        if not allow_nsfw:
            notes += await asyncio.to_thread(nsfw_notes, resolved, self.engine.knowledge)
        return ImageInfo(params, [r.match for r in resolved], notes)

    async def like_request(self, data: bytes, *, user_id: str, allow_nsfw: bool = True) -> LikeRequest:
        """A request that draws the picture again: same prompt, negative, seed, steps, CFG,
        sampler, size, clip skip, checkpoint and LoRAs at their weights."""
        from engine.images.like import build_request
        from engine.images.parameters import read_image_parameters

        params = await asyncio.to_thread(read_image_parameters, data)
        resolved = await self.resolve(params, None)
        return build_request(
            params, resolved, user_id=user_id, allow_nsfw=allow_nsfw,
            settings=self.engine.settings, limits=self.engine.admin.limits(), knowledge=self.engine.knowledge,
            upscalers=await self._known_upscalers(),
        )  # fmt: skip

    async def _known_upscalers(self) -> list[str]:
        return await asyncio.to_thread(self.upscalers)  # the library is SQLite: off the loop

    async def vary_request(self, data: bytes, *, strength: float, user_id: str, allow_nsfw: bool = True) -> LikeRequest:
        """like_request, started from the picture itself at `strength`, with a new seed."""
        like = await self.like_request(data, user_id=user_id, allow_nsfw=allow_nsfw)
        stored = await self.store_image(data)
        request = like.request
        request.init_image, request.strength, request.seed = stored.id, strength, None
        request.width, request.height = stored.width, stored.height
        # A variation is one pass from the picture: no hires on top, whatever it had.
        request.hires, request.hires_denoise, request.hires_steps, request.hires_upscaler = 1.0, None, None, None
        return like

    async def upscale_request(
        self, data: bytes, *, user_id: str, scale: float | None = None, upscaler: str | None = None, allow_nsfw: bool = True
    ) -> LikeRequest:
        """like_request as a hires pass over the picture itself: same seed, `scale` (None:
        the admin's default) with `upscaler` (None: the default)."""
        like = await self.like_request(data, user_id=user_id, allow_nsfw=allow_nsfw)
        stored = await self.store_image(data)
        request = like.request
        request.init_image, request.strength = stored.id, None
        request.width, request.height = stored.width, stored.height
        # An upscale is asked for: None means the admin's default scale even where the
        # hires fix is off by default for plain draws.
        request.hires = scale if scale is not None else self.engine.settings.hires_default_scale
        request.hires_upscaler = upscaler
        return like

    async def job_image(self, job_id: str, index: int = 0) -> bytes | None:
        """The PNG of a finished job's picture; None when the job or its file is gone."""

        def read() -> bytes | None:
            from engine.queue.store import DONE, JobStore

            row = JobStore(self.engine.dbs).get(job_id)
            images = row.result.get("images") if row is not None and row.status == DONE and isinstance(row.result, dict) else None
            if not isinstance(images, list) or not 0 <= index < len(images) or not isinstance(images[index], str):
                return None
            path = Path(images[index]).resolve()
            if self.engine.settings.outputs_dir.resolve() not in path.parents:
                return None  # only our own outputs are handed out, whatever a row says
            try:
                return path.read_bytes()
            except OSError:
                return None

        return await asyncio.to_thread(read)

    async def resolve(self, params: ImageParameters, checkpoint: str | None) -> list[Resolved]:
        from engine.images.matching import Matcher

        matcher = Matcher(self.engine.library, self.engine.knowledge, self.engine.civitai, self.engine.settings.civitai_base_url)

        def resolve() -> list[Resolved]:
            chosen = self.engine.find(checkpoint, Category.CHECKPOINT) if checkpoint is not None else None
            default = None
            with contextlib.suppress(LoracleError):  # no checkpoint at all: no verdicts
                default = self.engine.planner.checkpoints.choose(None)
            return matcher.resolve(params, chosen, default)

        resolved = await self.engine.indexing.settle(resolve, waiting=lambda found: any(r.entry is not None and r.entry.hash_pending for r in found))
        return await matcher.with_links(resolved)
