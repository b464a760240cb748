"""`loracle info`, `draw --like`, `upscale` and `vary`, run as a user types them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.bot.cli.readme import assert_documented_keys

SMALL = ("--steps", "2", "--width", "64", "--height", "64")


def write_png(path: Path, parameters: str) -> Path:
    info = PngInfo()
    info.add_text("parameters", parameters)
    Image.new("RGB", (64, 64), "gray").save(path, "PNG", pnginfo=info)
    return path


def pixels(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_info_says_how_each_resource_matched(cli, tmp_path: Path, demo_dir: Path) -> None:
    text = (
        "1girl, smile <lora:demo_exact_style:0.7> <lora:some_missing_lora:0.5>\n"
        "Negative prompt: lowres\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 6, Seed: 11, Size: 832x1216, Model hash: 0a0b0c0d0e, "
        'Model: loracleDemoXL_v10, Lora hashes: "some_missing_lora: 0123456789ab", Version: v1.10.1'
    )
    picture = write_png(tmp_path / "a1111.png", text)
    shown = cli("info", str(picture))
    assert "prompt: 1girl, smile" in shown.stdout and "seed 11" in shown.stdout
    assert "checkpoint loracleDemoXL_v10: matched by name only" in shown.stderr
    assert "lora demo_exact_style (0.7): matched by name only [exact]" in shown.stderr
    assert "lora some_missing_lora (0.5): missing" in shown.stderr
    data = json.loads(cli("info", str(picture), "--json").stdout)
    assert [r["how"] for r in data["resources"]] == ["name", "name", "missing"]
    assert data["parameters"]["seed"] == 11 and data["parameters"]["loras"][1]["hash"] == "0123456789ab"
    assert_documented_keys("info", data)
    zh = cli("info", str(picture), "--lang", "zh-TW")
    assert "只有名稱相符" in zh.stderr


@pytest.mark.parametrize("content", [b"", b"definitely not a picture", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_info_refuses_what_is_not_a_usable_picture(cli, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "looks_like.png"
    path.write_bytes(content)
    result = cli("info", str(path), "--json", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert json.loads(result.stderr)["type"] == "ImageInputError"


def test_info_on_a_picture_without_parameters_and_a_missing_file(cli, tmp_path: Path) -> None:
    bare = tmp_path / "bare.png"
    Image.new("RGB", (32, 32)).save(bare)
    result = cli("info", str(bare), ok=False)
    assert result.exit_code == 1 and "no generation parameters" in result.stderr
    result = cli("info", str(tmp_path / "nowhere.png"), ok=False)
    assert result.exit_code == 1 and "Cannot read" in result.stderr


def test_draw_needs_a_prompt_or_a_picture(cli) -> None:
    result = cli("draw", "--json", ok=False)
    assert result.exit_code == 1 and "--like" in json.loads(result.stderr)["error"]


@pytest.mark.slow
def test_draw_like_a_loracle_picture_is_bit_identical_and_options_override(cli, tmp_path: Path) -> None:
    first = json.loads(
        cli("draw", "1girl, smile", "-l", "demo_exact_style:0.7", "--seed", "9", "--cfg", "5", *SMALL, "--json").stdout
    )
    source = first["images"][0]
    info = json.loads(cli("info", source, "--json").stdout)
    assert info["parameters"]["source"] == "loracle"
    assert [r["how"] for r in info["resources"]] == ["hash", "hash"]
    again = cli("draw", "--like", source, "--json")
    data = json.loads(again.stdout)
    assert np.array_equal(pixels(source), pixels(data["images"][0]))
    assert [r["how"] for r in data["resources"]] == ["hash", "hash"]
    assert data["loras"][0]["applied_weight"] == 0.7 and data["seed"] == 9
    shown = cli("draw", "--like", source, "--seed", "10")
    assert "matched by hash" in shown.stderr and "seed 10" in shown.stdout
    other = next(line for line in shown.stdout.splitlines() if line.endswith(".png"))
    assert not np.array_equal(pixels(source), pixels(other))


@pytest.mark.slow
def test_vary_and_upscale_a_loracle_picture(cli, tmp_path: Path, demo_dir: Path) -> None:
    first = json.loads(cli("draw", "a cat", "--seed", "3", *SMALL, "--json").stdout)
    source = first["images"][0]
    varied = json.loads(cli("vary", source, "--strength", "0.6", "--json").stdout)
    assert Path(varied["images"][0]).exists() and varied["seed"] != 3  # a variation draws a new seed
    assert "Denoising strength: 0.6" in Image.open(varied["images"][0]).text["parameters"]
    assert varied["resources"][0]["how"] == "hash"
    assert list((demo_dir / "inputs").glob("*.png"))  # kept for the job, under the data dir
    upscaled = json.loads(cli("upscale", source, "--scale", "1.5", "--json").stdout)
    assert Path(upscaled["images"][0]).exists() and upscaled["seed"] == 3
    width, height = Image.open(source).size
    assert Image.open(upscaled["images"][0]).size == (width * 3 // 2 // 8 * 8, height * 3 // 2 // 8 * 8)
    assert_documented_keys("upscale", upscaled)


def test_vary_refuses_a_picture_without_parameters(cli, tmp_path: Path) -> None:
    bare = tmp_path / "bare.png"
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "PNG")
    bare.write_bytes(buffer.getvalue())
    for command in ("vary", "upscale"):
        result = cli(command, str(bare), "--json", ok=False)
        assert result.exit_code == 1 and json.loads(result.stderr)["type"] == "ImageInputError"
