"""The sections gpu_sdxl.py runs after its own: restore modes, the diffusers + peft peer,
SDPA vs classic attention, the VAE at large sizes, torch.compile across a LoRA switch.

Not a benchmark itself (run_all.py runs only `bench_*.py`). Each section fills its own
entry of the summary and peak GPU memory where it matters; one that fails records its
error and the next still runs, and the JSON file is rewritten after every section, so a
run cut short by a time limit still leaves what it measured.

Why a LoRA switch does not recompile a torch.compile'd UNet: the patcher writes the new
values into the same Parameter objects (`param.data.copy_`), never replacing a tensor or
changing a shape, dtype, device or stride. Dynamo (torch >= 2.5 inlines nn.Modules and
lifts their parameters as graph inputs) guards on those properties, not on values, so the
compiled graph keeps running and reads the new weights. The `compile` section checks both
halves: frames compiled across the switch (expected 0) and that the compiled picture after
the switch matches the eager one with the same weights (the graph did not bake in the old).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as c

PEER_WEIGHTS = (0.8, -0.5, 0.6)
SECTIONS = ("hires", "restore_modes", "peer", "attention", "vae_large", "compile")


@dataclass
class Context:
    args: argparse.Namespace
    work: Path
    device: Any
    dtype: Any
    pipe: Any  # the engine-loaded pipeline, no LoRA applied
    lora_pipe: Any  # the second copy, whose patcher (runner3's) keeps LoRAs applied
    patcher: Any  # runner3's LoraPatcher
    lora_paths: list[Path]
    switch_sets: tuple[tuple[tuple[int, float], ...], ...]
    log: Callable[[str], None]

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def specs(self, chosen: Any) -> list[Any]:
        from engine.lora.patcher import LoraSpec

        return [LoraSpec(key=f"BENCH-LORA-{i}", path=self.lora_paths[i], weight=w, name=self.lora_paths[i].stem)
                for i, w in chosen]

    def timed(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        self.sync()
        started = time.perf_counter()
        result = fn()
        self.sync()
        return time.perf_counter() - started, result

    def reset_peak(self) -> None:
        import torch

        if self.device.type == "cuda":
            self.sync()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        import torch

        if self.device.type != "cuda":
            return None
        self.sync()
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)

    def draw(self, pipe: Any, *, size: int | None = None, steps: int | None = None, output_type: str = "np") -> Any:
        import torch

        size = size or self.args.size
        return pipe(prompt=c.PROMPT, negative_prompt=c.NEGATIVE, num_inference_steps=steps or self.args.steps,
                    guidance_scale=6.0, width=size, height=size,
                    generator=torch.Generator("cpu").manual_seed(1234), output_type=output_type).images[0]


def run_extras(ctx: Context, summary: dict[str, Any], json_path: Path | None) -> bool:
    """Run every section not skipped; True when all of them ran."""
    from engine.pipeline.generator import free_memory

    ok = True
    skipped = set(ctx.args.skip or ())
    for name in SECTIONS:
        if name in skipped:
            continue
        ctx.log(f"section {name}")
        started = time.perf_counter()
        try:
            result = globals()[f"_{name}"](ctx)
        except Exception as exc:
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"[:800]}
            ok = False
        result["section_seconds"] = round(time.perf_counter() - started, 1)
        summary[name] = result
        free_memory()
        if json_path is not None:
            json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return ok


# ----------------------------------------------------------------------------- hires ---


def _hires(ctx: Context) -> dict[str, Any]:
    """The hires fix at full size with the three LoRAs applied: the job at --size (1024)
    alone, then with A1111's 1.5x hires (denoise 0.5, second-pass steps = steps) by Latent,
    Lanczos and a random-weight ESRGAN (RRDBNet 64 filters, 23 blocks, 4x, tiled); seconds
    per image and peak GPU memory of each. Then a 2x ESRGAN upscale of a 1.5x picture,
    tiled, against the plain job's peak (the upscaler must fit where a draw fits)."""
    import dataclasses

    import numpy as np

    from engine.images.upscalers import UpscalerModel
    from engine.pipeline.generator import Generator
    from engine.requests import GenerationParams
    from engine.testing.tiny_upscaler import write_tiny_esrgan

    tiny = ctx.args.tiny
    gen = Generator(device=ctx.device, dtype=ctx.dtype, cache_dir=ctx.work / "cache")
    gen.pipe = ctx.lora_pipe
    gen._base_scheduler_config = dict(ctx.lora_pipe.scheduler.config)
    ctx.patcher.apply(ctx.specs([(0, 0.8), (1, 0.6), (2, 0.4)]))
    filters, blocks = (8, 1) if tiny else (64, 23)
    esrgan4 = UpscalerModel(write_tiny_esrgan(ctx.work / "upscalers" / "esrgan4x.safetensors", scale=4,
                                              num_filters=filters, num_blocks=blocks),
                            device=ctx.device, dtype=ctx.dtype)
    plain = GenerationParams(prompt=c.PROMPT, negative=c.NEGATIVE, seed=1234, steps=ctx.args.steps, cfg=6.0,
                             width=ctx.args.size, height=ctx.args.size, sampler="Euler a")
    hires = dataclasses.replace(plain, hires=1.5, hires_denoise=0.5, hires_upscaler="latent")
    variants: dict[str, tuple[Any, Any]] = {
        "plain": (plain, None),
        "hires_latent": (hires, None),
        "hires_lanczos": (dataclasses.replace(hires, hires_upscaler="lanczos"), None),
        "hires_esrgan4x": (dataclasses.replace(hires, hires_upscaler="esrgan4x"), lambda im, size: esrgan4(im, size)),
    }
    out: dict[str, Any] = {"size": ctx.args.size, "final_size": hires.hires_size[0], "loras": 3,
                           "img2img_shares_weights": gen.img2img().unet is gen.pipe.unet}
    rounds = max(1, min(ctx.args.rounds, 3))
    for name, (params, upscaler) in variants.items():
        gen.generate(params, upscaler=upscaler)  # warm-up
        ctx.reset_peak()
        times = []
        for _ in range(rounds):
            seconds, images = ctx.timed(lambda p=params, u=upscaler: gen.generate(p, upscaler=u))
            times.append(seconds)
        out[name] = {"seconds_per_image": round(c.median(times), 3), "peak_gib": ctx.peak_gib(),
                     "image": list(images[0].size), "finite": bool(np.asarray(images[0]).std() > 0)}
    base = out["plain"]["seconds_per_image"]
    out["hires_latent / plain"] = round(out["hires_latent"]["seconds_per_image"] / base, 3)
    out["pixel_ratio"] = 2.25
    big = hires.hires_size[0]
    esrgan2 = UpscalerModel(write_tiny_esrgan(ctx.work / "upscalers" / "esrgan2x.safetensors", scale=2,
                                              num_filters=filters, num_blocks=blocks),
                            device=ctx.device, dtype=ctx.dtype)
    picture = images[0].resize((big, big))
    ctx.reset_peak()
    seconds, upscaled = ctx.timed(lambda: esrgan2(picture, (2 * big, 2 * big)))
    out["esrgan2x_of_final"] = {"from": big, "to": list(upscaled.size), "seconds": round(seconds, 3),
                                "peak_gib (models loaded included)": ctx.peak_gib()}
    return out


# --------------------------------------------------------------------- restore modes ---


def _restore_modes(ctx: Context) -> dict[str, Any]:
    """Switch time and memory of the three ways to get originals back, on one pipeline.

    disk: re-read from the checkpoint's memory map (host read + host-to-device copy of each
    restored or re-merged weight); device: copies in VRAM (a device-to-device copy);
    cpu: copies in pinned-less RAM (a host-to-device copy, no file read).
    """
    import torch

    from engine.lora.cache import LoraCache
    from engine.lora.patcher import LoraPatcher
    from engine.lora.restore import source_for
    from engine.testing.lora_files import changed_weights

    pipe = ctx.pipe
    # Attention weights are what the LoRAs touch; a sample keeps the check's VRAM small.
    names = [n for n, _ in pipe.unet.named_parameters() if ".attn" in n][::7]
    sample = {n: pipe.unet.get_parameter(n).detach().clone() for n in names}
    modes = {
        "disk (auto, default)": {},
        "device copies (LORACLE_LORA_PRISTINE=device)": {"read_back": False},
        "cpu copies (LORACLE_LORA_PRISTINE=cpu)": {"read_back": False, "pristine_on_cpu": True},
    }
    out: dict[str, Any] = {"source": None if source_for(pipe) is None else str(source_for(pipe).path)}
    for mode, options in modes.items():
        patcher = LoraPatcher(pipe, LoraCache(16), **options)
        before = torch.cuda.memory_allocated() if ctx.device.type == "cuda" else 0
        ctx.reset_peak()
        first, _ = ctx.timed(lambda p=patcher: p.apply(ctx.specs(ctx.switch_sets[-1])))
        switches = []
        for _ in range(ctx.args.switch_cycles):
            for chosen in ctx.switch_sets:
                switches.append(ctx.timed(lambda p=patcher, s=chosen: p.apply(ctx.specs(s)))[0])
        held = (torch.cuda.memory_allocated() - before) if ctx.device.type == "cuda" else 0
        out[mode] = {
            "first_apply_ms": round(1000 * first, 1),
            "switch_ms": round(1000 * c.median(switches), 1),
            "switch_ms_all": [round(1000 * s, 1) for s in switches],
            "pristine_copies_mib": round(patcher.pristine_bytes / 2**20, 1),
            "reread_from_file_mib": round(patcher.reread_bytes / 2**20, 1),
            "vram_held_after_switches_mib": round(held / 2**20, 1),
            "peak_gib": ctx.peak_gib(),
        }
        patcher.restore()
        del patcher
    after = {n: pipe.unet.get_parameter(n).detach().clone() for n in names}
    out["restored_bit_exact (sampled UNet weights)"] = not changed_weights(sample, after)
    disk, device = out["disk (auto, default)"]["switch_ms"], out["device copies (LORACLE_LORA_PRISTINE=device)"]["switch_ms"]
    cpu = out["cpu copies (LORACLE_LORA_PRISTINE=cpu)"]["switch_ms"]
    out["disk / device copies"] = round(disk / device, 2) if device else None
    out["disk / cpu copies"] = round(disk / cpu, 2) if cpu else None
    return out


# ------------------------------------------------------------------------------ peer ---


def _peft_load(pipe: Any, ctx: Context, indices: Any) -> None:
    for i in indices:
        pipe.load_lora_weights(str(ctx.lora_paths[i]), adapter_name=f"l{i}")


def _peft_set(pipe: Any, chosen: Any) -> None:
    pipe.set_adapters([f"l{i}" for i, _ in chosen], [w for _, w in chosen])


def _peer(ctx: Context) -> dict[str, Any]:
    """diffusers + peft with the same files on copies of the same pipeline."""
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore", message=".*peft_config.*")
    first = tuple(enumerate(PEER_WEIGHTS))
    ctx.patcher.apply(ctx.specs(first))
    unfused, fused = copy.deepcopy(ctx.pipe), copy.deepcopy(ctx.pipe)
    load_s, _ = ctx.timed(lambda: _peft_load(unfused, ctx, range(3)))
    _peft_load(fused, ctx, range(3))
    for pipe in (unfused, fused):
        _peft_set(pipe, first)
    fuse_s, _ = ctx.timed(fused.fuse_lora)
    pipes = {"none": ctx.pipe, "Loracle": ctx.lora_pipe, "peft unfused": unfused, "peft fused": fused}
    images: dict[str, Any] = {}
    for name, pipe in pipes.items():  # warm-up: cuDNN / cuBLAS choices, peft's first pass
        images[name] = ctx.draw(pipe)
    wall: dict[str, list[float]] = {name: [] for name in pipes}
    peaks: dict[str, float | None] = {}
    for order in c.rotations(list(pipes), ctx.args.peer_rounds):
        for name in order:
            ctx.reset_peak()
            seconds, images[name] = ctx.timed(lambda n=name: ctx.draw(pipes[n]))
            wall[name].append(seconds)
            peaks[name] = ctx.peak_gib()
    base, ours = c.median(wall["none"]), c.median(wall["Loracle"])
    out: dict[str, Any] = {
        "weights": PEER_WEIGHTS,
        "seconds_per_image": {name: round(c.median(v), 4) for name, v in wall.items()},
        "vs_none": {name: round(c.median(v) / base, 3) for name, v in wall.items()},
        "vs_Loracle": {name: round(c.median(v) / ours, 3) for name, v in wall.items()},
        "peak_gib_while_drawing": peaks,
        "max_pixel_difference_vs_Loracle": {
            name: float(np.abs(images[name].astype(np.float32) - images["Loracle"].astype(np.float32)).max())
            for name in ("peft unfused", "peft fused")},
        "peft_load_3_seconds": round(load_s, 2),
        "peft_fuse_seconds": round(fuse_s, 2),
    }

    def peft_fused_switch(chosen: Any) -> None:
        fused.unfuse_lora()
        _peft_set(fused, chosen)
        fused.fuse_lora()

    def peft_reload(chosen: Any) -> None:
        unfused.unload_lora_weights()
        _peft_load(unfused, ctx, [i for i, _ in chosen])
        _peft_set(unfused, chosen)

    variants: dict[str, Callable[[Any], Any]] = {
        "Loracle cached": lambda chosen: ctx.patcher.apply(ctx.specs(chosen)),
        "peft kept + set_adapters": lambda chosen: _peft_set(unfused, chosen),
        "peft fused (unfuse + set + fuse)": peft_fused_switch,
    }
    switches: dict[str, list[float]] = {name: [] for name in [*variants, "peft unload + load + set"]}
    for cycle in range(ctx.args.switch_cycles):
        for n, chosen in enumerate(ctx.switch_sets):
            names = list(variants)
            for name in names[(cycle + n) % len(names):] + names[: (cycle + n) % len(names)]:
                switches[name].append(ctx.timed(lambda v=variants[name], s=chosen: v(s))[0])
    for chosen in ctx.switch_sets:  # last: it takes the unfused pipeline's adapters apart
        switches["peft unload + load + set"].append(ctx.timed(lambda s=chosen: peft_reload(s))[0])
    loracle = c.median(switches["Loracle cached"])
    out["switch_ms"] = {name: round(1000 * c.median(v), 1) for name, v in switches.items()}
    out["switch_vs_Loracle"] = {name: round(c.median(v) / loracle, 2) for name, v in switches.items()}
    out["memory_mib"] = {
        "Loracle pristine copies": round(ctx.patcher.pristine_bytes / 2**20, 1),
        "Loracle re-read from the file (not held)": round(ctx.patcher.reread_bytes / 2**20, 1),
        "Loracle LoRA cache (host RAM)": round(ctx.patcher.cache.nbytes / 2**20, 1),
        "peft adapters, fused pipeline (3 loaded)": round(_adapter_bytes(fused) / 2**20, 1),
    }
    return out  # the peft copies go with this frame


def _adapter_bytes(pipe: Any) -> int:
    return sum(p.numel() * p.element_size() for part in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2)
               for name, p in part.named_parameters() if "lora_" in name)


# ------------------------------------------------------------------------- attention ---


def _attention(ctx: Context) -> dict[str, Any]:
    """diffusers' default (SDPA, AttnProcessor2_0) against the classic baddbmm + softmax."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    unet = ctx.pipe.unet
    processors = {"sdpa (AttnProcessor2_0)": AttnProcessor2_0, "classic (AttnProcessor)": AttnProcessor}
    wall: dict[str, list[float]] = {name: [] for name in processors}
    peaks: dict[str, float | None] = {}
    try:
        for order in c.rotations(list(processors), ctx.args.peer_rounds):
            for name in order:
                unet.set_attn_processor(processors[name]())
                ctx.draw(ctx.pipe, steps=2)  # warm-up of this kernel choice
                ctx.reset_peak()
                wall[name].append(ctx.timed(lambda: ctx.draw(ctx.pipe))[0])
                peaks[name] = ctx.peak_gib()
    finally:
        unet.set_attn_processor(AttnProcessor2_0())
    sdpa = c.median(wall["sdpa (AttnProcessor2_0)"])
    return {
        "seconds_per_image": {name: round(c.median(v), 3) for name, v in wall.items()},
        "vs_sdpa": {name: round(c.median(v) / sdpa, 3) for name, v in wall.items()},
        "peak_gib": peaks,
    }


# ------------------------------------------------------------------------- VAE large ---


def _vae_large(ctx: Context) -> dict[str, Any]:
    """Decoding large latents whole, tiled, and a batch of four sliced or not."""
    import torch

    vae = ctx.pipe.vae
    sizes = (128, 256) if ctx.args.tiny else (1536, 2048)
    out: dict[str, Any] = {}

    def decode(latents: Any) -> Any:
        with torch.no_grad():
            return vae.decode(latents / vae.config.scaling_factor).sample

    def case(label: str, latents: Any) -> None:
        try:
            decode(latents[:1, :, :8, :8])  # warm-up
            ctx.reset_peak()
            seconds, image = ctx.timed(lambda: decode(latents))
            out[label] = {"seconds": round(seconds, 3), "peak_gib": ctx.peak_gib(),
                          "finite": bool(torch.isfinite(image).all())}
        except torch.OutOfMemoryError as exc:
            out[label] = {"error": f"out of memory: {exc}"[:300]}
        finally:
            from engine.pipeline.generator import free_memory

            free_memory()

    gen = torch.Generator("cpu").manual_seed(0)
    vae_dtype = next(vae.parameters()).dtype
    try:
        for size in sizes:
            latents = torch.randn(1, 4, size // 8, size // 8, generator=gen).to(ctx.device, vae_dtype)
            vae.disable_tiling()
            case(f"{size}px whole", latents)
            vae.enable_tiling()
            case(f"{size}px tiled", latents)
        vae.disable_tiling()
        batch = torch.randn(4, 4, ctx.args.size // 8, ctx.args.size // 8, generator=gen).to(ctx.device, vae_dtype)
        vae.disable_slicing()
        case(f"4 x {ctx.args.size}px batch", batch)
        vae.enable_slicing()
        case(f"4 x {ctx.args.size}px sliced", batch)
    finally:
        vae.disable_tiling()
        vae.disable_slicing()
    return out


# --------------------------------------------------------------------------- compile ---


def _compile(ctx: Context) -> dict[str, Any]:
    """torch.compile of the UNet with LoRAs applied in place, across a LoRA-set switch."""
    import numpy as np
    import torch
    from torch._dynamo.utils import counters

    pipe, patcher = ctx.lora_pipe, ctx.patcher
    sets = ctx.switch_sets
    patcher.apply(ctx.specs(sets[0]))
    eager_unet = pipe.unet
    backend = "inductor" if ctx.device.type == "cuda" else "eager"  # no C++ toolchain needed on the CPU check
    torch._dynamo.reset()
    counters.clear()
    pipe.unet = torch.compile(eager_unet, backend=backend)
    out: dict[str, Any] = {"backend": backend}
    try:
        first, _ = ctx.timed(lambda: ctx.draw(pipe))
        frames_after_first = counters["stats"]["unique_graphs"]
        steady, before_switch = ctx.timed(lambda: ctx.draw(pipe))
        switch_s, _ = ctx.timed(lambda: patcher.apply(ctx.specs(sets[1])))
        after, compiled_image = ctx.timed(lambda: ctx.draw(pipe))
        out.update({
            "first_image_seconds (compiles)": round(first, 2),
            "steady_image_seconds": round(steady, 3),
            "switch_ms": round(1000 * switch_s, 1),
            "image_after_switch_seconds": round(after, 3),
            "graphs_compiled_first": frames_after_first,
            "graphs_compiled_across_switch": counters["stats"]["unique_graphs"] - frames_after_first,
            "recompiles": sum(counters["recompiles"].values()) if "recompiles" in counters else 0,
            "peak_gib": ctx.peak_gib(),
        })
    finally:
        pipe.unet = eager_unet
    eager_s, eager_image = ctx.timed(lambda: ctx.draw(pipe))
    out["eager_image_seconds"] = round(eager_s, 3)
    out["compiled / eager"] = round(out["steady_image_seconds"] / eager_s, 3)
    diff = float(np.abs(compiled_image.astype(np.float32) - eager_image.astype(np.float32)).max())
    changed = float(np.abs(compiled_image.astype(np.float32) - before_switch.astype(np.float32)).max())
    out["max_pixel_difference compiled vs eager after the switch"] = diff
    out["max_pixel_change across the switch (must be > 0)"] = changed
    return out
