"""Which models a checkpoint says it was merged from, read from its safetensors metadata.

Mergers write their recipe into the file's `__metadata__` (all values are strings):

- A1111's checkpoint merger (modules/extras.py `run_modelmerger`, and SD.Next's copy):
  `sd_merge_recipe` = JSON {"type": "webui", "primary_model_hash", "secondary_model_hash",
  "tertiary_model_hash" (full-file SHA-256, lower-case hex, or null), "interp_method",
  "multiplier", ...} and `sd_merge_models` = JSON {sha256: {"name", "legacy_hash" (the old
  8-hex model hash), "sd_merge_recipe" (that parent's own recipe, or null)}}. A merge of
  merges copies each parent's `sd_merge_models` into its own, so the map holds every
  ancestor, flat; the recipe's three hashes say which of them are the direct parents.
- SuperMerger (`"type": "sd-webui-supermerger"`) names its parents as `model_a`,
  `model_b`, `model_c` (SHA-256) with the same `sd_merge_models`; Model Mixer
  (`"sd-webui-model-mixer"`) writes `model_a` as a name; chattiori's merge script
  (`"merge-models-chattiori"`) uses A1111's three hash keys.
- sd-mecha writes `mecha_recipe`, its text recipe format, with one `model "path" ...` line
  per input model (names only).
- ComfyUI's CheckpointSave writes the graph it ran as `prompt` (API JSON): a `ModelMerge*`
  node fed by `CheckpointLoaderSimple` nodes names the merged files (names only).
- The Stability model spec's `modelspec.merged_from`: a comma-separated list of names.

The metadata is a stranger's text: every value is bounded, a hash must be hex of the
right length or it is ignored, JSON that is broken or nested too deeply counts as absent,
and nothing here raises. Only the header is read, never a tensor.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import LoracleError
from engine.files.header import read_header

MAX_VALUE_CHARS = 1024 * 1024
"""A real `sd_merge_models` of a merge of many merges is tens of KB; anything bigger is
not worth parsing."""
MAX_PARENTS = 16
MAX_ANCESTORS = 64
MAX_NAME_CHARS = 200

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_MECHA_MODEL = re.compile(r'^\s*model\s+"((?:[^"\\]|\\.){1,1000})"', re.MULTILINE)

# Recipe keys that name the direct parents, in A/B/C order, per merger.
_ROLE_KEYS = (
    ("A", ("primary_model_hash", "model_a")),
    ("B", ("secondary_model_hash", "model_b")),
    ("C", ("tertiary_model_hash", "model_c")),
)
_COMFY_LOADERS = {"CheckpointLoaderSimple": "ckpt_name", "CheckpointLoader": "ckpt_name", "UNETLoader": "unet_name"}


@dataclass(frozen=True)
class MergeParent:
    """One model a merge names. `sha256` (upper-case) is set only when the file gave a
    well-formed one; `legacy_hash` is A1111's old 8-hex model hash (CivitAI's AutoV1)."""

    name: str | None
    sha256: str | None = None
    legacy_hash: str | None = None
    role: str | None = None  # "A", "B", "C" when the recipe says which input it was


@dataclass(frozen=True)
class MergeLineage:
    """What a checkpoint's metadata says about how it was merged."""

    tool: str | None = None  # "webui", "sd-webui-supermerger", "sd-mecha", "comfyui", "modelspec", ...
    key: str | None = None  # the metadata key the parents were read from
    method: str | None = None  # "Weighted sum", "Add difference", ...
    multiplier: float | None = None
    parents: tuple[MergeParent, ...] = ()
    ancestors: tuple[MergeParent, ...] = field(default=())  # further back: parents' parents

    @property
    def is_merge(self) -> bool:
        return bool(self.parents)


NO_LINEAGE = MergeLineage()


def merge_lineage(metadata: Mapping[str, Any]) -> MergeLineage:
    """The parents a header's metadata names, best-described source first; never raises."""
    if not isinstance(metadata, Mapping):
        return NO_LINEAGE
    for reader in (_a1111, _mecha, _comfy, _modelspec):
        try:
            found = reader(metadata)
        except (ValueError, TypeError, RecursionError, KeyError, AttributeError):
            found = None  # a stranger's metadata shaped in a way no merger writes
        if found is not None and found.parents:
            return found
    return NO_LINEAGE


def read_merge_lineage(path: str | os.PathLike[str]) -> MergeLineage:
    """Read a safetensors file's header (never its tensors) and its merge lineage; a file
    that cannot be read as safetensors has none."""
    try:
        header = read_header(path)
    except (OSError, LoracleError):
        return NO_LINEAGE
    return merge_lineage(header.metadata)


# -- A1111 and the mergers that copied its keys --------------------------------------
def _a1111(metadata: Mapping[str, Any]) -> MergeLineage | None:
    recipe = _json_object(metadata.get("sd_merge_recipe"))
    models = _json_object(metadata.get("sd_merge_models"))
    if recipe is None and models is None:
        return None
    known: dict[str, MergeParent] = {}
    for key, entry in list((models or {}).items())[:MAX_ANCESTORS]:
        sha = _sha256(key)
        if sha is None or not isinstance(entry, Mapping):
            continue  # an entry not keyed by a real SHA-256 names nothing we can check
        known[sha] = MergeParent(
            name=_name(entry.get("name")), sha256=sha, legacy_hash=_legacy(entry.get("legacy_hash"))
        )
    parents: list[MergeParent] = []
    for role, keys in _ROLE_KEYS:
        parent = _role_parent(role, keys, recipe or {}, known)
        if parent is not None and parent.sha256 not in {p.sha256 for p in parents}:
            parents.append(parent)
    if not parents:
        # No recipe (or one that names its inputs in a way we do not know): every model
        # listed is a parent as far as the file tells.
        parents = list(known.values())[:MAX_PARENTS]
    direct = {p.sha256 for p in parents}
    ancestors = tuple(p for sha, p in known.items() if sha not in direct)
    tool = _text((recipe or {}).get("type"), 60) or "webui"
    method = _text((recipe or {}).get("interp_method") or (recipe or {}).get("merge_method") or (recipe or {}).get("mode"), 60)
    return MergeLineage(
        tool=tool,
        key="sd_merge_models" if models is not None else "sd_merge_recipe",
        method=method,
        multiplier=_number((recipe or {}).get("multiplier")),
        parents=tuple(parents),
        ancestors=ancestors,
    )


def _role_parent(role: str, keys: Iterable[str], recipe: Mapping[str, Any], known: Mapping[str, MergeParent]) -> MergeParent | None:
    for key in keys:
        value = recipe.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        sha = _sha256(value)
        if sha is not None:
            listed = known.get(sha)
            return MergeParent(listed.name if listed else None, sha, listed.legacy_hash if listed else None, role=role)
        # Model Mixer names model_a by name: the listed model of that name, if any.
        wanted = _name(value)
        for listed in known.values():
            if wanted and listed.name and _stem(listed.name) == _stem(wanted):
                return MergeParent(listed.name, listed.sha256, listed.legacy_hash, role=role)
    return None


# -- names only: sd-mecha, ComfyUI, the model spec -------------------------------------
def _mecha(metadata: Mapping[str, Any]) -> MergeLineage | None:
    recipe = _bounded(metadata.get("mecha_recipe"))
    if recipe is None:
        return None
    names = [_name(m.group(1).replace('\\"', '"')) for m in _MECHA_MODEL.finditer(recipe)]
    return _named("sd-mecha", "mecha_recipe", names)


def _comfy(metadata: Mapping[str, Any]) -> MergeLineage | None:
    graph = _json_object(metadata.get("prompt"))
    if graph is None:
        return None
    nodes = [n for n in list(graph.values())[:2000] if isinstance(n, Mapping)]
    if not any("ModelMerge" in str(n.get("class_type", "")) for n in nodes):
        return None  # a checkpoint saved without merging anything is no merge
    names = []
    for node in nodes:
        field_name = _COMFY_LOADERS.get(str(node.get("class_type", "")))
        inputs = node.get("inputs")
        if field_name and isinstance(inputs, Mapping):
            names.append(_name(inputs.get(field_name)))  # a link ([node, slot]) is no name
    return _named("comfyui", "prompt", names)


def _modelspec(metadata: Mapping[str, Any]) -> MergeLineage | None:
    listed = _bounded(metadata.get("modelspec.merged_from"))
    if listed is None:
        return None
    return _named("modelspec", "modelspec.merged_from", [_name(part) for part in listed.split(",")])


def _named(tool: str, key: str, names: Iterable[str | None]) -> MergeLineage:
    unique = list(dict.fromkeys(n for n in names if n))[:MAX_PARENTS]
    return MergeLineage(tool=tool, key=key, parents=tuple(MergeParent(n) for n in unique))


# -- bounded, defensive parsing ----------------------------------------------------------
def _bounded(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_VALUE_CHARS:
        return None
    return value


def _json_object(value: Any) -> dict[str, Any] | None:
    text = _bounded(value)
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _sha256(value: Any) -> str | None:
    text = value.strip().removeprefix("0x") if isinstance(value, str) else ""
    return text.upper() if _HEX64.fullmatch(text) else None


def _legacy(value: Any) -> str | None:
    text = value.strip().removeprefix("0x") if isinstance(value, str) else ""
    return text.upper() if _HEX8.fullmatch(text) else None


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = _CONTROL.sub("", value).strip()
    return cleaned[:limit] or None


def _name(value: Any) -> str | None:
    return _text(value, MAX_NAME_CHARS)


def _stem(name: str) -> str:
    base = re.split(r"[\\/]", name)[-1]
    for suffix in (".safetensors", ".ckpt", ".pt", ".sft"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return base.casefold()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if number == number and abs(number) < 1e6 else None


def parent_stem(name: str) -> str:
    """A parent's name as a library file stem is compared: no folders, no model
    extension, case-folded (A1111 writes "SDXL/ponyV6.safetensors")."""
    return _stem(name)

