"""A tiny real ESRGAN (RRDBNet) upscaler, built from config with spandrel's own
architecture class so that spandrel's detection recognises its state dict. Offline, for
the tests, the demo and the CPU benchmarks."""

from __future__ import annotations

from pathlib import Path


def write_tiny_esrgan(path: Path, *, scale: int = 2, num_filters: int = 8, num_blocks: int = 1, seed: int = 0) -> Path:
    import safetensors.torch
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    model = ESRGAN(in_nc=3, out_nc=3, num_filters=num_filters, num_blocks=num_blocks, scale=scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    safetensors.torch.save_file(state, str(path))
    return path
