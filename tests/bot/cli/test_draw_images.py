"""`loracle draw` with the image options: --hires, --image, --strength."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.bot.cli.readme import assert_documented_keys


@pytest.mark.slow
def test_draw_with_hires_reports_both_sizes(cli) -> None:
    result = cli(
        "draw", "1girl, smile", "--seed", "5", "--steps", "2", "--width", "64", "--height", "64",
        "--hires", "1.5", "--hires-denoise", "0.5", "--hires-steps", "2", "--hires-upscaler", "lanczos", "--json",
    )
    data = json.loads(result.stdout)
    assert (data["width"], data["height"]) == (64, 64)
    assert data["hires"] == {"scale": 1.5, "denoise": 0.5, "steps": 2, "upscaler": "lanczos", "width": 96, "height": 96}
    with Image.open(data["images"][0]) as image:
        assert image.size == (96, 96)
    assert_documented_keys("draw", data)


@pytest.mark.slow
def test_draw_from_a_picture(cli, tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(source)
    result = cli("draw", "1girl", "--image", str(source), "--strength", "0.5", "--steps", "2", "--seed", "3")
    assert "88×64" in result.stdout  # stored at multiples of 8, its own size kept


def test_a_missing_picture_is_a_clear_error(cli, tmp_path: Path) -> None:
    result = cli("draw", "1girl", "--image", str(tmp_path / "nope.png"), "--steps", "2", ok=False)
    assert result.exit_code == 1
    assert "Cannot read the picture" in result.output and "No such file" in result.output


def test_text_given_as_a_picture_is_refused(cli, tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    result = cli("draw", "1girl", "--image", str(fake), ok=False)
    assert result.exit_code == 1 and "not a picture Loracle can read" in result.output


def test_a_hires_scale_past_the_limit_is_refused(cli) -> None:
    result = cli("draw", "1girl", "--hires", "1.5", "--width", "1536", "--height", "1024", ok=False)
    assert result.exit_code == 1 and "largest side allowed (1536 pixels)" in result.output
