"""The one LoRA key grammar, and the one kind rule the scanner and the parser share."""

from __future__ import annotations

import pytest
import torch

from engine.files.lora_keys import lora_kind, split_key
from engine.files.modelfile import detect_kind
from engine.kinds import FileKind
from engine.lora.formats import parse_state_dict
from tests.factories import model_files as mf


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("m.lora_down.weight", ("m", "down")),
        ("m.lora_A.default.weight", ("m", "down")),  # peft with an adapter name
        ("m.lora_B.weight", ("m", "up")),
        ("a.processor.to_q_lora.up.weight", ("a.processor.to_q", "up")),
        ("m.lora_linear_layer.down.weight", ("m", "down")),
        ("x.processor.qkv_lora1.down.weight", ("x.processor.qkv_lora1", "down")),  # XLabs
        ("m.lora_magnitude_vector.default.weight", ("m", "magnitude")),
        ("m.hada_w1_a", ("m", "hada_w1_a")),
        ("m.oft_R", ("m", "oft_R")),
        ("m.oft_R.weight", ("m", "oft_R")),
        ("m.weight", None),
        (".alpha", None),
    ],
)
def test_split_key(key, expected):
    assert split_key(key) == expected


def test_dora_on_loha_is_loha_for_the_scanner_and_the_parser():
    # one answer: the Hadamard maths decide how the file is applied; DoRA rescales on top
    assert lora_kind({"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "dora_scale"}, conv=False) is FileKind.LOHA
    ti = mf.T
    infos = {"m.hada_w1_a": ti("F32", (8, 4)), "m.hada_w1_b": ti("F32", (4, 8)), "m.hada_w2_a": ti("F32", (8, 4)),
             "m.hada_w2_b": ti("F32", (4, 8)), "m.dora_scale": ti("F32", (8, 1))}  # fmt: skip
    state = {k: torch.ones(v.shape) for k, v in infos.items()}
    scanned = detect_kind({k: _info(v.shape) for k, v in infos.items()})
    parsed = parse_state_dict(state, name="dora-loha")
    assert scanned is parsed.kind is FileKind.LOHA


def test_dora_on_plain_lora_is_dora():
    assert lora_kind({"down", "up", "alpha", "dora_scale"}, conv=False) is FileKind.DORA
    assert lora_kind({"down", "up", "magnitude"}, conv=True) is FileKind.DORA


def test_stored_kind_is_trusted_by_the_parser():
    state = {"m.lora_down.weight": torch.ones(2, 8), "m.lora_up.weight": torch.ones(8, 2)}
    assert parse_state_dict(state, name="x").kind is FileKind.LORA
    assert parse_state_dict(state, name="x", kind=FileKind.LOCON).kind is FileKind.LOCON


def _info(shape):
    from math import prod

    from engine.files.header import TensorInfo

    return TensorInfo("F32", tuple(shape), 0, 4 * prod(shape))
