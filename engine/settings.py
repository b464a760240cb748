"""Typed settings from the environment (prefix LORACLE_) and `.env`, failing fast.

A bad value stops start-up with one line naming the variable, e.g.
`LORACLE_LORA_WEIGHT_MAX: Input should be a valid number`.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import SettingsError

ENV_PREFIX = "LORACLE_"

log = logging.getLogger("loracle")


def with_scheme(url: str, *schemes: str) -> str:
    """`url` if it starts with one of `schemes`; the error names them (never the value)."""
    prefixes = tuple(f"{scheme}://" for scheme in schemes)
    if not url.startswith(prefixes):
        raise ValueError("must start with " + " or ".join(prefixes))
    return url


class Settings(BaseSettings):
    """What the engine reads. Front ends subclass it with their own settings (the bot:
    bot.settings.BotSettings), so one environment and one `.env` serve both."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # `KEY=` in .env means "not set", not "set to the empty string".
        env_ignore_empty=True,
        # "nan" and "inf" parse as floats but make no sense for any setting here.
        allow_inf_nan=False,
    )

    # -- storage ---------------------------------------------------------------------
    data_dir: Path = Path("./data")

    # -- CivitAI ---------------------------------------------------------------------
    civitai_api_key: SecretStr | None = None
    civitai_base_url: str = "https://civitai.com"
    offline: bool = False
    civitai_cache_ttl_hours: float = Field(default=24.0 * 7, gt=0)
    civitai_miss_ttl_hours: float = Field(default=24.0, gt=0)
    civitai_timeout_s: float = Field(default=20.0, gt=0)
    civitai_max_retries: int = Field(default=3, ge=0, le=10)
    civitai_max_download_mb: int = Field(default=8192, gt=0)

    # -- LoRA weights ----------------------------------------------------------------
    lora_weight_min: float = -2.0
    lora_weight_max: float = 2.0
    max_loras: int = Field(default=6, ge=1, le=20)

    # -- generation ------------------------------------------------------------------
    device: Literal["auto", "cuda", "cpu", "mps"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    default_checkpoint: str | None = None
    default_steps: int = Field(default=28, ge=1)
    default_cfg: float = Field(default=6.0, ge=0, le=30)
    default_width: int = Field(default=1024, ge=64)
    default_height: int = Field(default=1024, ge=64)
    max_steps: int = Field(default=50, ge=1)
    max_size: int = Field(default=1536, ge=64)
    max_images: int = Field(default=4, ge=1)
    max_prompt_chars: int = Field(default=2000, ge=1)
    lora_cache_size: int = Field(default=16, ge=0)
    lora_pristine: Literal["auto", "disk", "device", "cpu"] = "auto"

    # -- queue -----------------------------------------------------------------------
    queue_per_user: int = Field(default=3, ge=1)
    affinity_limit: int = Field(default=4, ge=0)

    # -- metrics (Prometheus) --------------------------------------------------------
    # Unset: no endpoint. 0 picks a free port (tests); the log names the one chosen.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Loopback by default: the endpoint has no authentication and shows how busy the
    # server is and how it fails; inside a container set 0.0.0.0 and publish the port
    # only to the network Prometheus scrapes from.
    metrics_host: str = "127.0.0.1"


    # -- hires fix, image-to-image, upscalers (issue 10) ------------------------------
    # Whether /draw runs a hires pass when the request does not say, and with what. The
    # final size (size × scale) still obeys LORACLE_MAX_SIZE.
    hires_default: bool = False
    hires_default_scale: float = Field(default=1.5, ge=1.0, le=4.0)
    hires_default_denoise: float = Field(default=0.5, gt=0, le=1)
    hires_default_upscaler: str = "latent"
    hires_max_scale: float = Field(default=2.0, ge=1.0, le=4.0)
    img2img_default_strength: float = Field(default=0.6, gt=0, le=1)
    max_input_megapixels: float = Field(default=40.0, gt=0, le=200)

    @property
    def inputs_dir(self) -> Path:
        return self.root / "inputs"

    @property
    def upscalers_dir(self) -> Path:
        return self.root / "upscalers"

    # -- several GPUs (Ray; engine.workers.ray_cluster) -----------------------------------
    # local: the one in-process worker (nothing else to run). ray: one Ray actor per GPU
    # worker; needs the optional extra `loracle[cluster]`.
    cluster: Literal["local", "ray"] = "local"
    # `auto` (the Ray cluster this machine belongs to), `ray://head:10001` (Ray Client), or
    # `host:6379`; empty starts a private local Ray instance with the bot.
    ray_address: str | None = None
    # GPU workers to start; empty: one per GPU the cluster reports (1 on a CPU-only cluster).
    workers: int | None = Field(default=None, ge=1, le=1024)

    @field_validator("civitai_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return with_scheme(value, "http", "https").rstrip("/")

    @field_validator("default_width", "default_height", "max_size")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        # SDXL draws in steps of 8 pixels; the engine refuses other sizes.
        if value % 8:
            raise ValueError("must be a multiple of 8")
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> Settings:
        if self.lora_weight_min >= self.lora_weight_max:
            raise ValueError(
                "LORACLE_LORA_WEIGHT_MIN must be below LORACLE_LORA_WEIGHT_MAX"
            )
        if self.hires_default_scale > self.hires_max_scale:
            raise ValueError("LORACLE_HIRES_DEFAULT_SCALE must not exceed LORACLE_HIRES_MAX_SCALE")
        if self.default_steps > self.max_steps:
            raise ValueError("LORACLE_DEFAULT_STEPS must not exceed LORACLE_MAX_STEPS")
        for name in ("default_width", "default_height"):
            if getattr(self, name) > self.max_size:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must not exceed LORACLE_MAX_SIZE")
        return self

    # -- derived paths ---------------------------------------------------------------
    @cached_property
    def root(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def loras_dir(self) -> Path:
        return self.root / "loras"

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def db_path(self) -> Path:
        return self.root / "loracle.db"

    def ensure_dirs(self) -> None:
        for path in (self.root, self.models_dir, self.loras_dir, self.outputs_dir):
            path.mkdir(parents=True, exist_ok=True)


S = TypeVar("S", bound=Settings)


def load(cls: type[S], **overrides: Any) -> S:
    """Read settings of class `cls`, turning a validation error into one clear line per bad
    variable; `LORACLE_` variables that `cls` does not read are named in a warning."""
    env_file = overrides.get("_env_file", ".env")
    for name, guess in unknown_variables(env_file, cls):
        hint = f" (did you mean {guess}?)" if guess else ""
        log.warning("%s is not a Loracle setting and is ignored%s", name, hint)
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except UnicodeDecodeError as exc:
        # Only the position: the bytes around it may be a token.
        raise SettingsError(f".env is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def load_settings(**overrides: Any) -> Settings:
    """The engine's settings alone (scripts, benchmarks); front ends load their subclass."""
    return load(Settings, **overrides)


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if part != "__root__"]
        field = loc[0] if loc else ""
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        lines.append(f"{ENV_PREFIX}{field.upper()}: {msg}" if field else msg)
    return "; ".join(lines)


def unknown_variables(
    env_file: str | Path | None = ".env", cls: type[Settings] = Settings
) -> list[tuple[str, str | None]]:
    """`LORACLE_*` names in the environment or `.env` that no setting of `cls` reads, each
    with the closest real name: a misspelt variable is otherwise silently ignored."""
    names = {key for key in os.environ if key.upper().startswith(ENV_PREFIX)}
    if env_file is not None and Path(env_file).is_file():
        # Settings() reports an unreadable .env itself.
        with contextlib.suppress(OSError, UnicodeDecodeError):
            names |= {key for key in dotenv_values(env_file) if key.upper().startswith(ENV_PREFIX)}
    known = [f"{ENV_PREFIX}{field}".upper() for field in cls.model_fields]
    unknown = sorted(name for name in names if name.upper() not in known)
    return [(name, next(iter(difflib.get_close_matches(name.upper(), known, n=1)), None)) for name in unknown]
