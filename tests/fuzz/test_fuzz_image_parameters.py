"""Fuzzing the picture reader (engine/images): random bytes, damaged real pictures, PNGs
with random text chunks, random infotext and random ComfyUI graphs are read into
parameters or refused with ImageInputError, never anything else; and what Loracle writes
is read back field for field."""

from __future__ import annotations

import io
import json
import math

from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.errors import ImageInputError
from engine.images.comfyui import parse_comfyui
from engine.images.parameters import parameters_json, parse_infotext, read_image_parameters
from engine.images.types import ImageParameters
from engine.png_info import format_parameters, lora_alias
from tests.fuzz._support import json_values, own_errors_only

_pieces = st.sampled_from(
    [
        "Steps: 20", "Sampler: Euler a", "Schedule type: Karras", ", ", ": ", "\n", "Negative prompt:", '"', "<lora:x:0.5>",
        "Lora hashes: ", '"a: 0123456789ab"', "Size: 64x64", "Seed: -1", "Seed: 99999999999999999999999",
        "Model hash: zz", "Civitai resources: ", '[{"type":"lora","weight":1e999,"modelVersionId":-1}]',
        "Civitai metadata: {", "Hashes: {\"model\": 5}", "Hires upscale: nan", "Clip skip: -3", "CFG scale: inf",
        "[", "{", "]", "}", "Denoising strength: 2", "TI hashes: ", "BREAK",
    ]
)  # fmt: skip
infotexts = st.lists(_pieces | st.text(max_size=8), max_size=30).map("".join) | st.text(max_size=300)


def _check(found: ImageParameters | ImageInputError) -> None:
    if isinstance(found, ImageInputError):
        return
    assert isinstance(found, ImageParameters)
    for value in (found.steps, found.width, found.height, found.clip_skip, found.hires_steps):
        assert value is None or (isinstance(value, int) and value >= 0)
    for number in (found.cfg, found.hires, found.hires_denoise, found.denoise, *(l.weight for l in found.loras)):
        assert number is None or math.isfinite(number)
    for warning in found.warnings:
        assert warning.render("en") and warning.render("zh-TW")
    json.dumps(parameters_json(found))


@given(text=infotexts)
def test_any_infotext_is_read_or_refused(text: str) -> None:
    _check(own_errors_only(parse_infotext, text))


@given(data=st.binary(max_size=400))
def test_any_bytes_are_refused_or_read(data: bytes) -> None:
    found = own_errors_only(read_image_parameters, data)
    assert isinstance(found, ImageInputError | ImageParameters)


def _png(chunks: list[tuple[str, str]]) -> bytes:
    info = PngInfo()
    for key, value in chunks:
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


_graph_text = json_values.map(json.dumps) | infotexts
_chunks = st.lists(
    st.tuples(st.sampled_from(["parameters", "prompt", "workflow"]), _graph_text | infotexts), max_size=3
)


@given(chunks=_chunks)
def test_pngs_with_any_texts(chunks: list[tuple[str, str]]) -> None:
    _check(own_errors_only(read_image_parameters, _png(chunks)))


_REAL = _png([("parameters", "a cat <lora:x:0.5>\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 16x16")])


@given(edits=st.lists(st.tuples(st.integers(0, len(_REAL) - 1), st.integers(0, 255)), min_size=1, max_size=8), cut=st.integers(0, len(_REAL)))
def test_damaged_real_pictures(edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_REAL)
    for at, value in edits:
        data[at] = value
    _check(own_errors_only(read_image_parameters, bytes(data[: max(cut, 8)])))


# Graphs built from the node types the reader follows, linked at random (cycles included).
_node_types = st.sampled_from(
    ["KSampler", "KSamplerAdvanced", "CheckpointLoaderSimple", "LoraLoader", "LoraLoaderModelOnly", "CLIPTextEncode",
     "EmptyLatentImage", "CLIPSetLastLayer", "LatentUpscaleBy", "LatentUpscale", "ConditioningCombine"]
)  # fmt: skip
_input_names = st.sampled_from(
    ["model", "clip", "positive", "negative", "latent_image", "samples", "conditioning", "text", "seed", "steps", "cfg",
     "sampler_name", "scheduler", "denoise", "ckpt_name", "lora_name", "strength_model", "width", "height",
     "stop_at_clip_layer", "scale_by", "noise_seed"]
)  # fmt: skip
_links = st.tuples(st.integers(0, 6).map(str), st.integers(0, 2)).map(list)
_graphs = st.dictionaries(
    st.integers(0, 6).map(str),
    st.fixed_dictionaries(
        {"class_type": _node_types, "inputs": st.dictionaries(_input_names, _links | json_values, max_size=8)}
    ),
    max_size=7,
)


@given(graph=_graphs, as_workflow=st.booleans())
def test_comfyui_graphs(graph: dict, as_workflow: bool) -> None:
    if as_workflow:
        nodes = [
            {"id": int(k), "type": v["class_type"], "widgets_values": list(v["inputs"].values())} for k, v in graph.items()
        ]
        found = parse_comfyui(None, json.dumps({"nodes": nodes, "links": [[1, 0, 0, 1, 0, "MODEL"]]}))
    else:
        found = parse_comfyui(json.dumps(graph), None)
    if found is not None:
        _check(found)


_word = st.text(alphabet=st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=12)


@given(
    prompt=_word,
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 150),
    cfg=st.floats(0, 30, allow_nan=False).map(lambda x: round(x, 2)),
    size=st.tuples(st.integers(8, 4096), st.integers(8, 4096)),
    loras=st.lists(
        st.tuples(_word, st.floats(-2, 2, allow_nan=False).map(lambda x: round(x, 3)), st.text("0123456789abcdef", min_size=12, max_size=12)),
        max_size=4,
        unique_by=lambda l: lora_alias(l[0]).casefold(),
    ),
)
def test_what_loracle_writes_is_read_back(prompt, seed, steps, cfg, size, loras) -> None:
    assume(all(w != 0 for _, w, _ in loras))
    text = format_parameters(
        prompt=prompt, steps=steps, sampler="Euler", cfg=cfg, seed=seed, width=size[0], height=size[1], loras=loras
    )
    found = parse_infotext(text)
    assert (found.prompt, found.seed, found.steps, found.width, found.height, found.sampler) == (
        prompt, seed, steps, size[0], size[1], "Euler",
    )  # fmt: skip
    assert found.cfg is not None and math.isclose(found.cfg, cfg, abs_tol=1e-4)
    assert [(l.name, l.weight, l.hash) for l in found.loras] == [(n, w, h) for n, w, h in loras]
