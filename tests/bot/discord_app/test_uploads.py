"""Fitting pictures into the interaction's upload limit."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.discord_app.uploads import TooLargeError, fit_images
from tests.bot.fakes import noisy_png


def test_pngs_that_fit_are_sent_as_they_are(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    upload = fit_images([path], 25 * 1024 * 1024, stem="pic")
    assert upload.format == "png" and upload.note is None
    assert upload.files == [("pic.png", path.read_bytes())]


def test_too_big_pngs_become_jpegs_then_smaller_jpegs(tmp_path):
    paths = [noisy_png(tmp_path / f"{i}.png", 256, seed=i) for i in range(2)]
    png_total = sum(p.stat().st_size for p in paths)
    upload = fit_images(paths, png_total // 2, stem="pic")
    assert upload.format == "jpeg" and [n for n, _ in upload.files] == ["pic-1.jpg", "pic-2.jpg"]
    assert upload.total <= png_total // 2
    assert "sent as JPEG" in upload.note.render("en")

    small = fit_images(paths, 30_000)
    assert small.total <= 30_000
    width = Image.open(io.BytesIO(small.files[0][1])).width
    assert width < 256 and f"({width}×{width})" in small.note.render("en")


def test_impossible_limits_raise(tmp_path):
    path = noisy_png(tmp_path / "n.png", 256)
    with pytest.raises(TooLargeError):
        fit_images([path], 500)
