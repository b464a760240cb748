"""`loracle lora info` and `loracle family check`."""

from __future__ import annotations

import json


def test_family_check_json_contract(cli) -> None:
    cli("library", "set", "loracleDemoXL_v10", "--base-model", "Illustrious")
    result = cli(
        "family", "check", "--checkpoint", "loracleDemoXL_v10",
        "--lora", "demo_exact_style", "--lora", "demo_noob_character", "--lora", "demo_pony_style",
        "--lora", "demo_sd15_detail", "--lora", "demo_mystery", "--json",
    )
    data = json.loads(result.stdout)
    assert data["checkpoint"] == {
        **data["checkpoint"],
        "name": "loracleDemoXL_v10",
        "architecture": "sdxl",
        "base_model": "Illustrious",
        "family": "illustrious",
    }
    verdicts = {item["name"]: item["verdict"] for item in data["loras"]}
    assert verdicts == {
        "demo_exact_style": "exact",
        "demo_noob_character": "same_family",
        "demo_pony_style": "other_family",
        "demo_sd15_detail": "incompatible",
        "demo_mystery": "unknown",
    }
    for item in data["loras"]:
        assert {"name", "architecture", "base_model", "family", "verdict", "evidence", "explanation"} <= set(item)
        assert isinstance(item["evidence"], list) and all(isinstance(e, str) for e in item["evidence"])


def test_family_check_in_chinese(cli) -> None:
    cli("library", "set", "loracleDemoXL_v10", "--base-model", "Illustrious")
    data = json.loads(
        cli("family", "check", "-c", "loracleDemoXL_v10", "-l", "demo_sd15_detail", "--json", "--lang", "zh-TW").stdout
    )
    assert "無法套用" in data["loras"][0]["explanation"]


def test_lora_info_json_contract(cli) -> None:
    data = json.loads(cli("lora", "info", "demo_pony_style", "--json").stdout)
    for key in ("name", "sha256", "autov2", "autov3", "architecture", "base_model", "family", "trigger_words", "recommended_weight", "civitai_url"):
        assert key in data
    assert data["autov2"] == data["sha256"][:10] and len(data["autov3"]) == 12
    assert data["base_model"] == "Pony" and data["recommended_weight"] == 1.0
    assert data["civitai_url"] is None  # offline demo: not on CivitAI


def _sidecar_with_weight(cli, demo_dir, name: str) -> None:
    """Give a demo LoRA a `.civitai.info` (CivitAI's answer kept on disk, used offline)
    whose author recommends 0.6…0.8."""
    import hashlib

    from tests.fakes.civitai import version_body

    [path] = demo_dir.rglob(f"{name}.safetensors")
    body = version_body(hashlib.sha256(path.read_bytes()).hexdigest(), base_model="Pony", version_id=4242)
    body["settings"] = {"strength": 0.7, "minStrength": 0.6, "maxStrength": 0.8}
    path.with_name(f"{name}.civitai.info").write_text(json.dumps(body), encoding="utf-8")
    cli("library", "scan")


def test_lora_info_json_has_the_authors_weight_range_and_source(cli, demo_dir) -> None:
    data = json.loads(cli("lora", "info", "demo_pony_style", "--json").stdout)
    assert (data["recommended_weight"], data["recommended_weight_source"], data["recommended_range"]) == (1.0, "default", None)
    _sidecar_with_weight(cli, demo_dir, "demo_pony_style")
    data = json.loads(cli("lora", "info", "demo_pony_style", "--json").stdout)
    assert (data["recommended_weight"], data["recommended_weight_source"], data["recommended_range"]) == (0.7, "civitai", [0.6, 0.8])


def test_lora_info_text_shows_the_weight_range_and_source_in_both_languages(cli, demo_dir) -> None:
    _sidecar_with_weight(cli, demo_dir, "demo_pony_style")
    assert "recommended weight: 0.7 (range 0.6–0.8, from CivitAI)" in cli("lora", "info", "demo_pony_style").stdout
    assert "建議權重：0.7 (範圍 0.6–0.8, 來自 CivitAI)" in cli("lora", "info", "demo_pony_style", "--lang", "zh-TW").stdout


# -- checkpoint info ---------------------------------------------------------------------
def test_checkpoint_info_json_names_type_base_model_parents_and_loras(cli) -> None:
    from tests.bot.cli.readme import assert_documented_keys

    cli("library", "set", "loracleDemoXL_v10", "--base-model", "Illustrious")
    data = json.loads(cli("checkpoint", "info", "loracleDemoXL_v10", "--json").stdout)
    assert_documented_keys("checkpoint info", data)
    assert (data["checkpoint_type"], data["checkpoint_type_source"]) == ("merge", "file")
    assert (data["base_model"], data["base_model_source"], data["family"]) == ("Illustrious", "admin", "illustrious")
    base, outside = data["parents"]
    assert (base["name"], base["in_library"], base["library_name"], base["match"], base["role"]) == (
        "tinyIllustriousBase_v10.safetensors", True, "tinyIllustriousBase_v10", "sha256", "A",
    )
    assert (outside["name"], outside["in_library"], len(outside["sha256"])) == ("loracleDemoPainterly_v20.safetensors", False, 64)
    assert data["merge"] == {"tool": "A1111 checkpoint merger", "method": "Weighted sum", "multiplier": 0.3}
    assert data["siblings"] == [{"name": "tinyIllustriousBase_v10", "base_model": "Illustrious", "family": "illustrious"}]
    assert [(x["name"], x["verdict"]) for x in data["loras"]] == [
        ("demo_exact_style", "exact"), ("demo_noob_character", "same_family"),
        ("demo_pony_style", "other_family"), ("demo_mystery", "unknown"),
    ]
    assert data["incompatible_loras"] == 1 and data["has_vae"] is True and data["v_prediction"] is False
    assert data["prompt_conventions"][0]["tags"][:2] == ["masterpiece", "best quality"]


def test_checkpoint_info_text_in_both_languages(cli) -> None:
    cli("library", "set", "loracleDemoXL_v10", "--base-model", "Illustrious")
    text = cli("checkpoint", "info", "loracleDemoXL_v10").stdout
    assert "type: merge (from the file's metadata)" in text
    assert "A tinyIllustriousBase_v10.safetensors — in the library as tinyIllustriousBase_v10" in text
    assert "B loracleDemoPainterly_v20.safetensors — not in the library" in text
    assert "exact match: demo_exact_style" in text
    zh = cli("checkpoint", "info", "loracleDemoXL_v10", "--lang", "zh-TW").stdout
    assert "類型：融合模型（Merge）（來自檔案的中繼資料）" in zh and "不在模型庫中" in zh
    assert "檔案本身的中繼資料（A1111 checkpoint merger）列出了它融合自的 2 個模型。" in zh


def test_checkpoint_info_refuses_unknown_names_and_loras(cli) -> None:
    missing = cli("checkpoint", "info", "loracleDemoX", "--json", ok=False)
    assert missing.exit_code == 1 and "loracleDemoXL_v10" in json.loads(missing.stderr)["suggestions"]
    lora = cli("checkpoint", "info", "demo_pony_style", ok=False)
    assert lora.exit_code == 1 and "not a checkpoint" in lora.stderr


def test_demo_loras_carry_their_authors_weights(cli) -> None:
    civitai = json.loads(cli("lora", "info", "demo_noob_character", "--json").stdout)
    assert (civitai["recommended_weight"], civitai["recommended_weight_source"], civitai["recommended_range"]) == (0.7, "civitai", [0.5, 0.9])
    described = json.loads(cli("lora", "info", "demo_sd15_detail", "--json").stdout)
    assert (described["recommended_weight"], described["recommended_weight_source"], described["recommended_range"]) == (
        0.5, "description", [0.4, 0.6],
    )
