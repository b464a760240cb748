"""ComfyUI's parameters: the `prompt` chunk (the API graph it ran) or the `workflow` chunk
(the editor's graph), read by following the sampler's links.

The API graph is `{node_id: {"class_type": ..., "inputs": {name: value | [node_id, slot]}}}`.
The editor's graph lists `nodes` (each with `type`, linked `inputs` and positional
`widgets_values`) and `links` (`[id, from_node, from_slot, to_node, to_slot, type]`, or the
same as an object in newer files); it is turned into the API shape first. `prompt` is
preferred: it holds the values that ran, where a workflow's seed widget may already show
the next seed.

From the first-pass sampler (KSampler or KSamplerAdvanced whose latent starts empty):
`model` leads through LoraLoader / LoraLoaderModelOnly nodes to CheckpointLoaderSimple;
`positive` / `negative` lead to CLIPTextEncode texts; `latent_image` to the size. A second
sampler fed by a LatentUpscaleBy / LatentUpscale of the first is a hires pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from engine.i18n import Message, Text
from engine.images import values
from engine.images.types import ImageParameters, ResourceRef

Graph = dict[str, dict[str, Any]]

_SAMPLERS = ("KSampler", "KSamplerAdvanced")
_LORAS = ("LoraLoader", "LoraLoaderModelOnly")
_MAX_HOPS = 64  # links followed from one input: a cycle or a hostile chain ends here
_MAX_NODES = 5000
# The editor's widget names by node type, in `widgets_values` order.
_WIDGETS: dict[str, tuple[str, ...]] = {
    "KSampler": ("seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": (
        "add_noise", "noise_seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler",
        "start_at_step", "end_at_step", "return_with_leftover_noise",
    ),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "CLIPTextEncode": ("text",),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "CLIPSetLastLayer": ("stop_at_clip_layer",),
    "LatentUpscaleBy": ("upscale_method", "scale_by"),
    "LatentUpscale": ("upscale_method", "width", "height", "crop"),
    "PrimitiveNode": ("value",),
}  # fmt: skip
NO_PROMPT = Text(
    "The picture's prompt could not be read: its sampler's prompt comes from nodes Loracle does not know.",
    "無法讀取圖片的提示詞：取樣器的提示詞來自 Loracle 不認得的節點。",
)
_BYPASSED = 4  # the editor's node mode for "bypass"


def parse_comfyui(prompt: str | None, workflow: str | None) -> ImageParameters | None:
    """The parameters in ComfyUI's chunks, or None when neither holds a sampler."""
    for text, convert in ((prompt, _api_graph), (workflow, _editor_graph)):
        graph = convert(_load(text)) if text else None
        found = _read(graph) if graph else None
        if found is not None:
            return found
    return None


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _api_graph(data: Any) -> Graph | None:
    if not isinstance(data, dict) or len(data) > _MAX_NODES:
        return None
    graph = {str(k): v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("inputs"), dict)}
    return graph or None


def _editor_graph(data: Any) -> Graph | None:
    if not isinstance(data, dict):
        return None
    nodes, links = data.get("nodes"), data.get("links")
    if not isinstance(nodes, list) or len(nodes) > _MAX_NODES or not isinstance(links, list):
        return None
    sources: dict[Any, list[Any]] = {}
    for link in links[: _MAX_NODES * 8]:
        if isinstance(link, list) and len(link) >= 3:
            sources[link[0]] = [str(link[1]), link[2]]
        elif isinstance(link, dict):
            sources[link.get("id")] = [str(link.get("origin_id")), link.get("origin_slot")]
    graph: Graph = {}
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            continue
        kind = node["type"]
        inputs: dict[str, Any] = {}
        widgets = node.get("widgets_values")
        names = _WIDGETS.get(kind, ())
        if isinstance(widgets, list):
            if len(widgets) == len(names) - 1 and "control_after_generate" in names:
                names = tuple(n for n in names if n != "control_after_generate")
            inputs.update(zip(names, widgets, strict=False))
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict) and isinstance(slot.get("name"), str) and slot.get("link") in sources:
                inputs[slot["name"]] = sources[slot["link"]]
        graph[str(node.get("id"))] = {"class_type": kind, "inputs": inputs, "bypassed": node.get("mode") == _BYPASSED}
    return graph or None


def _node(graph: Graph, link: Any) -> dict[str, Any] | None:
    if isinstance(link, list) and len(link) == 2:
        node = graph.get(str(link[0]))
        return node if isinstance(node, dict) else None
    return None


def _inputs(node: dict[str, Any]) -> dict[str, Any]:
    found = node.get("inputs")
    return found if isinstance(found, dict) else {}


def _upstream(graph: Graph, link: Any, through: str) -> Iterator[dict[str, Any]]:
    """The nodes met following `link`, then each node's `through` input, in turn."""
    seen: set[int] = set()
    for _ in range(_MAX_HOPS):
        node = _node(graph, link)
        if node is None or id(node) in seen:
            return
        seen.add(id(node))
        yield node
        inputs = _inputs(node)
        link = inputs.get(through)
        if link is None:  # conditioning combiners and the like: their first linked input
            link = next((v for v in inputs.values() if isinstance(v, list) and len(v) == 2), None)


def _text(graph: Graph, link: Any) -> str:
    for node in _upstream(graph, link, "conditioning"):
        inputs = _inputs(node)
        for key in ("text", "text_g", "string", "value", "text_l"):
            value = inputs.get(key)
            if isinstance(value, list):  # the text itself comes from another node
                for source in _upstream(graph, value, "text"):
                    found = next((v for k, v in _inputs(source).items() if k in ("text", "string", "value") and isinstance(v, str)), None)
                    if found is not None:
                        return found
            elif isinstance(value, str):
                return value
    return ""


def _samplers(graph: Graph) -> list[dict[str, Any]]:
    found = [node for _, node in sorted(graph.items(), key=lambda kv: _order(kv[0])) if node.get("class_type") in _SAMPLERS]
    first = [n for n in found if _starts_empty(graph, n)]
    return first + [n for n in found if n not in first]


def _order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() and len(node_id) < 12 else (2**63, node_id)


def _starts_empty(graph: Graph, sampler: dict[str, Any]) -> bool:
    latent = _node(graph, _inputs(sampler).get("latent_image"))
    return latent is not None and str(latent.get("class_type", "")).startswith("Empty")


def _read(graph: Graph) -> ImageParameters | None:
    samplers = _samplers(graph)
    if not samplers:
        return None
    sampler = samplers[0]
    inputs = _inputs(sampler)
    warnings: list[Message] = []
    advanced = sampler.get("class_type") == "KSamplerAdvanced"
    latent = _inputs(_node(graph, inputs.get("latent_image")) or {})
    params = ImageParameters(
        source="comfyui",
        prompt=_text(graph, inputs.get("positive")),
        negative=_text(graph, inputs.get("negative")),
        seed=values.seed(warnings, inputs.get("noise_seed" if advanced else "seed")),
        steps=values.integer(warnings, "steps", inputs.get("steps"), 1, values.MAX_STEPS),
        cfg=values.real(warnings, "cfg", inputs.get("cfg"), 0, values.MAX_CFG),
        sampler=values.comfy_sampler(warnings, inputs.get("sampler_name"), inputs.get("scheduler")),
        width=values.integer(warnings, "width", latent.get("width"), 1, values.MAX_SIDE),
        height=values.integer(warnings, "height", latent.get("height"), 1, values.MAX_SIDE),
        warnings=warnings,
    )
    if not params.prompt.strip():
        warnings.append(Message.of(NO_PROMPT))
    _model_chain(graph, inputs.get("model"), params)
    params.clip_skip = _clip_skip(graph, inputs.get("positive"), warnings)
    _hires(graph, sampler, samplers[1:], params)
    if isinstance(inputs.get("scheduler"), str):
        params.extra["scheduler"] = inputs["scheduler"][:100]
    if isinstance(inputs.get("sampler_name"), str):
        params.extra["sampler_name"] = inputs["sampler_name"][:100]
    return params


def _file_name(value: Any) -> str | None:
    """A ComfyUI model name as written (`sub\\name.safetensors` on Windows)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return PurePosixPath(value.strip().replace("\\", "/")).as_posix()[:300]


def _model_chain(graph: Graph, link: Any, params: ImageParameters) -> None:
    loras: list[ResourceRef] = []
    for node in _upstream(graph, link, "model"):
        kind, inputs = node.get("class_type"), _inputs(node)
        if kind in _LORAS and not node.get("bypassed"):
            name = _file_name(inputs.get("lora_name"))
            weight = values.real(params.warnings, "LoRA strength", inputs.get("strength_model"), -values.MAX_WEIGHT, values.MAX_WEIGHT)
            if name:
                loras.append(ResourceRef("lora", name, None, weight))
        elif kind == "CheckpointLoaderSimple" or "ckpt_name" in inputs:
            name = _file_name(inputs.get("ckpt_name"))
            if name:
                params.checkpoint = ResourceRef("checkpoint", name)
            break
    params.loras = loras[::-1]  # the one nearest the checkpoint is applied first


def _clip_skip(graph: Graph, positive: Any, warnings: list[Message]) -> int | None:
    encoder = next(iter(_upstream(graph, positive, "conditioning")), None)
    for node in _upstream(graph, _inputs(encoder or {}).get("clip"), "clip"):
        if node.get("class_type") == "CLIPSetLastLayer":
            layer = values.integer(warnings, "stop_at_clip_layer", _inputs(node).get("stop_at_clip_layer"), -values.MAX_CLIP_SKIP, -1)
            return -layer if layer is not None else None
    return None


def _hires(graph: Graph, first: dict[str, Any], others: list[dict[str, Any]], params: ImageParameters) -> None:
    for sampler in others:
        inputs = _inputs(sampler)
        upscale = _node(graph, inputs.get("latent_image"))
        if upscale is None or _node(graph, _inputs(upscale).get("samples")) is not first:
            continue
        w = params.warnings
        kind, up = upscale.get("class_type"), _inputs(upscale)
        if kind == "LatentUpscaleBy":
            params.hires = values.real(w, "scale_by", up.get("scale_by"), 1, values.MAX_HIRES)
        elif kind == "LatentUpscale" and params.width:
            width = values.integer(w, "width", up.get("width"), 1, values.MAX_SIDE)
            params.hires = values.real(w, "width", width / params.width, 1, values.MAX_HIRES) if width else None
        else:
            continue
        params.hires_upscaler = "latent"
        params.hires_steps = values.integer(w, "steps", inputs.get("steps"), 1, values.MAX_STEPS)
        params.hires_denoise = values.real(w, "denoise", inputs.get("denoise"), 0, 1)
        return
