"""The LoRA key grammar: which module a key belongs to and which part of it the key is.

A LoRA key is `<module><separator><part>`, written in several dialects for the same parts:

    kohya / LyCORIS       m.lora_down.weight  m.lora_up.weight  m.lora_mid.weight  m.alpha
    peft / diffusers      m.lora_A.weight  m.lora_B.weight  (m.lora_A.<adapter>.weight)
    old diffusers         m.lora.down.weight  m.to_q_lora.down.weight  m.lora_linear_layer.down.weight
    XLabs Flux            m.qkv_lora1.down.weight (the number names a stream: part of the module)
    LyCORIS               hada_*, lokr_*, diff, diff_b, w_norm, b_norm, dora_scale
    peft DoRA             m.lora_magnitude_vector(.<adapter>)(.weight)

This is the only place those spellings are listed: the scanner (engine/files/lora_classify.py)
and the patcher's parser (engine/lora/formats.py) both split keys here, and both decide the
file's kind with `lora_kind`, so they cannot disagree about what a file is.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from engine.kinds import FileKind

# Key suffix -> part. Matched longest first with str.endswith, so no suffix can shadow another.
PART_SUFFIXES: dict[str, str] = {
    ".lora_down.weight": "down",
    ".lora_up.weight": "up",
    ".lora_mid.weight": "mid",
    ".lora_A.weight": "down",  # peft
    ".lora_B.weight": "up",
    ".lora.down.weight": "down",  # diffusers LoRACompatibleLinear (legacy)
    ".lora.up.weight": "up",
    "_lora.down.weight": "down",  # diffusers attention processors: attn1.processor.to_q_lora
    "_lora.up.weight": "up",
    ".lora_linear_layer.down.weight": "down",  # diffusers text-encoder patch (legacy)
    ".lora_linear_layer.up.weight": "up",
    ".alpha": "alpha",
    ".dora_scale": "dora_scale",
    ".lora_magnitude_vector": "magnitude",  # peft DoRA
    ".lora_magnitude_vector.weight": "magnitude",
    ".hada_w1_a": "hada_w1_a",
    ".hada_w1_b": "hada_w1_b",
    ".hada_w2_a": "hada_w2_a",
    ".hada_w2_b": "hada_w2_b",
    ".hada_t1": "hada_t1",
    ".hada_t2": "hada_t2",
    ".lokr_w1": "lokr_w1",
    ".lokr_w1_a": "lokr_w1_a",
    ".lokr_w1_b": "lokr_w1_b",
    ".lokr_w2": "lokr_w2",
    ".lokr_w2_a": "lokr_w2_a",
    ".lokr_w2_b": "lokr_w2_b",
    ".lokr_t1": "lokr_t1",
    ".lokr_t2": "lokr_t2",
    ".diff": "diff",
    ".diff_b": "diff_b",
    ".w_norm": "w_norm",
    ".b_norm": "b_norm",
    # LyCORIS algorithms recognised but not applied (see UNSUPPORTED)
    ".a1.weight": "a1.weight",
    ".a2.weight": "a2.weight",
    ".b1.weight": "b1.weight",
    ".b2.weight": "b2.weight",
    ".oft_blocks": "oft_blocks",
    ".oft_diag": "oft_diag",
    ".oft_R": "oft_R",
    ".oft_R.weight": "oft_R",
    ".rescale": "rescale",
    ".on_input": "on_input",
    ".set_weight": "set_weight",
}
_SUFFIXES_LONGEST_FIRST = sorted(PART_SUFFIXES, key=len, reverse=True)

# Spellings with a free-form name inside, tried when no suffix matched.
_PATTERNS = (
    # peft with an adapter name: "lora_A.default.weight"
    (re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])\.[^.]+\.weight$"), {"A": "down", "B": "up"}),
    (re.compile(r"^(?P<module>.+)\.lora_magnitude_vector(?P<part>)(?:\.[^.]+)+$"), {"": "magnitude"}),
    # XLabs Flux: "processor.qkv_lora1" (image stream) and "qkv_lora2" (text stream) are
    # different modules, so the number stays in the module name
    (re.compile(r"^(?P<module>.+?_lora\d+)\.(?P<part>down|up)\.weight$"), {"down": "down", "up": "up"}),
)

# The spellings diffusers writes. Its `lora_adapter_metadata` alpha covers them all:
# training scripts pass peft's state dict through convert_state_dict_to_diffusers, which
# renames the text encoders' attention layers to `.lora_linear_layer.down` and leaves
# their MLP layers `.lora_A`, so one file mixes both.
DIFFUSERS_SUFFIXES = (
    ".lora_A.weight",
    ".lora_B.weight",
    ".lora.down.weight",
    ".lora.up.weight",
    "_lora.down.weight",
    "_lora.up.weight",
    ".lora_linear_layer.down.weight",
    ".lora_linear_layer.up.weight",
)

# Parts of LyCORIS algorithms whose maths the patcher does not implement.
UNSUPPORTED: dict[str, str] = {
    "a1.weight": "GLoRA",
    "a2.weight": "GLoRA",
    "b1.weight": "GLoRA",
    "b2.weight": "GLoRA",
    "oft_blocks": "OFT/BOFT",
    "oft_diag": "OFT",
    "oft_R": "OFT",
    "rescale": "OFT",
    "on_input": "IA3",
    "lokr_t1": "LoKr with a Tucker first factor",
    "set_weight": "weight replacement",
}
# Parts with generic names ("x.diff"), believed only under LyCORIS' own module names: a
# checkpoint may well hold a tensor called "something.diff".
LYCORIS_ONLY = frozenset({"diff", "diff_b", "w_norm", "b_norm", "on_input", "a1.weight", "a2.weight",
                          "b1.weight", "b2.weight", "rescale", "set_weight"})  # fmt: skip
_LYCORIS_MODULE = re.compile(r"^(?:lora|lycoris)_[^.]+$")

DORA_PARTS = frozenset({"dora_scale", "magnitude"})
LORA_PARTS = frozenset({"up", "down", "mid"})
LOHA_PARTS = frozenset({"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"})
LOKR_PARTS = frozenset({"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t1", "lokr_t2"})


def split_key(key: str) -> tuple[str, str] | None:
    """(module name as written in the file, part) for a LoRA key, else None."""
    for suffix in _SUFFIXES_LONGEST_FIRST:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], PART_SUFFIXES[suffix]
    for pattern, parts in _PATTERNS:
        m = pattern.match(key)
        if m:
            return m.group("module"), parts[m.group("part")]
    return None


def is_lycoris_module(module: str) -> bool:
    return bool(_LYCORIS_MODULE.match(module))


def algorithm(parts: Collection[str], *, conv: bool) -> tuple[str | None, bool]:
    """The LyCORIS algorithm ("lora", "locon", "loha", ...) of a file whose modules hold
    `parts` (all modules together), and whether DoRA is used; `conv` says a LoRA module
    patches a convolution (LoCon)."""
    found = set(parts)
    dora = bool(found & DORA_PARTS)
    if found & LOHA_PARTS:
        return "loha", dora
    if found & LOKR_PARTS:
        return "lokr", dora
    if found & {"oft_blocks", "oft_diag", "oft_R"}:
        return "oft", dora
    if "a1.weight" in found:
        return "glora", dora
    if "on_input" in found:
        return "ia3", dora
    if "down" in found:
        return ("locon" if conv else "lora"), dora
    if "diff" in found:
        return "full", dora
    return None, dora


def lora_kind(parts: Collection[str], *, conv: bool) -> FileKind | None:
    """The file kind for a LoRA whose modules hold `parts`; None when it is no LoRA.

    DoRA on LoHa or LoKr is that algorithm (its maths decide how the file is applied; the
    DoRA magnitude is a rescaling on top), DoRA on plain LoRA/LoCon is DORA.
    """
    algo, dora = algorithm(parts, conv=conv)
    if algo == "loha":
        return FileKind.LOHA
    if algo == "lokr":
        return FileKind.LOKR
    if dora:
        return FileKind.DORA
    if algo == "locon":
        return FileKind.LOCON
    if algo is not None:
        return FileKind.LORA
    return None
