"""LoRA application: parse files of every common dialect, patch layers in place, restore.

    keys      which module of the pipeline a key in a LoRA file addresses
    formats   safetensors -> ParsedLora (per-module ΔW maths: LoRA, LoCon, LoHa, LoKr, DoRA)
    cache     LRU of parsed files keyed by content hash
    patcher   LoraPatcher: exact in-place application from pristine copies, exact restore
    testing   builders of tiny LoRA files for tests and the demo
"""

from __future__ import annotations

from engine.lora.cache import CacheStats, LoraCache, file_identity_key
from engine.lora.formats import LoraModule, ParsedLora, load_lora
from engine.lora.keys import ModuleTarget, build_key_map
from engine.lora.patcher import LoraApplyReport, LoraPatcher, LoraSpec, PatcherStats

__all__ = [
    "CacheStats",
    "LoraApplyReport",
    "LoraCache",
    "LoraModule",
    "LoraPatcher",
    "LoraSpec",
    "ModuleTarget",
    "ParsedLora",
    "PatcherStats",
    "build_key_map",
    "file_identity_key",
    "load_lora",
]
