"""Parts of a pipeline taken from files of their own: a borrowed VAE, OpenCLIP bigG.

Only the tensors wanted are read (not a whole 7 GB checkpoint), with safetensors only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import LibraryError, UnsafeFileError
from engine.files.classify import single_file_has_vae
from engine.files.header import read_header
from engine.i18n import Text
from engine.pipeline.single_file import CLIP_G_PREFIX, VAE_PREFIX

if TYPE_CHECKING:
    import torch

# Top-level names of a VAE saved on its own in the LDM layout (sdxl_vae.safetensors).
_LDM_VAE_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")


def load_vae(path: Path, config_dir: Path, dtype: torch.dtype) -> Any:
    """The VAE of another file: a checkpoint's `first_stage_model.*`, or a VAE file in the
    LDM or diffusers layout. Only those tensors are read, not a whole 7 GB checkpoint."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors import safe_open

    if path.suffix != ".safetensors":
        raise UnsafeFileError(
            Text(
                "The VAE file “{name}” is not a .safetensors file, so Loracle does not open it.",
                "VAE 檔案「{name}」不是 .safetensors 檔，Loracle 不會開啟它。",
            ),
            name=path.name,
        )
    header = read_header(path)
    wanted = (VAE_PREFIX,) if single_file_has_vae(header.tensors) else _LDM_VAE_PARTS
    with safe_open(str(path), framework="pt") as fh:
        weights = {k: fh.get_tensor(k) for k in fh.keys() if k.startswith(wanted)}
    if not weights:
        raise LibraryError(
            Text("“{name}” has no VAE in it to borrow.", "「{name}」裡沒有可借用的 VAE。"), name=path.name
        )
    config = AutoencoderKL.load_config(config_dir)
    vae = _untyped(AutoencoderKL).from_config(config)
    if any(k.startswith("encoder.down_blocks.") for k in weights):  # already diffusers names
        state = weights
    else:
        state = _untyped(convert_ldm_vae_checkpoint)(weights, config)
    vae.load_state_dict(state, strict=True)
    return vae.to(dtype).eval()


def load_open_clip(path: Path, config_dir: Path, dtype: torch.dtype) -> Any:
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from safetensors import safe_open
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    model: Any = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(config_dir, local_files_only=True))
    with safe_open(str(path), framework="pt") as fh:
        weights = {k: fh.get_tensor(k) for k in fh.keys() if k.startswith(CLIP_G_PREFIX)}
    model.load_state_dict(_untyped(convert_open_clip_checkpoint)(model, weights, prefix=CLIP_G_PREFIX), strict=True)
    return model.to(dtype).eval()


def _untyped(obj: object) -> Any:
    # diffusers' loaders carry no annotations; calling them through Any keeps strict mypy quiet
    return obj
