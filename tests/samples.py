"""The captured CivitAI API bodies, which live beside the checkout: <repo>/../shared/civitai-samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CIVITAI_SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "civitai-samples"


def civitai_samples() -> Path:
    """The samples folder; a developer's checkout without it skips, CI fails (never passes silently)."""
    if not CIVITAI_SAMPLES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the CivitAI samples are missing: {CIVITAI_SAMPLES}")
        pytest.skip(f"the CivitAI samples are not beside this checkout ({CIVITAI_SAMPLES})")
    return CIVITAI_SAMPLES
