"""CivitAI's public API bodies as tolerant pydantic models.

CivitAI's bodies change shape over the years (2022 bodies lack `air`, `AutoV3` and
`baseModelType`; `.civitai.info` sidecars carry empty strings for dates; `/models/{id}`
versions lack `modelId` and `model`), and cached bodies outlive the API version that wrote
them. So every field except the object's own `id` is optional, a value of the wrong type
becomes None instead of failing the whole body, and unknown fields are ignored.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from engine.kinds import Architecture

T = TypeVar("T")


# Descriptions run to tens of KB of HTML; nothing CivitAI sends is longer than this, and a
# multi-megabyte "name" would only travel on into embeds, logs and prompts.
MAX_FIELD_CHARS = 100_000
MAX_WORD_CHARS = 1_000  # a trigger word is a few tokens


def _or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # One odd field (an empty date, a string where a number belongs) must not cost us
    # the whole body: the rest of it is still good evidence.
    if value is None or (isinstance(value, str) and (not value.strip() or len(value) > MAX_FIELD_CHARS)):
        return None
    try:
        return handler(value)
    except ValidationError:
        return None


def _items(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # A list where one entry is broken keeps the others.
    if not isinstance(value, list):
        return []
    kept = []
    for item in value:
        if item is None:
            continue
        try:
            kept.append(handler([item])[0])
        except ValidationError:
            continue
    return kept


def _words(value: Any) -> Any:
    if not isinstance(value, list):
        return []
    return [w for w in value if isinstance(w, str) and w.strip() and len(w) <= MAX_WORD_CHARS]


Opt = Annotated[T | None, WrapValidator(_or_none)]
Items = Annotated[list[T], WrapValidator(_items)]
Words = Annotated[list[str], BeforeValidator(_words)]


class _Body(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )


_HEX_HASH = re.compile(r"[0-9A-F]{1,64}")
HASH_KEYS = ("AutoV1", "AutoV2", "AutoV3", "SHA256", "CRC32", "BLAKE3")


class FileHashes(_Body):
    """A file's hashes under CivitAI's own key names (all upper-case hex)."""

    autov1: Opt[str] = Field(default=None, alias="AutoV1")
    autov2: Opt[str] = Field(default=None, alias="AutoV2")
    autov3: Opt[str] = Field(default=None, alias="AutoV3")
    sha256: Opt[str] = Field(default=None, alias="SHA256")
    crc32: Opt[str] = Field(default=None, alias="CRC32")
    blake3: Opt[str] = Field(default=None, alias="BLAKE3")

    @model_validator(mode="before")
    @classmethod
    def _from_pairs(cls, data: Any) -> Any:
        # CivitAI's internal APIs send [{"type": "AutoV2", "hash": "..."}] instead of a map;
        # keys are matched case-insensitively because third-party sidecars vary.
        if isinstance(data, list):
            data = {
                str(item.get("type")): item.get("hash")
                for item in data
                if isinstance(item, dict) and item.get("type")
            }
        if isinstance(data, dict):
            canonical = {key.upper(): key for key in HASH_KEYS}
            data = {canonical.get(str(k).upper(), k): v for k, v in data.items()}
        return data

    @field_validator("*", mode="after")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        # Hashes become cache keys and are compared with ours: hex of a sane length only.
        hashed = value.strip().upper() if value else ""
        return hashed if _HEX_HASH.fullmatch(hashed) else None

    def values(self) -> set[str]:
        return {v for v in (self.autov1, self.autov2, self.autov3, self.sha256, self.crc32, self.blake3) if v}


class FileMetadata(_Body):
    format: Opt[str] = None  # "SafeTensor" | "PickleTensor" | "Diffusers" | "Core ML" | "Other"
    fp: Opt[str] = None  # "fp16" | "fp32" | "bf16" | ...
    size: Opt[str] = None  # "full" | "pruned"


class ModelFile(_Body):
    id: Opt[int] = None
    name: Opt[str] = None
    size_kb: Opt[float] = Field(default=None, alias="sizeKB")
    type: Opt[str] = None  # "Model" | "Training Data" | "VAE" | "Config" | ...
    primary: Opt[bool] = None
    download_url: Opt[str] = None
    hashes: FileHashes = Field(default_factory=FileHashes)
    metadata: FileMetadata = Field(default_factory=FileMetadata)
    pickle_scan_result: Opt[str] = None
    virus_scan_result: Opt[str] = None

    @field_validator("size_kb", mode="after")
    @classmethod
    def _plausible_size(cls, value: float | None) -> float | None:
        # A size decides whether a download is refused before it starts; a negative or
        # petabyte-sized one is no size at all (and 1e308 KB overflows into bytes).
        return value if value is not None and 0 <= value <= _MAX_SIZE_KB else None

    @field_validator("hashes", "metadata", mode="before")
    @classmethod
    def _empty_object(cls, value: Any) -> Any:
        return value if isinstance(value, (dict, list)) else {}

    @property
    def size_bytes(self) -> int | None:
        return None if self.size_kb is None else int(self.size_kb * 1024)

    @property
    def is_safetensors(self) -> bool:
        fmt = (self.metadata.format or "").lower()
        name = (self.name or "").lower()
        if name.endswith(PICKLE_SUFFIXES):
            return False
        return fmt == "safetensor" or (not fmt and name.endswith(".safetensors"))

    @property
    def is_pickle(self) -> bool:
        fmt = (self.metadata.format or "").lower()
        return fmt == "pickletensor" or (self.name or "").lower().endswith(PICKLE_SUFFIXES)


_MAX_SIZE_KB = 1024.0**3  # a terabyte
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")


class VersionModel(_Body):
    """The parent model as embedded in a model-version body."""

    name: Opt[str] = None
    type: Opt[str] = None  # "LORA" | "Checkpoint" | "LoCon" | "DoRA" | ...
    nsfw: Opt[bool] = None
    poi: Opt[bool] = None
    # "Archived" (CivitAI then serves no files and no download link) | "TakenDown"
    # (no images); absent for ordinary models.
    mode: Opt[str] = None
    # "Merge" | "Trained": CivitAI's "Checkpoint Merge" / "Checkpoint Trained", on model
    # bodies of checkpoints (its picker and model pages carry it; copied here from Model).
    checkpoint_type: Opt[str] = None

    @property
    def archived(self) -> bool:
        return (self.mode or "").strip().lower() == "archived"


# Older bodies describe an image's nsfw-ness as a bool or a word; newer ones as a level
# bit (1 PG, 2 PG-13, 4 R, 8 X, 16 the strictest rating, 32 blocked). An unknown "true" is
# treated as the strictest level so that it is never shown where nsfw is not allowed.
_NSFW_WORDS = {"none": 1, "false": 1, "soft": 2, "mature": 4, "x": 8, "true": 16}
_SFW_LEVELS = 1 | 2  # CivitAI's sfwBrowsingLevelsFlag: PG and PG-13


class MetaResource(_Body):
    """A resource an example image was made with, as its generation metadata lists it."""

    name: Opt[str] = None
    type: Opt[str] = None  # "lora" | "model" | "embed" | ...
    weight: Opt[float] = None
    strength: Opt[float] = None
    hash: Opt[str] = None  # usually the AutoV2
    model_version_id: Opt[int] = None  # civitaiResources entries name the version instead


class ImageMeta(_Body):
    """The parts of an example image's generation metadata that say how a LoRA was used."""

    prompt: Opt[str] = None
    resources: Items[MetaResource] = Field(default_factory=list)
    civitai_resources: Items[MetaResource] = Field(default_factory=list)
    additional_resources: Items[MetaResource] = Field(default_factory=list)


class VersionSettings(_Body):
    """CivitAI's recommended LoRA strength for a version (its generator's slider)."""

    strength: Opt[float] = None
    min_strength: Opt[float] = None
    max_strength: Opt[float] = None


class Image(_Body):
    url: Opt[str] = None
    nsfw_level: Opt[int] = None
    width: Opt[int] = None
    height: Opt[int] = None
    type: Opt[str] = None  # "image" | "video"
    meta: Opt[ImageMeta] = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_nsfw(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("nsfwLevel") is None and "nsfw" in data:
            level = _NSFW_WORDS.get(str(data["nsfw"]).strip().lower())
            if level is not None:
                data = {**data, "nsfwLevel": level}
        return data

    def thumbnail_url(self, width: int = 450) -> str | None:
        """The same image scaled down by CivitAI's image CDN (its URLs carry the width)."""
        if not self.url:
            return None
        if re.search(r"/width=\d+/", self.url):
            return re.sub(r"/width=\d+/", f"/width={width}/", self.url, count=1)
        return self.url.replace("/original=true/", f"/width={width}/", 1)


class Stats(_Body):
    download_count: Opt[int] = None
    thumbs_up_count: Opt[int] = None
    thumbs_down_count: Opt[int] = None
    rating: Opt[float] = None
    rating_count: Opt[int] = None


# The ecosystem segment of an AIR is CivitAI's *root* ecosystem, lower-cased (Pony,
# Illustrious and NoobAI are children of SDXL, Pony V7 of AuraFlow). Bodies written
# before CivitAI's 2025 ecosystem rewrite still say "pony", so the children are mapped too.
AIR_ECOSYSTEMS: dict[str, Architecture] = {
    "sd1": Architecture.SD1,
    "sd2": Architecture.SD2,
    "sdxl": Architecture.SDXL,
    "sdxldistilled": Architecture.SDXL,
    "pony": Architecture.SDXL,
    "illustrious": Architecture.SDXL,
    "noobai": Architecture.SDXL,
    "flux1": Architecture.FLUX,
    "fluxkrea": Architecture.FLUX,
    "flux1kontext": Architecture.FLUX,
    "chroma": Architecture.FLUX,
    "sd3": Architecture.SD3,
    "sd3_5m": Architecture.SD3,
    "playgroundv2": Architecture.SDXL,
    "auraflow": Architecture.AURAFLOW,
    "ponyv7": Architecture.AURAFLOW,
    "other": Architecture.UNKNOWN,
}

AIR_RE = re.compile(
    r"^urn:air:(?P<ecosystem>[a-z0-9_.\-]+):(?P<type>[a-z0-9_\-]+):(?P<source>[a-z0-9_\-]+):"
    r"(?P<id>[^@\s]+)(?:@(?P<version>[^+.\s]+))?",
    re.IGNORECASE,
)


def air_architecture(air: str | None) -> Architecture:
    """Architecture named by an AIR; OTHER for ecosystems we do not draw with."""
    match = AIR_RE.match(air.strip()) if air else None
    if not match:
        return Architecture.UNKNOWN
    return AIR_ECOSYSTEMS.get(match["ecosystem"].lower(), Architecture.OTHER)


class ModelVersion(_Body):
    """A model version, as /model-versions/{id}, /by-hash/{hash} and .civitai.info give it."""

    id: int
    model_id: Opt[int] = None
    name: Opt[str] = None
    base_model: Opt[str] = None  # "Illustrious" | "Pony" | "SDXL 1.0" | "Flux.1 D" | ...
    base_model_type: Opt[str] = None  # "Standard" | "Inpainting" | "Refiner" | ...
    air: Opt[str] = None
    trained_words: Words = Field(default_factory=list)
    download_url: Opt[str] = None
    description: Opt[str] = None
    published_at: Opt[datetime] = None
    files: Items[ModelFile] = Field(default_factory=list)
    images: Items[Image] = Field(default_factory=list)
    model: Opt[VersionModel] = None
    stats: Opt[Stats] = None
    settings: Opt[VersionSettings] = None
    # CivitAI's own rating of the version's content, in the level bits described above
    # _NSFW_WORDS; 2024+ bodies only. The model's `nsfw` is the creator's own flag and is
    # often false for versions CivitAI rates R or X.
    nsfw_level: Opt[int] = None
    availability: Opt[str] = None  # "Public" | "EarlyAccess" | "Private" | ...

    @property
    def early_access(self) -> bool:
        return (self.availability or "").strip().lower() == "earlyaccess"

    @property
    def is_nsfw(self) -> bool:
        """NSFW by the creator's flag or by CivitAI's rating (anything above PG-13, which
        is what CivitAI hides on its safe-for-work domain)."""
        if self.model is not None and self.model.nsfw:
            return True
        return bool(self.nsfw_level and self.nsfw_level & ~_SFW_LEVELS)

    @property
    def primary_file(self) -> ModelFile | None:
        for file in self.files:
            if file.primary:
                return file
        models = [f for f in self.files if (f.type or "Model") == "Model"]
        candidates = models or self.files
        return candidates[0] if candidates else None

    def all_hashes(self) -> set[str]:
        hashes: set[str] = set()
        for file in self.files:
            hashes |= file.hashes.values()
        return hashes

    def file_by_hash(self, value: str) -> ModelFile | None:
        wanted = value.strip().upper()
        return next((f for f in self.files if wanted in f.hashes.values()), None)

    def page_url(self, base_url: str = "https://civitai.com") -> str:
        base = base_url.rstrip("/")
        if self.model_id is None:
            return f"{base}/api/download/models/{self.id}"
        return f"{base}/models/{self.model_id}?modelVersionId={self.id}"

    @property
    def air_architecture(self) -> Architecture:
        return air_architecture(self.air)

    def preview_image(self, max_nsfw_level: int | None = 1) -> Image | None:
        """The first still image at or below `max_nsfw_level` (None: any level)."""
        for image in self.images:
            if not image.url or (image.type or "image") != "image":
                continue
            if max_nsfw_level is not None and (
                image.nsfw_level is None or image.nsfw_level > max_nsfw_level
            ):
                continue
            return image
        return None


class Creator(_Body):
    username: Opt[str] = None
    image: Opt[str] = None


class Model(_Body):
    """A model with all its versions, as /models/{id} gives it."""

    id: int
    name: Opt[str] = None
    type: Opt[str] = None
    nsfw: Opt[bool] = None
    poi: Opt[bool] = None
    description: Opt[str] = None
    tags: Items[str] = Field(default_factory=list)
    creator: Opt[Creator] = None
    model_versions: Items[ModelVersion] = Field(default_factory=list)
    checkpoint_type: Opt[str] = None  # "Merge" | "Trained", see VersionModel

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_names(cls, value: Any) -> Any:
        # 2022 bodies list tags as {"name": ...}; newer ones as plain strings.
        if isinstance(value, list):
            return [t.get("name") if isinstance(t, dict) else t for t in value]
        return value

    @model_validator(mode="before")
    @classmethod
    def _fill_versions(cls, data: Any) -> Any:
        # Versions inside /models/{id} omit the parent they sit in; fill it so that each
        # version is as useful on its own as one fetched from /model-versions/{id}.
        if not isinstance(data, dict) or not isinstance(data.get("modelVersions"), list):
            return data
        parent = {k: data.get(k) for k in ("name", "type", "nsfw", "poi", "checkpointType")}
        versions = []
        for version in data["modelVersions"]:
            if isinstance(version, dict):
                version = dict(version)
                version.setdefault("modelId", data.get("id"))
                version.setdefault("model", parent)
            versions.append(version)
        return {**data, "modelVersions": versions}

    def version(self, version_id: int) -> ModelVersion | None:
        return next((v for v in self.model_versions if v.id == version_id), None)


def parse_version(body: Any) -> ModelVersion:
    """Validate a model-version body; raises pydantic.ValidationError when it is not one."""
    return ModelVersion.model_validate(body)


def parse_model(body: Any) -> Model:
    return Model.model_validate(body)
