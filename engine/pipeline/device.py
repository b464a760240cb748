"""Which device and number format the pipeline runs in.

`auto` picks CUDA, then Apple's MPS, then the CPU; the dtype follows the device: bfloat16 on
CUDA (float16 on GPUs without bf16, i.e. before Ampere), float16 on MPS, float32 on the CPU,
where half precision is slow and not bit-reproducible. Settings can override both.

SDXL's VAE overflows in float16 (black or NaN images), so in float16 the pipeline decodes
with the VAE upcast to float32; `ensure_vae_upcast` makes sure the VAE asks for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from engine.errors import SettingsError
from engine.i18n import Text

if TYPE_CHECKING:
    from engine.settings import Settings

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(settings: Settings) -> torch.device:
    """The torch device named by LORACLE_DEVICE; `auto` takes the best one present."""
    choice = settings.device
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise SettingsError(
            Text(
                "LORACLE_DEVICE is “cuda” but no CUDA GPU is visible to this process. "
                "Check the GPU driver (nvidia-smi) or set LORACLE_DEVICE=auto.",
                "LORACLE_DEVICE 設為「cuda」，但此程序看不到任何 CUDA 顯示卡。"
                "請檢查顯示卡驅動程式（nvidia-smi），或改設 LORACLE_DEVICE=auto。",
            )
        )
    if choice == "mps" and not _mps_available():
        raise SettingsError(
            Text(
                "LORACLE_DEVICE is “mps” but Apple's Metal backend is not available here. "
                "Set LORACLE_DEVICE=auto.",
                "LORACLE_DEVICE 設為「mps」，但這台機器無法使用 Apple Metal。請改設 LORACLE_DEVICE=auto。",
            )
        )
    return torch.device(choice)


def resolve_dtype(settings: Settings, device: torch.device) -> torch.dtype:
    """The weight/compute dtype named by LORACLE_DTYPE; `auto` follows the device."""
    if settings.dtype != "auto":
        return _DTYPES[settings.dtype]
    if device.type == "cuda":
        # Native bf16 only: since torch 2.3 is_bf16_supported() also says yes to GPUs that
        # merely emulate it (Turing, Volta: T4, V100, RTX 20xx), where bf16 runs without
        # tensor cores at a fraction of fp16's speed.
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


# A full SDXL LoRA touches ~2.9 B parameters: their untouched copies take ~5.4 GiB in bf16.
# Below this much VRAM they go to system RAM instead (each LoRA-set switch then copies
# them over PCIe, ~0.3 s), so 12-16 GB cards do not run out of memory.
_PRISTINE_ON_DEVICE_MIN_BYTES = 20 * 1024**3


def pristine_read_back(settings: Settings) -> bool:
    """LORACLE_LORA_PRISTINE auto / disk: originals re-read from the checkpoint file, copies
    only of what cannot be read back exactly (engine/lora/restore.py)."""
    return settings.lora_pristine in ("auto", "disk")


def pristine_on_cpu(settings: Settings, device: torch.device) -> bool:
    """Where the LoRA patcher keeps the copies of original weights: LORACLE_LORA_PRISTINE."""
    if settings.lora_pristine in ("device", "cpu"):
        return settings.lora_pristine == "cpu"
    if device.type != "cuda":
        return False  # on the CPU (or MPS unified memory) it is the same memory anyway
    total = torch.cuda.get_device_properties(device).total_memory
    return total < _PRISTINE_ON_DEVICE_MIN_BYTES


def ensure_vae_upcast(pipe: Any, dtype: torch.dtype) -> None:
    """In float16, make the SDXL pipeline decode with the VAE upcast to float32.

    diffusers upcasts when `vae.config.force_upcast` is set; SDXL's own config sets it,
    but fine-tuned folders sometimes ship without it.
    """
    if dtype == torch.float16 and not getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.register_to_config(force_upcast=True)
