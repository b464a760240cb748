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
