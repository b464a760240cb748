from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.families import Family, FamilyTable
from engine.i18n import EN, ZH_TW
from engine.prompt_lint import lint_prompt, normalize_tag, split_tags, suggest_quality_tags

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def table() -> FamilyTable:
    return FamilyTable.load()


@pytest.fixture(scope="module")
def illustrious(table: FamilyTable) -> Family:
    fam = table.family("illustrious")
    assert fam is not None
    return fam


@pytest.fixture(scope="module")
def pony(table: FamilyTable) -> Family:
    fam = table.family("pony")
    assert fam is not None
    return fam


def tags_of(warnings) -> list[str]:
    return [w.tag for w in warnings]


# -- parsing -----------------------------------------------------------------------------
def test_split_tags_drops_weight_syntax() -> None:
    prompt = "(score_9:1.2), ((score_8_up)), [rating_explicit], {source_anime}, <lora:cute:0.8>, 1girl\nsolo BREAK Score 7 Up"
    assert split_tags(prompt) == ["score_9", "score_8_up", "rating_explicit", "source_anime", "1girl", "solo", "Score 7 Up"]
    assert split_tags("(a, b:1.1)") == ["a", "b"]
    assert split_tags("") == [] and split_tags(None) == []


def test_normalize_tag() -> None:
    assert normalize_tag("Score_8_UP") == "score 8 up"
    assert normalize_tag("  very   awa ") == "very awa"


# -- warnings ------------------------------------------------------------------------------
def test_pony_tags_on_an_illustrious_checkpoint(table: FamilyTable, illustrious: Family, pony: Family) -> None:
    warnings = lint_prompt(
        "score_9, score_8_up, score_7_up, source_anime, rating_explicit, 1girl, masterpiece", None, illustrious, table
    )
    assert tags_of(warnings) == ["score_9", "score_8_up", "score_7_up", "source_anime", "rating_explicit"]
    first = warnings[0]
    assert first.family == pony and not first.negative
    en = first.render(EN)
    assert en == (
        "“score_9” comes from the Pony vocabulary; Illustrious checkpoints were not trained on it, so it does nothing "
        "there. Try “masterpiece, best quality, very aesthetic, absurdres” instead."
    )
    zh = first.render(ZH_TW)
    assert CJK.search(zh) and "score_9" in zh and "masterpiece, best quality" in zh
    assert first.text.render(EN, **first.params) == en  # what the engine API renders


@pytest.mark.parametrize(
    "written",
    ["(score_9:1.2)", "((score_9))", "[score_9]", "SCORE_9", "score 9", "Score_9", "(Score 8 Up:0.9)", "score_9  "],
)
def test_tolerant_of_weights_spaces_and_case(table: FamilyTable, illustrious: Family, written: str) -> None:
    warnings = lint_prompt(f"1girl, {written}, smile", None, illustrious, table)
    assert len(warnings) == 1
    assert warnings[0].family.id == "pony"
    assert "(" not in warnings[0].tag and ":" not in warnings[0].tag


def test_no_warning_when_the_checkpoint_family_uses_the_tags(table: FamilyTable, pony: Family) -> None:
    assert lint_prompt("score_9, score_8_up, source_anime, rating_safe", "score_4", pony, table) == []


def test_pony_v7_still_reads_score_tags(table: FamilyTable) -> None:
    v7 = table.family("pony-v7")
    assert lint_prompt("score_9, style_cluster_1610, source_furry", None, v7, table) == []


def test_no_warning_when_family_unknown(table: FamilyTable) -> None:
    assert lint_prompt("score_9, score_8_up, very awa", "score_4", None, table) == []


def test_negative_prompt_is_checked_with_negative_advice(table: FamilyTable, illustrious: Family) -> None:
    warnings = lint_prompt("1girl", "score_6, score_5, lowres", illustrious, table)
    assert tags_of(warnings) == ["score_6", "score_5"]
    assert all(w.negative for w in warnings)
    assert "negative prompt" in warnings[0].render(EN)
    assert "worst quality, low quality" in warnings[0].render(EN)
    assert "負面提示詞" in warnings[0].render(ZH_TW)


def test_each_tag_reported_once_per_prompt(table: FamilyTable, illustrious: Family) -> None:
    warnings = lint_prompt("score_9, (score_9:1.3), SCORE 9", "score_9", illustrious, table)
    assert [(w.tag, w.negative) for w in warnings] == [("score_9", False), ("score_9", True)]


def test_illustrious_vocabulary_on_pony(table: FamilyTable, pony: Family) -> None:
    warnings = lint_prompt("very awa, masterpiece", "worst aesthetic", pony, table)
    assert tags_of(warnings) == ["very awa", "worst aesthetic"]
    assert warnings[0].family.id == "illustrious"
    assert "score_9, score_8_up, score_7_up" in warnings[0].render(EN)
    assert "score_6, score_5, score_4" in warnings[1].render(EN)


def test_no_suggestion_when_the_checkpoint_family_has_no_quality_tags(table: FamilyTable) -> None:
    sdxl = table.family("sdxl")
    warnings = lint_prompt("score_9", None, sdxl, table)
    assert len(warnings) == 1
    assert "Try" not in warnings[0].render(EN)
    assert "suggestion" not in warnings[0].params


def test_words_that_only_contain_vocabulary_are_not_flagged(table: FamilyTable, illustrious: Family) -> None:
    prompt = "highscore 9x, scoreboard, source code, rating stars, a score of 9 out of 10 points"
    assert lint_prompt(prompt, None, illustrious, table) == []


@pytest.mark.parametrize(
    "sentence",
    [
        "a basketball scoreboard that shows score 9 to 7",
        "a vintage movie poster, rating safe for kids",
        "photo of a river source anime style lighting",
        "the final score 8 up from last year",
    ],
)
def test_sentences_that_happen_to_contain_the_words_are_not_flagged(
    table: FamilyTable, illustrious: Family, sentence: str
) -> None:
    # Plain SDXL prompts are often sentences; only whole tags count when written with spaces.
    assert lint_prompt(f"1girl, {sentence}, smile", None, illustrious, table) == []


@pytest.mark.parametrize(
    ("written", "flagged"),
    [
        ("score_9 score_8_up score_7_up, 1girl", "score_9 score_8_up score_7_up"),  # no commas
        ("score 9 score 8 up, 1girl", "score 9 score 8 up"),
        ("(score_9, score_8_up:1.1), 1girl", "score_9"),
        ("1girl with score_9 quality", "1girl with score_9 quality"),
        ("score_9,score_8_up,1girl", "score_9"),
        ("  SCORE_9 ,  1girl", "SCORE_9"),
    ],
)
def test_tags_are_still_found_without_commas_or_inside_text(
    table: FamilyTable, illustrious: Family, written: str, flagged: str
) -> None:
    warnings = lint_prompt(written, None, illustrious, table)
    assert warnings and warnings[0].tag == flagged and warnings[0].family.id == "pony"


def test_admin_vocabulary_is_used(tmp_path: Path, illustrious: Family) -> None:
    path = tmp_path / "families.toml"
    path.write_text("[families.pony]\nvocabulary = ['pony_style_[a-z]+']\n", encoding="utf-8")
    table = FamilyTable.load(path)
    warnings = lint_prompt("pony_style_glossy, 1girl", None, table.family("illustrious"), table)
    assert tags_of(warnings) == ["pony_style_glossy"]


def test_lint_defaults_to_the_shipped_table(illustrious: Family) -> None:
    assert tags_of(lint_prompt("score_9", None, illustrious)) == ["score_9"]


# -- suggestions -----------------------------------------------------------------------------
def test_suggest_quality_tags(pony: Family, illustrious: Family, table: FamilyTable) -> None:
    pony_tags = suggest_quality_tags(pony)
    assert pony_tags is not None and pony_tags.prompt == "score_9, score_8_up, score_7_up"
    il = suggest_quality_tags(illustrious)
    assert il.prompt == "masterpiece, best quality, very aesthetic, absurdres"
    assert il.negative_prompt.startswith("worst quality, low quality")
    assert "masterpiece" in il.render(EN) and CJK.search(il.render(ZH_TW))
    assert suggest_quality_tags(table.family("flux1")) is None
    assert suggest_quality_tags(None) is None


def test_lint_is_fast_on_adversarial_prompts() -> None:
    import time

    from engine.families import default_table

    table = default_table()
    family = table.family("illustrious")
    for prompt in (
        "(x:" + "1" * 2000 + "x",  # a long run of digits after a colon
        "score_9 " * 250,  # one long tag of vocabulary words
        ", ".join(["score_9_up"] * 200),
        "<" * 2000,
    ):
        start = time.perf_counter()
        lint_prompt(prompt, prompt, family, table)
        assert time.perf_counter() - start < 2.0, prompt[:30]
