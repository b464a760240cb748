from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from engine.errors import SettingsError
from engine.pipeline.device import (
    ensure_vae_upcast,
    pristine_on_cpu,
    pristine_read_back,
    resolve_device,
    resolve_dtype,
)
from engine.settings import Settings


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with the given accelerators."""

    def make(*, cuda: bool = False, bf16: bool = True, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return make


@pytest.mark.parametrize(
    "cuda, mps, expected", [(True, False, "cuda"), (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_auto_device_prefers_cuda_then_mps(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert resolve_device(Settings(device="auto")) == torch.device(expected)


def test_explicit_cpu_is_honoured_on_a_gpu_machine(machine):
    machine(cuda=True)
    assert resolve_device(Settings(device="cpu")) == torch.device("cpu")


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_asking_for_a_missing_accelerator_fails_clearly(machine, device):
    machine()
    with pytest.raises(SettingsError, match=device) as err:
        resolve_device(Settings(device=device))
    assert "LORACLE_DEVICE" in err.value.localized("zh-TW")


@pytest.mark.parametrize(
    "device, bf16, expected",
    [
        ("cuda", True, torch.bfloat16),
        ("cuda", False, torch.float16),
        ("mps", True, torch.float16),
        ("cpu", True, torch.float32),
    ],
)
def test_auto_dtype_follows_the_device(machine, device, bf16, expected):
    machine(cuda=device == "cuda", bf16=bf16)
    assert resolve_dtype(Settings(dtype="auto"), torch.device(device)) == expected


def test_gpus_that_only_emulate_bf16_get_float16(machine, monkeypatch):
    # torch's default answer counts emulation (a T4 or V100 "supports" bf16, slowly).
    machine(cuda=True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_dtype(Settings(dtype="auto"), torch.device("cuda")) == torch.float16


@pytest.mark.parametrize("name, dtype", [("float32", torch.float32), ("float16", torch.float16), ("bfloat16", torch.bfloat16)])
def test_dtype_override(name, dtype):
    assert resolve_dtype(Settings(dtype=name), torch.device("cuda")) == dtype


class _Config(dict):
    __getattr__ = dict.get


def _fake_pipe(force_upcast):
    vae = SimpleNamespace(config=_Config(force_upcast=force_upcast))
    vae.register_to_config = lambda **kw: vae.config.update(kw)
    return SimpleNamespace(vae=vae)


@pytest.mark.parametrize(
    "dtype, before, after",
    [(torch.float16, False, True), (torch.float16, True, True), (torch.bfloat16, False, False), (torch.float32, False, False)],
)
def test_vae_upcast_only_for_float16(dtype, before, after):
    pipe = _fake_pipe(before)
    ensure_vae_upcast(pipe, dtype)
    assert pipe.vae.config.force_upcast is after


@pytest.mark.parametrize(
    "value, read_back, on_cpu",
    [("auto", True, False), ("disk", True, False), ("device", False, False), ("cpu", False, True)],
)
def test_lora_pristine_modes(value, read_back, on_cpu):
    """auto / disk re-read originals from the checkpoint; device / cpu keep full copies there."""
    settings = Settings(lora_pristine=value)
    assert pristine_read_back(settings) is read_back
    assert pristine_on_cpu(settings, torch.device("cpu")) is on_cpu
