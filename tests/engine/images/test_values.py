"""One value out of a stranger's parameters: exact whole numbers, sane bounds, sampler names."""

from __future__ import annotations

import pytest

from engine.i18n import Message
from engine.images import values


def test_whole_numbers_are_exact_and_bounded() -> None:
    notes: list[Message] = []
    assert values.integer(notes, "Seed", "18446744073709551615", 0, values.MAX_SEED) == 2**64 - 1
    assert values.integer(notes, "Steps", 30, 1, 100) == 30
    assert values.integer(notes, "Steps", "30.0", 1, 100) == 30
    assert notes == []
    for bad in ("1_0", "3.5", "abc", "1e999", True, [1], "9" * 50, 0):
        assert values.integer(notes, "Steps", bad, 1, 100) is None
    assert len(notes) == 8 and all(n.render("zh-TW") for n in notes)


def test_reals_refuse_nan_and_infinity() -> None:
    notes: list[Message] = []
    assert values.real(notes, "CFG", "6.5", 0, 30) == 6.5
    assert values.real(notes, "CFG", "nan", 0, 30) is None and values.real(notes, "CFG", float("inf"), 0, 30) is None
    assert len(notes) == 2


@pytest.mark.parametrize(
    ("name", "scheduler", "expected", "warns"),
    [
        ("euler_ancestral", "normal", "Euler a", False),
        ("dpmpp_2m", "karras", "DPM++ 2M Karras", False),
        ("dpmpp_2m", "normal", "DPM++ 2M", False),
        ("dpmpp_2m_sde_gpu", "karras", "DPM++ 2M SDE Karras", False),
        ("dpmpp_2m_sde", "normal", "DPM++ 2M SDE Karras", True),
        ("uni_pc_bh2", "simple", "UniPC", False),
        ("euler", "beta", "Euler", True),
        ("lcm", "normal", None, True),
    ],
)
def test_comfyui_sampler_names(name: str, scheduler: str, expected: str | None, warns: bool) -> None:
    notes: list[Message] = []
    assert values.comfy_sampler(notes, name, scheduler) == expected
    assert bool(notes) == warns
