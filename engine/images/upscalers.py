"""Upscaler models (ESRGAN and its family: 4x-UltraSharp, 4x-AnimeSharp, RealESRGAN, ...)
in `<data_dir>/upscalers/`, for the hires fix and upscale jobs.

Only `.safetensors` are read, through `safetensors.torch.load_file` and spandrel's
architecture detection, never `torch.load`: most upscalers are still published as pickled
`.pth` files, and unpickling one runs whatever code it carries. Those are refused at scan
time with a message saying how to convert them safely.

An upscaler runs in tiles with an overlap, so its memory depends on the tile, not on the
picture: a 2x upscale of a 1536-pixel image needs no more than a 1024 draw.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import CorruptFileError, LibraryError, UnsafeFileError
from engine.files.header import read_header
from engine.files.sniff import REFUSED_SUFFIXES, SAFETENSORS_SUFFIXES, check_not_pickle
from engine.i18n import Text

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

# Hires upscalers that are not model files, in the order Engine.upscalers lists them.
BUILT_IN = ("latent", "lanczos")
# Pixels per tile side and the overlap around each tile: ESRGAN's receptive field is
# small, so 32 pixels of context make tile seams invisible (tests compare with untiled).
TILE = 512
OVERLAP = 32

_PICKLED = Text(
    "“{name}” is a pickled PyTorch upscaler ({suffix}). Loading such files can run any code hidden in "
    "them, so Loracle never opens them. Download the .safetensors release of this upscaler (most "
    "have one), or convert it on a machine you trust, in a sandbox: "
    "`state = torch.load(path, weights_only=True)` then "
    "`safetensors.torch.save_file(state, 'name.safetensors')`, and put the .safetensors in upscalers/.",
    "「{name}」是 pickle 格式的 PyTorch 放大模型（{suffix}）。載入這種檔案可能執行其中夾帶的任意程式碼，"
    "因此 Loracle 絕不開啟。請改下載此放大模型的 .safetensors 版本（大多都有），或在您信任的電腦上、"
    "於隔離環境中轉換：`state = torch.load(path, weights_only=True)`，再 "
    "`safetensors.torch.save_file(state, 'name.safetensors')`，然後把 .safetensors 放進 upscalers/。",
)
_NOT_AN_UPSCALER = Text(
    "“{name}” is not an upscaler model Loracle can run ({reason}). ESRGAN-family models "
    "(4x-UltraSharp, 4x-AnimeSharp, RealESRGAN, ...) in .safetensors work.",
    "「{name}」不是 Loracle 能執行的放大模型（{reason}）。支援 .safetensors 格式的 ESRGAN 系列模型"
    "（4x-UltraSharp、4x-AnimeSharp、RealESRGAN 等）。",
)


def pickled_error(path: Path) -> UnsafeFileError:
    return UnsafeFileError(_PICKLED, name=path.name, suffix=path.suffix.lower() or "pickle")


def inspect_upscaler(path: Path) -> int:
    """Check an upscaler file from its header alone (the scan); returns where its tensor
    data starts, for hashing. Pickles are refused with how to convert them."""
    if path.suffix.lower() in REFUSED_SUFFIXES:
        raise pickled_error(path)
    try:
        check_not_pickle(path)
    except UnsafeFileError:
        raise pickled_error(path) from None
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise LibraryError(_NOT_AN_UPSCALER, name=path.name, reason=f"a {path.suffix or 'extensionless'} file")
    try:
        header = read_header(path)
    except UnsafeFileError:
        raise pickled_error(path) from None
    if not any(len(info.shape) == 4 for info in header.tensors.values()):
        raise LibraryError(_NOT_AN_UPSCALER, name=path.name, reason="it holds no convolution weights")
    return header.data_offset


class UpscalerModel:
    """One upscaler loaded on a device; call it with a picture and the size it must reach."""

    def __init__(self, path: Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> None:
        import safetensors.torch
        import spandrel
        import torch

        self.path = Path(path)
        inspect_upscaler(self.path)
        try:
            state = safetensors.torch.load_file(str(self.path), device="cpu")
        except Exception as exc:
            raise CorruptFileError(_NOT_AN_UPSCALER, name=self.path.name, reason=f"unreadable: {exc}"[:200]) from exc
        try:
            descriptor: Any = spandrel.ModelLoader().load_from_state_dict(state)
        except Exception as exc:  # spandrel.UnsupportedModelError mostly
            raise LibraryError(_NOT_AN_UPSCALER, name=self.path.name, reason=str(exc)[:200]) from exc
        if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.input_channels != 3:
            raise LibraryError(_NOT_AN_UPSCALER, name=self.path.name, reason="not a 3-channel image upscaler")
        device = torch.device(device)
        wanted = dtype or torch.float32
        half = wanted in (torch.float16, torch.bfloat16) and device.type != "cpu"
        if half and not (descriptor.supports_half if wanted == torch.float16 else descriptor.supports_bfloat16):
            half = False
        self.dtype = wanted if half else torch.float32
        self.descriptor = descriptor.to(device=device, dtype=self.dtype).eval()
        self.device = device
        self.scale = int(descriptor.scale)

    def __call__(
        self, image: Image, size: tuple[int, int], *, tile: int = TILE, should_cancel: Callable[[], bool] | None = None
    ) -> Image:
        import numpy as np
        import torch
        from PIL import Image as PILImage

        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
        x = pixels.permute(2, 0, 1).unsqueeze(0).to(self.device, self.dtype)
        with torch.inference_mode():
            out = tiled(self.descriptor, x, self.scale, tile=tile, should_cancel=should_cancel)
        array = (out[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        result = PILImage.fromarray(array)
        return result if result.size == size else result.resize(size, PILImage.Resampling.LANCZOS)


def tiled(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    *,
    tile: int = TILE,
    overlap: int = OVERLAP,
    should_cancel: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """`model(x)` computed tile by tile: each tile is run with `overlap` pixels of its
    neighbours around it, and only its own part of the output is kept, so seams see the
    same context as an untiled run would (to within the receptive field)."""
    from engine.errors import JobCancelledError

    _, _, height, width = x.shape
    out: torch.Tensor | None = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            if should_cancel is not None and should_cancel():
                raise JobCancelledError()
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(0, top - overlap), max(0, left - overlap)
            y1, x1 = min(height, bottom + overlap), min(width, right + overlap)
            piece = model(x[:, :, y0:y1, x0:x1])
            if out is None:
                out = x.new_zeros((x.shape[0], piece.shape[1], height * scale, width * scale))
            oy, ox = (top - y0) * scale, (left - x0) * scale
            out[:, :, top * scale : bottom * scale, left * scale : right * scale] = piece[
                :, :, oy : oy + (bottom - top) * scale, ox : ox + (right - left) * scale
            ]
    if out is None:
        raise ValueError("an empty picture has nothing to upscale")
    return out
