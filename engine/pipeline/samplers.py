"""The sampler names users know from A1111 / CivitAI, mapped to diffusers schedulers.

Each scheduler is built from the checkpoint's own scheduler config (beta schedule, timestep
spacing, and the v-prediction / zero-terminal-SNR settings of v-pred checkpoints), with only
the sampler's own options on top, following the A1111 <-> diffusers table in the diffusers
documentation. Building from the checkpoint's config every time, never from the scheduler of
the previous job, keeps one job's options (e.g. Karras sigmas) from leaking into the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import RequestError
from engine.i18n import Text

DEFAULT_SAMPLER = "Euler a"


@dataclass(frozen=True)
class Sampler:
    name: str
    scheduler_class: str
    options: Mapping[str, Any] = field(default_factory=dict)


SAMPLERS: tuple[Sampler, ...] = (
    Sampler("Euler a", "EulerAncestralDiscreteScheduler"),
    Sampler("Euler", "EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
    Sampler("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    Sampler(
        "DPM++ 2M SDE Karras",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    Sampler("DPM++ SDE Karras", "DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    Sampler("DDIM", "DDIMScheduler"),
    Sampler("UniPC", "UniPCMultistepScheduler"),
)

_BY_KEY = {" ".join(s.name.split()).casefold(): s for s in SAMPLERS}


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def sampler_names() -> list[str]:
    """Every sampler name, default first, in the order users see them in A1111."""
    return [s.name for s in SAMPLERS]


def get_sampler(name: str | None) -> Sampler:
    """The sampler called `name` (case and spacing ignored); RequestError if there is none."""
    if not name:
        return _BY_KEY[_key(DEFAULT_SAMPLER)]
    sampler = _BY_KEY.get(_key(name))
    if sampler is None:
        raise RequestError(
            Text(
                "There is no sampler called “{name}”. Choose one of: {choices}.",
                "沒有名為「{name}」的取樣器。可用的有：{choices}。",
            ),
            name=name,
            choices=", ".join(sampler_names()),
        )
    return sampler


def make_scheduler(name: str | None, base_config: Mapping[str, Any]) -> Any:
    """A fresh diffusers scheduler for sampler `name`, built from `base_config`."""
    import diffusers

    sampler = get_sampler(name)
    cls = getattr(diffusers, sampler.scheduler_class)
    return cls.from_config(dict(base_config), **dict(sampler.options))
