from __future__ import annotations

import json
import re
from typing import Any

import pytest

from engine.families import FamilyTable
from engine.i18n import EN, ZH_TW, Fix, Text
from engine.kinds import Architecture as A
from engine.verdicts import BaseModelClaim, Evidence, ModelFacts, Source, Verdict, VerdictResult, judge

SHA_CKPT = "AB" * 32
SHA_OTHER = "CD" * 32
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def table() -> FamilyTable:
    return FamilyTable.load()


def facts(
    name: str,
    category: str,
    base: str | None = None,
    source: Source | None = Source.CIVITAI,
    arch: A = A.SDXL,
    arch_source: Source = Source.TENSORS,
    **kw: Any,
) -> ModelFacts:
    return ModelFacts(
        name=name,
        category=category,
        sha256=kw.pop("sha256", None),
        autov1=kw.pop("autov1", None),
        architecture=arch,
        architecture_source=arch_source,
        base_model=base,
        base_model_source=source if base else None,
        **kw,
    )


def lora(name: str = "cuteStyle", base: str | None = None, **kw: Any) -> ModelFacts:
    return facts(name, "lora", base, **kw)


def ckpt(name: str = "novaOrangeXL_v100", base: str | None = "Illustrious", **kw: Any) -> ModelFacts:
    kw.setdefault("sha256", SHA_CKPT)
    return facts(name, "checkpoint", base, **kw)


def texts(result: VerdictResult, locale: str = EN) -> list[str]:
    return [e.render(locale) for e in result.evidence]


def assert_explained(result: VerdictResult, *needles: str) -> None:
    en, zh = result.explanation[EN], result.explanation[ZH_TW]
    for needle in needles:
        assert needle in en, (needle, en)
    assert CJK.search(zh), zh
    assert en != zh
    assert "{" not in en and "{" not in zh  # every placeholder was filled


def by_source(result: VerdictResult, source: Source) -> list[str]:
    return [e.render(EN) for e in result.evidence if e.source == source]


# -- enums and small types -------------------------------------------------------------
def test_verdict_and_source_values() -> None:
    assert [str(v) for v in Verdict] == ["exact", "same_family", "other_family", "incompatible", "unknown"]
    assert [str(s) for s in Source] == ["admin", "civitai", "metadata", "filename", "tensors"]
    assert [s.rank for s in Source] == [0, 1, 2, 3, 4]


def test_evidence_renders_and_prints_with_its_source() -> None:
    ev = Evidence(Source.CIVITAI, Text("Base model {b}.", "基礎模型 {b}。"), {"b": "Pony"})
    assert ev.render() == "Base model Pony."
    assert ev.render("zh-TW") == "基礎模型 Pony。"
    assert str(ev) == "civitai: Base model Pony."


# -- exact --------------------------------------------------------------------------------
def test_exact_by_sha256(table: FamilyTable) -> None:
    result = judge(lora(base="Illustrious", trained_on_sha256=SHA_CKPT.lower()), ckpt(), table)
    assert result.verdict == Verdict.EXACT and result.applies
    assert result.warning() is None
    assert_explained(result, "cuteStyle", "novaOrangeXL_v100", "SHA-256")
    assert any("SHA-256" in t for t in by_source(result, Source.METADATA))


def test_exact_when_civitai_links_them_even_for_another_file_of_the_version(table: FamilyTable) -> None:
    result = judge(
        lora(base="Illustrious", trained_on_sha256=SHA_OTHER, trained_on_civitai_version_id=1421739),
        ckpt(civitai_version_id=1421739),
        table,
    )
    assert result.verdict == Verdict.EXACT
    assert_explained(result, "CivitAI links them")
    assert any("1421739" in t for t in by_source(result, Source.CIVITAI))


def test_exact_by_legacy_autov1_is_marked_weaker(table: FamilyTable) -> None:
    result = judge(lora(trained_on_autov1="e6bb9ea85b"), ckpt(autov1="E6BB9EA85B"), table)
    assert result.verdict == Verdict.EXACT
    assert_explained(result, "short")
    assert any("E6BB9EA85B" in t for t in by_source(result, Source.METADATA))


def test_exact_by_name_is_the_weakest(table: FamilyTable) -> None:
    result = judge(
        lora(trained_on_name=r"C:\webui\models\Stable-diffusion\NovaOrangeXL_V100.safetensors"),
        ckpt(name="novaOrangeXL_v100"),
        table,
    )
    assert result.verdict == Verdict.EXACT
    assert_explained(result, "weakest")


def test_name_keeps_dots_that_are_not_extensions(table: FamilyTable) -> None:
    result = judge(lora(trained_on_name="sd_xl_base_1.0.safetensors"), ckpt("sd_xl_base_1.0", "SDXL 1.0"), table)
    assert result.verdict == Verdict.EXACT
    other = judge(lora(trained_on_name="sd_xl_base_1.0.safetensors"), ckpt("sd_xl_base_1", "SDXL 1.0"), table)
    assert other.verdict != Verdict.EXACT


def test_strongest_exact_proof_is_the_one_explained(table: FamilyTable) -> None:
    result = judge(
        lora(trained_on_sha256=SHA_CKPT, trained_on_name="novaOrangeXL_v100", trained_on_autov1="1234abcd"),
        ckpt(autov1="1234ABCD"),
        table,
    )
    assert result.verdict == Verdict.EXACT
    assert "SHA-256" in result.explanation[EN]
    assert len(by_source(result, Source.METADATA)) == 3  # sha, autov1 and name all listed


def test_differing_sha256_overrules_same_name_and_autov1(table: FamilyTable) -> None:
    result = judge(
        lora(base="Illustrious", trained_on_sha256=SHA_OTHER, trained_on_autov1="1234abcd", trained_on_name="novaOrangeXL_v100"),
        ckpt(autov1="1234ABCD"),
        table,
    )
    assert result.verdict == Verdict.SAME_FAMILY
    joined = " ".join(by_source(result, Source.METADATA))
    assert "different file" in joined and "another version" in joined


# -- incompatible -------------------------------------------------------------------------
def test_sd15_lora_on_sdxl_checkpoint_is_refused(table: FamilyTable) -> None:
    result = judge(lora("oldStyle", "SD 1.5", arch=A.SD1), ckpt(), table)
    assert result.verdict == Verdict.INCOMPATIBLE
    assert not result.applies
    assert result.warning() is None
    assert (result.lora_architecture, result.checkpoint_architecture) == (A.SD1, A.SDXL)
    assert_explained(result, "oldStyle", "novaOrangeXL_v100", "SD 1.x", "Illustrious (SDXL)", "cannot be applied")
    assert "SD 1.x" in result.explanation[ZH_TW] and "無法套用" in result.explanation[ZH_TW]


def test_flux_lora_on_sdxl_is_refused(table: FamilyTable) -> None:
    result = judge(lora("storybook", "Flux.1 D", arch=A.FLUX), ckpt("sd_xl_base_1.0", "SDXL 1.0"), table)
    assert result.verdict == Verdict.INCOMPATIBLE
    assert_explained(result, "Flux.1", "SDXL")


def test_pony_v7_lora_does_not_fit_pony_v6(table: FamilyTable) -> None:
    result = judge(lora("v7Style", "Pony V7", arch=A.AURAFLOW), ckpt("autismmixSDXL_autismmixPony", "Pony"), table)
    assert result.verdict == Verdict.INCOMPATIBLE
    assert_explained(result, "Pony V7 (AuraFlow)", "Pony (SDXL)")


def test_architecture_from_the_family_when_layers_are_unknown(table: FamilyTable) -> None:
    result = judge(lora("oldStyle", "SD 1.5", arch=A.UNKNOWN), ckpt(), table)
    assert result.verdict == Verdict.INCOMPATIBLE
    assert result.lora_architecture == A.SD1
    assert any("could not tell the architecture" in t for t in texts(result))


def test_incompatible_wins_over_a_matching_hash(table: FamilyTable) -> None:
    # A mismatch in layer shapes is physical: refuse even if the metadata claims otherwise.
    result = judge(lora(arch=A.SD1, trained_on_sha256=SHA_CKPT), ckpt(), table)
    assert result.verdict == Verdict.INCOMPATIBLE


def test_two_unrelated_models_of_other_architectures_are_incompatible(table: FamilyTable) -> None:
    result = judge(
        lora("tinyWan", "Wan Video 1.3B t2v", arch=A.OTHER),
        ckpt("wan14", "Wan Video 14B t2v", arch=A.OTHER),
        table,
    )
    assert result.verdict == Verdict.INCOMPATIBLE
    assert_explained(result, "Wan 2.1 1.3B", "Wan 2.1 14B")


def test_related_models_of_other_architectures_may_partly_work(table: FamilyTable) -> None:
    result = judge(
        lora("wan21Lora", "Wan Video 14B t2v", arch=A.OTHER),
        ckpt("wan22", "Wan Video 2.2 T2V-A14B", arch=A.OTHER),
        table,
    )
    assert result.verdict == Verdict.OTHER_FAMILY


def test_other_architecture_without_family_is_described_plainly(table: FamilyTable) -> None:
    result = judge(lora("weird", arch=A.OTHER), ckpt(), table)
    assert result.verdict == Verdict.INCOMPATIBLE
    assert "cannot draw with" in result.explanation[EN]


# -- same family ----------------------------------------------------------------------------
def test_illustrious_lora_on_illustrious_merge(table: FamilyTable) -> None:
    result = judge(lora(base="Illustrious"), ckpt(), table)
    assert result.verdict == Verdict.SAME_FAMILY and result.applies
    assert result.lora_family.id == result.checkpoint_family.id == "illustrious"
    assert result.warning() is None
    assert_explained(result, "cuteStyle", "novaOrangeXL_v100", "Illustrious family")


@pytest.mark.parametrize(("lora_base", "ckpt_base"), [("NoobAI", "Illustrious"), ("Illustrious", "NoobAI")])
def test_noobai_and_illustrious_are_one_lineage(table: FamilyTable, lora_base: str, ckpt_base: str) -> None:
    result = judge(lora(base=lora_base), ckpt(base=ckpt_base), table)
    assert result.verdict == Verdict.SAME_FAMILY
    assert_explained(result, "NoobAI", "Illustrious family")
    assert (result.lora_base_model, result.checkpoint_base_model) == (lora_base, ckpt_base)


def test_lora_family_from_its_training_checkpoint(table: FamilyTable) -> None:
    result = judge(lora(trained_on_base_model="Illustrious", trained_on_sha256=SHA_OTHER), ckpt(), table)
    assert result.verdict == Verdict.SAME_FAMILY
    assert any("was trained on a checkpoint that CivitAI lists as “Illustrious”" in t for t in by_source(result, Source.CIVITAI))


def test_a_library_training_checkpoint_outranks_caption_tags(table: FamilyTable) -> None:
    # Knowledge turns Pony score tags in the captions into a weak metadata claim; the
    # checkpoint the LoRA recorded by SHA-256, found in the library, is firmer metadata.
    trained = lora(
        "ilStyle",
        "Pony",
        source=Source.METADATA,
        trained_on_sha256=SHA_OTHER,
        trained_on_base_model="Illustrious",
        trained_on_library_checkpoint="illustriousXL_v01",
    )
    result = judge(trained, ckpt("plantMilk_v10", "Illustrious"), table)
    assert result.verdict == Verdict.SAME_FAMILY and result.lora_base_model == "Illustrious"
    meta = by_source(result, Source.METADATA)
    assert any("illustriousXL_v01" in t and "Illustrious family" in t for t in meta)
    assert any("“Pony”" in t and "would be the Pony family, but the checkpoint it was trained on is trusted more" in t for t in meta)


def test_a_generic_sdxl_label_is_refined_by_the_training_checkpoint(table: FamilyTable) -> None:
    # Many Illustrious and Pony LoRAs were filed on CivitAI as "SDXL 1.0" before those
    # base models existed there; the checkpoint they were trained on says more.
    filed = lora("oldUpload", "SDXL 1.0", trained_on_sha256=SHA_OTHER, trained_on_base_model="Illustrious")
    result = judge(filed, ckpt(), table)
    assert result.verdict == Verdict.SAME_FAMILY and result.lora_base_model == "Illustrious"
    civitai = by_source(result, Source.CIVITAI)
    assert any("“SDXL 1.0”" in t for t in civitai)
    assert any("“Illustrious”" in t and "more specific" in t for t in civitai)
    zh = [e.render(ZH_TW) for e in result.evidence if e.source == Source.CIVITAI]
    assert any("更具體" in t for t in zh)


def test_a_specific_label_is_not_overruled_by_a_generic_or_sibling_training_checkpoint(table: FamilyTable) -> None:
    plain = judge(lora("il", "Illustrious", trained_on_sha256=SHA_OTHER, trained_on_base_model="SDXL 1.0"), ckpt(), table)
    assert plain.verdict == Verdict.SAME_FAMILY and plain.lora_base_model == "Illustrious"
    sibling = judge(lora("pn", "Pony", trained_on_sha256=SHA_OTHER, trained_on_base_model="Illustrious"), ckpt(), table)
    assert sibling.verdict == Verdict.OTHER_FAMILY and sibling.lora_base_model == "Pony"
    # Both facts come from CivitAI: the evidence says which of them counts.
    assert any("but the label of “pn” itself is trusted more" in t for t in by_source(sibling, Source.CIVITAI))


def test_an_admin_plain_sdxl_setting_is_not_refined(table: FamilyTable) -> None:
    admin = lora("x", "SDXL 1.0", source=Source.ADMIN, trained_on_sha256=SHA_OTHER, trained_on_base_model="Illustrious")
    result = judge(admin, ckpt(), table)
    assert result.verdict == Verdict.OTHER_FAMILY and result.lora_base_model == "SDXL 1.0"


# -- other family ---------------------------------------------------------------------------
def test_pony_lora_on_illustrious(table: FamilyTable) -> None:
    result = judge(lora("ponyStyle", "Pony"), ckpt(), table)
    assert result.verdict == Verdict.OTHER_FAMILY and result.applies
    assert_explained(result, "ponyStyle", "Pony", "Illustrious", "SDXL", "curry")
    assert "咖哩" in result.explanation[ZH_TW]
    assert result.warning(EN) == "“ponyStyle” was made for Pony, not Illustrious: results may differ from the author's examples."
    assert "Pony" in result.warning(ZH_TW) and CJK.search(result.warning(ZH_TW))


def test_plain_sdxl_lora_on_illustrious_says_the_checkpoint_descends_from_sdxl(table: FamilyTable) -> None:
    result = judge(lora("detailer", "SDXL 1.0"), ckpt(), table)
    assert result.verdict == Verdict.OTHER_FAMILY
    assert_explained(result, "plain SDXL", "descends from SDXL", "may partly work")


def test_illustrious_lora_on_plain_sdxl(table: FamilyTable) -> None:
    result = judge(lora(base="Illustrious"), ckpt("sd_xl_base_1.0", "SDXL 1.0"), table)
    assert result.verdict == Verdict.OTHER_FAMILY
    assert_explained(result, "descends from SDXL", "plain SDXL")


def test_same_shape_but_unrelated_lineages(table: FamilyTable) -> None:
    result = judge(lora("pgStyle", "Playground v2"), ckpt(), table)
    assert result.verdict == Verdict.OTHER_FAMILY
    assert_explained(result, "trained separately", "SDXL")


# -- unknown ---------------------------------------------------------------------------------
def test_unknown_lora_family_says_what_and_how_to_fix(table: FamilyTable) -> None:
    result = judge(lora("mystery"), ckpt(), table)
    assert result.verdict == Verdict.UNKNOWN and result.applies
    assert result.lora_family is None and result.checkpoint_family.id == "illustrious"
    assert_explained(
        result,
        "the LoRA “mystery”",
        "neither CivitAI nor the file names a base model",
        "Both are SDXL models",
        "An admin can set the base model of “mystery”.",
    )
    zh = result.explanation[ZH_TW]
    assert "管理員可以設定「mystery」的基礎模型" in zh
    # how to set it is each front end's to say (bot/discord_app/hints.py, bot/cli/hints.py)
    assert result.fix == Fix("set_base_model", {"name": "mystery"})
    assert "/admin" not in result.explanation[EN] + zh and "loracle library" not in result.explanation[EN] + zh
    assert "checkpoint “novaOrangeXL_v100” belongs" not in result.explanation[EN]
    assert result.warning(EN) == "Loracle cannot tell whether “mystery” suits “novaOrangeXL_v100”; results may differ."


def test_unknown_new_base_model_points_to_the_family_file(table: FamilyTable) -> None:
    result = judge(lora("kreaThing", "Krea 2", arch=A.UNKNOWN), ckpt(), table)
    assert result.verdict == Verdict.UNKNOWN
    assert_explained(result, "“Krea 2” is not in Loracle's family table", "families.toml", "could not confirm")
    assert any("does not know that base model" in t for t in by_source(result, Source.CIVITAI))


def test_unknown_checkpoint_family(table: FamilyTable) -> None:
    result = judge(lora(base="Pony"), ckpt("myMerge_v3", None), table)
    assert result.verdict == Verdict.UNKNOWN
    assert_explained(result, "the checkpoint “myMerge_v3”", "base model of “myMerge_v3”")
    assert result.fix == Fix("set_base_model", {"name": "myMerge_v3"})


def test_civitai_other_says_nothing(table: FamilyTable) -> None:
    result = judge(lora("milking", "Other"), ckpt(), table)
    assert result.verdict == Verdict.UNKNOWN
    assert_explained(result, "only given as “Other”")


def test_both_unknown_are_both_named(table: FamilyTable) -> None:
    result = judge(lora("a"), ckpt("b", None, arch=A.UNKNOWN), table)
    assert result.verdict == Verdict.UNKNOWN
    assert_explained(result, "the LoRA “a”", "the checkpoint “b”", "could not confirm")


# -- where facts come from, and conflicts ----------------------------------------------------
def test_admin_override_beats_civitai(table: FamilyTable) -> None:
    result = judge(
        lora("fixed", "Illustrious", source=Source.ADMIN, base_model_claims=[BaseModelClaim(Source.CIVITAI, "Pony")]),
        ckpt(),
        table,
    )
    assert result.verdict == Verdict.SAME_FAMILY
    assert result.lora_family.id == "illustrious"
    assert by_source(result, Source.ADMIN) == ["An admin set the base model of “fixed” to “Illustrious”. That is the Illustrious family."]
    civitai = by_source(result, Source.CIVITAI)
    assert any("“Pony”" in t and "an admin's setting is trusted more" in t for t in civitai)
    zh = [e.render(ZH_TW) for e in result.evidence if e.source == Source.CIVITAI]
    assert any("管理員的設定較可信" in t for t in zh)


def test_trust_order_holds_whatever_order_claims_arrive_in(table: FamilyTable) -> None:
    result = judge(
        lora("fixed", "Pony", source=Source.FILENAME, base_model_claims=[BaseModelClaim(Source.ADMIN, "Illustrious")]),
        ckpt(),
        table,
    )
    assert result.lora_family.id == "illustrious"
    assert result.evidence[0].source == Source.ADMIN


def test_civitai_beats_metadata(table: FamilyTable) -> None:
    result = judge(lora("tagged", "Pony", source=Source.METADATA, trained_on_base_model="Illustrious"), ckpt(), table)
    assert result.verdict == Verdict.SAME_FAMILY
    meta = by_source(result, Source.METADATA)
    assert any("“Pony”" in t and "CivitAI is trusted more" in t for t in meta)


def test_label_contradicting_the_layers_is_ignored(table: FamilyTable) -> None:
    # CivitAI uploads are sometimes mislabelled; the tensors cannot lie about shapes.
    on_sd15 = judge(lora("mislabel", "Illustrious", arch=A.SD1), ckpt("dreamshaper_8", "SD 1.5", arch=A.SD1), table)
    assert on_sd15.verdict == Verdict.UNKNOWN
    assert on_sd15.lora_family is None
    assert_explained(on_sd15, "contradicts the file's own layers", "Both are SD 1.x models")
    assert any("so this label is ignored" in t for t in by_source(on_sd15, Source.CIVITAI))
    on_sdxl = judge(lora("mislabel", "Illustrious", arch=A.SD1), ckpt(), table)
    assert on_sdxl.verdict == Verdict.INCOMPATIBLE


def test_lower_claim_used_when_higher_one_contradicts_layers(table: FamilyTable) -> None:
    result = judge(
        lora("mislabel", "Illustrious", arch=A.SD1, base_model_claims=[BaseModelClaim(Source.METADATA, "SD 1.5")]),
        ckpt("dreamshaper_8", "SD 1.5", arch=A.SD1),
        table,
    )
    assert result.verdict == Verdict.SAME_FAMILY
    assert result.lora_family.id == "sd1"


def test_admin_base_model_wins_over_layers(table: FamilyTable) -> None:
    result = judge(lora("oddFormat", "Illustrious", source=Source.ADMIN, arch=A.SD1), ckpt(), table)
    assert result.verdict == Verdict.SAME_FAMILY
    assert result.lora_architecture == A.SDXL
    assert any("an admin's setting is trusted more" in t for t in by_source(result, Source.ADMIN))


def test_family_guessed_from_training_checkpoint_name(table: FamilyTable) -> None:
    result = judge(lora(trained_on_name="ponyDiffusionV6XL_v6StartWithThisOne.safetensors"), ckpt(), table)
    assert result.verdict == Verdict.OTHER_FAMILY
    assert result.lora_family.id == "pony"
    assert any("ponyDiffusionV6XL_v6StartWithThisOne" in t and "“Pony”" in t for t in by_source(result, Source.FILENAME))


def test_family_guessed_from_checkpoint_file_name(table: FamilyTable) -> None:
    result = judge(lora(base="NoobAI"), ckpt("waiNSFWIllustrious_v140", None), table)
    assert result.verdict == Verdict.SAME_FAMILY
    assert by_source(result, Source.FILENAME) == [
        "The file name “waiNSFWIllustrious_v140” suggests the base model “Illustrious”. That is the Illustrious family."
    ]


def test_weak_name_hints_do_not_decide(table: FamilyTable) -> None:
    result = judge(lora("my_pony_lora"), ckpt(), table)
    assert result.verdict == Verdict.UNKNOWN


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        (Source.ADMIN, "An admin set the architecture"),
        (Source.CIVITAI, "CivitAI says"),
        (Source.METADATA, "The metadata of"),
        (Source.FILENAME, "suggests it is built for"),
        (Source.TENSORS, "The layers inside"),
    ],
)
def test_architecture_evidence_names_its_source(table: FamilyTable, source: Source, phrase: str) -> None:
    result = judge(lora(base="Pony", arch_source=source), ckpt(), table)
    assert any(phrase in t and "SDXL" in t for t in by_source(result, source))


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        (Source.ADMIN, "An admin set the base model"),
        (Source.CIVITAI, "CivitAI lists the base model"),
        (Source.METADATA, "The metadata of “cuteStyle” gives its base model"),
        (Source.FILENAME, "The name “cuteStyle” suggests the base model"),
    ],
)
def test_base_model_evidence_names_its_source(table: FamilyTable, source: Source, phrase: str) -> None:
    result = judge(lora(base="Pony", source=source), ckpt(), table)
    assert any(phrase in t and "Pony family" in t for t in by_source(result, source))


def test_evidence_in_trust_order_with_upstream_notes(table: FamilyTable) -> None:
    note = Evidence(Source.METADATA, Text("its training captions use score tags", "訓練標註使用了 score 標籤"), {})
    result = judge(
        lora(base="Pony", trained_on_name="ponyDiffusionV6XL", notes=[note]),
        ckpt(base="Illustrious", source=Source.ADMIN),
        table,
    )
    ranks = [e.source.rank for e in result.evidence]
    assert ranks == sorted(ranks)
    assert note in result.evidence
    assert {e.source for e in result.evidence} >= {Source.ADMIN, Source.CIVITAI, Source.METADATA, Source.TENSORS}
    assert any("names the checkpoint “ponyDiffusionV6XL”" in t for t in by_source(result, Source.METADATA))
    for ev in result.evidence:
        assert "{" not in ev.render(EN) and "{" not in ev.render(ZH_TW)


def test_result_as_dict_is_json_ready(table: FamilyTable) -> None:
    result = judge(lora("ponyStyle", "Pony"), ckpt(), table)
    data = json.loads(json.dumps(result.as_dict("zh-TW")))
    assert data["verdict"] == "other_family" and data["applies"] is True
    assert data["lora"] == {"family": "pony", "base_model": "Pony", "architecture": "sdxl"}
    assert data["explanation"] == result.explanation[ZH_TW] == result.explain("zh_TW")
    assert data["evidence"][0]["source"] == "civitai"


def test_judge_defaults_to_the_shipped_table() -> None:
    assert judge(lora(base="Pony"), ckpt(base="Pony")).verdict == Verdict.SAME_FAMILY


def test_admin_family_file_feeds_verdicts(tmp_path) -> None:
    path = tmp_path / "families.toml"
    path.write_text(
        '[base_models]\n"House Mix" = { family = "illustrious" }\n',
        encoding="utf-8",
    )
    table = FamilyTable.load(path)
    assert judge(lora(base="House Mix"), ckpt(), table).verdict == Verdict.SAME_FAMILY
    assert judge(lora(base="House Mix"), ckpt()).verdict == Verdict.UNKNOWN


def test_plain_strings_from_storage_are_accepted(table: FamilyTable) -> None:
    # Rows read back from SQLite carry plain strings, not enum members.
    result = judge(lora(base="SD 1.5", arch="sd1", arch_source="tensors"), ckpt(arch="sdxl"), table)
    assert result.verdict == Verdict.INCOMPATIBLE
    assert result.lora_architecture == A.SD1
