"""A draw request rebuilt from a picture's parameters and its matched resources.

The picture's values are used as they are wherever the admin's limits allow (same prompt,
negative, seed, steps, CFG, sampler, size, clip skip, checkpoint, LoRAs at their weights,
in the order they were applied); where a value does not fit, it is brought within the
limits and the reply says so. What the library lacks is left out, each with a note and,
when CivitAI knows it, its page.
"""

from __future__ import annotations

from engine.admin_settings import Limits
from engine.content_rules import NSFW_HERE, is_nsfw
from engine.i18n import Fix, Message, Text
from engine.images.matching import Resolved
from engine.images.types import ImageParameters, LikeRequest
from engine.knowledge import Knowledge
from engine.planning.lora_weights import LoraRequest
from engine.planning.params import MAX_SEED
from engine.requests import DrawRequest
from engine.settings import Settings
from engine.verdicts import Verdict

ADD_FROM_CIVITAI = "add_from_civitai"  # Fix code: params {"url": the CivitAI page}

MISSING = Text(
    "The picture's {kind} “{name}” is not in the library, so it was left out.",
    "模型庫中沒有圖片使用的{kind_zh}「{name}」，因此略過。",
)
MISSING_LINKED = Text(
    "The picture's {kind} “{name}” is not in the library, so it was left out; CivitAI has it: {url}",
    "模型庫中沒有圖片使用的{kind_zh}「{name}」，因此略過；CivitAI 上有：{url}",
)
DEFAULT_CHECKPOINT = Text(
    "The default checkpoint draws instead of the picture's.",
    "改用預設模型繪圖，而非圖片原本的模型。",
)
BY_NAME = Text(
    "“{name}” was found by name only; the library's file may differ from the one the picture used.",
    "「{name}」只是名稱相符；模型庫中的檔案可能與圖片使用的不同。",
)
INCOMPATIBLE = Text(
    "“{name}” does not fit the checkpoint that draws (incompatible), so it was left out.",
    "「{name}」與繪圖所用的模型不相容，因此略過。",
)
NSFW_LEFT_OUT = Text(
    "“{name}” is marked NSFW and cannot be used here, so it was left out.",
    "「{name}」被標記為成人內容，無法在此使用，因此略過。",
)
TOO_MANY = Text(
    "The picture used {count} LoRAs; at most {limit} are applied, so the rest were left out.",
    "圖片使用了 {count} 個 LoRA；最多套用 {limit} 個，其餘略過。",
)
LIMITED = Text(
    "The picture's {what} {value} is outside what this server allows; {used} is used.",
    "圖片的 {what} {value} 超出此伺服器允許的範圍；改用 {used}。",
)

NO_UPSCALER = Text(
    "The picture's upscaler “{name}” is not available here; the default upscaler is used.",
    "此處沒有圖片使用的放大器「{name}」；改用預設放大器。",
)

_KIND_ZH = {"checkpoint": "模型（checkpoint）", "lora": "LoRA"}


def missing_note(match_kind: str, name: str, url: str | None) -> Message:
    if url:
        return Message.of(MISSING_LINKED, Fix(ADD_FROM_CIVITAI, {"url": url}), kind=match_kind, kind_zh=_KIND_ZH[match_kind], name=name, url=url)
    return Message.of(MISSING, kind=match_kind, kind_zh=_KIND_ZH[match_kind], name=name)


def notes_for(resolved: list[Resolved]) -> list[Message]:
    """What a reader should know about each resource: missing (with its page), by name only."""
    notes = []
    for item in resolved:
        ref = item.match.ref
        name = ref.name or ref.hash or (f"CivitAI {ref.civitai_version}" if ref.civitai_version else "?")
        if item.entry is None:
            notes.append(missing_note(ref.kind, name, item.match.civitai_url))
        elif item.match.how == "name":
            notes.append(Message.of(BY_NAME, name=item.entry.label))
    return notes


def nsfw_notes(resolved: list[Resolved], knowledge: Knowledge) -> list[Message]:
    """Outside age-restricted places: which matched resources could not be used there."""
    return [
        Message.of(NSFW_HERE, name=r.entry.label) for r in resolved if r.entry is not None and is_nsfw(r.entry, knowledge)
    ]


def build_request(
    params: ImageParameters,
    resolved: list[Resolved],
    *,
    user_id: str,
    allow_nsfw: bool,
    settings: Settings,
    limits: Limits,
    knowledge: Knowledge,
    upscalers: list[str] | None = None,
) -> LikeRequest:
    """`upscalers`: the names this server can upscale with (None: not checked here)."""
    warnings = list(params.warnings)
    warnings.extend(notes_for(resolved))
    checkpoint = next((r for r in resolved if r.match.ref.kind == "checkpoint"), None)
    ckpt_name = checkpoint.entry.name if checkpoint is not None and checkpoint.entry is not None else None
    if checkpoint is not None and checkpoint.entry is not None and not allow_nsfw and is_nsfw(checkpoint.entry, knowledge):
        warnings.append(Message.of(NSFW_LEFT_OUT, name=checkpoint.entry.label))
        ckpt_name = None
    if ckpt_name is None and params.checkpoint is not None:
        warnings.append(Message.of(DEFAULT_CHECKPOINT))
    loras: list[LoraRequest] = []
    for item in resolved:
        entry = item.entry
        if item.match.ref.kind != "lora" or entry is None:
            continue
        if item.match.verdict == Verdict.INCOMPATIBLE:
            warnings.append(Message.of(INCOMPATIBLE, name=entry.label))
        elif not allow_nsfw and is_nsfw(entry, knowledge):
            warnings.append(Message.of(NSFW_LEFT_OUT, name=entry.label))
        elif all(l.name != entry.name for l in loras):
            loras.append(LoraRequest(entry.name, item.match.ref.weight))
    if len(loras) > settings.max_loras:
        warnings.append(Message.of(TOO_MANY, count=len(loras), limit=settings.max_loras))
        loras = loras[: settings.max_loras]
    request = DrawRequest(
        prompt=params.prompt,
        negative=params.negative,
        checkpoint=ckpt_name,
        loras=loras,
        seed=_seed(params.seed, warnings),
        steps=_steps(warnings, params.steps, limits.max_steps),
        cfg=_within(warnings, "CFG", params.cfg, 0, 30),
        width=_side(warnings, "width", params.width, limits.max_size),
        height=_side(warnings, "height", params.height, limits.max_size),
        sampler=params.sampler,
        user_id=user_id,
        allow_nsfw=allow_nsfw,
        # hires=1.0 is off: a picture drawn without hires is redrawn without it, whatever
        # the admin's default.
        hires=params.hires if params.hires is not None else 1.0,
        hires_denoise=params.hires_denoise,
        hires_steps=params.hires_steps,
        hires_upscaler=_upscaler(warnings, params.hires_upscaler, upscalers),
        clip_skip=params.clip_skip,
    )
    return LikeRequest(request, [r.match for r in resolved], warnings)


def _upscaler(warnings: list[Message], name: str | None, known: list[str] | None) -> str | None:
    if name is None or known is None:
        return name
    found = next((k for k in known if k.casefold() == name.casefold()), None)
    if found is None:
        warnings.append(Message.of(NO_UPSCALER, name=name))
    return found


def _within(warnings: list[Message], what: str, value: float | None, low: float, high: float) -> float | None:
    if value is None or low <= value <= high:
        return value
    used = min(max(value, low), high)
    warnings.append(Message.of(LIMITED, what=what, value=f"{value:g}", used=f"{used:g}"))
    return used


def _steps(warnings: list[Message], value: int | None, high: int) -> int | None:
    used = _within(warnings, "steps", value, 1, high)
    return None if used is None else int(used)


def _side(warnings: list[Message], what: str, value: int | None, high: int) -> int | None:
    if value is None:
        return None
    used = max(64, min(value, high)) // 8 * 8
    if used != value:
        warnings.append(Message.of(LIMITED, what=what, value=value, used=used))
    return used


def _seed(value: int | None, warnings: list[Message]) -> int | None:
    if value is None or value <= MAX_SEED:
        return value
    # ComfyUI's 64-bit seeds: its noise differs from Loracle's anyway, so any seed in
    # range keeps the picture as reproducible as it can be.
    used = value % (MAX_SEED + 1)
    warnings.append(Message.of(LIMITED, what="seed", value=value, used=used))
    return used
