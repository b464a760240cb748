"""Trigger words found in prompts as A1111 users write them."""

from __future__ import annotations

import pytest

from engine.planning.trigger_words import missing_trigger_warning, missing_triggers, trigger_candidates

# (prompt, triggers, found): found means no warning
CASES: list[tuple[str, list[str], bool]] = [
    ("1girl, nova style, smiling", ["nova style"], True),
    ("1girl, Nova Style", ["nova style"], True),  # case
    ("1girl, nova_style", ["nova style"], True),  # `_` for a space
    ("1girl, nova style", ["nova_style"], True),
    ("(nova style:1.2), 1girl", ["nova style"], True),  # weight syntax
    ("((nova style)), [nova style]", ["nova style"], True),
    ("{nova style:0.8}", ["nova style"], True),
    ("hatsune miku \\(vocaloid\\), 1girl", ["hatsune miku (vocaloid)"], True),  # escaped brackets
    ("(hatsune miku \\(vocaloid\\):1.3)", ["hatsune miku (vocaloid)"], True),
    ("1girl,   nova    style  ", ["nova style"], True),  # extra spaces
    ("1girl,nova style,smile", ["nova style"], True),
    ("1girl, solo", ["alice_chara", "bob_chara", "carol_chara"], False),
    ("1girl, bob chara", ["alice_chara", "bob_chara", "carol_chara"], True),  # any one of a pack
    ("1girl, zzstyle", ["zzstyle, 1boy, masterpiece"], True),  # one piece of a comma list
    ("1girl, artist", ["art"], False),  # whole words only
    ("1girl, art", ["art"], True),
    ("1girl, nova", ["nova style"], False),  # a part of the trigger is not the trigger
    ("1girl, style nova", ["nova style"], False),
    ("1girl", ["  ", ""], True),  # blank triggers: nothing to ask for
    ("1girl", [], True),
    ("1girl, 星空スタイル", ["星空スタイル"], True),
    ("1girl, 1.2 nova style", ["nova style:1.2"], True),
]


@pytest.mark.parametrize(("prompt", "triggers", "found"), CASES)
def test_trigger_matching(prompt: str, triggers: list[str], found: bool) -> None:
    assert (missing_triggers(prompt, triggers) == []) == found


def test_candidates_split_comma_lists_and_drop_repeats() -> None:
    assert trigger_candidates(["a_b, c", "A B", " ", "d,,e"]) == ["a_b", "c", "d", "e"]


def test_the_warning_names_a_few_and_counts_the_rest() -> None:
    missing = missing_triggers("1girl", [f"char{i}" for i in range(10)])
    message = missing_trigger_warning("pack", missing)
    assert message.render("en") == (
        "pack: none of its trigger words is in the prompt, so it may do little. "
        "Add one of: char0, char1, char2 and 7 more."
    )
    assert message.render("zh-TW") == "pack：提示詞中沒有它的觸發詞，效果可能不明顯。請加入其中一個：char0, char1, char2 等另外 7 個。"
    assert missing_trigger_warning("x", ["a"]).render("en").endswith("Add one of: a.")


def test_long_prompts_and_trigger_lists_stay_cheap() -> None:
    import time

    start = time.perf_counter()
    missing_triggers("word, " * 5000, [f"t{i}" * 50 for i in range(1000)])
    assert time.perf_counter() - start < 1.0
