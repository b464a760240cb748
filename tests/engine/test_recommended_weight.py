from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.civitai.models import parse_model, parse_version
from engine.recommended_weight import (
    LoraIdentity,
    RecommendedWeight,
    default_weight,
    from_description,
    from_examples,
    html_to_text,
    recommended_weight,
    weight_in_text,
)
from tests.samples import civitai_samples

SHA = "B76A1FC247DB893BC8C1290420F0E96B6F86129576A9FB885C20CB7EDBEFEEA5"

# (description HTML as CivitAI sends it, expected (value, low, high) or None)
SNIPPETS: list[tuple[str, tuple[float, float | None, float | None] | None]] = [
    # English
    ("<p>Recommended weight 0.6-0.8</p>", (0.7, 0.6, 0.8)),
    ("<p>Strength: 0.7</p>", (0.7, None, None)),
    ("<p>weight 0.5~0.7</p>", (0.6, 0.5, 0.7)),
    ('<h3 id="strength:-0.8"><strong><span style="color:rgb(253, 126, 20)">Strength: </span></strong>0.8, experiment as you like</h3>', (0.8, None, None)),
    ("<ul><li><p><strong>Recommended weight:</strong> 0.65</p></li><li><p>CFG 7</p></li></ul>", (0.65, None, None)),
    ("<p>Use it at a weight of 0.6 to 0.9.</p>", (0.75, 0.6, 0.9)),
    ("<p>LoRA weight between 0.4 and 0.6 works best</p>", (0.5, 0.4, 0.6)),
    ("<p>Recommended strength is around 0.8</p>", (0.8, None, None)),
    ("<p>Weight: 1</p>", (1.0, None, None)),
    ("<p>Weight: -1 makes it the opposite</p>", (-1.0, None, None)),
    ("<p>weight ~0.7</p>", (0.7, None, None)),
    ("<p>Best weight 0.75 – 0.85</p>", (0.8, 0.75, 0.85)),
    ("<p>Suggested weights: 0.8-1.0 for characters</p>", (0.9, 0.8, 1.0)),
    ("<p>Trigger: <code>abc</code></p><p>Usage: <code>&lt;lora:mystyle_v2:0.7&gt;</code></p>", (0.7, None, None)),
    ("<p>Example: <lora:mystyle_v2:0.6></p>", (0.6, None, None)),
    ("<p>Weight 0.8.</p><p>Weight 0.5 for backgrounds.</p>", (0.8, None, None)),
    ("<p>strength 0.9 (1.0 burns)</p>", (0.9, None, None)),
    ("<h2>Recommended weight</h2><p>0.7</p>", (0.7, None, None)),
    # Chinese (Taiwan)
    ("<p>建議權重 0.6～0.8</p>", (0.7, 0.6, 0.8)),
    ("<p>權重：0.7</p>", (0.7, None, None)),
    ("<p>推薦權重 0.5-0.7 之間</p>", (0.6, 0.5, 0.7)),
    ("<p>強度建議 0.8</p>", (0.8, None, None)),
    # Chinese (mainland)
    ("<p>建议权重 0.6~0.8</p>", (0.7, 0.6, 0.8)),
    ("<p>权重：0.7左右</p>", (0.7, None, None)),
    ("<p>推荐权重为0.8</p>", (0.8, None, None)),
    ("<p>LoRA强度 0.65</p>", (0.65, None, None)),
    # Japanese
    ("<p>推奨ウェイト 0.7</p>", (0.7, None, None)),
    ("<p>推奨ウェイト：0.6〜0.8</p>", (0.7, 0.6, 0.8)),
    ("<p>重みは0.8程度がおすすめです</p>", (0.8, None, None)),
    ("<p>強度 0.5~0.7 推奨</p>", (0.6, 0.5, 0.7)),
    # Korean
    ("<p>권장 가중치 0.7</p>", (0.7, None, None)),
    ("<p>가중치: 0.6~0.8 권장</p>", (0.7, 0.6, 0.8)),
    ("<p>강도는 0.8 정도</p>", (0.8, None, None)),
    # traps: numbers that are not weights
    ("<p>Trained on SD 1.5</p>", None),
    ("<p>v1.5: better hands</p>", None),
    ("<p>Works at 1024x1024</p>", None),
    ("<p>CFG 7, 30 steps, clip skip 2</p>", None),
    ("<p>Hires fix 1.5x, 0.8 denoise</p>", None),
    ("<p>Denoising strength: 0.4</p>", None),
    ("<p>ADetailer denoising strength 0.35</p>", None),
    ("<p>Recommended weight for SD 1.5 models</p>", None),
    ("<p>Weight decay 0.01 during training</p>", None),
    ("<p>Updated 2024-05-01: weight fix</p>", None),
    ("<p>weight 2024-05-01</p>", None),
    ("<p>Strength v2.0 released</p>", None),
    ("<p>Use prompt weighting to balance these styles</p>", None),
    ("<p>Trigger word weight 1.2</p>", None),
    ("<p>weight 1.5x upscale</p>", None),
    ("<p>Weight 80%</p>", None),
    ("<p>strength 12</p>", None),
    ("<p>The strength of this LoRA is 2 styles in one</p>", None),
    ("<p>Recommended settings: CFG 7, weight 0.7, clip skip 2</p>", (0.7, None, None)),
    ("<p>Hires fix strength 0.5</p>", None),
    ("<p>weight 0,8</p>", None),
    ("<p>weight 30 steps</p>", None),
    ('<p><a href="https://civitai.com/models/1061">weight</a></p><p>SD 1.5</p>', None),
    ("<p>提示詞權重 1.2</p>", None),
    ("<p>重绘幅度 0.4</p>", None),
    ('<p style="weight: 0.7">nothing here</p>', None),
    ("<!-- weight 0.7 --><p>nothing</p>", None),
    ("<script>weight 0.7</script><p>nothing</p>", None),
    ("<p>Style to use less steps for good images </p>", None),
    ("", None),
]


@pytest.mark.parametrize(("html", "expected"), SNIPPETS)
def test_description_snippets(html: str, expected: tuple[float, float | None, float | None] | None):
    got = from_description(html, ["mystyle_v2"])
    if expected is None:
        assert got is None, html
    else:
        assert got is not None, html
        assert (got.value, got.low, got.high) == pytest.approx(expected), html
        assert got.source == "description"


def test_at_least_forty_snippets_in_five_languages():
    assert len(SNIPPETS) >= 40
    assert any("權重" in s for s, _ in SNIPPETS) and any("权重" in s for s, _ in SNIPPETS)
    assert any("ウェイト" in s for s, _ in SNIPPETS) and any("가중치" in s for s, _ in SNIPPETS)


def test_a_usage_example_naming_another_lora_is_not_ours():
    html = "<p>Works well with &lt;lora:add_detail:0.5&gt;</p>"
    assert from_description(html, ["mystyle_v2"]) is None
    assert from_description(html, []) is not None  # the only LoRA named: the author's own


def test_html_to_text_keeps_blocks_apart_and_drops_markup():
    text = html_to_text("<p>weight</p><p>0.7</p><script>x</script>&lt;lora:a:1&gt;")
    assert "weight\n" in text and "<lora:a:1>" in text and "x" not in text
    assert weight_in_text("weight\n\n0.7") == (0.7, None, None)  # blank lines are gaps too


# -- CivitAI's structured value ------------------------------------------------------------


def _picker_versions() -> list[dict[str, Any]]:
    body = json.loads((civitai_samples() / "internal-trpc-lora-picker-page-illustrious.json").read_text())
    return [v for item in body["json"]["items"] for v in item["versions"]]


def test_settings_in_the_real_picker_bodies():
    versions = _picker_versions()
    first = recommended_weight(versions[0])
    assert first == RecommendedWeight(0.8, 0.1, 2.0, "civitai")
    empty = next(v for v in versions if v.get("settings") == {})
    got = recommended_weight(empty)
    assert got is None or got.source != "civitai"
    strong = next(v for v in versions if (v.get("settings") or {}).get("strength") == 1.5)
    assert recommended_weight(strong) == RecommendedWeight(1.5, 0.0, 2.0, "civitai")


@pytest.mark.parametrize(
    ("settings_", "expected"),
    [
        ({"strength": 0.7}, RecommendedWeight(0.7, None, None, "civitai")),
        ({"minStrength": 0.6, "maxStrength": 0.8}, RecommendedWeight(0.7, 0.6, 0.8, "civitai")),
        ({"strength": "0.7"}, None),
        ({"strength": 99}, None),
        ({"strength": True}, None),
        ({"strength": float("nan")}, None),
        ({"strength": 0.7, "minStrength": 2, "maxStrength": 1}, RecommendedWeight(0.7, None, None, "civitai")),
        ("strong", None),
    ],
)
def test_settings_are_validated(settings_: Any, expected: RecommendedWeight | None):
    assert recommended_weight({"id": 1, "settings": settings_}) == expected


# -- the real sample bodies ----------------------------------------------------------------


def test_the_flux_sample_says_strength_in_its_model_description():
    model = json.loads((civitai_samples() / "flux1d-lora-model-1231067.json").read_text())
    version = json.loads((civitai_samples() / "flux1d-lora-model-version-1387174.json").read_text())
    got = recommended_weight(version, model)
    assert got == RecommendedWeight(0.8, None, None, "description")
    # The same through the project's models (descriptions only).
    assert recommended_weight(parse_version(version), parse_model(model)) == got


def test_samples_without_a_recommendation_say_nothing():
    for name in ("illustrious-lora-model-1580878", "sd15-checkpoint-model-1102"):
        model = json.loads((civitai_samples() / f"{name}.json").read_text())
        for version in model["modelVersions"]:
            got = recommended_weight(version, model)
            assert got is None or got.source == "examples", (name, got)


def test_the_sd15_sample_prompts_weigh_other_things_not_this_model():
    # Its example prompts are full of "(nvinkpunk:0.7)" weights: tag weights, not LoRAs.
    model = json.loads((civitai_samples() / "sd15-checkpoint-model-1102.json").read_text())
    for version in model["modelVersions"]:
        assert recommended_weight(version, model, LoraIdentity(name="SynthwavePunk")) is None


# -- example images ------------------------------------------------------------------------


def _version_with_images(*metas: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": 4242,
        "files": [{"name": "mystyle_v2.safetensors", "hashes": {"SHA256": SHA, "AutoV2": SHA[:10]}}],
        "images": [{"url": "x", "meta": m} for m in metas],
    }


def test_example_prompts_give_the_median_of_the_authors_weights():
    version = _version_with_images(
        {"prompt": "1girl, <lora:mystyle_v2:0.6>, <lora:add_detail:1.5>"},
        {"prompt": "<lora:MyStyle_V2:0.8> city"},
        {"prompt": "<lora:mystyle_v2:0.7:0.5> forest"},
        {"prompt": "no lora here (tag:1.3)"},
    )
    got = recommended_weight(version, None, LoraIdentity(sha256=SHA))
    assert got == RecommendedWeight(0.7, 0.6, 0.8, "examples")


def test_example_resources_match_by_hash_name_or_version_id():
    version = _version_with_images(
        {"resources": [{"type": "lora", "name": "someone_else", "weight": 2.0, "hash": "0000000000"},
                       {"type": "lora", "name": "x", "weight": 0.55, "hash": SHA[:10].lower()}]},
        {"resources": [{"type": "lora", "name": "mystyle_v2", "weight": 0.65}]},
        {"civitaiResources": [{"type": "lora", "weight": 0.75, "modelVersionId": 4242}]},
        {"resources": [{"type": "model", "name": "mystyle_v2", "weight": 3}]},
        {"resources": "broken", "prompt": 7},
        "not a dict",  # type: ignore[arg-type]
    )
    got = recommended_weight(version, None, LoraIdentity(sha256=SHA))
    assert got == RecommendedWeight(0.65, 0.55, 0.75, "examples")


def test_examples_that_never_name_this_lora_say_nothing():
    version = _version_with_images({"prompt": "<lora:other:0.5>"}, {"resources": [{"name": "other", "weight": 1}]})
    assert recommended_weight(version, None, LoraIdentity(sha256="C" * 64, file_name="mine.safetensors")) is None


# -- precedence ----------------------------------------------------------------------------


def test_precedence_civitai_then_version_text_then_model_text_then_examples():
    version = _version_with_images({"prompt": "<lora:mystyle_v2:0.3>"})
    model = {"id": 1, "description": "<p>Recommended weight 0.9</p>"}
    identity = LoraIdentity(sha256=SHA)
    assert recommended_weight(version, None, identity).source == "examples"  # type: ignore[union-attr]
    assert recommended_weight(version, model, identity) == RecommendedWeight(0.9, None, None, "description")
    version["description"] = "<p>Strength: 0.6</p>"
    assert recommended_weight(version, model, identity) == RecommendedWeight(0.6, None, None, "description")
    version["settings"] = {"strength": 1.0}
    assert recommended_weight(version, model, identity) == RecommendedWeight(1.0, None, None, "civitai")


def test_default_weight():
    assert default_weight() == RecommendedWeight(1.0, None, None, "default")
    assert default_weight(0.8).value == 0.8 and default_weight(50).value == 5.0


def test_nonsense_bodies_are_no_recommendation():
    for body in (None, {}, [], "x", {"images": "x", "description": 5, "settings": []}):
        assert recommended_weight(body, body) is None


# -- anything at all -----------------------------------------------------------------------

_HTMLISH = st.lists(
    st.sampled_from(["<p>", "</p>", "<!--", "-->", "<", ">", "&lt;", "lora:", "weight", "strength", "權重", "0.7",
                     "-", "~", "1.5", "x", " ", ":", "\n", "<script>", "<a b=\"", "'", "<lora:a:0.5>", "SD"])
    | st.text(max_size=20),
    max_size=200,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=3000), _HTMLISH))
def test_any_text_is_a_plausible_weight_or_none_quickly(text: str):
    started = time.monotonic()
    got = from_description(text, ["a"])
    assert time.monotonic() - started < 1.0
    assert got is None or -5 <= got.value <= 5
    if got is not None and got.low is not None and got.high is not None:
        assert -5 <= got.low <= got.value <= got.high <= 5
    assert weight_in_text(text) is None or -5 <= weight_in_text(text)[0] <= 5  # type: ignore[index]


@pytest.mark.parametrize(
    "hostile",
    ["<!--" * 50_000, "<" * 200_000, "</" * 100_000, "<a " * 60_000, "weight " * 30_000,
     "weight:" + " " * 100_000 + "0.7", "<lora:" * 40_000, "&#" * 100_000, "<a>" * 60_000],
)
def test_hostile_descriptions_take_bounded_time(hostile: str):
    started = time.monotonic()
    from_description(hostile, ["a"])
    assert time.monotonic() - started < 2.0


def test_parsed_versions_give_the_same_answers_as_their_bodies():
    bodies = [
        *_picker_versions(),
        _version_with_images(
            {"prompt": "<lora:mystyle_v2:0.6>"},
            {"resources": [{"type": "lora", "hash": SHA[:10], "weight": 0.8}]},
            {"civitaiResources": [{"type": "lora", "weight": 0.7, "modelVersionId": 4242}]},
            {"resources": [{"type": "lora", "name": "mystyle_v2", "strength": 0.75}]},
        ),
    ]
    identity = LoraIdentity(sha256=SHA)
    for body in bodies:
        assert recommended_weight(parse_version(body), None, identity) == recommended_weight(body, None, identity)
    assert recommended_weight(parse_version(bodies[-1]), None, identity) == RecommendedWeight(0.7, 0.6, 0.8, "examples")


def test_from_examples_on_its_own_takes_raw_names_or_the_files_names():
    version = _version_with_images({"resources": [{"type": "lora", "name": "My Style V2", "weight": 0.9}]})
    assert from_examples(version, LoraIdentity(), ["mystyle_v2.safetensors"]) == RecommendedWeight(0.9, None, None, "examples")
    assert from_examples(version, LoraIdentity(sha256=SHA)) == RecommendedWeight(0.9, None, None, "examples")
