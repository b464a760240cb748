"""alpha for peft-format LoRA modules, which keep it in the file's metadata, not a tensor."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from engine.files.lora_classify import finite_float

_MAX_PATTERN = 256
_MODULE_PATH = re.compile(r"[\w.]+")


def _component_of(alias: str) -> str:
    for component in ("text_encoder_2", "text_encoder", "unet"):
        if alias.startswith(component + "."):
            return component
    return "unet"


def peft_alpha(metadata: Mapping[str, str], alias: str, rank: int) -> float | None:
    """alpha for a peft-format module from diffusers' `lora_adapter_metadata` header.

    diffusers (>= 0.33) stores each component's LoraConfig there as "<component>.lora_alpha",
    "<component>.alpha_pattern", "<component>.use_rslora"; without it alpha equals the rank.
    """
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return None
    # The header is a stranger's: what is not peft's config (deep nesting, a pattern that is
    # no regex, an alpha that is no finite number) is ignored, as if absent.
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(config, dict):
        return None
    component = _component_of(alias)
    prefix = f"{component}."
    alpha = config.get(prefix + "lora_alpha")
    if alpha is None:
        return None
    module_name = alias[len(prefix) :] if alias.startswith(prefix) else alias
    patterns = config.get(prefix + "alpha_pattern") or {}
    if isinstance(patterns, dict):
        for pattern, value in patterns.items():
            if not isinstance(pattern, str) or len(pattern) > _MAX_PATTERN:
                continue  # a pattern peft itself could not have written
            # peft's own rule: the pattern must match a trailing run of dotted name parts.
            # Patterns are module paths in practice; anything with regex operators beyond
            # "." is matched literally, so a hostile file cannot make the match backtrack.
            body = pattern if _MODULE_PATH.fullmatch(pattern) else re.escape(pattern)
            hit = re.match(rf"(.*\.)?({body})$", module_name)
            if hit:
                alpha = value
                break
    alpha = finite_float(alpha)
    if alpha is None:
        return None  # no usable number: alpha defaults to the rank
    if config.get(prefix + "use_rslora"):
        # rsLoRA scales by alpha/sqrt(r); expressed as an alpha for the alpha/r rule.
        alpha = alpha * math.sqrt(rank)
    return alpha if math.isfinite(alpha) else None
