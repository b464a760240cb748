"""CivitAI: API bodies, the SQLite answer cache, the client over a transport, references
and downloads."""

from __future__ import annotations

from engine.civitai.body import BadBody, decode_json
from engine.civitai.cache import CacheEntry, CivitaiCache, by_hash_key, model_key, version_key
from engine.civitai.client import CivitaiClient, Lookup, parse_retry_after
from engine.civitai.download import disposition_name, download_version, pick_file, safe_file_name
from engine.civitai.models import (
    AIR_ECOSYSTEMS,
    FileHashes,
    FileMetadata,
    Image,
    Model,
    ModelFile,
    ModelVersion,
    VersionModel,
    air_architecture,
    parse_model,
    parse_version,
)
from engine.civitai.refs import CivitaiRef, parse_civitai_ref
from engine.civitai.transport import (
    AiohttpTransport,
    MockTransport,
    Request,
    Response,
    Timeout,
    Transport,
    TransportError,
)

__all__ = [
    "AIR_ECOSYSTEMS",
    "AiohttpTransport",
    "BadBody",
    "CacheEntry",
    "CivitaiCache",
    "CivitaiClient",
    "CivitaiRef",
    "FileHashes",
    "FileMetadata",
    "Image",
    "Lookup",
    "MockTransport",
    "Model",
    "ModelFile",
    "ModelVersion",
    "Request",
    "Response",
    "Timeout",
    "Transport",
    "TransportError",
    "VersionModel",
    "air_architecture",
    "by_hash_key",
    "decode_json",
    "disposition_name",
    "download_version",
    "model_key",
    "parse_civitai_ref",
    "parse_model",
    "parse_retry_after",
    "parse_version",
    "pick_file",
    "safe_file_name",
    "version_key",
]
