"""Hires and image-to-image fields of GenerationParams (engine.planning.params.image_params)."""

from __future__ import annotations

import pytest

from engine.admin_settings import Limits
from engine.errors import LimitError
from engine.planning.params import generation_params, image_params
from engine.requests import DrawRequest
from engine.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]


def limits(max_size: int = 1536) -> Limits:
    return Limits(max_steps=50, max_size=max_size, max_images=4, queue_per_user=3)


def fields(settings, has_image=False, size=(1024, 1024), steps=20, max_size=1536, **kw):
    return image_params(DrawRequest(prompt="x", **kw), settings, limits(max_size), *size, steps, has_image=has_image)


def test_a_plain_draw_has_no_image_fields(settings):
    assert fields(settings) == {}


def test_hires_defaults_come_from_the_settings(settings):
    got = fields(settings, hires=1.5)
    assert got == {"hires": 1.5, "hires_denoise": 0.5, "hires_steps": 0, "hires_upscaler": "latent"}


def test_the_admin_default_turns_hires_on_for_text_only(tmp_path):
    s = Settings(_env_file=None, data_dir=tmp_path, hires_default=True, hires_default_scale=1.25)  # type: ignore[call-arg]
    assert fields(s)["hires"] == 1.25
    assert fields(s, hires=1.0) == {}
    assert fields(s, has_image=True) == {"strength": 0.6}


@pytest.mark.parametrize("name", ["Latent", "LANCZOS"])
def test_built_in_upscaler_names_are_read_in_any_case(settings, name):
    assert fields(settings, hires=1.5, hires_upscaler=name)["hires_upscaler"] == name.lower()


def test_an_upscale_job_resizes_pixels_rather_than_latents(settings):
    assert fields(settings, has_image=True, hires=2.0, size=(512, 512))["hires_upscaler"] == "lanczos"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(hires=2.5), "hires must be between 1 and 2.0"),
        (dict(hires=0.5), "hires must be between 1"),
        (dict(hires=1.5, hires_denoise=0), "hires_denoise must be between 0.01 and 1"),
        (dict(hires=1.5, hires_denoise=1.5), "hires_denoise must be between"),
        (dict(hires=1.5, hires_steps=80), "hires_steps must be between 1 and 50"),
        (dict(hires=1.5, hires_denoise=0.04), "hires pass would run no step at all"),
        (dict(hires=float("nan")), "hires must be between"),
    ],
)
def test_bad_hires_values_are_refused_clearly(settings, kw, message):
    with pytest.raises(LimitError, match=message):
        fields(settings, **kw)


def test_the_final_size_obeys_the_size_limit_and_says_what_fits(settings):
    with pytest.raises(LimitError) as err:
        fields(settings, hires=2.0, size=(1024, 768))
    text = err.value.localized("en")
    assert "2048×1536" in text and "(1536 pixels)" in text and "up to 1.5" in text
    assert fields(settings, hires=1.5, size=(1024, 768))["hires"] == 1.5  # 1536x1152 fits


def test_image_to_image_strength_is_checked(settings):
    assert fields(settings, has_image=True, strength=0.3) == {"strength": 0.3}
    with pytest.raises(LimitError, match="strength must be between"):
        fields(settings, has_image=True, strength=1.2)
    with pytest.raises(LimitError, match="image-to-image pass would run no step"):
        fields(settings, has_image=True, strength=0.02, steps=20)


def test_a_stored_pictures_size_is_the_jobs_size_unless_asked(settings):
    params = generation_params(DrawRequest(prompt="x", strength=0.5), "x", "", settings, limits(), init_size=(640, 384))
    assert (params.width, params.height, params.strength) == (640, 384, 0.5)
    asked = generation_params(DrawRequest(prompt="x", width=512, height=512), "x", "", settings, limits(), init_size=(640, 384))
    assert (asked.width, asked.height) == (512, 512)
