from __future__ import annotations

import json
import random

import pytest

from engine.files.training import (
    TAG_FREQUENCY_CAP,
    TrainingMetadata,
    arch_from_modelspec,
    arch_from_ss_base_model_version,
    parse_training_metadata,
)
from engine.kinds import Architecture
from tests.factories.model_files import kohya_metadata

SHA = "b76a1fc247db893bc8c1290420f0e96b6f86129576a9fb885c20cb7edbefeea5"


def test_parses_what_sd_scripts_writes():
    md = kohya_metadata(
        "sdxl",
        sd_model_name="illustriousXL_v01.safetensors",
        new_sd_model_hash=SHA,
        sd_model_hash="28dff7ec",
        tags={"1girl": 30, "solo": 25, "rear naked choke": 12},
        output_name="choke_hold",
        network_dim=16,
        network_alpha=8.0,
        network_args={"conv_dim": "4", "conv_alpha": "1"},
        training_comment="trained on 40 images",
        trigger_phrase="choke hold, rear naked choke",
    )
    assert all(isinstance(v, str) for v in md.values())
    assert md["ss_network_alpha"] == "8.0" and md["ss_noise_offset"] == "None"

    meta = parse_training_metadata(md)

    assert meta.base_model_version == "sdxl_base_v1-0"
    assert meta.sd_model_name == "illustriousXL_v01.safetensors"
    assert meta.new_sd_model_hash == SHA.upper()
    assert meta.sd_model_hash == "28DFF7EC"
    assert meta.output_name == "choke_hold"
    assert meta.network_module == "networks.lora"
    assert meta.network_dim == 16
    assert meta.network_alpha == 8.0
    assert meta.network_args == {"conv_dim": "4", "conv_alpha": "1"}
    assert meta.training_comment == "trained on 40 images"
    assert meta.tag_frequency == {"1girl": 30, "solo": 25, "rear naked choke": 12}
    assert meta.top_tags(2) == ["1girl", "solo"]
    assert meta.trigger_words == ["choke hold", "rear naked choke"]
    assert meta.modelspec["architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert meta.modelspec["title"] == "choke_hold"
    assert meta.resolution == (1024, 1024)
    assert meta.prediction_type == "epsilon"
    assert meta.zero_terminal_snr is False
    assert meta.clip_skip is None
    assert meta.architecture_hint == Architecture.SDXL
    assert meta.architecture_hint_source == "modelspec.architecture=stable-diffusion-xl-v1-base/lora"
    assert meta.has_training_info


def test_empty_metadata_gives_empty_training_info():
    meta = parse_training_metadata({})
    assert meta == TrainingMetadata()
    assert not meta.has_training_info
    assert meta.top_tags() == []


def test_none_strings_and_dynamic_ranks_are_absent_not_errors():
    meta = parse_training_metadata(
        {
            "ss_network_dim": "Dynamic",
            "ss_network_alpha": "Dynamic",
            "ss_sd_model_name": "None",
            "ss_training_comment": "None",
            "ss_clip_skip": "None",
            "ss_new_sd_model_hash": "None",
            "ss_base_model_version": "",
        }
    )
    assert meta.network_dim is None and meta.network_alpha is None
    assert meta.sd_model_name is None and meta.training_comment is None
    assert meta.clip_skip is None and meta.new_sd_model_hash is None
    assert meta.architecture_hint is None


def test_numbers_as_strings_in_various_spellings():
    meta = parse_training_metadata({"ss_network_dim": "32.0", "ss_network_alpha": "1e-3", "ss_clip_skip": "2"})
    assert meta.network_dim == 32
    assert meta.network_alpha == 0.001
    assert meta.clip_skip == 2
    assert parse_training_metadata({"ss_network_dim": "3.5", "ss_network_alpha": "inf"}).network_dim is None
    assert parse_training_metadata({"ss_network_alpha": "nan"}).network_alpha is None


def test_tag_frequency_merges_datasets_strips_spaces_and_skips_garbage():
    md = {
        "ss_tag_frequency": json.dumps(
            {
                "10_chara": {"1girl": 10, " solo": 4, "smile": "3", "bad": "many", "neg": -2, "flag": True},
                "5_style": {"1girl": 5, "solo": 1.0, "": 9},
                "broken": ["not", "a", "dict"],
            }
        )
    }
    meta = parse_training_metadata(md)
    assert meta.tag_frequency == {"1girl": 15, "solo": 5, "smile": 3}
    assert meta.top_tags(10) == ["1girl", "solo", "smile"]
    assert meta.top_tags(0) == []


def test_tag_frequency_is_capped_to_the_most_frequent():
    tags = {f"tag{i:04d}": i + 1 for i in range(TAG_FREQUENCY_CAP + 100)}
    meta = parse_training_metadata({"ss_tag_frequency": json.dumps({"1_x": tags})})
    assert len(meta.tag_frequency) == TAG_FREQUENCY_CAP
    assert "tag0599" in meta.tag_frequency and "tag0000" not in meta.tag_frequency
    assert meta.top_tags(1) == ["tag0599"]


@pytest.mark.parametrize(
    "value",
    ["{not json", "[1, 2]", '"a string"', "null", "None", "[" * 50_000, '{"a": {"b": {"c": 1}}}'],
)
def test_malformed_tag_frequency_never_raises(value):
    assert parse_training_metadata({"ss_tag_frequency": value}).tag_frequency == {}


def test_garbage_of_every_shape_never_raises():
    rng = random.Random(7)
    junk = ["", "None", "{", "[]", "1e999", "-1", "true", "\x00\xff", "💥" * 3, '{"a": [1, {"b": null}]}']
    keys = [
        "ss_network_dim", "ss_network_alpha", "ss_network_args", "ss_tag_frequency", "ss_resolution",
        "ss_new_sd_model_hash", "ss_sd_model_hash", "ss_base_model_version", "ss_v2", "ss_clip_skip",
        "ss_zero_terminal_snr", "ss_v_parameterization", "ss_datasets", "modelspec.architecture",
        "modelspec.trigger_phrase", "modelspec.resolution", "modelspec.prediction_type",
    ]  # fmt: skip
    for _ in range(300):
        md = {k: rng.choice(junk) for k in rng.sample(keys, rng.randint(1, len(keys)))}
        parse_training_metadata(md)
    # not even a mapping of strings breaks it
    parse_training_metadata({"ss_network_dim": 5, "ss_tag_frequency": {"x": {"y": 1}}})  # type: ignore[dict-item]
    assert parse_training_metadata(None) == TrainingMetadata()  # type: ignore[arg-type]


def test_model_hashes_are_validated_and_uppercased():
    assert parse_training_metadata({"ss_new_sd_model_hash": "0x" + SHA}).new_sd_model_hash == SHA.upper()
    assert parse_training_metadata({"ss_new_sd_model_hash": SHA[:60]}).new_sd_model_hash is None
    assert parse_training_metadata({"ss_new_sd_model_hash": "z" * 64}).new_sd_model_hash is None
    assert parse_training_metadata({"ss_sd_model_hash": "abcdef12"}).sd_model_hash == "ABCDEF12"
    assert parse_training_metadata({"ss_sd_model_hash": "abcdef1"}).sd_model_hash is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sd_v1", Architecture.SD1),
        ("v1", Architecture.SD1),
        ("sd_v2", Architecture.SD2),
        ("sd_v2_v", Architecture.SD2),
        ("sd_v2_768_v", Architecture.SD2),
        ("v2-v", Architecture.SD2),
        ("sdxl_base_v1-0", Architecture.SDXL),
        ("sdxl_", Architecture.SDXL),  # OneTrainer
        ("sdxl_v10", Architecture.SDXL),
        ("sd3", Architecture.SD3),
        ("flux1", Architecture.FLUX),
        ("FLUX.1-dev", Architecture.FLUX),
        ("flux2", Architecture.OTHER),
        ("chroma", Architecture.OTHER),
        ("anima", Architecture.OTHER),
        ("zimage_turbo", Architecture.OTHER),
        ("hunyuan_video", Architecture.OTHER),
        ("auraflow", Architecture.AURAFLOW),
        ("something_new", None),
        ("None", None),
    ],
)
def test_ss_base_model_version_words(value, expected):
    assert arch_from_ss_base_model_version(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("stable-diffusion-xl-v1-base/lora", Architecture.SDXL),
        ("stable-diffusion-xl-v1-refiner", Architecture.SDXL),
        ("stable-diffusion-v1/lora", Architecture.SD1),
        ("stable-diffusion-v2-768-v/lora", Architecture.SD2),
        ("flux-1-dev/lora", Architecture.FLUX),
        ("flux-1-schnell", Architecture.FLUX),
        ("stable-diffusion-v3-medium/lora", Architecture.SD3),
        ("stable-diffusion-3-5-large/lora", Architecture.SD3),
        ("auraflow/lora", Architecture.AURAFLOW),
        ("lumina-2/lora", Architecture.OTHER),
        ("chroma/lora", Architecture.OTHER),
        ("animagine-xl", None),  # an SDXL checkpoint's name is not the "anima" architecture
        ("", None),
    ],
)
def test_modelspec_architecture_words(value, expected):
    assert arch_from_modelspec(value) == expected


def test_modelspec_hint_comes_before_kohya_version_then_ss_v2():
    both = parse_training_metadata(
        {"modelspec.architecture": "flux-1-dev/lora", "ss_base_model_version": "sdxl_base_v1-0"}
    )
    assert both.architecture_hint == Architecture.FLUX
    unknown_spec = parse_training_metadata(
        {"modelspec.architecture": "mystery/lora", "ss_base_model_version": "sd_v1"}
    )
    assert unknown_spec.architecture_hint == Architecture.SD1
    assert unknown_spec.architecture_hint_source == "ss_base_model_version=sd_v1"
    v2 = parse_training_metadata({"ss_v2": "True"})
    assert v2.architecture_hint == Architecture.SD2 and v2.architecture_hint_source == "ss_v2=True"


def test_prediction_type_and_zero_terminal_snr():
    assert parse_training_metadata({"modelspec.prediction_type": "v"}).prediction_type == "v"
    assert parse_training_metadata({"modelspec.prediction_type": "V_Prediction"}).prediction_type == "v"
    assert parse_training_metadata({"ss_v_parameterization": "True"}).prediction_type == "v"
    assert parse_training_metadata({"ss_base_model_version": "sd_v2_v"}).prediction_type == "v"
    assert parse_training_metadata(kohya_metadata("sd2_v")).prediction_type == "v"
    assert parse_training_metadata(kohya_metadata("sd1")).prediction_type == "epsilon"
    assert parse_training_metadata(kohya_metadata("flux")).prediction_type is None
    assert parse_training_metadata({"ss_zero_terminal_snr": "True"}).zero_terminal_snr is True


@pytest.mark.parametrize(
    ("md", "expected"),
    [
        ({"ss_resolution": "(1024, 1024)"}, (1024, 1024)),
        ({"ss_resolution": "(768, 512)"}, (768, 512)),
        ({"ss_resolution": "512"}, (512, 512)),
        ({"modelspec.resolution": "1024x768", "ss_resolution": "(512, 512)"}, (1024, 768)),
        ({"ss_datasets": json.dumps([{"resolution": [896, 1152]}])}, (896, 1152)),
        ({"ss_resolution": "huge"}, None),
        ({"ss_resolution": "(1, 2)"}, None),
    ],
)
def test_resolution_formats(md, expected):
    assert parse_training_metadata(md).resolution == expected


def test_trigger_words_are_split_trimmed_and_deduplicated():
    meta = parse_training_metadata({"modelspec.trigger_phrase": "  foo, bar ,, Foo,baz  "})
    assert meta.trigger_words == ["foo", "bar", "baz"]
    # a training comment is free text, never a trigger list
    assert parse_training_metadata({"ss_training_comment": "trigger: abc"}).trigger_words == []


def test_round_trips_through_a_dict():
    meta = parse_training_metadata(kohya_metadata("sdxl", new_sd_model_hash=SHA, trigger_phrase="abc"))
    data = json.loads(json.dumps(meta.to_dict()))
    assert TrainingMetadata.from_dict(data) == meta


AI_TOOLKIT = json.dumps({"name": "ai-toolkit", "repo": "https://github.com/ostris/ai-toolkit", "version": "0.1.0"})


def test_ai_toolkit_default_sd15_claim_is_not_an_architecture_hint():
    # ai-toolkit long wrote "sd_1.5" for any model that was not SD 2 or SDXL (its Flux LoRAs)
    early = parse_training_metadata({"ss_base_model_version": "sd_1.5", "software": AI_TOOLKIT})
    assert early.architecture_hint is None
    assert early.base_model_version == "sd_1.5"  # still shown as written
    # its later versions name the model, and other trainers' "sd_1.5" means SD 1.5
    later = parse_training_metadata({"ss_base_model_version": "flux.1", "software": AI_TOOLKIT})
    assert later.architecture_hint == Architecture.FLUX
    assert parse_training_metadata({"ss_base_model_version": "sd_1.5"}).architecture_hint == Architecture.SD1
    # what it puts beside it is still read
    xl = parse_training_metadata({"ss_base_model_version": "sdxl_1.0", "software": AI_TOOLKIT})
    assert xl.architecture_hint == Architecture.SDXL


@pytest.mark.parametrize(("value", "expected"), [("SD 1.5", Architecture.SD1), ("SD 2.1 768", Architecture.SD2)])
def test_base_model_words_with_spaces(value, expected):
    assert arch_from_ss_base_model_version(value) == expected
