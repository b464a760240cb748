"""LoRAs that would only fail at draw time, refused at scan time instead.

A rank-0 module divides by zero when its alpha/rank scale is taken; a zero-sized tensor
patches nothing; a huge alpha/rank scale (finite but absurd) turns every weight it touches
into inf, so every picture comes out NaN.

MAX_SCALE = 1e4: trainers write alpha <= rank (scale <= 1) almost always; hand-tuned or
rsLoRA-style files reach scales of 16-64. 1e4 leaves two orders of magnitude of headroom
above anything real, while ΔW scaled by more than that overwhelms fp16 weights (whose
largest value is 65504) and yields inf and NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from engine.errors import LoraFormatError
from engine.files.header import SafetensorsHeader, read_scalars
from engine.files.lora_classify import WEIGHT_PARTS, ModuleParts
from engine.i18n import Text

MAX_SCALE = 1e4

_MSG_RANK_ZERO = Text(
    "The LoRA “{name}” is broken: module “{module}” has rank 0, so it changes nothing and "
    "cannot be applied. Download it again or remove it.",
    "LoRA「{name}」已損壞：模組「{module}」的秩（rank）為 0，沒有任何作用，也無法套用。請重新下載或移除。",
)
_MSG_EMPTY = Text(
    "The LoRA “{name}” is broken: tensor “{tensor}” is empty (it has a dimension of size 0). "
    "Download it again or remove it.",
    "LoRA「{name}」已損壞：張量「{tensor}」是空的（有一個維度大小為 0）。請重新下載或移除。",
)
_MSG_NO_MODULES = Text(
    "The LoRA “{name}” has no module with weights in it, so it would change nothing.",
    "LoRA「{name}」裡沒有任何帶權重的模組，套用後不會有任何效果。",
)
_MSG_SCALE = Text(
    "The LoRA “{name}” is refused: module “{module}” has alpha {alpha} for rank {rank}, a scale "
    "of {scale} (more than {limit}), which would turn every picture into noise or NaN.",
    "LoRA「{name}」遭拒：模組「{module}」的 alpha 為 {alpha}、秩為 {rank}，縮放倍率 {scale}"
    "（超過 {limit}），會讓每張圖片變成雜訊或 NaN。",
)


def check_lora(header: SafetensorsHeader, modules: Mapping[str, ModuleParts]) -> None:
    """Raise LoraFormatError for a LoRA that cannot be applied sensibly."""
    name = header.path.name
    weighted = [m for m in modules.values() if set(m.parts) & WEIGHT_PARTS]
    if not weighted:
        raise LoraFormatError(_MSG_NO_MODULES, name=name)
    for module in modules.values():
        for part, info in module.parts.items():
            if part != "alpha" and info.numel == 0:
                if module.rank() == 0:
                    raise LoraFormatError(_MSG_RANK_ZERO, name=name, module=module.name)
                raise LoraFormatError(_MSG_EMPTY, name=name, tensor=f"{module.name}.{part}")
    with_alpha = [m for m in modules.values() if "alpha" in m.parts]
    # every alpha, not a sample: one absurd module is enough to ruin a picture
    alphas = read_scalars(header, [m.name + ".alpha" for m in with_alpha])
    for module in with_alpha:
        alpha, rank = alphas.get(module.name + ".alpha"), module.rank()
        if alpha is None or not rank:
            continue
        scale = abs(alpha) / rank if math.isfinite(alpha) else math.inf
        if scale > MAX_SCALE:
            raise LoraFormatError(
                _MSG_SCALE, name=name, module=module.name, alpha=f"{alpha:g}", rank=rank, scale=f"{scale:g}",
                limit=f"{MAX_SCALE:g}",
            )  # fmt: skip
