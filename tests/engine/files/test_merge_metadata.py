"""Merge parents read from a checkpoint's metadata, as the mergers write them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.files.merge_metadata import NO_LINEAGE, merge_lineage, read_merge_lineage
from tests.factories.merges import a1111_merge, a1111_model_hash
from tests.factories.model_files import write_checkpoint, write_raw


@pytest.fixture
def parents(tmp_path: Path) -> dict[str, Path]:
    # Different metadata makes different files (and SHA-256s) of the same shapes.
    return {
        name: write_checkpoint(tmp_path / f"{name}.safetensors", "sdxl", metadata={"modelspec.title": name})
        for name in ("illustriousBase_v10", "ponyParent_v6", "noobDiff_v11", "grandparent_v1")
    }


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest().upper()


def test_a1111_weighted_sum_names_both_parents(tmp_path: Path, parents: dict[str, Path]) -> None:
    merged = a1111_merge(tmp_path / "myMerge.safetensors", parents["illustriousBase_v10"], parents["ponyParent_v6"])
    lineage = read_merge_lineage(merged)
    assert lineage.is_merge and lineage.tool == "webui" and lineage.key == "sd_merge_models"
    assert (lineage.method, lineage.multiplier) == ("Weighted sum", 0.3)
    assert [(p.role, p.name, p.sha256) for p in lineage.parents] == [
        ("A", "illustriousBase_v10.safetensors", sha(parents["illustriousBase_v10"])),
        ("B", "ponyParent_v6.safetensors", sha(parents["ponyParent_v6"])),
    ]
    assert lineage.parents[0].legacy_hash == a1111_model_hash(parents["illustriousBase_v10"]).upper()
    assert lineage.ancestors == ()


def test_add_difference_names_three(tmp_path: Path, parents: dict[str, Path]) -> None:
    merged = a1111_merge(
        tmp_path / "diff.safetensors", parents["illustriousBase_v10"], parents["noobDiff_v11"], parents["ponyParent_v6"]
    )
    lineage = read_merge_lineage(merged)
    assert [p.role for p in lineage.parents] == ["A", "B", "C"]
    assert lineage.method == "Add difference"


def test_a_merge_of_merges_keeps_the_grandparents_apart(tmp_path: Path, parents: dict[str, Path]) -> None:
    inner = a1111_merge(tmp_path / "inner.safetensors", parents["grandparent_v1"], parents["ponyParent_v6"])
    outer = a1111_merge(tmp_path / "outer.safetensors", parents["illustriousBase_v10"], inner, multiplier=0.5)
    lineage = read_merge_lineage(outer)
    assert [p.name for p in lineage.parents] == ["illustriousBase_v10.safetensors", "inner.safetensors"]
    assert {p.name for p in lineage.ancestors} == {"grandparent_v1.safetensors", "ponyParent_v6.safetensors"}


def test_supermerger_and_model_mixer_recipes() -> None:
    a, b = "a" * 64, "b" * 64
    models = json.dumps({a: {"name": "alpha.safetensors", "legacy_hash": "1234abcd"}, b: {"name": "beta.safetensors"}})
    supermerger = {"sd_merge_recipe": json.dumps({"type": "sd-webui-supermerger", "model_a": a, "model_b": b, "model_c": None, "mode": "Weight sum"}), "sd_merge_models": models}
    lineage = merge_lineage(supermerger)
    assert [(p.role, p.name) for p in lineage.parents] == [("A", "alpha.safetensors"), ("B", "beta.safetensors")]
    assert lineage.method == "Weight sum" and lineage.parents[0].legacy_hash == "1234ABCD"
    mixer = {"sd_merge_recipe": json.dumps({"type": "sd-webui-model-mixer", "model_a": "beta"}), "sd_merge_models": models}
    assert [(p.role, p.sha256) for p in merge_lineage(mixer).parents] == [("A", b.upper())]


def test_sd_mecha_comfyui_and_modelspec_name_parents() -> None:
    mecha = 'version 0.1.0\nmodel "E:/sd/ghostmix_v20Bakedvae.safetensors" "sdxl-sgm" "weight"\nmodel "deliberate_v2"\ncall "weighted_sum" &0 &1 alpha=0.5\n'
    assert [p.name for p in merge_lineage({"mecha_recipe": mecha}).parents] == [
        "E:/sd/ghostmix_v20Bakedvae.safetensors",
        "deliberate_v2",
    ]
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "noobaiXL_v11.safetensors"}},
        "5": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "waiIllustrious_v14.safetensors"}},
        "6": {"class_type": "ModelMergeSimple", "inputs": {"model1": ["4", 0], "model2": ["5", 0], "ratio": 0.6}},
        "7": {"class_type": "CheckpointSave", "inputs": {"model": ["6", 0], "filename_prefix": "checkpoints/merged"}},
    }
    comfy = merge_lineage({"prompt": json.dumps(prompt), "modelspec.title": "merged 1"})
    assert comfy.tool == "comfyui" and [p.name for p in comfy.parents] == ["noobaiXL_v11.safetensors", "waiIllustrious_v14.safetensors"]
    # A checkpoint ComfyUI saved without merging anything names no parents.
    del prompt["6"]
    assert not merge_lineage({"prompt": json.dumps(prompt)}).is_merge
    spec = merge_lineage({"modelspec.merged_from": "base, Pony Diffusion V6 XL"})
    assert [p.name for p in spec.parents] == ["base", "Pony Diffusion V6 XL"]


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"sd_merge_recipe": "{not json", "sd_merge_models": "["},
        {"sd_merge_models": json.dumps({"not-a-hash": {"name": "x"}, "12345": {"name": "y"}})},
        {"sd_merge_models": json.dumps({"g" * 64: {"name": "x"}})},
        {"sd_merge_recipe": json.dumps({"primary_model_hash": "zz" * 32, "secondary_model_hash": 7})},
        {"sd_merge_models": "[" * 100_000 + "]" * 100_000},
        {"sd_merge_models": json.dumps({"a" * 64: "just a string"})},
        {"sd_merge_models": "{" + '"a":' * 50_000 + "1" + "}" * 50_000},
        {"sd_merge_models": json.dumps({"a" * 64: {"name": "x"}}) + " " * (2 * 1024 * 1024)},
        {"mecha_recipe": "model unquoted\ncall x"},
        {"prompt": json.dumps({"1": {"class_type": "ModelMergeSimple", "inputs": {}}, "2": "junk"})},
        {"modelspec.merged_from": " , ,\u200b"},
        {"sd_merge_recipe": json.dumps([1, 2, 3])},
    ],
)
def test_hostile_metadata_names_no_parents(metadata: dict[str, str]) -> None:
    assert merge_lineage(metadata) == NO_LINEAGE


def test_names_are_cleaned_and_bounded() -> None:
    models = {"a" * 64: {"name": "evil\x1b[31m\nname" + "x" * 500}}
    [parent] = merge_lineage({"sd_merge_models": json.dumps(models)}).parents
    assert parent.name is not None and "\x1b" not in parent.name and "\n" not in parent.name
    assert len(parent.name) == 200


def test_unreadable_files_have_no_lineage(tmp_path: Path) -> None:
    assert read_merge_lineage(tmp_path / "missing.safetensors") == NO_LINEAGE
    assert read_merge_lineage(write_raw(tmp_path / "bad.safetensors", b"not json")) == NO_LINEAGE


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["sd_merge_recipe", "sd_merge_models", "mecha_recipe", "prompt", "modelspec.merged_from"]), st.text(max_size=300)))
def test_never_raises(metadata: dict[str, str]) -> None:
    merge_lineage(metadata)
