"""What the demo library needs to show lineage and authors' weights, offline:

- a merged checkpoint made the way A1111's checkpoint merger makes one (a weighted sum of
  two parents, saved with `sd_merge_recipe` and `sd_merge_models` exactly as
  modules/extras.py `run_modelmerger` writes them), one parent kept in the library and
  one not;
- `.civitai.info` sidecars (the Civitai Helper format: a model-version body) that carry
  an author's recommended weight, once in CivitAI's `settings` and once in the author's
  description. Their ids are made up; nothing is fetched.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

A1111_LEGACY_OFFSET = 0x100000


def a1111_parent(path: Path) -> tuple[str, str]:
    """(sha256, legacy_hash) as A1111 computes them: the whole file's SHA-256 (lower-case)
    and `sd_models.model_hash`, 8 hex digits of the SHA-256 of 64 KiB at 1 MiB."""
    whole = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            whole.update(chunk)
        f.seek(A1111_LEGACY_OFFSET)
        legacy = hashlib.sha256(f.read(0x10000)).hexdigest()[:8]
    return whole.hexdigest(), legacy


def a1111_merge_metadata(parents: list[Path], *, multiplier: float, custom_name: str) -> dict[str, str]:
    """The metadata A1111 saves with a merged checkpoint (primary first)."""
    hashes = [a1111_parent(p) for p in parents]
    recipe = {
        "type": "webui",
        "primary_model_hash": hashes[0][0],
        "secondary_model_hash": hashes[1][0] if len(hashes) > 1 else None,
        "tertiary_model_hash": hashes[2][0] if len(hashes) > 2 else None,
        "interp_method": "Add difference" if len(hashes) > 2 else "Weighted sum",
        "multiplier": multiplier,
        "save_as_half": False,
        "custom_name": custom_name,
        "config_source": 0,
        "bake_in_vae": "None",
        "discard_weights": "",
        "is_inpainting": False,
        "is_instruct_pix2pix": False,
    }
    models = {
        sha: {"name": path.name, "legacy_hash": legacy, "sd_merge_recipe": None}
        for path, (sha, legacy) in zip(parents, hashes, strict=True)
    }
    return {"format": "pt", "sd_merge_recipe": json.dumps(recipe), "sd_merge_models": json.dumps(models)}


def write_weighted_sum(pipe: Any, base: Path, other_seed: int, other_name: str, out: Path, *, multiplier: float) -> Path:
    """Merge `pipe` (saved as `base`) with a tiny pipeline built from `other_seed`, which
    is saved only long enough to be hashed (it is not part of the library), as
    (1 - multiplier) * base + multiplier * other, into `out`. `pipe` ends up merged."""
    import torch

    from engine.pipeline.single_file import write_single_file
    from engine.testing.tiny_sdxl import build_tiny_pipeline

    other = build_tiny_pipeline(seed=other_seed)
    with tempfile.TemporaryDirectory() as folder:
        outside = write_single_file(other, Path(folder) / f"{other_name}.safetensors")
        metadata = a1111_merge_metadata([base, outside], multiplier=multiplier, custom_name=out.stem)
    with torch.no_grad():
        for part in ("unet", "text_encoder", "text_encoder_2", "vae"):
            for mine, theirs in zip(getattr(pipe, part).parameters(), getattr(other, part).parameters(), strict=True):
                mine.mul_(1 - multiplier).add_(theirs, alpha=multiplier)
    return write_single_file(pipe, out, metadata)


def write_sidecar(
    model_file: Path,
    *,
    version_id: int,
    model_id: int,
    model_name: str,
    model_type: str,
    base_model: str,
    description: str | None = None,
    settings: dict[str, float] | None = None,
) -> Path:
    """A `.civitai.info` next to `model_file`, shaped like Civitai Helper's (a model-version
    body), naming the file's own SHA-256 so that the scan adopts it."""
    sha = hashlib.sha256(model_file.read_bytes()).hexdigest().upper()
    body: dict[str, Any] = {
        "id": version_id,
        "modelId": model_id,
        "name": "v1.0",
        "description": description,
        "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
        "publishedAt": "2025-03-01T10:05:00.000Z",
        "status": "Published",
        "baseModel": base_model,
        "baseModelType": "Standard",
        "trainedWords": [],
        "stats": {"downloadCount": 0, "rating": 0, "ratingCount": 0, "thumbsUpCount": 0},
        "model": {"name": model_name, "type": model_type, "nsfw": False, "poi": False},
        "files": [
            {
                "id": version_id,
                "name": model_file.name,
                "type": "Model",
                "primary": True,
                "sizeKB": model_file.stat().st_size / 1024,
                "metadata": {"format": "SafeTensor", "fp": None, "size": None},
                "hashes": {"AutoV2": sha[:10], "SHA256": sha},
                "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
            }
        ],
        "images": [],
    }
    if settings is not None:
        body["settings"] = settings
    path = model_file.with_name(model_file.name.rsplit(".", 1)[0] + ".civitai.info")
    path.write_text(json.dumps(body, indent=1), encoding="utf-8")
    return path
