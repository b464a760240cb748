from __future__ import annotations

import pytest
import torch

from engine.errors import RequestError
from engine.pipeline.samplers import DEFAULT_SAMPLER, get_sampler, make_scheduler, sampler_names
from engine.testing.tiny_sdxl import TINY_SCHEDULER_CONFIG

V_PRED = {**TINY_SCHEDULER_CONFIG, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True}


def test_names_for_autocomplete_start_with_the_default():
    names = sampler_names()
    assert names[0] == DEFAULT_SAMPLER == "Euler a"
    for required in ("Euler", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "UniPC"):
        assert required in names
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("spelling", ["euler a", "EULER A", "  Euler   a ", None, ""])
def test_lookup_ignores_case_and_spacing(spelling):
    assert get_sampler(spelling).name == "Euler a"


def test_unknown_sampler_lists_the_choices():
    with pytest.raises(RequestError, match="DPM\\+\\+ 2M Karras") as err:
        get_sampler("LCM turbo")
    assert "LCM turbo" in err.value.localized("zh-TW")


@pytest.mark.parametrize(
    "name, cls, options",
    [
        ("Euler a", "EulerAncestralDiscreteScheduler", {}),
        ("Euler", "EulerDiscreteScheduler", {"use_karras_sigmas": False}),
        ("DPM++ 2M", "DPMSolverMultistepScheduler", {"use_karras_sigmas": False, "algorithm_type": "dpmsolver++"}),
        ("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++"}),
        (
            "DPM++ 2M SDE Karras",
            "DPMSolverMultistepScheduler",
            {"use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"},
        ),
        ("DPM++ SDE Karras", "DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
        ("DDIM", "DDIMScheduler", {}),
        ("UniPC", "UniPCMultistepScheduler", {}),
    ],
)
def test_each_sampler_builds_its_scheduler(name, cls, options):
    scheduler = make_scheduler(name, TINY_SCHEDULER_CONFIG)
    assert type(scheduler).__name__ == cls
    for key, value in options.items():
        assert scheduler.config[key] == value
    # the checkpoint's beta schedule is kept
    assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.beta_end == 0.012


@pytest.mark.parametrize("name", ["Euler a", "Euler", "DPM++ 2M Karras", "DDIM", "UniPC"])
def test_v_prediction_settings_survive_a_sampler_switch(name):
    scheduler = make_scheduler(name, V_PRED)
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.rescale_betas_zero_snr is True


def test_building_from_a_previous_scheduler_would_leak_its_options():
    # Why the generator always builds from the checkpoint's config: UniPC built from the
    # config of a Karras scheduler silently inherits Karras sigmas.
    karras = make_scheduler("DPM++ 2M Karras", TINY_SCHEDULER_CONFIG)
    assert make_scheduler("UniPC", karras.config).config.use_karras_sigmas is True
    assert make_scheduler("UniPC", TINY_SCHEDULER_CONFIG).config.use_karras_sigmas is False


def test_dpm_sde_gets_zero_snr_betas_it_has_no_option_for():
    plain = make_scheduler("DPM++ SDE Karras", TINY_SCHEDULER_CONFIG)
    ztsnr = make_scheduler("DPM++ SDE Karras", {**V_PRED, "timestep_spacing": "trailing"})
    euler = make_scheduler("Euler", {**V_PRED, "timestep_spacing": "trailing"})
    assert plain.config.trained_betas is None and float(plain.alphas_cumprod[-1]) > 1e-3
    assert torch.allclose(ztsnr.alphas_cumprod.double(), euler.alphas_cumprod.double(), rtol=1e-5, atol=1e-12)
    ztsnr.set_timesteps(10)
    euler.set_timesteps(10)
    assert float(ztsnr.sigmas[0]) == pytest.approx(float(euler.sigmas[0]), rel=1e-4)  # ≈ 4096, pure noise


@pytest.mark.parametrize(
    "name, infotext",
    [
        ("Euler a", ("Euler a", "Automatic")),
        ("Euler", ("Euler", "Automatic")),
        # A1111 >= 1.9 writes the schedule apart, and its "Automatic" DPM++ 2M is Karras.
        ("DPM++ 2M", ("DPM++ 2M", "Uniform")),
        ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M SDE Karras", ("DPM++ 2M SDE", "Karras")),
        ("DPM++ SDE Karras", ("DPM++ SDE", "Karras")),
        ("DDIM", ("DDIM", "Automatic")),
        ("UniPC", ("UniPC", "Automatic")),
    ],
)
def test_infotext_names_are_a1111s(name, infotext):
    assert get_sampler(name).infotext == infotext
