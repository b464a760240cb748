"""ComfyUI's `prompt` (API graph) and `workflow` (editor graph) chunks, written in the
shapes ComfyUI saves: node ids as strings, links as [node_id, slot] in the API graph and
[link_id, from, from_slot, to, to_slot, type] rows in the editor's."""

from __future__ import annotations

import io
import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.images.comfyui import parse_comfyui
from engine.images.parameters import read_image_parameters

# A text-to-image graph with two chained LoRAs, clip skip 2, and a latent hires pass.
PROMPT = {
    "3": {
        "inputs": {
            "seed": 156680208700286, "steps": 25, "cfg": 6.5, "sampler_name": "dpmpp_2m", "scheduler": "karras",
            "denoise": 1, "model": ["11", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
        },
        "class_type": "KSampler",
        "_meta": {"title": "KSampler"},
    },
    "4": {"inputs": {"ckpt_name": "sdxl\\illustrious\\waiIllustriousSDXL_v160.safetensors"}, "class_type": "CheckpointLoaderSimple"},
    "5": {"inputs": {"width": 832, "height": 1216, "batch_size": 1}, "class_type": "EmptyLatentImage"},
    "6": {"inputs": {"text": "1girl, solo, smile, cherry blossoms", "clip": ["12", 0]}, "class_type": "CLIPTextEncode"},
    "7": {"inputs": {"text": "lowres, worst quality", "clip": ["12", 0]}, "class_type": "CLIPTextEncode"},
    "8": {"inputs": {"samples": ["14", 0], "vae": ["4", 2]}, "class_type": "VAEDecode"},
    "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage"},
    "10": {
        "inputs": {"lora_name": "styles/watercolor_xl.safetensors", "strength_model": 0.8, "strength_clip": 1,
                   "model": ["4", 0], "clip": ["4", 1]},
        "class_type": "LoraLoader",
    },
    "11": {
        "inputs": {"lora_name": "detail_tweaker.safetensors", "strength_model": -0.5, "model": ["10", 0]},
        "class_type": "LoraLoaderModelOnly",
    },
    "12": {"inputs": {"stop_at_clip_layer": -2, "clip": ["10", 1]}, "class_type": "CLIPSetLastLayer"},
    "13": {"inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5, "samples": ["3", 0]}, "class_type": "LatentUpscaleBy"},
    "14": {
        "inputs": {
            "seed": 156680208700286, "steps": 15, "cfg": 6.5, "sampler_name": "dpmpp_2m", "scheduler": "karras",
            "denoise": 0.45, "model": ["11", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["13", 0],
        },
        "class_type": "KSampler",
    },
}  # fmt: skip

# The editor's graph of the default text-to-image workflow, with a LoRA (as saved in PNGs).
WORKFLOW = {
    "last_node_id": 10,
    "last_link_id": 12,
    "nodes": [
        {"id": 4, "type": "CheckpointLoaderSimple", "mode": 0, "inputs": [],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [10]}, {"name": "CLIP", "type": "CLIP", "links": [11]},
                     {"name": "VAE", "type": "VAE", "links": [8]}],
         "widgets_values": ["ponyDiffusionV6XL.safetensors"]},
        {"id": 10, "type": "LoraLoader", "mode": 0,
         "inputs": [{"name": "model", "type": "MODEL", "link": 10}, {"name": "clip", "type": "CLIP", "link": 11}],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}, {"name": "CLIP", "type": "CLIP", "links": [3, 5]}],
         "widgets_values": ["pony_style.safetensors", 0.9, 1.0]},
        {"id": 9, "type": "LoraLoader", "mode": 4,
         "inputs": [{"name": "model", "type": "MODEL", "link": None}, {"name": "clip", "type": "CLIP", "link": None}],
         "widgets_values": ["bypassed_one.safetensors", 1.0, 1.0]},
        {"id": 6, "type": "CLIPTextEncode", "mode": 0, "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
         "widgets_values": ["score_9, a fox in the snow"]},
        {"id": 7, "type": "CLIPTextEncode", "mode": 0, "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
         "widgets_values": ["score_4, blurry"]},
        {"id": 5, "type": "EmptyLatentImage", "mode": 0, "inputs": [], "widgets_values": [1024, 1024, 1]},
        {"id": 3, "type": "KSampler", "mode": 0,
         "inputs": [{"name": "model", "type": "MODEL", "link": 1}, {"name": "positive", "type": "CONDITIONING", "link": 4},
                    {"name": "negative", "type": "CONDITIONING", "link": 6},
                    {"name": "latent_image", "type": "LATENT", "link": 2}],
         "widgets_values": [8566257, "fixed", 20, 7, "euler_ancestral", "normal", 1]},
        {"id": 8, "type": "VAEDecode", "mode": 0,
         "inputs": [{"name": "samples", "type": "LATENT", "link": 7}, {"name": "vae", "type": "VAE", "link": 8}]},
    ],
    "links": [
        [1, 10, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 10, 1, 6, 0, "CLIP"], [4, 6, 0, 3, 1, "CONDITIONING"],
        [5, 10, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"], [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"],
        [10, 4, 0, 10, 0, "MODEL"], [11, 4, 1, 10, 1, "CLIP"],
    ],
    "groups": [],
    "config": {},
    "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
    "version": 0.4,
}  # fmt: skip


def test_api_prompt_graph() -> None:
    p = parse_comfyui(json.dumps(PROMPT), None)
    assert p is not None and p.source == "comfyui"
    assert (p.prompt, p.negative) == ("1girl, solo, smile, cherry blossoms", "lowres, worst quality")
    assert (p.seed, p.steps, p.cfg, p.sampler, p.width, p.height, p.clip_skip) == (
        156680208700286, 25, 6.5, "DPM++ 2M Karras", 832, 1216, 2,
    )  # fmt: skip
    assert p.checkpoint is not None and p.checkpoint.name == "sdxl/illustrious/waiIllustriousSDXL_v160.safetensors"
    # the LoRA nearest the checkpoint first, as ComfyUI applies them
    assert [(l.name, l.weight) for l in p.loras] == [("styles/watercolor_xl.safetensors", 0.8), ("detail_tweaker.safetensors", -0.5)]
    assert (p.hires, p.hires_steps, p.hires_denoise, p.hires_upscaler) == (1.5, 15, 0.45, "latent")


def test_editor_workflow_graph() -> None:
    p = parse_comfyui(None, json.dumps(WORKFLOW))
    assert p is not None
    assert (p.prompt, p.negative, p.seed, p.steps, p.cfg, p.sampler) == (
        "score_9, a fox in the snow", "score_4, blurry", 8566257, 20, 7, "Euler a",
    )  # fmt: skip
    assert (p.width, p.height) == (1024, 1024) and p.hires is None
    assert p.checkpoint is not None and p.checkpoint.name == "ponyDiffusionV6XL.safetensors"
    assert [(l.name, l.weight) for l in p.loras] == [("pony_style.safetensors", 0.9)]


def test_the_prompt_chunk_wins_over_the_workflow_in_a_png() -> None:
    info = PngInfo()
    info.add_text("prompt", json.dumps(PROMPT))
    info.add_text("workflow", json.dumps(WORKFLOW))
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "PNG", pnginfo=info)
    p = read_image_parameters(buffer.getvalue())
    assert p.source == "comfyui" and p.seed == 156680208700286


def test_unknown_sampler_and_other_schedule_warn() -> None:
    graph = json.loads(json.dumps(PROMPT))
    graph["3"]["inputs"]["sampler_name"] = "lcm"
    p = parse_comfyui(json.dumps(graph), None)
    assert p is not None and p.sampler is None and "lcm" in p.warnings[0].render("en")
    graph["3"]["inputs"].update(sampler_name="euler", scheduler="exponential")
    p = parse_comfyui(json.dumps(graph), None)
    assert p is not None and p.sampler == "Euler" and "exponential" in p.warnings[0].render("en")


def test_cycles_junk_and_graphs_without_a_sampler() -> None:
    cyclic = {
        "1": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "positive": ["3", 0], "seed": 1, "steps": 5}},
        "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "x", "model": ["2", 0]}},
        "3": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["3", 0]}},
    }
    p = parse_comfyui(json.dumps(cyclic), None)
    assert p is not None and p.prompt == "" and [l.name for l in p.loras] == ["x"]
    assert "could not be read" in p.warnings[0].render("en")
    for junk in ("", "[]", "{}", "null", '{"1": 5}', "[" * 100000, '{"nodes": 5, "links": []}'):
        assert parse_comfyui(junk, junk) is None
    no_sampler = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}}}
    assert parse_comfyui(json.dumps(no_sampler), None) is None
