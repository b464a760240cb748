"""CivitAI: API bodies, the SQLite answer cache, the client, references and downloads."""

from __future__ import annotations

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

__all__ = [
    "AIR_ECOSYSTEMS",
    "CacheEntry",
    "CivitaiCache",
    "CivitaiClient",
    "CivitaiRef",
    "FileHashes",
    "FileMetadata",
    "Image",
    "Lookup",
    "Model",
    "ModelFile",
    "ModelVersion",
    "VersionModel",
    "air_architecture",
    "by_hash_key",
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
