"""Upscaler models (engine.images.upscalers): spandrel from safetensors only, tiled."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import LibraryError, UnsafeFileError
from engine.i18n import EN
from engine.images.upscalers import UpscalerModel, inspect_upscaler, tiled
from engine.testing.tiny_upscaler import write_tiny_esrgan


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory):
    return write_tiny_esrgan(tmp_path_factory.mktemp("up") / "tiny-2x.safetensors")


def picture(width=48, height=40):
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_spandrel_recognises_a_real_esrgan_and_it_upscales(esrgan):
    model = UpscalerModel(esrgan)
    assert model.scale == 2 and model.descriptor.architecture.name == "ESRGAN"
    out = model(picture(), (96, 80))
    assert out.size == (96, 80) and out.mode == "RGB"
    assert np.asarray(out).std() > 0


def test_the_asked_size_is_reached_from_the_models_fixed_scale(esrgan):
    assert UpscalerModel(esrgan)(picture(), (72, 60)).size == (72, 60)  # 1.5x from a 2x model


def test_tiles_equal_an_untiled_run(esrgan):
    model = UpscalerModel(esrgan)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 72)
    with torch.inference_mode():
        whole = model.descriptor(x)
        pieces = tiled(model.descriptor, x, 2, tile=24)
    assert pieces.shape == whole.shape == (1, 3, 128, 144)
    assert float((pieces - whole).abs().max()) < 1e-4


def test_tiles_without_overlap_would_show_seams(esrgan):
    # the overlap is what makes the comparison above pass, not a model that ignores context
    model = UpscalerModel(esrgan)
    x = torch.rand(1, 3, 64, 72)
    with torch.inference_mode():
        assert float((tiled(model.descriptor, x, 2, tile=24, overlap=0) - model.descriptor(x)).abs().max()) > 1e-3


@pytest.mark.parametrize("suffix", [".pth", ".pt"])
def test_a_pickled_upscaler_is_refused_with_how_to_convert_it(tmp_path, suffix):
    path = tmp_path / f"4x-Ultra{suffix}"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(UnsafeFileError) as err:
        inspect_upscaler(path)
    message = err.value.localized(EN)
    assert "torch.load(path, weights_only=True)" in message and "safetensors.torch.save_file" in message
    assert "never opens" in message


def test_a_pickle_renamed_to_safetensors_is_refused_too(tmp_path):
    path = tmp_path / "sneaky.safetensors"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    with pytest.raises(UnsafeFileError, match="weights_only=True"):
        UpscalerModel(path)


def test_a_safetensors_that_is_no_upscaler_is_refused(tmp_path):
    import safetensors.torch

    path = tmp_path / "not-esrgan.safetensors"
    safetensors.torch.save_file({"a.weight": torch.zeros(4, 4, 3, 3)}, str(path))
    with pytest.raises(LibraryError, match="not an upscaler model"):
        UpscalerModel(path)
