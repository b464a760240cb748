"""A picture's checkpoint and LoRAs found in the library: by hash first, then by name.

By hash: A1111's `Model hash` is an AutoV2 (10 hex digits, the start of the SHA-256; 8
digits in old pictures: AutoV1), its `Lora hashes` AutoV3s (12 digits, of the tensors
only); CivitAI's `Hashes` and other tools give full SHA-256s. The library keeps all four.
A picture that names a CivitAI model version (the CivitAI generator's resources) is
matched through the versions CivitAI told us our files are (cache only): that is an
identity too, so it counts as a hash match.

By name: ComfyUI gives file names as its folders hold them (`foo.safetensors`,
`sub\\foo.safetensors`), A1111 a name; both are looked up as a user's typed name is.
A name match may be another file of the same name, so it is reported as such.

A resource the library lacks is looked up on CivitAI by its hash (through the client's
cache; offline or CivitAI down only means no link) so an admin can add it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace

from engine.civitai.client import CivitaiClient
from engine.errors import LoracleError
from engine.images.types import ImageParameters, MatchHow, ResourceMatch, ResourceRef
from engine.kinds import Category
from engine.knowledge import Knowledge
from engine.library import Library, LibraryEntry
from engine.text_input import clean_name

CIVITAI_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Resolved:
    """A resource's match, and the library entry behind it (None when missing)."""

    match: ResourceMatch
    entry: LibraryEntry | None


class Matcher:
    """Matching against one library; synchronous parts read SQLite (call from a thread)."""

    def __init__(self, library: Library, knowledge: Knowledge, civitai: CivitaiClient, base_url: str) -> None:
        self.library = library
        self.knowledge = knowledge
        self.civitai = civitai
        self.base_url = base_url

    # -- finding -------------------------------------------------------------------------
    def find(self, ref: ResourceRef) -> tuple[MatchHow, LibraryEntry | None]:
        category = Category.CHECKPOINT if ref.kind == "checkpoint" else Category.LORA
        entries = [e for e in self.library.entries(category) if e.usable]
        if ref.hash:
            hit = by_hash(entries, ref.hash)
            if hit is not None:
                return "hash", hit
        if ref.civitai_version is not None:
            hit = next((e for e in entries if self._civitai_id(e) == ref.civitai_version), None)
            if hit is not None:
                return "hash", hit
        for name in name_candidates(ref.name):
            try:
                entry = self.library.find(name, category)
            except LoracleError:
                continue
            if entry.usable:
                return "name", entry
        return "missing", None

    def _civitai_id(self, entry: LibraryEntry) -> int | None:
        version = self.knowledge.civitai_version(entry.sha256)
        return version.id if version is not None else None

    def resolve(
        self, params: ImageParameters, checkpoint: LibraryEntry | None, default: LibraryEntry | None = None
    ) -> list[Resolved]:
        """Every resource of the picture, the checkpoint first; each LoRA with its verdict
        against `checkpoint` when given, else the picture's own checkpoint when the library
        has it, else `default`: the one that would draw."""
        found: list[Resolved] = []
        if params.checkpoint is not None:
            how, entry = self.find(params.checkpoint)
            found.append(Resolved(ResourceMatch(params.checkpoint, how, entry.name if entry else None), entry))
            checkpoint = checkpoint or entry
        checkpoint = checkpoint or default
        for ref in params.loras:
            how, entry = self.find(ref)
            verdict = None
            if entry is not None and checkpoint is not None:
                verdict = str(self.knowledge.verdict(entry, checkpoint).verdict)
            found.append(Resolved(ResourceMatch(ref, how, entry.name if entry else None, verdict), entry))
        return found

    # -- links ---------------------------------------------------------------------------
    async def with_links(self, resolved: list[Resolved]) -> list[Resolved]:
        """Each missing resource with its CivitAI page, where CivitAI (or its cache) knows it."""
        missing = [r for r in resolved if r.entry is None]
        if not missing:
            return resolved
        links = await asyncio.gather(*(self.civitai_link(r.match.ref) for r in missing))
        urls = {id(r): url for r, url in zip(missing, links, strict=True)}
        return [
            Resolved(replace(r.match, civitai_url=urls[id(r)]), r.entry) if urls.get(id(r)) else r for r in resolved
        ]

    async def civitai_link(self, ref: ResourceRef) -> str | None:
        lookup = None
        with contextlib.suppress(LoracleError, TimeoutError):
            if ref.hash:
                lookup = await asyncio.wait_for(self.civitai.version_by_hash(ref.hash), CIVITAI_TIMEOUT_S)
            elif ref.civitai_version is not None:
                lookup = await asyncio.wait_for(self.civitai.model_version(ref.civitai_version), CIVITAI_TIMEOUT_S)
        version = lookup.value if lookup is not None else None
        return version.page_url(self.base_url) if version is not None else None


def by_hash(entries: list[LibraryEntry], digest: str) -> LibraryEntry | None:
    """The entry one of whose hashes is `digest` (AutoV1/V2/V3, SHA-256 or its start)."""
    wanted = digest.strip().upper()
    if len(wanted) < 8:
        return None
    for entry in entries:
        known = {h.upper() for h in (entry.autov1, entry.autov2, entry.autov3, entry.sha256) if h}
        if wanted in known or (len(wanted) >= 10 and (entry.sha256 or "").upper().startswith(wanted)):
            return entry
    return None


def name_candidates(name: str | None) -> list[str]:
    """The ways a picture's name may be a library name: as written (`sub/foo`), then the
    file's own name (`foo`); folders and `.safetensors` as ComfyUI writes them."""
    if not name:
        return []
    text = clean_name(name.replace("\\", "/")).strip("/ ")
    base = text.rsplit("/", 1)[-1]
    return [n for n in dict.fromkeys([text, base]) if n]
