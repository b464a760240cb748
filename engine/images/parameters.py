"""A picture's generation parameters, whichever tool made it, as one `ImageParameters`.

- A1111 and Forge infotext (engine/png_info.py reads its lines; Loracle writes the same
  layout with `Version: loracle ...`); the A1111 fields used: Steps, Sampler, Schedule
  type, CFG scale, Seed, Size, Clip skip, Model hash, Model, Lora hashes, TI hashes,
  Hires upscale / resize / steps / upscaler, Denoising strength.
- CivitAI: A1111 text with `Civitai resources: [...]` (JSON: each checkpoint and LoRA with
  its model-version id and weight), `Civitai metadata: {...}` and the `Hashes: {...}` that
  CivitAI's A1111 extension adds. These JSON values hold commas, so they are taken out
  whole (a JSON decoder, never a regex) before A1111's `Key: value` reading.
- ComfyUI: engine/images/comfyui.py.

The prompt comes back with its `<lora:...>` tags taken out; they are in `loras`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from engine.errors import ImageInputError, WeightError
from engine.i18n import Message, Text
from engine.images import values
from engine.images.image_text import read_image_texts
from engine.images.types import ImageParameters, ParameterSource, ResourceRef
from engine.planning.lora_weights import lora_tags_in, split_prompt_loras
from engine.png_info import parse_lora_hashes, parse_parameters

NO_PARAMETERS = Text(
    "This picture carries no generation parameters (no A1111, ComfyUI, CivitAI or Loracle "
    "text): it may have been re-saved or sent through an app that strips them. Use the "
    "original file.",
    "這張圖片沒有生成參數（沒有 A1111、ComfyUI、CivitAI 或 Loracle 的文字）：可能被重新存檔，"
    "或經過會刪除參數的應用程式。請使用原始檔案。",
)
EMBEDDINGS = Text(
    "The picture used textual-inversion embeddings ({names}); Loracle does not load embeddings, "
    "so their names are drawn as plain words.",
    "圖片使用了 textual inversion 嵌入（{names}）；Loracle 不載入嵌入，它們的名稱會被當成一般文字。",
)
_BAD_TAG = Text(
    "The picture's LoRA tags could not all be read ({reason}); they were left out of the prompt.",
    "圖片中的 LoRA 標籤無法全部讀取（{reason}）；已從提示詞中移除。",
)

# A1111 fields read into ImageParameters; everything else is kept in `extra`.
_USED = {
    "Prompt", "Negative prompt", "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size",
    "Clip skip", "Model hash", "Model", "Lora hashes", "TI hashes", "Hires upscale", "Hires resize",
    "Hires steps", "Hires upscaler", "Denoising strength",
}  # fmt: skip
_JSON_FIELDS = re.compile(r"(?:^|,[ \t]*)(Civitai resources|Civitai metadata|Hashes):[ \t]*(?=[\[{])", re.M)
_ANY_TAG = re.compile(r"<\s*(?:lora|lyco)\s*:[^<>]*>", re.I)
_EXTRA_CHARS = 500  # of each unused field kept for display


def read_image_parameters(data: bytes) -> ImageParameters:
    """The parameters of a picture given as bytes; ImageInputError for a picture that is
    damaged, hostile or not a picture, or that carries no parameters."""
    return parameters_from_texts(read_image_texts(data).texts)


def parameters_from_texts(texts: Mapping[str, str]) -> ImageParameters:
    """From a picture's texts (see engine/images/image_text.TEXT_KEYS); A1111-style text
    first, then ComfyUI's graph."""
    from engine.images.comfyui import parse_comfyui

    infotext = texts.get("parameters", "")
    if infotext.strip() and not _is_json(infotext):
        return parse_infotext(infotext)
    found = parse_comfyui(texts.get("prompt"), texts.get("workflow"))
    if found is not None:
        return found
    raise ImageInputError(NO_PARAMETERS)


def parse_infotext(text: str) -> ImageParameters:
    """A1111/Forge/CivitAI/Loracle infotext; ImageInputError when it has no prompt."""
    text, blobs = _take_json_fields(text)
    fields = parse_parameters(text)
    warnings: list[Message] = []
    raw_prompt = fields.get("Prompt", "")
    prompt, tagged = _split_tags(raw_prompt, warnings)
    if not prompt.strip() and not tagged:
        raise ImageInputError(NO_PARAMETERS)
    width, height = values.size(warnings, fields.get("Size"))
    params = ImageParameters(
        source=_source(fields, blobs),
        prompt=prompt,
        negative=fields.get("Negative prompt", ""),
        seed=values.seed(warnings, fields.get("Seed")),
        steps=values.integer(warnings, "Steps", fields.get("Steps"), 1, values.MAX_STEPS),
        cfg=values.real(warnings, "CFG scale", fields.get("CFG scale"), 0, values.MAX_CFG),
        sampler=values.a1111_sampler(warnings, fields.get("Sampler"), fields.get("Schedule type")),
        width=width,
        height=height,
        clip_skip=values.integer(warnings, "Clip skip", fields.get("Clip skip"), 1, values.MAX_CLIP_SKIP),
        warnings=warnings,
    )
    _hires(params, fields)
    hashes = _hashes_json(blobs.get("Hashes"))
    resources = _civitai_resources(blobs.get("Civitai resources"))
    params.checkpoint = _checkpoint(fields, hashes, resources)
    params.loras = _loras(tagged, fields, hashes, resources, warnings)
    embeddings = [*parse_lora_hashes(fields.get("TI hashes", "")), *(k[6:] for k in hashes if k.startswith("embed:"))]
    if embeddings:
        warnings.append(Message.of(EMBEDDINGS, names=", ".join(dict.fromkeys(embeddings))[:200]))
    params.extra = {k: v[:_EXTRA_CHARS] for k, v in fields.items() if k not in _USED}
    for key, blob in blobs.items():
        params.extra[key] = json.dumps(blob, ensure_ascii=False)[:_EXTRA_CHARS]
    return params


def _is_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


def _source(fields: Mapping[str, str], blobs: Mapping[str, Any]) -> ParameterSource:
    if "Civitai resources" in blobs or "Civitai metadata" in blobs:
        return "civitai"
    if fields.get("Version", "").lower().startswith("loracle"):
        return "loracle"
    return "a1111"


def _take_json_fields(text: str) -> tuple[str, dict[str, Any]]:
    """Take `Key: <JSON>` fields out of the text, each decoded, the rest left as it was."""
    decoder = json.JSONDecoder()
    blobs: dict[str, Any] = {}
    spans: list[tuple[int, int]] = []
    for match in _JSON_FIELDS.finditer(text):
        if spans and match.start() < spans[-1][1]:
            continue  # inside a JSON value already taken
        try:
            value, end = decoder.raw_decode(text, match.end())
        except (ValueError, RecursionError):
            continue
        blobs.setdefault(match.group(1), value)
        # Keep the line break a field may start with: it separates the prompt lines.
        start = match.start() + (1 if text[match.start()] == "\n" else 0)
        spans.append((start, end))
    for start, end in reversed(spans):
        text = text[:start] + text[end:]
    return text, blobs


def _split_tags(prompt: str, warnings: list[Message]) -> tuple[str, list[tuple[str, str | None]]]:
    """The prompt without its LoRA tags, and each tag's (name, weight text)."""
    tags = list(lora_tags_in(prompt))
    try:
        cleaned, _ = split_prompt_loras(prompt)
    except WeightError as exc:
        warnings.append(Message.of(_BAD_TAG, reason=str(exc)[:120]))
        cleaned = _ANY_TAG.sub("", prompt).strip(" ,\n\t")
    return cleaned, tags


def _hires(params: ImageParameters, fields: Mapping[str, str]) -> None:
    w = params.warnings
    denoise = values.real(w, "Denoising strength", fields.get("Denoising strength"), 0, 1)
    scale = values.real(w, "Hires upscale", fields.get("Hires upscale"), 1, values.MAX_HIRES)
    resize = fields.get("Hires resize")
    if scale is None and resize and params.width:
        rw, _ = values.size(w, resize)
        if rw:
            scale = values.real(w, "Hires resize", rw / params.width, 1, values.MAX_HIRES)
    if scale is None and "Hires upscaler" not in fields and "Hires steps" not in fields:
        params.denoise = denoise  # image-to-image: the strength it was drawn at
        return
    params.hires = scale
    params.hires_denoise = denoise
    params.hires_steps = values.integer(w, "Hires steps", fields.get("Hires steps"), 0, values.MAX_STEPS) or None
    upscaler = (fields.get("Hires upscaler") or "").strip()
    if upscaler.lower().startswith("latent"):
        params.hires_upscaler = "latent"
    elif upscaler.lower() == "lanczos":
        params.hires_upscaler = "lanczos"
    elif upscaler and upscaler.lower() != "none":
        params.hires_upscaler = upscaler[:200]


def _hashes_json(blob: Any) -> dict[str, str]:
    if not isinstance(blob, dict):
        return {}
    return {str(k)[:200]: v.strip() for k, v in blob.items() if isinstance(v, str) and _hex(v.strip())}


def _hex(text: str) -> bool:
    return 8 <= len(text) <= 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _civitai_resources(blob: Any) -> list[dict[str, Any]]:
    return [item for item in blob if isinstance(item, dict)] if isinstance(blob, list) else []


def _version_id(item: Mapping[str, Any]) -> int | None:
    vid = item.get("modelVersionId")
    if isinstance(vid, int) and not isinstance(vid, bool) and 0 < vid < 2**53:
        return vid
    air = item.get("air")
    if isinstance(air, str) and "@" in air:  # urn:air:sdxl:lora:civitai:MODEL@VERSION
        tail = air.rsplit("@", 1)[1]
        return int(tail) if tail.isdigit() and len(tail) < 16 else None
    return None


def _resource_name(item: Mapping[str, Any]) -> str | None:
    name = item.get("modelName") or item.get("name")
    return name[:200] if isinstance(name, str) and name.strip() else None


def _checkpoint(fields: Mapping[str, str], hashes: Mapping[str, str], resources: list[dict[str, Any]]) -> ResourceRef | None:
    digest = (fields.get("Model hash") or hashes.get("model") or "").strip()
    name = (fields.get("Model") or "").strip() or None
    version = None
    for item in resources:
        if str(item.get("type", "")).lower() == "checkpoint":
            version = _version_id(item)
            name = name or _resource_name(item)
            break
    if not (digest and _hex(digest)) and name is None and version is None:
        return None
    return ResourceRef("checkpoint", name, digest if _hex(digest) else None, civitai_version=version)


def _loras(
    tagged: list[tuple[str, str | None]],
    fields: Mapping[str, str],
    hashes: Mapping[str, str],
    resources: list[dict[str, Any]],
    warnings: list[Message],
) -> list[ResourceRef]:
    lora_hashes = {k: v for k, v in parse_lora_hashes(fields.get("Lora hashes", "")).items() if _hex(v)}
    lora_hashes.update({k[5:]: v for k, v in hashes.items() if k.startswith("lora:") and k[5:] not in lora_hashes})
    folded = {k.casefold(): v for k, v in lora_hashes.items()}
    refs: dict[str, ResourceRef] = {}
    for name, weight_text in tagged:
        weight = _weight(warnings, name, weight_text)
        key = name.casefold()
        if key not in refs:
            refs[key] = ResourceRef("lora", name[:200], lora_hashes.get(name) or folded.get(key), weight)
    for name, digest in lora_hashes.items():  # hashed but not tagged: drawn at its default
        refs.setdefault(name.casefold(), ResourceRef("lora", name[:200], digest))
    for item in resources:
        if str(item.get("type", "")).lower() not in ("lora", "locon", "lycoris", "dora"):
            continue
        label = _resource_name(item)
        weight = values.real(warnings, "LoRA weight", item.get("weight"), -values.MAX_WEIGHT, values.MAX_WEIGHT)
        version = _version_id(item)
        key = (label or f"civitai:{version}").casefold()
        old = refs.get(key)
        refs[key] = ResourceRef(
            "lora", label, old.hash if old else None, old.weight if old and old.weight is not None else weight, version
        )
    # Loracle applies LoRAs in `Lora hashes` order (each one's weights added to the model
    # in turn), so that order is kept: a redraw adds them in the same order, bit for bit.
    order = {name.casefold(): i for i, name in enumerate(lora_hashes)}
    if not all(key in order for key in refs):
        return list(refs.values())  # as the prompt names them
    return [refs[key] for key in sorted(refs, key=order.__getitem__)]


def _weight(warnings: list[Message], name: str, text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    return values.real(warnings, f"weight of {name[:40]}", text, -values.MAX_WEIGHT, values.MAX_WEIGHT)


def parameters_json(params: ImageParameters, locale: str = "en") -> dict[str, Any]:
    """The parameters as JSON (front ends' `--json` and logs); warnings rendered."""

    def ref(r: ResourceRef | None) -> dict[str, Any] | None:
        if r is None:
            return None
        return {"kind": r.kind, "name": r.name, "hash": r.hash, "weight": r.weight, "civitai_version": r.civitai_version}

    return {
        "source": params.source,
        "prompt": params.prompt,
        "negative": params.negative,
        "seed": params.seed,
        "steps": params.steps,
        "cfg": params.cfg,
        "sampler": params.sampler,
        "width": params.width,
        "height": params.height,
        "clip_skip": params.clip_skip,
        "checkpoint": ref(params.checkpoint),
        "loras": [ref(l) for l in params.loras],
        "hires": params.hires,
        "hires_denoise": params.hires_denoise,
        "hires_steps": params.hires_steps,
        "hires_upscaler": params.hires_upscaler,
        "denoise": params.denoise,
        "extra": dict(params.extra),
        "warnings": [w.render(locale) for w in params.warnings],
    }
