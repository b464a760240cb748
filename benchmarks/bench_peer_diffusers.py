"""Loracle's LoRA patcher against what a diffusers user does without it (peft adapters).

Same tiny SDXL checkpoint (loaded by Loracle's loader for every variant), the same kohya
LoRA files (SGM names, rank 4, alpha 2, attention layers and both text encoders), the same
seed; every variant has its own pipeline in this one process and the variants take turns in
rotating order. Figures are medians, ratios are ratios of medians, CPU-time ratios beside.

  per image    three LoRAs at 0.8 / -0.5 / 0.6 against none: Loracle (merged in place),
               peft unfused (load_lora_weights + set_adapters), peft fused (+ fuse_lora)
  switching    four different 3-LoRA sets in turn: Loracle with its LoRA cache and without,
               peft unload + load + set_adapters, peft with all adapters kept loaded +
               set_adapters, peft fused (unfuse_lora + set_adapters + fuse_lora)
  exactness    merged weights against kohya's formula W0 + sum w * alpha/rank * up @ down
               (fp64) on sample layers; every base weight after 50 switches and a restore
               against the freshly loaded ones, in fp32, fp16 and bf16
  memory       what each keeps for its LoRAs: Loracle's pristine copies (and what it re-reads
               from the checkpoint instead) and LoRA cache, peft's adapter parameters

    .venv/bin/python benchmarks/bench_peer_diffusers.py [--size 128] [--steps 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import _common as c

WEIGHTS = (0.8, -0.5, 0.6)
# Four 3-LoRA sets over six files, overlapping, as users with their own favourites.
SETS: tuple[tuple[tuple[int, float], ...], ...] = (
    ((0, 0.8), (1, -0.5), (2, 0.6)),
    ((3, 0.7), (4, 0.5), (0, 0.3)),
    ((5, 0.9), (1, 0.4), (3, -0.6)),
    ((2, 1.0), (4, -0.3), (5, 0.5)),
)
DTYPES = ("float32", "float16", "bfloat16")
RANK, ALPHA = 4, 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="width = height in pixels")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="images per variant")
    parser.add_argument("--switches", type=int, default=12, help="set switches per variant")
    parser.add_argument("--reload-switches", type=int, default=4,
                        help="switches for peft unload + load (seconds each on the CPU)")
    parser.add_argument("--drift-switches", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    c.set_threads(args.threads)
    c.print_header(
        "bench_peer_diffusers.py", argv,
        f"tiny SDXL, {args.size}x{args.size}, {args.steps} steps; Loracle's patcher vs diffusers + peft "
        f"with the same kohya files (rank {RANK}, alpha {ALPHA:g}), variants in rotating order",
        args.threads,
    )
    with tempfile.TemporaryDirectory(prefix="loracle-bench-") as tmp, _quiet():
        root = Path(tmp)
        checkpoint, loras = _library(root)
        peer = Peer(root, checkpoint, loras)
        peer.per_image(args)
        peer.switching(args)
        peer.merged_against_formula()
        peer.drift(args)
        peer.memory()
    return 0


def _library(root: Path) -> tuple[Path, list[Path]]:
    from engine.testing.lora_files import write_tiny_lora
    from engine.testing.tiny_sdxl import build_tiny_pipeline, write_tiny_checkpoint

    pipe = build_tiny_pipeline(seed=0)
    checkpoint = write_tiny_checkpoint(root / "models" / f"{c.CHECKPOINT}.safetensors", pipe=pipe)
    (root / "loras").mkdir()
    loras = [
        write_tiny_lora(root / "loras" / f"peer_{i}.safetensors", pipe, seed=100 + i, scale=0.5,
                        rank=RANK, alpha=ALPHA)
        for i in range(6)
    ]
    return checkpoint, loras


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """peft warns on every second adapter and transformers draws progress bars per load."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as tf_logging

    tf_logging.disable_progress_bar()
    # fp16 / bf16 pipelines on the CPU draw a warning per load; only their weights are used here.
    diffusers_logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _bytes(tensors: Iterator[Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _adapter_bytes(pipe: Any) -> int:
    return _bytes(p for part in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2)
                  for name, p in part.named_parameters() if "lora_" in name)


def _model_bytes(pipe: Any) -> int:
    return _bytes(p for part in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2)
                  for name, p in part.named_parameters() if "lora_" not in name)


def _base_weights(pipe: Any) -> dict[str, Any]:
    """Every UNet / text encoder parameter by name, peft's wrapper names folded away."""
    out = {}
    for part in ("unet", "text_encoder", "text_encoder_2"):
        for name, p in getattr(pipe, part).named_parameters():
            if "lora_" not in name:
                out[f"{part}.{name.replace('.base_layer', '')}"] = p.detach().clone()
    return out


class Peer:
    def __init__(self, root: Path, checkpoint: Path, loras: list[Path]) -> None:
        self.root, self.checkpoint, self.loras = root, checkpoint, loras
        self.memory_rows: list[tuple[str, int]] = []

    # -- building blocks ----------------------------------------------------------------

    def load(self, dtype: str = "float32") -> Any:
        import torch

        from engine.pipeline.loader import CheckpointSpec, load_pipeline

        return load_pipeline(CheckpointSpec(c.CHECKPOINT, self.checkpoint), device="cpu",
                             dtype=getattr(torch, dtype), cache_dir=self.root / "cache")

    def patcher(self, pipe: Any, cache_items: int = 16, *, copies: bool = False) -> Any:
        """Loracle's patcher; `copies`: pristine copies in RAM, as LORACLE_LORA_PRISTINE=cpu."""
        from engine.lora.cache import LoraCache
        from engine.lora.patcher import LoraPatcher

        if copies:
            return LoraPatcher(pipe, LoraCache(cache_items), read_back=False, pristine_on_cpu=True)
        return LoraPatcher(pipe, LoraCache(cache_items))

    def specs(self, chosen: Sequence[tuple[int, float]]) -> list[Any]:
        from engine.lora.patcher import LoraSpec

        return [LoraSpec.from_file(self.loras[i], w) for i, w in chosen]

    def peft_load(self, pipe: Any, indices: Sequence[int]) -> None:
        for i in indices:
            pipe.load_lora_weights(str(self.loras[i]), adapter_name=f"l{i}")

    @staticmethod
    def peft_set(pipe: Any, chosen: Sequence[tuple[int, float]]) -> None:
        pipe.set_adapters([f"l{i}" for i, _ in chosen], [w for _, w in chosen])

    def draw(self, pipe: Any, args: argparse.Namespace) -> Any:
        import torch

        return pipe(prompt=c.PROMPT, negative_prompt=c.NEGATIVE, num_inference_steps=args.steps,
                    guidance_scale=6.0, width=args.size, height=args.size, output_type="np",
                    generator=torch.Generator("cpu").manual_seed(77)).images[0]

    # -- per image ----------------------------------------------------------------------

    def per_image(self, args: argparse.Namespace) -> None:
        import numpy as np

        first = tuple(enumerate(WEIGHTS))
        pipes = {name: self.load() for name in ("none", "Loracle", "peft unfused", "peft fused")}
        self.patcher(pipes["Loracle"]).apply(self.specs(first))
        for name in ("peft unfused", "peft fused"):
            self.peft_load(pipes[name], [0, 1, 2])
            self.peft_set(pipes[name], first)
        pipes["peft fused"].fuse_lora()
        images = {name: self.draw(pipe, args) for name, pipe in pipes.items()}  # warm-up
        wall: dict[str, list[float]] = {name: [] for name in pipes}
        cpu: dict[str, list[float]] = {name: [] for name in pipes}
        for order in c.rotations(list(pipes), args.rounds):
            for name in order:
                started, cpu_started = time.perf_counter(), time.process_time()
                images[name] = self.draw(pipes[name], args)
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)

        print(f"per image, 3 LoRAs at {' / '.join(f'{w:g}' for w in WEIGHTS)} vs none "
              f"({args.rounds} images each)")
        print(f"  {'variant':<14}{'s/image':>9}{'min..max':>14}{'vs none':>9}{'CPU s':>8}{'CPU vs none':>13}"
              f"{'vs Loracle':>12}")
        for name in pipes:
            print(f"  {name:<14}{c.median(wall[name]):>9.3f}{c.spread(wall[name]):>14}"
                  f"{c.median(wall[name]) / c.median(wall['none']):>9.2f}{c.median(cpu[name]):>8.3f}"
                  f"{c.median(cpu[name]) / c.median(cpu['none']):>13.2f}"
                  f"{c.median(wall[name]) / c.median(wall['Loracle']):>12.2f}")
        diff = {name: float(np.abs(images[name] - images["Loracle"]).max()) for name in ("peft unfused", "peft fused")}
        print(f"  same picture as Loracle's (max pixel difference, 0..1): "
              f"{', '.join(f'{k} {v:.1e}' for k, v in diff.items())}; "
              f"LoRAs change it: {'yes' if not np.array_equal(images['none'], images['Loracle']) else 'NO'}\n")

    # -- switching ----------------------------------------------------------------------

    def switching(self, args: argparse.Namespace) -> None:
        loracle, uncached, copying = self.load(), self.load(), self.load()
        cached_patcher, uncached_patcher = self.patcher(loracle), self.patcher(uncached, cache_items=1)
        copies_patcher = self.patcher(copying, copies=True)
        reload_pipe, kept, fused = self.load(), self.load(), self.load()
        every = range(len(self.loras))
        self.peft_load(kept, every)
        self.peft_load(fused, every)
        self.peft_set(fused, SETS[-1])
        fused.fuse_lora()

        def peft_reload(chosen: Sequence[tuple[int, float]]) -> None:
            reload_pipe.unload_lora_weights()
            self.peft_load(reload_pipe, [i for i, _ in chosen])
            self.peft_set(reload_pipe, chosen)

        def peft_fused(chosen: Sequence[tuple[int, float]]) -> None:
            fused.unfuse_lora()
            self.peft_set(fused, chosen)
            fused.fuse_lora()

        def loracle_uncached(chosen: Sequence[tuple[int, float]]) -> None:
            uncached_patcher.cache.clear()
            uncached_patcher.apply(self.specs(chosen))

        variants: dict[str, Callable[[Sequence[tuple[int, float]]], Any]] = {
            "Loracle cached": lambda chosen: cached_patcher.apply(self.specs(chosen)),
            "Loracle cached, RAM copies": lambda chosen: copies_patcher.apply(self.specs(chosen)),
            "Loracle uncached": loracle_uncached,
            "peft unload+load+set": peft_reload,
            "peft kept+set_adapters": lambda chosen: self.peft_set(kept, chosen),
            "peft fused (unfuse+set+fuse)": peft_fused,
        }
        for fn in variants.values():
            fn(SETS[0])  # every variant starts from a set applied once
        wall: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for n in range(args.switches):
            chosen = SETS[(n + 1) % len(SETS)]
            names = list(variants)
            names = names[n % len(names):] + names[: n % len(names)]
            for name in names:
                if name.startswith("peft unload") and n >= args.reload_switches:
                    continue
                started, cpu_started = time.perf_counter(), time.process_time()
                variants[name](chosen)
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)

        base = c.median(wall["Loracle cached"])
        print(f"switching between {len(SETS)} 3-LoRA sets ({args.switches} switches each; "
              f"{args.reload_switches} for unload+load)")
        print(f"  {'variant':<30}{'ms/switch':>10}{'min..max (s)':>16}{'CPU ms':>9}{'vs Loracle cached':>19}"
              f"{'CPU ratio':>11}")
        for name in variants:
            print(f"  {name:<30}{1000 * c.median(wall[name]):>10.1f}{c.spread(wall[name]):>16}"
                  f"{1000 * c.median(cpu[name]):>9.1f}{c.median(wall[name]) / base:>19.2f}"
                  f"{c.median(cpu[name]) / c.median(cpu['Loracle cached']):>11.2f}")
        ratio = c.median(wall["Loracle cached"]) / c.median(wall["Loracle cached, RAM copies"])
        print(f"  re-read from the checkpoint / RAM copies (LORACLE_LORA_PRISTINE=cpu) = {ratio:.2f}x "
              f"({c.verdict(ratio, 1.2)})\n")
        self.memory_rows = [
            ("Loracle: pristine copies in memory", cached_patcher.pristine_bytes),
            ("Loracle: weights it re-reads from the checkpoint instead", _reread_bytes(cached_patcher)),
            ("Loracle with copies (PRISTINE=cpu): pristine copies", copies_patcher.pristine_bytes),
            ("Loracle: LoRA cache (6 files parsed)", cached_patcher.cache.nbytes),
            ("peft: adapter parameters, 3 LoRAs loaded", _adapter_bytes(reload_pipe)),
            ("peft: adapter parameters, all 6 kept loaded", _adapter_bytes(kept)),
            ("model: UNet + text encoders", _model_bytes(loracle)),
        ]

    # -- exactness ----------------------------------------------------------------------

    def merged_against_formula(self, samples: int = 6) -> None:
        import torch
        from safetensors.torch import load_file

        from engine.lora.keys import build_key_map

        chosen = SETS[0]
        fresh, ours, fused = self.load(), self.load(), self.load()
        self.patcher(ours).apply(self.specs(chosen))
        self.peft_load(fused, [i for i, _ in chosen])
        self.peft_set(fused, chosen)
        fused.fuse_lora()
        files = [load_file(str(self.loras[i])) for i, _ in chosen]
        aliases = sorted({k.split(".")[0] for k in files[0] if k.endswith(".lora_down.weight")})
        # Spread the samples over the UNet and both text encoders.
        picked = [aliases[round(j * (len(aliases) - 1) / (samples - 1))] for j in range(samples)]
        key_map = build_key_map(fresh)
        worst = {"Loracle": 0.0, "peft fused": 0.0}
        for alias in picked:
            target = key_map[alias]
            expected = getattr(fresh, target.component).get_submodule(target.name).weight.double()
            for tensors, (_, w) in zip(files, chosen, strict=True):
                down, up = tensors[f"{alias}.lora_down.weight"].double(), tensors[f"{alias}.lora_up.weight"].double()
                scale = float(tensors[f"{alias}.alpha"]) / down.shape[0]
                expected = expected + w * scale * (up.flatten(1) @ down.flatten(1)).reshape(expected.shape)
            for name, pipe in (("Loracle", ours), ("peft fused", fused)):
                module = getattr(pipe, target.component).get_submodule(target.name)
                got = getattr(module, "base_layer", module).weight.double()
                worst[name] = max(worst[name], float((got - expected).abs().max()))
        eps = torch.finfo(torch.float32).eps
        print(f"merged weights vs kohya's formula in fp64, {samples} sample layers (UNet, CLIP-L, CLIP-G), fp32 model:")
        for name, value in worst.items():
            print(f"  {name:<12} max |difference| {value:.2e}  ({value / eps:.1f} fp32 eps)")
        print()

    def drift(self, args: argparse.Namespace) -> None:
        import torch

        from engine.testing.lora_files import changed_weights

        print(f"base weights after {args.drift_switches} switches and a restore, vs freshly loaded:")
        print(f"  {'dtype':<10}{'Loracle':>28}{'peft fused':>34}")
        for dtype in DTYPES:
            fresh = _base_weights(self.load(dtype))
            ours, fused = self.load(dtype), self.load(dtype)
            patcher = self.patcher(ours)
            self.peft_load(fused, range(len(self.loras)))
            self.peft_set(fused, SETS[0])
            fused.fuse_lora()
            for n in range(args.drift_switches):
                chosen = SETS[n % len(SETS)]
                patcher.apply(self.specs(chosen))
                fused.unfuse_lora()
                self.peft_set(fused, chosen)
                fused.fuse_lora()
            patcher.restore()
            fused.unfuse_lora()
            fused.unload_lora_weights()
            cells = []
            for pipe in (ours, fused):
                after = _base_weights(pipe)
                differing = changed_weights(fresh, after)
                worst = max((float((after[k].float() - fresh[k].float()).abs().max()) for k in differing), default=0.0)
                cells.append(f"{len(differing)} tensors differ, max {worst:.1e}")
            print(f"  {dtype:<10}{cells[0]:>28}{cells[1]:>34}")
            del fresh, ours, fused, patcher
            torch.set_num_threads(args.threads)
        print()

    # -- memory -------------------------------------------------------------------------

    def memory(self) -> None:
        model = dict(self.memory_rows)["model: UNet + text encoders"]
        print("memory held for LoRAs while the last set is applied (fp32 model):")
        for name, value in self.memory_rows:
            print(f"  {name:<58}{value:>12,} bytes {100 * value / model:>6.1f}% of the model")
        rows = dict(self.memory_rows)
        held, before = rows["Loracle: pristine copies in memory"], rows["Loracle with copies (PRISTINE=cpu): pristine copies"]
        ratio = held / before if before else 0.0
        print(f"memory held for restoring, re-read / copies = {100 * ratio:.1f}% (target <= 10%: "
              f"{'met' if ratio <= 0.10 else 'NOT met'})")


def _reread_bytes(patcher: Any) -> int:
    return int(getattr(patcher, "reread_bytes", 0))


if __name__ == "__main__":
    raise SystemExit(main())
