"""The NSFW rule and the blocklist, the one copy every front end goes through."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from engine.content_rules import check_blocklist, is_nsfw, may_list, refuse_nsfw
from engine.errors import RequestError


@dataclass
class Entry:
    label: str
    nsfw: bool | None = None
    sha256: str | None = None
    hash_pending: bool = False


@dataclass
class Version:
    is_nsfw: bool


class Knowledge:
    def __init__(self, rated: dict[str, bool]) -> None:
        self.rated = rated

    def civitai_version(self, sha256: str | None) -> Version | None:
        return Version(self.rated[sha256]) if sha256 in self.rated else None


def test_an_admins_word_beats_civitais_rating() -> None:
    knowledge = Knowledge({"A": True, "B": False})
    assert is_nsfw(Entry("a", sha256="A"), knowledge) is True
    assert is_nsfw(Entry("a", nsfw=False, sha256="A"), knowledge) is False
    assert is_nsfw(Entry("b", nsfw=True, sha256="B"), knowledge) is True
    assert is_nsfw(Entry("c", sha256="C"), knowledge) is False  # CivitAI never heard of it


def test_lists_leave_out_what_is_nsfw_or_not_hashed_yet_outside_nsfw_places() -> None:
    knowledge = Knowledge({"A": True})
    assert may_list(Entry("plain"), knowledge, allow_nsfw=False)
    assert not may_list(Entry("rated", sha256="A"), knowledge, allow_nsfw=False)
    # not hashed yet: its admin settings are unknown, so it may be NSFW
    assert not may_list(Entry("new", hash_pending=True), knowledge, allow_nsfw=False)
    assert not is_nsfw(Entry("new", hash_pending=True), knowledge)  # a request waits for the hash instead
    assert may_list(Entry("new", hash_pending=True), knowledge, allow_nsfw=True)


def test_refuse_nsfw_only_where_not_allowed() -> None:
    knowledge = Knowledge({"A": True})
    entries = [Entry("fine"), Entry("Spicy One", sha256="A")]
    refuse_nsfw(entries, knowledge, allow_nsfw=True)
    with pytest.raises(RequestError, match="“Spicy One” is marked NSFW") as info:
        refuse_nsfw(entries, knowledge, allow_nsfw=False)
    assert "年齡限制" in info.value.localized("zh-TW")


def test_blocklist_folds_width_and_case() -> None:
    check_blocklist(["a cat", ""], ["gore"])
    for prompt in ("GORE", "ｇｏｒｅ", "some gore here"):
        with pytest.raises(RequestError, match="“gore”"):
            check_blocklist([prompt, ""], ["gore"])
    with pytest.raises(RequestError):
        check_blocklist(["a cat", "negative: Gore"], ["gore"])  # the negative prompt counts too
