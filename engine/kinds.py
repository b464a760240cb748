"""The vocabulary shared by inspection, families, verdicts and the LoRA loader."""

from __future__ import annotations

from enum import StrEnum


class Architecture(StrEnum):
    """Network architecture: LoRAs only fit checkpoints of the same one."""

    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    FLUX = "flux"
    SD3 = "sd3"
    AURAFLOW = "auraflow"
    OTHER = "other"  # a known architecture we do not generate with (Wan, Hunyuan, ...)
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        return _ARCH_LABELS[self]


_ARCH_LABELS = {
    Architecture.SD1: "SD 1.x",
    Architecture.SD2: "SD 2.x",
    Architecture.SDXL: "SDXL",
    Architecture.FLUX: "Flux",
    Architecture.SD3: "SD 3",
    Architecture.AURAFLOW: "AuraFlow",
    Architecture.OTHER: "other",
    Architecture.UNKNOWN: "unknown",
}


class FileKind(StrEnum):
    """What a model file is. The LyCORIS variants are LoRAs with other maths."""

    CHECKPOINT = "checkpoint"
    LORA = "lora"
    LOCON = "locon"
    LOHA = "loha"
    LOKR = "lokr"
    DORA = "dora"
    UPSCALER = "upscaler"  # an image upscaler model (ESRGAN family), data/upscalers/
    UNKNOWN = "unknown"

    @property
    def is_lora(self) -> bool:
        return self in (FileKind.LORA, FileKind.LOCON, FileKind.LOHA, FileKind.LOKR, FileKind.DORA)


class Category(StrEnum):
    """Where a file lives in the library: data/models/, data/loras/ or data/upscalers/."""

    CHECKPOINT = "checkpoint"
    LORA = "lora"
    UPSCALER = "upscaler"
