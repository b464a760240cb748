"""`loracle demo`: a tiny offline library that shows every verdict, then one drawing.

Everything is built here from config in seconds: a tiny SDXL checkpoint saved as one
`.safetensors` in the layout CivitAI downloads use — a merge, made the way A1111's
checkpoint merger makes one, of a parent kept in the library and one that is not — and
LoRAs whose kohya metadata tells stories from different families, two of them with
`.civitai.info` sidecars carrying their authors' recommended weights (one in CivitAI's
settings, one in the author's description). Nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from bot.cli.hints import with_hint
from bot.cli.knowledge import lineage_lines, weight_line
from engine.settings import Settings

CHECKPOINT = "loracleDemoXL_v10"
# The merge's parents: one in the library (its name says Illustrious), one only named by
# the merge. "tiny..." sorts after CHECKPOINT, which stays the first (default) checkpoint.
BASE_CHECKPOINT = "tinyIllustriousBase_v10"
# A real ESRGAN architecture, tiny, so the hires fix can show an upscaler model offline.
UPSCALER = "demo-2x-esrgan"
OUTSIDE_PARENT = "loracleDemoPainterly_v20"
MERGE_MULTIPLIER = 0.3
# Authors' weights, kept in `.civitai.info` sidecars (made-up ids; nothing is fetched).
SIDECARS = {
    "demo_noob_character": {
        "version_id": 9_900_101, "model_id": 9_900_001, "model_name": "Demo Red-haired Student", "model_type": "LoCon",
        "base_model": "NoobAI", "settings": {"strength": 0.7, "minStrength": 0.5, "maxStrength": 0.9},
    },
    "demo_sd15_detail": {
        "version_id": 9_900_102, "model_id": 9_900_002, "model_name": "Demo Detail Tweaker", "model_type": "LORA",
        "base_model": "SD 1.5",
        "description": "<p>A detail LoRA for SD 1.5 (v1.5, trained at 512x512, CFG 7, 30 steps).</p>"
        "<p><strong>Recommended weight: 0.4-0.6</strong>; above 1.0 it burns.</p>",
    },
}


@dataclass(frozen=True)
class DemoLora:
    name: str
    story: str
    sd_model_name: str | None
    tags: dict[str, int]
    trained_on_demo: bool = False
    architecture: str = "sdxl"
    variant: str = "lora"


LORAS = (
    DemoLora(
        "demo_exact_style",
        "trained on the demo checkpoint itself (ss_new_sd_model_hash)",
        f"{CHECKPOINT}.safetensors",
        {"watercolor": 40, "1girl": 30, "flower": 12},
        trained_on_demo=True,
    ),
    DemoLora(
        "demo_noob_character",
        "trained on NoobAI, a descendant of Illustrious",
        "noobaiXLNAIXL_epsilonPred11Version.safetensors",
        {"1girl": 50, "red hair": 41, "school uniform": 20},
        variant="locon",
    ),
    DemoLora(
        "demo_pony_style",
        "trained on Pony Diffusion V6 XL, another SDXL family",
        "ponyDiffusionV6XL_v6StartWithThisOne.safetensors",
        {"score_9": 60, "score_8_up": 60, "score_7_up": 60, "source_anime": 55, "ink": 30},
    ),
    DemoLora(
        "demo_sd15_detail",
        "an SD 1.5 LoRA: different layer shapes",
        "v1-5-pruned-emaonly.safetensors",
        {"detailed": 10},
        architecture="sd1",
    ),
    DemoLora("demo_mystery", "no metadata and not on CivitAI", None, {}),
)


def _kohya_metadata(lora: DemoLora, checkpoint_sha256: str) -> dict[str, str]:
    if lora.sd_model_name is None:
        return {}
    base = {"sdxl": "sdxl_base_v1-0", "sd1": "sd_v1"}[lora.architecture]
    meta = {
        "ss_base_model_version": base,
        "ss_sd_model_name": lora.sd_model_name,
        "ss_output_name": lora.name,
        "ss_network_module": "networks.lora" if lora.variant == "lora" else "lycoris.kohya",
        "ss_network_dim": "4",
        "ss_network_alpha": "4.0",
        "ss_tag_frequency": json.dumps({f"10_{lora.name}": lora.tags}),
        "modelspec.architecture": "stable-diffusion-xl-v1-base/lora"
        if lora.architecture == "sdxl"
        else "stable-diffusion-v1/lora",
    }
    if lora.trained_on_demo:
        meta["ss_new_sd_model_hash"] = checkpoint_sha256.lower()
    return meta


def _write_sd15_lora(path: Path, metadata: dict[str, str]) -> None:
    """A handful of real SD 1.5 kohya keys with real widths (768-wide cross-attention)."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(15)
    tensors: dict[str, torch.Tensor] = {}
    for block, width in (("down_blocks_0_attentions_0", 320), ("up_blocks_3_attentions_2", 320), ("mid_block_attentions_0", 1280)):
        for proj, in_dim in (("attn1_to_q", width), ("attn2_to_k", 768), ("attn2_to_v", 768)):
            key = f"lora_unet_{block}_transformer_blocks_0_{proj}"
            tensors[f"{key}.lora_down.weight"] = torch.randn(4, in_dim, generator=gen).half()
            tensors[f"{key}.lora_up.weight"] = torch.randn(width, 4, generator=gen).half() * 0.01
            tensors[f"{key}.alpha"] = torch.tensor(4.0)
    save_file(tensors, str(path), metadata=metadata)


def build_demo_library(root: Path) -> Path:
    """Write the demo checkpoints, LoRAs and sidecars under `root` (once; later runs reuse them)."""
    from engine.files.hashing import hash_file
    from engine.files.header import read_header
    from engine.pipeline.single_file import write_single_file
    from engine.testing.demo_lineage import write_sidecar, write_weighted_sum
    from engine.testing.lora_files import write_tiny_lora
    from engine.testing.tiny_sdxl import build_tiny_pipeline
    from engine.testing.tiny_upscaler import write_tiny_esrgan

    models, loras = root / "models", root / "loras"
    models.mkdir(parents=True, exist_ok=True)
    loras.mkdir(parents=True, exist_ok=True)
    checkpoint = models / f"{CHECKPOINT}.safetensors"
    base = models / f"{BASE_CHECKPOINT}.safetensors"
    upscaler = root / "upscalers" / f"{UPSCALER}.safetensors"
    wanted = [
        checkpoint, base, upscaler,
        *(loras / f"{l.name}.safetensors" for l in LORAS), *(loras / f"{n}.civitai.info" for n in SIDECARS),
    ]  # fmt: skip
    if all(path.exists() for path in wanted):
        return checkpoint
    if not upscaler.exists():  # a real ESRGAN architecture, tiny: `--hires-upscaler` works offline
        write_tiny_esrgan(upscaler)
    pipe = build_tiny_pipeline(seed=0)
    if not base.exists() or not checkpoint.exists():
        write_single_file(pipe, base)
        write_weighted_sum(pipe, base, 1, OUTSIDE_PARENT, checkpoint, multiplier=MERGE_MULTIPLIER)
    sha256 = hash_file(checkpoint, read_header(checkpoint).data_offset).sha256
    for seed, lora in enumerate(LORAS, start=1):
        path = loras / f"{lora.name}.safetensors"
        metadata = _kohya_metadata(lora, sha256)
        if lora.architecture == "sd1":
            _write_sd15_lora(path, metadata)
        else:
            write_tiny_lora(path, pipe, variant=lora.variant, seed=seed, metadata=metadata)
    for name, fields in SIDECARS.items():
        write_sidecar(loras / f"{name}.safetensors", **fields)  # type: ignore[arg-type]
    return checkpoint


def run_demo(settings: Settings, *, draw: bool = True, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(soft_wrap=True)
    return asyncio.run(_demo(settings, draw, console))


async def _demo(settings: Settings, draw: bool, console: Console) -> dict[str, Any]:
    from engine.api import Engine
    from engine.planning.lora_weights import LoraRequest
    from engine.requests import DrawRequest

    console.print(f"[bold]Loracle demo[/bold] in {settings.root} (offline: nothing is downloaded)")
    await asyncio.to_thread(build_demo_library, settings.root)
    engine = Engine(settings)
    try:
        report = await engine.scan(civitai=False)
        console.print(f"library scan: {report.summary()}")
        # The demo checkpoint is not on CivitAI: an admin says what it is, as on a real server.
        engine.set_entry(CHECKPOINT, base_model="Illustrious", by="demo")
        engine.admin.set_default_checkpoint(CHECKPOINT)

        check = await engine.family_check(CHECKPOINT, [l.name for l in LORAS])
        console.print(f"\n[bold]loracle family check --checkpoint {CHECKPOINT}[/bold]")
        stories = {l.name: l.story for l in LORAS}
        for item in check.loras:
            console.print(f"  {item.lora.name:<20} [bold]{item.verdict:<13}[/bold] {stories[item.lora.name]}")
            # The demo is a command-line front end: the fix is worded as a `loracle` command.
            explanation = with_hint(item.explanation["en"], item.fix, "en")
            console.print(f"      [dim]{explanation}[/dim]", highlight=False)
        info = await engine.lora_info("demo_pony_style")
        console.print(
            f"loracle lora info demo_pony_style → base model {info.summary.base_model}, "
            f"family {info.summary.family_label}, trained on {info.trained_on and info.trained_on['name']}"
        )
        for name in SIDECARS:  # the authors' weights, from CivitAI's settings and from a description
            weight = await engine.lora_info(name)
            console.print(f"loracle lora info {name} → {weight_line(weight.to_json('en'), 'en')}", highlight=False)
        lineage = await engine.checkpoint_info(CHECKPOINT)
        console.print(f"\n[bold]loracle checkpoint info {CHECKPOINT}[/bold]")
        for line in lineage_lines(lineage.to_json("en"), "en"):
            console.print(f"  {escape(line)}", highlight=False)  # names and sources may hold "[...]"
        summary: dict[str, Any] = {
            "verdicts": {v.lora.name: v.verdict for v in check.loras},
            "checkpoint_type": lineage.checkpoint_type,
            "parents": [p.to_json() for p in lineage.parents],
        }
        if draw:
            await engine.start(recover=False, front_end="demo")  # a crash's jobs are the bot's to re-run
            request = DrawRequest(
                prompt="masterpiece, best quality, 1girl, smile, flower, watercolor",
                negative="lowres, bad anatomy",
                loras=[LoraRequest("demo_exact_style", 0.8), LoraRequest("demo_pony_style", -0.5)],
                seed=42,
                steps=12,
                width=128,
                height=128,
                user_id="demo",
            )
            result = await engine.draw(request)
            console.print(f"\n[bold]drew[/bold] {result.images[0]}")
            for lora in result.plan.loras:
                requested = "default" if lora.requested_weight is None else f"{lora.requested_weight:g}"
                console.print(f"  {lora.name}: requested {requested} → applied {lora.applied_weight:g} ({lora.status}, {lora.verdict})")
            for warning in result.warnings:
                console.print(f"  [yellow]warning:[/yellow] {warning}", highlight=False)
            summary["image"] = str(result.images[0])
            summary["loras"] = [l.to_json() for l in result.plan.loras]
        return summary
    finally:
        await engine.close()
