"""Degenerate LoRAs are refused at scan time, not at draw time."""

from __future__ import annotations

import pytest
import torch

from engine.errors import LoraFormatError
from engine.files.modelfile import inspect_path
from engine.lora.formats import parse_state_dict
from tests.factories import model_files as mf
from tests.factories.model_files import T

M = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"


def _lora(tmp_path, down, up, alpha=None):
    tensors = {f"{M}.lora_down.weight": T("F32", down), f"{M}.lora_up.weight": T("F32", up)}
    if alpha is not None:
        tensors[f"{M}.alpha"] = mf.scalar(alpha)
    return mf.write_safetensors(tmp_path / "l.safetensors", tensors)


def test_rank_zero_is_refused(tmp_path):
    with pytest.raises(LoraFormatError, match="rank 0"):
        inspect_path(_lora(tmp_path, (0, 2048), (640, 0)))


def test_zero_sized_tensor_is_refused(tmp_path):
    with pytest.raises(LoraFormatError, match="empty"):
        inspect_path(_lora(tmp_path, (4, 0), (640, 4)))


@pytest.mark.parametrize("alpha", [1e6, -1e6, float("inf")])
def test_absurd_alpha_over_rank_is_refused(tmp_path, alpha):
    with pytest.raises(LoraFormatError, match="alpha"):
        inspect_path(_lora(tmp_path, (4, 2048), (640, 4), alpha=alpha))


def test_one_absurd_module_among_sane_ones_is_refused(tmp_path):
    path = mf.write_kohya_lora(tmp_path / "k.safetensors", "sdxl", rank=4, alpha=4.0)
    header_tensors = {**{k: v for k, v in _tensors(path).items()}}
    name = sorted(k for k in header_tensors if k.endswith(".alpha"))[-1]
    header_tensors[name] = mf.scalar(1e9)
    with pytest.raises(LoraFormatError, match="alpha"):
        inspect_path(mf.write_safetensors(tmp_path / "k2.safetensors", header_tensors))


def test_a_sane_large_scale_is_kept(tmp_path):
    info = inspect_path(_lora(tmp_path, (4, 2048), (640, 4), alpha=64.0))  # scale 16
    assert info.alpha == 64.0 and info.rank == 4


def test_the_parser_refuses_rank_zero_instead_of_dividing_by_it():
    state = {f"{M}.lora_down.weight": torch.ones(0, 8), f"{M}.lora_up.weight": torch.ones(8, 0),
             f"{M}.alpha": torch.tensor(1.0)}  # fmt: skip
    with pytest.raises(LoraFormatError, match="rank 0"):
        parse_state_dict(state, name="r0")


def _tensors(path):
    from engine.files.header import read_header

    h = read_header(path)
    raw = path.read_bytes()
    return {k: T(t.dtype, t.shape, raw[h.data_offset + t.start : h.data_offset + t.end]) for k, t in h.tensors.items()}


def test_a_peft_alpha_too_large_for_a_float_is_unknown_not_an_overflow(tmp_path):
    import json

    meta = {"lora_adapter_metadata": json.dumps({"unet.lora_alpha": 10**400, "unet.alpha_pattern": {"(": 1}})}
    base = "unet.down_blocks.1.attentions.0.proj_in"
    tensors = {f"{base}.lora_A.weight": T("F32", (4, 640)), f"{base}.lora_B.weight": T("F32", (640, 4))}
    path = mf.write_safetensors(tmp_path / "p.safetensors", tensors, meta)
    assert inspect_path(path).alpha is None
    state = {"unet.x.lora_A.weight": torch.ones(4, 8), "unet.x.lora_B.weight": torch.ones(8, 4)}
    parsed = parse_state_dict(state, name="p", metadata=meta)  # an invalid alpha_pattern regex too
    assert parsed.modules["unet.x"].scale == 1.0
