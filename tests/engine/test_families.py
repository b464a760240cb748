from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.errors import SettingsError
from engine.families import (
    FamilyTable,
    FamilyTableError,
    default_table,
    file_stem,
    normalize_name,
)
from engine.kinds import Architecture

DATA = Path(__file__).resolve().parents[1] / "data" / "families"


@pytest.fixture(scope="module")
def table() -> FamilyTable:
    return FamilyTable.load()


def _enums() -> dict:
    return json.loads((DATA / "api-v1-enums-2026-03.json").read_text(encoding="utf-8"))


def _base_models_in(obj: object) -> set[str]:
    found: set[str] = set()
    if isinstance(obj, dict):
        if isinstance(obj.get("baseModel"), str):
            found.add(obj["baseModel"])
        for value in obj.values():
            found |= _base_models_in(value)
    elif isinstance(obj, list):
        for value in obj:
            found |= _base_models_in(value)
    return found


# -- the shipped table ---------------------------------------------------------------
def test_shipped_table_loads_cleanly(table: FamilyTable) -> None:
    assert table.problems == ()
    assert len(table.families()) > 20


@pytest.mark.parametrize("key", ["BaseModel", "ActiveBaseModel"])
def test_every_civitai_base_model_is_mapped(table: FamilyTable, key: str) -> None:
    for name in _enums()[key]:
        info = table.lookup(name)
        assert info.known, name
        assert info.name == name
        assert info.architecture != Architecture.UNKNOWN, name
        if name == "Other":
            assert info.family is None
        else:
            assert info.family is not None, name
            assert info.family.architecture == info.architecture


def test_base_models_seen_in_real_captures_are_known_except_new_ones(table: FamilyTable) -> None:
    seen: set[str] = set()
    for path in DATA.glob("internal-trpc-*.json"):
        seen |= _base_models_in(json.loads(path.read_text(encoding="utf-8")))
    assert {"Illustrious", "Anima", "SDXL 1.0", "Pony", "Flux.1 D", "ZImageTurbo"} <= seen
    unknown = {name for name in seen if not table.lookup(name).known}
    # "Krea 2" appeared on CivitAI after the enums capture: it must degrade, not crash.
    assert unknown == {"Krea 2"}
    info = table.lookup("Krea 2")
    assert (info.architecture, info.family, info.name) == (Architecture.UNKNOWN, None, "Krea 2")


@pytest.mark.parametrize(
    ("base_model", "family", "arch", "parent"),
    [
        ("Illustrious", "illustrious", Architecture.SDXL, "sdxl"),
        ("NoobAI", "illustrious", Architecture.SDXL, "sdxl"),
        ("Pony", "pony", Architecture.SDXL, "sdxl"),
        ("SDXL 1.0", "sdxl", Architecture.SDXL, None),
        ("SDXL Lightning", "sdxl", Architecture.SDXL, None),
        ("SDXL Hyper", "sdxl", Architecture.SDXL, None),
        ("SDXL Turbo", "sdxl", Architecture.SDXL, None),
        ("SDXL 1.0 LCM", "sdxl", Architecture.SDXL, None),
        ("SDXL Distilled", "sdxl", Architecture.SDXL, None),
        ("Playground v2", "playground", Architecture.SDXL, None),
        ("SD 1.5", "sd1", Architecture.SD1, None),
        ("SD 1.5 Hyper", "sd1", Architecture.SD1, None),
        ("SD 2.1 768", "sd2", Architecture.SD2, None),
        ("Flux.1 D", "flux1", Architecture.FLUX, None),
        ("Flux.1 Krea", "flux1", Architecture.FLUX, None),
        ("Flux.1 Kontext", "flux1", Architecture.FLUX, None),
        ("Chroma", "chroma", Architecture.FLUX, "flux1"),
        ("Flux.2 D", "flux2", Architecture.OTHER, None),
        ("SD 3.5 Large", "sd35", Architecture.SD3, None),
        ("AuraFlow", "auraflow", Architecture.AURAFLOW, None),
        ("Pony V7", "pony-v7", Architecture.AURAFLOW, "auraflow"),
        ("Anima", "anima", Architecture.OTHER, None),
        ("ZImageBase", "zimage", Architecture.OTHER, None),
        ("Wan Video 2.2 T2V-A14B", "wan22-a14b", Architecture.OTHER, "wan21-14b"),
        ("Veo 3", "google", Architecture.OTHER, None),
        ("OpenAI", "openai", Architecture.OTHER, None),
    ],
)
def test_lineage_facts(table: FamilyTable, base_model: str, family: str, arch: Architecture, parent: str | None) -> None:
    info = table.lookup(base_model)
    assert info.family is not None and info.family.id == family
    assert info.architecture == arch
    assert info.family.parent == parent


def test_pony_v7_is_not_in_the_pony_lineage(table: FamilyTable) -> None:
    assert "pony" not in {f.id for f in table.lineage("pony-v7")}
    assert not table.related("pony", "pony-v7")


def test_lineage_lists_the_family_then_its_ancestors(table: FamilyTable) -> None:
    assert [f.id for f in table.lineage("illustrious")] == ["illustrious", "sdxl"]
    assert [f.id for f in table.lineage("wan22-a14b")] == ["wan22-a14b", "wan21-14b", "wan"]
    assert table.lineage("no-such-family") == []
    assert table.lineage(None) == []


def test_common_ancestor_and_related(table: FamilyTable) -> None:
    assert table.common_ancestor("pony", "illustrious").id == "sdxl"
    assert table.common_ancestor("sdxl", "illustrious").id == "sdxl"
    assert table.common_ancestor("playground", "illustrious") is None
    assert table.related("sdxl", "pony") and table.related("pony", "sdxl")
    assert not table.related("pony", "illustrious")


def test_family_lookup(table: FamilyTable) -> None:
    fam = table.family("pony")
    assert fam is not None and fam.label == "Pony"
    assert "score_9" in fam.quality_tags
    assert table.family("nope") is None
    assert table.family(None) is None


def test_every_family_speaks_both_languages(table: FamilyTable) -> None:
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for fam in table.families():
        assert fam.description.en.strip() and fam.description.en != fam.description.zh_tw, fam.id
        assert cjk.search(fam.description.zh_tw), fam.id


def test_every_family_id_is_reachable_and_patterns_compile(table: FamilyTable) -> None:
    for fam in table.families():
        for np in fam.name_patterns:
            re.compile(np.pattern)
            assert np.base_model is None or table.lookup(np.base_model).family.id == fam.id
        assert fam.base_model is None or table.lookup(fam.base_model).family.id == fam.id


# -- lookups -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("SDXL", "SDXL 1.0"),
        ("sdxl 1.0", "SDXL 1.0"),
        ("sdxl_base_v1-0", "SDXL 1.0"),
        ("Illustrious XL", "Illustrious"),
        ("illustrious-xl", "Illustrious"),
        ("NoobAI-XL", "NoobAI"),
        ("noobai xl", "NoobAI"),
        ("Pony Diffusion V6 XL", "Pony"),
        ("  pony  ", "Pony"),
        ("SD1.5", "SD 1.5"),
        ("sd 1.5", "SD 1.5"),
        ("FLUX.1 D", "Flux.1 D"),
        ("flux1-dev", "Flux.1 D"),
        ("wan video 2.2 t2v-a14b", "Wan Video 2.2 T2V-A14B"),
    ],
)
def test_aliases_and_spellings(table: FamilyTable, spelling: str, canonical: str) -> None:
    info = table.lookup(spelling)
    assert info.known and info.name == canonical


@pytest.mark.parametrize("value", [None, "", "   ", "Krea 2", "SDXL 2.0", "🦄", "x" * 500])
def test_unknown_base_models_degrade(table: FamilyTable, value: str | None) -> None:
    info = table.lookup(value)
    assert not info.known
    assert info.family is None
    assert info.architecture == Architecture.UNKNOWN


def test_other_is_known_but_has_no_family(table: FamilyTable) -> None:
    info = table.lookup("other")
    assert info.known and info.family is None and info.architecture == Architecture.OTHER
    assert info.note


def test_names_notes_and_normalisation() -> None:
    assert normalize_name(" SD_XL 1.0-Base ") == "sdxl1.0base"
    assert file_stem("/models/sd_xl_base_1.0.safetensors") == "sd_xl_base_1.0"
    assert file_stem(r"C:\sd\models\ponyDiffusionV6XL.ckpt") == "ponyDiffusionV6XL"
    assert file_stem("sd_xl_base_1.0") == "sd_xl_base_1.0"


def test_base_model_names_for_autocomplete(table: FamilyTable) -> None:
    names = table.base_model_names()
    assert "Illustrious" in names and "SDXL 1.0" in names
    assert "SDXL" not in names  # aliases are spellings, not choices


# -- file names --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filename", "family", "base_model", "strong"),
    [
        ("ponyDiffusionV6XL_v6StartWithThisOne.safetensors", "pony", "Pony", True),
        ("autismmixSDXL_autismmixConfetti.safetensors", "pony", "Pony", True),
        ("novaAnimeXL_ponyV20", "pony", "Pony", True),
        ("illustriousXL_v01.safetensors", "illustrious", "Illustrious", True),
        ("Illustrious-XL-v2.0", "illustrious", "Illustrious", True),
        ("noobaiXLNAIXL_vPred10Version.safetensors", "illustrious", "NoobAI", True),
        ("waiNSFWIllustrious_v140.safetensors", "illustrious", "Illustrious", True),
        ("novaOrangeXL_v100.safetensors", "illustrious", "Illustrious", True),
        ("novaAnimeXL_ilV50", "illustrious", "Illustrious", True),
        ("plantMilkModelSuite_walnut.safetensors", "illustrious", "Illustrious", True),
        ("sd_xl_base_1.0.safetensors", "sdxl", "SDXL 1.0", True),
        ("sd_xl_base_1.0_0.9vae.safetensors", "sdxl", "SDXL 1.0", True),
        ("sdxl_lightning_4step_unet", "sdxl", "SDXL Lightning", True),
        ("juggernautXL_v9Rdphoto2Lightning", "sdxl", "SDXL 1.0", True),
        ("animagineXL40_v4Opt", "sdxl", "SDXL 1.0", True),
        ("playground-v2.5-1024px-aesthetic.fp16", "playground", "Playground v2", True),
        ("v1-5-pruned-emaonly.safetensors", "sd1", "SD 1.5", True),
        ("dreamshaper_8.safetensors", "sd1", "SD 1.5", True),
        ("realisticVisionV60B1_v51VAE", "sd1", "SD 1.5", True),
        ("synthwavepunk_v3Alpha.safetensors", "sd1", "SD 1.5", True),
        ("v2-1_768-ema-pruned", "sd2", "SD 2.1 768", True),
        ("flux1-dev.safetensors", "flux1", "Flux.1 D", True),
        ("flux1-schnell-fp8", "flux1", "Flux.1 S", True),
        ("flux1-krea-dev_fp8_scaled", "flux1", "Flux.1 Krea", True),
        ("flux2_dev_fp8mixed", "flux2", "Flux.2 D", True),
        ("Chroma1-HD", "chroma", "Chroma", True),
        ("pony-v7-base.safetensors", "pony-v7", "Pony V7", True),
        ("sd3.5_large_turbo", "sd35", "SD 3.5 Large Turbo", True),
        ("z_image_turbo_bf16", "zimage", "ZImageTurbo", True),
        ("wan2.1_t2v_1.3B_fp16", "wan21-1_3b", "Wan Video 1.3B t2v", True),
        ("wan2.2_ti2v_5B_fp16", "wan22-5b", "Wan Video 2.2 TI2V-5B", True),
        # weak hints only
        ("choke_hold_rnc_ilxl.safetensors", "illustrious", "Illustrious", False),
        ("my_pony_lora", "pony", "Pony", False),
        ("cuteStyle_sdxl_v2", "sdxl", "SDXL 1.0", False),
    ],
)
def test_guess_from_name(table: FamilyTable, filename: str, family: str, base_model: str, strong: bool) -> None:
    guess = table.guess_from_name(filename)
    assert guess is not None, filename
    assert (guess.family.id, guess.base_model, guess.strong) == (family, base_model, strong)


@pytest.mark.parametrize(
    "filename",
    [
        "(IL+Pony) Rear Naked Choke",  # advertises two families: no guess
        "Semi-realistic.safetensors",
        "pp-storybook_rank2_bf16.safetensors",
        "animatediff_v3",  # "anima" inside another word
        "chromaXL_v1",  # an SDXL merge, not Chroma: weak hints disagree
        "",
        None,
    ],
)
def test_no_guess_when_unsure(table: FamilyTable, filename: str | None) -> None:
    assert table.guess_from_name(filename) is None


def test_guess_ignores_folders(table: FamilyTable) -> None:
    guess = table.guess_from_name(r"C:\Users\me\illustrious_pony_stuff\sd_xl_base_1.0.safetensors")
    assert guess is not None and guess.family.id == "sdxl" and guess.strong


def test_strong_specific_family_beats_weak_parent(table: FamilyTable) -> None:
    # "SDXL" in the name is a weak sdxl hint; autismmix is a strong Pony one.
    guess = table.guess_from_name("autismmixSDXL_autismmixPony")
    assert guess is not None and guess.family.id == "pony" and guess.strong


# -- kohya metadata ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "arch"),
    [
        ("sd_v1", Architecture.SD1),
        ("sd_v2", Architecture.SD2),
        ("sd_v2_v", Architecture.SD2),
        ("sdxl_base_v1-0", Architecture.SDXL),
        ("SDXL_BASE_V1-0", Architecture.SDXL),
        ("flux1", Architecture.FLUX),
        ("chroma", Architecture.FLUX),
        ("sd3", Architecture.SD3),
        ("lumina2", Architecture.OTHER),
        ("flux2", Architecture.OTHER),
        ("", Architecture.UNKNOWN),
        (None, Architecture.UNKNOWN),
        ("my-custom-trainer", Architecture.UNKNOWN),
    ],
)
def test_arch_from_ss_base_model_version(table: FamilyTable, value: str | None, arch: Architecture) -> None:
    assert table.arch_from_ss_base_model_version(value) == arch


# -- the admin file ------------------------------------------------------------------
ADMIN_OK = """
[aliases]
"IL 2" = "Krea 2"

[base_models]
"Krea 2" = { family = "krea2", note = "added by the admin" }

[families.krea2]
label = "Krea 2"
architecture = "other"
base_model = "Krea 2"
description = { en = "Krea's second model.", zh-TW = "Krea 的第二代模型。" }
names = [ { pattern = '^krea2', strong = true } ]

[families.illustrious]
quality_tags = ["masterpiece", "best quality"]
names = [ { pattern = '^houseMix', strong = true } ]
vocabulary = ['house_style']

[ss_base_model_version]
'^sdxl_house' = "sdxl"
"""


def test_admin_file_extends_the_table(tmp_path: Path) -> None:
    path = tmp_path / "families.toml"
    path.write_text(ADMIN_OK, encoding="utf-8")
    table = FamilyTable.load(path)
    assert table.problems == ()
    assert str(path) in table.sources
    info = table.lookup("krea 2")
    assert info.known and info.family.id == "krea2" and info.architecture == Architecture.OTHER
    assert table.lookup("IL 2").name == "Krea 2"
    assert table.guess_from_name("krea2_fp8").family.id == "krea2"
    il = table.family("illustrious")
    # replaced field
    assert il.quality_tags == ("masterpiece", "best quality")
    # extended fields keep the shipped entries, admin's first
    assert il.vocabulary[0] == "house_style" and "very_awa" in il.vocabulary
    assert table.guess_from_name("houseMix_v2").family.id == "illustrious"
    assert table.guess_from_name("novaOrangeXL_v100").family.id == "illustrious"
    # untouched fields survive
    assert il.parent == "sdxl" and il.label == "Illustrious"
    assert table.arch_from_ss_base_model_version("sdxl_house") == Architecture.SDXL


def test_missing_admin_file_is_fine(tmp_path: Path) -> None:
    table = FamilyTable.load(tmp_path / "absent.toml")
    assert table.problems == ()
    assert table.lookup("Pony").known


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[families.x\nlabel = ", "not valid TOML"),
        ('[families.x]\nlabel = "X"\narchitecture = "sdxxl"\ndescription = { en = "a", zh-TW = "乙" }\n', "sdxxl"),
        ('[families.x]\nlabel = "X"\narchitecture = "sdxl"\nparent = "ghost"\ndescription = { en = "a", zh-TW = "乙" }\n', "ghost"),
        ('[families.x]\nlabel = "X"\narchitecture = "sdxl"\ndescription = { en = "a" }\n', "zh-TW"),
        ("[families.illustrious]\nnames = [ { pattern = '(unclosed', strong = true } ]\n", "regular expression"),
        ('[families.sdxl]\nparent = "pony"\n', "own ancestor"),
        ('[base_models]\n"New" = { family = "nowhere" }\n', "nowhere"),
        ('[aliases]\n"X" = "Not A Base Model"\n', "Not A Base Model"),
        ('[aliases]\n"Pony" = "Illustrious"\n', "would mean both"),
        ('[famlies.x]\nlabel = "typo"\n', "famlies"),
        ('[families.pony]\nlabels = "typo"\n', "labels"),
    ],
)
def test_broken_admin_file_is_reported_and_shipped_table_still_works(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "families.toml"
    path.write_text(content, encoding="utf-8")
    table = FamilyTable.load(path)
    assert len(table.problems) == 1
    problem = table.problems[0]
    assert str(path) in str(problem) and reason in str(problem)
    assert str(path) in problem.localized("zh-TW")
    assert table.lookup("Illustrious").family.id == "illustrious"
    assert table.lookup("NoobAI").family.id == "illustrious"

    with pytest.raises(FamilyTableError) as exc:
        FamilyTable.load(path, strict=True)
    assert isinstance(exc.value, SettingsError)
    assert str(path) in str(exc.value)


def test_default_table_is_cached() -> None:
    assert default_table() is default_table()
    assert default_table().lookup("Pony").family.id == "pony"


# -- prompt conventions (/checkpoint info) -------------------------------------------
def test_prompt_conventions_per_family_and_base_model(table: FamilyTable) -> None:
    pony = table.family("pony")
    assert pony is not None
    by_kind = {c.kind: c for c in pony.prompt_conventions("Pony")}
    assert by_kind["quality"].tags == ("score_9", "score_8_up", "score_7_up")
    assert "source_anime" in by_kind["source"].tags
    assert set(by_kind["rating"].tags) == {"rating_safe", "rating_questionable", "rating_explicit"}
    illustrious = table.family("illustrious")
    assert illustrious is not None
    plain = illustrious.prompt_conventions("Illustrious")
    noob = illustrious.prompt_conventions("noobai")  # case and spacing do not matter
    assert {"masterpiece", "very aesthetic", "absurdres"} <= set(plain[0].tags)
    assert [c for c in noob if c.base_model] and not [c for c in plain if c.base_model]
    assert {"newest", "year 2024", "very awa"} <= {t for c in noob for t in c.tags}
    for family in table.families():
        for c in family.conventions:
            assert c.source and c.text.en and c.text.zh_tw, family.id


@pytest.mark.parametrize(
    "conventions",
    [
        '"not a list"',
        '[{ kind = "vibes", tags = ["x"], en = "a", zh-TW = "b", source = "c" }]',
        '[{ kind = "quality", tags = [], en = "a", zh-TW = "b", source = "c" }]',
        '[{ kind = "quality", tags = ["x"], en = "a", zh-TW = "b" }]',
        '[{ kind = "quality", tags = ["x"], en = "a", zh-TW = "b", source = "c", base_model = "Nope" }]',
        '[{ kind = "quality", tags = ["x"], en = "a", zh-TW = "b", source = "c", colour = "red" }]',
    ],
)
def test_a_broken_convention_is_reported_and_the_shipped_table_kept(tmp_path: Path, conventions: str) -> None:
    path = tmp_path / "families.toml"
    path.write_text(f"[families.pony]\nconventions = {conventions}\n", encoding="utf-8")
    table = FamilyTable.load(path)
    assert len(table.problems) == 1 and str(path) in str(table.problems[0])
    pony = table.family("pony")
    assert pony is not None and pony.conventions[0].tags[0] == "score_9"
