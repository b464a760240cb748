"""Turning what users paste (page links, download links, AIRs, ids) into CivitAI ids."""

from __future__ import annotations

import re
from dataclasses import dataclass

from yarl import URL

from engine.errors import RequestError
from engine.i18n import Text

# CivitAI's domains: civitai.green for safe-for-work content and, since April 2026,
# civitai.red for 18+ content; their links have the same paths and ids as civitai.com's.
KNOWN_HOSTS = frozenset(
    {"civitai.com", "www.civitai.com", "civitai.green", "www.civitai.green", "civitai.red", "www.civitai.red"}
)

NOT_A_REF = Text(
    "“{text}” is not a CivitAI link. Paste a model page link "
    "(https://civitai.com/models/123?modelVersionId=456), a download link, an AIR "
    "(urn:air:sdxl:lora:civitai:123@456) or a version number.",
    "「{text}」不是 CivitAI 連結。請貼上模型頁面連結"
    "（https://civitai.com/models/123?modelVersionId=456）、下載連結、AIR"
    "（urn:air:sdxl:lora:civitai:123@456）或版本編號。",
)

_AIR_RE = re.compile(
    r"^urn:air:[a-z0-9_.\-]+:[a-z0-9_\-]+:civitai:(?P<model>\d+)(?:@(?P<version>\d+))?(?:[+.][^\s]*)?$",
    re.IGNORECASE,
)
_PATHS = (
    re.compile(r"^/models/(?P<model>\d+)(?:/[^/]*)?/?$"),
    re.compile(r"^/api/v1/models/(?P<model>\d+)/?$"),
    re.compile(r"^/api/download/models/(?P<version>\d+)/?$"),
    re.compile(r"^/api/v1/model-versions/(?P<version>\d+)/?$"),
    # CivitAI's own short page for a version (it redirects there during early access).
    re.compile(r"^/model-versions/(?P<version>\d+)/?$"),
)
_DIGITS = re.compile(r"[0-9]{1,16}")
_MAX_ID = 2**53  # CivitAI ids are JavaScript numbers


@dataclass(frozen=True)
class CivitaiRef:
    model_id: int | None
    version_id: int | None


def parse_civitai_ref(text: str, *, base_url: str | None = None) -> CivitaiRef:
    """Read a CivitAI reference; `base_url` is the configured mirror, accepted as well."""
    raw = (text or "").strip().strip("<>")  # Discord users wrap links in <> to hide embeds
    ref = _parse(raw, base_url)
    if ref is None or (ref.model_id is None and ref.version_id is None):
        raise RequestError(NOT_A_REF, text=_shorten(raw))
    return ref


def _parse(raw: str, base_url: str | None) -> CivitaiRef | None:
    if not raw:
        return None
    if _DIGITS.fullmatch(raw):
        return CivitaiRef(None, _id(raw))
    air = _AIR_RE.match(raw)
    if air:
        return CivitaiRef(_id(air["model"]), _id(air["version"]))
    if "://" not in raw and raw.split("/", 1)[0].lower() in KNOWN_HOSTS:
        raw = "https://" + raw
    try:
        url = URL(raw)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    path = _path_on_civitai(url, base_url)
    if path is None:
        return None
    for pattern in _PATHS:
        match = pattern.match(path)
        if not match:
            continue
        groups = match.groupdict()
        model_id = _id(groups.get("model"))
        version_id = _id(groups.get("version")) or _id(url.query.get("modelVersionId"))
        return CivitaiRef(model_id, version_id)
    return None


def _path_on_civitai(url: URL, base_url: str | None) -> str | None:
    """The URL's path relative to CivitAI (or the mirror), or None for any other site."""
    if (url.host or "").lower() in KNOWN_HOSTS:
        return url.path
    if base_url:
        base = URL(base_url.rstrip("/"))
        if base.host and url.origin() == base.origin():
            prefix = base.path.rstrip("/")
            if not prefix:
                return url.path
            if url.path == prefix or url.path.startswith(prefix + "/"):
                return url.path[len(prefix) :] or "/"
    return None


def _id(value: str | None) -> int | None:
    if not value or not _DIGITS.fullmatch(value):
        return None
    number = int(value)
    return number if 0 < number < _MAX_ID else None


def _shorten(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "…"
