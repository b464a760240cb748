"""Which checkpoint draws, and whose VAE it borrows when it was pruned of its own."""

from __future__ import annotations

from collections.abc import Callable

from engine.admin_settings import AdminSettings
from engine.errors import LibraryError
from engine.i18n import Fix, Text
from engine.kinds import Architecture, Category
from engine.library import Library, LibraryEntry
from engine.text_input import clean_name

# Fix codes: each front end words its own way to act on them.
ADD_CHECKPOINT = "add_checkpoint"

NO_CHECKPOINT = Text(
    "There is no usable checkpoint in the library yet. An admin can add an SDXL checkpoint "
    "(a .safetensors file).",
    "模型庫裡還沒有可用的模型（checkpoint）。管理員可以加入一個 SDXL 模型（.safetensors 檔）。",
)


class CheckpointChooser:
    """Picks the checkpoint a request names (else the admin's default, else the first
    usable SDXL one) and finds a VAE donor."""

    def __init__(self, library: Library, admin: AdminSettings, family_of: Callable[[LibraryEntry], str | None]) -> None:
        self.library = library
        self.admin = admin
        self.family_of = family_of

    def choose(self, name: str | None) -> LibraryEntry:
        if name:
            return self.library.get_usable(clean_name(name), Category.CHECKPOINT)
        default = self.admin.default_checkpoint()
        if default:
            return self.library.get_usable(default, Category.CHECKPOINT)
        usable = [
            e
            for e in self.library.entries(Category.CHECKPOINT, include_broken=False)
            if e.enabled and e.architecture == Architecture.SDXL
        ]
        if not usable:
            raise LibraryError(NO_CHECKPOINT, fix=Fix(ADD_CHECKPOINT))
        return usable[0]

    def has_baked_vae(self, entry: LibraryEntry) -> bool:
        """Whether a single-file checkpoint carries its VAE, as the scan stored it."""
        return entry.checkpoint_facts.has_vae

    def vae_donor(self, entry: LibraryEntry, family: str | None) -> LibraryEntry | None:
        """Another SDXL checkpoint whose VAE a checkpoint pruned of its own can use; one of
        the same family first. All SDXL fine-tunes keep the SDXL VAE's layout."""
        candidates = [
            e
            for e in self.library.entries(Category.CHECKPOINT, include_broken=False)
            if e.enabled
            and e.architecture == Architecture.SDXL
            and e.format == "safetensors"
            and e.path != entry.path
            and self.has_baked_vae(e)
        ]
        if not candidates:
            return None
        same_family = [e for e in candidates if family and self.family_of(e) == family]
        return (same_family or candidates)[0]
