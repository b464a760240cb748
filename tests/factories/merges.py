"""Merged checkpoints made the way the mergers make them (for lineage tests)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def a1111_model_hash(path: Path) -> str:
    """modules/hashes-era `sd_models.model_hash`: SHA-256 of 64 KiB at offset 1 MiB, 8 hex."""
    with open(path, "rb") as f:
        f.seek(0x100000)
        return hashlib.sha256(f.read(0x10000)).hexdigest()[0:8]


def a1111_merge(out: Path, primary: Path, secondary: Path, tertiary: Path | None = None, *, multiplier: float = 0.3) -> Path:
    """A tiny merged checkpoint, made the way A1111's `run_modelmerger` makes one: the
    weighted sum of the parents' `model` tensors, saved with `format`, `sd_merge_recipe`
    and `sd_merge_models` (each parent's own recipe and models copied in)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    def info(path: Path) -> tuple[str, dict[str, object]]:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        # A1111's read_metadata_from_safetensors decodes values that look like JSON objects.
        meta = {k: json.loads(v) if v[:1] == "{" else v for k, v in meta.items()}
        return hashlib.sha256(path.read_bytes()).hexdigest(), meta

    theta_0, theta_1 = load_file(str(primary)), load_file(str(secondary))
    for key in theta_0:
        if "model" in key and key in theta_1:
            theta_0[key] = (1 - multiplier) * theta_0[key] + multiplier * theta_1[key]
    metadata: dict[str, object] = {"format": "pt", "sd_merge_models": {}}
    files = [p for p in (primary, secondary, tertiary) if p is not None]
    hashes = [info(p)[0] for p in files]
    recipe = {
        "type": "webui",
        "primary_model_hash": hashes[0],
        "secondary_model_hash": hashes[1],
        "tertiary_model_hash": hashes[2] if tertiary else None,
        "interp_method": "Add difference" if tertiary else "Weighted sum",
        "multiplier": multiplier,
        "save_as_half": False,
        "custom_name": out.stem,
        "config_source": 0,
        "bake_in_vae": "None",
        "discard_weights": "",
        "is_inpainting": False,
        "is_instruct_pix2pix": False,
    }
    metadata["sd_merge_recipe"] = json.dumps(recipe)
    models = metadata["sd_merge_models"]
    assert isinstance(models, dict)
    for path in files:
        sha, meta = info(path)
        models[sha] = {"name": path.name, "legacy_hash": a1111_model_hash(path), "sd_merge_recipe": meta.get("sd_merge_recipe")}
        parent_models = meta.get("sd_merge_models", {})
        models.update(parent_models if isinstance(parent_models, dict) else {})
    metadata["sd_merge_models"] = json.dumps(models)
    save_file(theta_0, str(out), metadata={k: str(v) for k, v in metadata.items()})
    return out
