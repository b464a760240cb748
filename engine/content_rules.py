"""What may be drawn where: the NSFW rule and the blocklist, in one place.

Every front end asks here (through `Engine`) instead of keeping its own copy: /draw,
/lora info, /family check and autocomplete all refuse or filter the same way, with the
same words. A front end only says whether the place it answers in is age-restricted
(`allow_nsfw`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from engine.errors import RequestError
from engine.i18n import Text
from engine.text_input import clean_name

NSFW_HERE = Text(
    "“{name}” is marked NSFW and can only be used in age-restricted channels.",
    "「{name}」被標記為成人內容，只能在年齡限制頻道中使用。",
)
BLOCKED = Text(
    "Your prompt contains “{word}”, which this server does not allow.",
    "您的提示詞包含此伺服器不允許的「{word}」。",
)


class _Entry(Protocol):
    @property
    def label(self) -> str: ...

    @property
    def nsfw(self) -> bool | None: ...

    @property
    def hash_pending(self) -> bool: ...

    @property
    def sha256(self) -> str | None: ...


class _Versions(Protocol):
    def civitai_version(self, sha256: str | None) -> object | None: ...


def is_nsfw(entry: _Entry, knowledge: _Versions) -> bool:
    """An admin's word (either way), else CivitAI's (cached answer): the creator's flag
    or CivitAI's rating of the version above PG-13."""
    if entry.nsfw is not None:
        return entry.nsfw
    version = knowledge.civitai_version(entry.sha256)
    return bool(version is not None and getattr(version, "is_nsfw", False))


def may_list(entry: _Entry, knowledge: _Versions, *, allow_nsfw: bool) -> bool:
    """Whether a model may be offered in a list (autocomplete, suggestions). Outside
    age-restricted places a file the start-up scan has not hashed yet is left out too: its
    admin settings (keyed by hash) are not known yet, so it may be NSFW. A request naming
    it waits for the hash instead (engine.indexing)."""
    return allow_nsfw or not (entry.hash_pending or is_nsfw(entry, knowledge))


def refuse_nsfw(entries: Iterable[_Entry], knowledge: _Versions, *, allow_nsfw: bool) -> None:
    """Outside age-restricted places, refuse the first NSFW model named."""
    if allow_nsfw:
        return
    for entry in entries:
        if is_nsfw(entry, knowledge):
            raise RequestError(NSFW_HERE, name=entry.label)


def check_blocklist(texts: Iterable[str], blocklist: Iterable[str]) -> None:
    """Refuse a prompt that contains a blocked word. Both sides in NFKC and case-folded:
    "ｇｏｒｅ" or "GORE" must not slip past "gore"."""
    folded = clean_name("\n".join(texts)).casefold()
    for word in blocklist:
        if clean_name(word).casefold() in folded:
            raise RequestError(BLOCKED, word=word)
