"""The sampler names users know from A1111 / CivitAI, mapped to diffusers schedulers.

Each scheduler is built from the checkpoint's own scheduler config (beta schedule, timestep
spacing, and the v-prediction / zero-terminal-SNR settings of v-pred checkpoints), with only
the sampler's own options on top, following the A1111 <-> diffusers table in the diffusers
documentation. Building from the checkpoint's config every time, never from the scheduler of
the previous job, keeps one job's options (e.g. Karras sigmas) from leaking into the next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import RequestError
from engine.i18n import Text

DEFAULT_SAMPLER = "Euler a"


@dataclass(frozen=True)
class Sampler:
    """`name` is what users type (A1111's pre-1.9 names, which CivitAI still shows);
    `infotext_sampler` / `schedule_type` are how A1111 >= 1.9 writes it in a PNG."""

    name: str
    scheduler_class: str
    options: Mapping[str, Any] = field(default_factory=dict)
    infotext_sampler: str = ""
    schedule_type: str = "Automatic"

    @property
    def infotext(self) -> tuple[str, str]:
        """("Sampler", "Schedule type") for the `parameters` text, as A1111 writes them.

        Since 1.9 A1111 names the sigma schedule apart ("DPM++ 2M" + "Karras"), and its
        "Automatic" means the sampler's own default, which for DPM++ 2M / DPM++ SDE is
        Karras; so our plain DPM++ 2M writes "Uniform", the schedule it really uses.
        """
        return self.infotext_sampler or self.name, self.schedule_type


SAMPLERS: tuple[Sampler, ...] = (
    Sampler("Euler a", "EulerAncestralDiscreteScheduler"),
    Sampler("Euler", "EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    Sampler(
        "DPM++ 2M",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False},
        schedule_type="Uniform",
    ),
    Sampler(
        "DPM++ 2M Karras",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
        infotext_sampler="DPM++ 2M",
        schedule_type="Karras",
    ),
    Sampler(
        "DPM++ 2M SDE Karras",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
        infotext_sampler="DPM++ 2M SDE",
        schedule_type="Karras",
    ),
    Sampler(
        "DPM++ SDE Karras",
        "DPMSolverSDEScheduler",
        {"use_karras_sigmas": True},
        infotext_sampler="DPM++ SDE",
        schedule_type="Karras",
    ),
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
    import inspect

    import diffusers

    sampler = get_sampler(name)
    cls = getattr(diffusers, sampler.scheduler_class)
    config = dict(base_config)
    options = dict(sampler.options)
    if config.get("rescale_betas_zero_snr") and "rescale_betas_zero_snr" not in inspect.signature(cls).parameters:
        # DPMSolverSDEScheduler has no zero-terminal-SNR option and would silently draw a
        # ztsnr checkpoint on the ordinary schedule; hand it the rescaled betas instead.
        options["trained_betas"] = zero_snr_betas(config)
        del config["rescale_betas_zero_snr"]  # else diffusers warns about it on every job
    return cls.from_config(config, **options)


def zero_snr_betas(config: Mapping[str, Any]) -> list[float]:
    """The betas of `config`'s schedule rescaled to zero terminal SNR, as diffusers' own
    samplers use them: the last ᾱ is 2^-24 rather than 0, so the first sigma is finite."""
    import torch
    from diffusers import EulerDiscreteScheduler

    build: Callable[..., Any] = EulerDiscreteScheduler.from_config  # diffusers is untyped
    reference = build(dict(config), rescale_betas_zero_snr=True)
    alphas_cumprod = reference.alphas_cumprod.double()
    previous = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    return [float(beta) for beta in (1.0 - alphas_cumprod / previous).tolist()]
