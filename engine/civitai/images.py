"""Preview images from CivitAI's CDN, kept on disk so the bot can show them again offline."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from yarl import URL

from engine.civitai.http import CivitaiHttp, safe_url
from engine.civitai.transport import TooLarge, TransportError, read_limited

log = logging.getLogger(__name__)


class ImageCache:
    def __init__(self, http: CivitaiHttp, folder: Path) -> None:
        self.http = http
        self.folder = folder

    def path_for(self, url: str) -> Path:
        return self.folder / (hashlib.sha256(url.encode()).hexdigest()[:40] + ".img")

    async def fetch(self, url: str, max_bytes: int) -> bytes | None:
        path = self.path_for(url)
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError:
                data = b""
            if data and len(data) <= max_bytes:
                return data
        try:
            scheme = URL(url).scheme
        except (ValueError, TypeError):
            return None
        if self.http.settings.offline or scheme not in ("http", "https"):
            return None
        try:
            resp = await self.http.send("GET", url, timeout=self.http.api_timeout())
            try:
                if resp.status != 200:
                    log.debug("image %s -> HTTP %s", safe_url(url), resp.status)
                    return None
                data = await read_limited(resp, max_bytes)
            finally:
                resp.release()
        except (TimeoutError, TransportError, TooLarge) as exc:
            log.debug("image %s failed: %s", safe_url(url), type(exc).__name__)
            return None
        if not looks_like_image(data):
            return None
        self._keep(path, data)
        return data

    def _keep(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except OSError as exc:  # a full disk must not cost the user the preview
            log.warning("could not keep preview image: %s", type(exc).__name__)


def looks_like_image(data: bytes) -> bool:
    return (
        data.startswith(b"\x89PNG\r\n\x1a\n")
        or data.startswith(b"\xff\xd8\xff")
        or data.startswith((b"GIF87a", b"GIF89a"))
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    )
