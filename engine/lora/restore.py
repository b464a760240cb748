"""Where the LoRA patcher gets original weights back: the checkpoint file, not a copy.

A loaded checkpoint's file already holds every original weight, so the patcher need not
keep a second copy of each layer it patches (about half of SDXL). `remember_source` is
called by the loader with the file a pipeline came from; `WeightSource.read` then returns
a parameter's original value, read from the file's memory map (safetensors reads single
tensors zero-copy) and converted to the parameter's dtype and device as the load did.

Names go through the same conversion the writer in engine/pipeline/single_file.py inverts
(SGM UNet names, CLIP-L under `text_model.`, OpenCLIP's fused `in_proj_*` whose rows are q,
k, v): the diffusers -> SGM functions are applied to placeholder tensors holding parameter
numbers, so the q/k/v rows of a fused tensor come out in the order the conversion used.

A read is trusted only once verified: the patcher compares it bit for bit with the live
parameter on first touch (when the parameter is still as loaded) and keeps a memory copy of
any parameter whose read differs or has no source (e.g. `text_projection`, stored
transposed). The file is memory-mapped when the pipeline is loaded and stays mapped while
the pipeline lives, so a checkpoint replaced on disk (downloads rename into place) or
deleted still reads back as loaded; one overwritten in place while loaded does not.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.files.header import read_header

log = logging.getLogger(__name__)

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


@dataclass(frozen=True)
class _Location:
    """Where one parameter's original lives: a tensor of the file, or rows of it."""

    key: str
    rows: tuple[int, int] | None = None


class WeightSource:
    """Original values of one pipeline's parameters, read back from its checkpoint file."""

    def __init__(self, path: Path, locations: Mapping[tuple[str, str], _Location], *, label: str) -> None:
        from safetensors import safe_open

        self.path = Path(path)
        self.label = label
        self._locations = dict(locations)
        # Views into the memory map, made once: file-backed pages the kernel may drop and
        # fault back in, not memory this process holds. Re-making them per read costs more
        # than the copy itself for small tensors.
        self._views: dict[tuple[str, str], torch.Tensor] = {}
        # Opened now, while the file is the one just loaded; the map keeps that content.
        self._handle: Any = safe_open(str(self.path), framework="pt")

    def __len__(self) -> int:
        return len(self._locations)

    def knows(self, component: str, name: str) -> bool:
        return (component, name) in self._locations

    def read(self, component: str, name: str, like: torch.Tensor) -> torch.Tensor | None:
        """The original of `component`.`name` in `like`'s dtype and on its device, or None.

        On the CPU in the file's own dtype this is a view of the memory map: copy it into
        the parameter, never write to it.
        """
        raw = self._views.get((component, name))
        if raw is None:
            where = self._locations.get((component, name))
            if where is None:
                return None
            raw = self._handle.get_tensor(where.key)
            if where.rows is not None:
                raw = raw[where.rows[0] : where.rows[1]]
            self._views[(component, name)] = raw
        if raw.shape != like.shape:
            return None
        value: torch.Tensor = raw.to(device=like.device, dtype=like.dtype)
        return value


_SOURCES: weakref.WeakKeyDictionary[Any, WeightSource] = weakref.WeakKeyDictionary()


def source_for(pipe: Any) -> WeightSource | None:
    """The source `remember_source` recorded for `pipe`, if any."""
    try:
        return _SOURCES.get(pipe)
    except TypeError:  # an unhashable stand-in pipeline (tests)
        return None


def forget_source(pipe: Any) -> None:
    _SOURCES.pop(pipe, None)


def remember_source(pipe: Any, path: Path, checkpoint_format: str) -> WeightSource | None:
    """Record where `pipe`'s original LoRA-patchable weights can be read back from.

    Never fails a load: a checkpoint it cannot map is logged, and the patcher then keeps
    memory copies as before.
    """
    try:
        if checkpoint_format == "safetensors":
            source: WeightSource | None = _single_file_source(pipe, Path(path))
        else:
            source = _folder_source(pipe, Path(path))
    except Exception as exc:  # a source is an optimisation; loading must not depend on it
        log.warning("LoRA restore: cannot read weights back from %s (%s: %s); copies will be kept in memory",
                    path, type(exc).__name__, exc)
        source = None
    if source is not None:
        _SOURCES[pipe] = source
        log.info("LoRA restore: %d weights can be re-read from %s (%s)", len(source), path, source.label)
    else:
        forget_source(pipe)
    return source


# ------------------------------------------------------------------------ single file ---


def _params(pipe: Any, component: str) -> list[str]:
    model = getattr(pipe, component, None)
    if model is None:
        return []
    model = getattr(model, "_orig_mod", model)
    return [name for name, _ in model.named_parameters()]


def _invert(
    names: list[str], convert: Callable[[dict[str, torch.Tensor]], Mapping[str, Any]], prefix: str
) -> dict[str, _Location]:
    """Run `convert` (diffusers -> SGM) over placeholders numbering `names`; map back.

    A converted placeholder of n numbers is n parameters stacked along rows, in that order.
    """
    placeholders = {name: torch.tensor([i]) for i, name in enumerate(names)}
    out: dict[str, _Location] = {}
    for key, value in convert(placeholders).items():
        if not isinstance(value, torch.Tensor) or value.ndim != 1:
            continue
        numbers = [int(v) for v in value.tolist()]
        if len(numbers) == 1:
            out[names[numbers[0]]] = _Location(prefix + key)
        else:
            # Fused rows: the parts are equally sized (q, k, v of one attention layer).
            out.update({names[n]: _Location(prefix + key, (j, j + 1)) for j, n in enumerate(numbers)})
    return out


def _single_file_source(pipe: Any, path: Path) -> WeightSource | None:
    from engine.pipeline.single_file import (
        CLIP_G_PREFIX,
        CLIP_L_PREFIX,
        UNET_PREFIX,
        clip_g_to_sgm,
        clip_l_to_sgm,
        unet_to_sgm,
    )

    header = read_header(path)
    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    converters: dict[str, tuple[Callable[[dict[str, torch.Tensor]], Mapping[str, Any]], str]] = {
        "unet": (lambda sd: unet_to_sgm(sd, unet.config), UNET_PREFIX),
        "text_encoder": (clip_l_to_sgm, CLIP_L_PREFIX),
        # text_projection is stored transposed: not a plain read, so a memory copy if touched.
        "text_encoder_2": (
            lambda sd: clip_g_to_sgm({k: v for k, v in sd.items() if k != "text_projection.weight"}),
            CLIP_G_PREFIX,
        ),
    }
    locations: dict[tuple[str, str], _Location] = {}
    for component, (convert, prefix) in converters.items():
        names = _params(pipe, component)
        if not names:
            continue
        for name, where in _invert(names, convert, prefix).items():
            info = header.tensors.get(where.key)
            if info is None:
                continue
            if where.rows is not None:
                # Rows j..j+1 of the placeholder are rows j*n..(j+1)*n of the real tensor.
                part = info.shape[0] // 3
                where = _Location(where.key, (where.rows[0] * part, where.rows[1] * part))
            locations[(component, name)] = where
    return WeightSource(path, locations, label="single file") if locations else None


# --------------------------------------------------------------------- diffusers folder ---


def _folder_source(pipe: Any, path: Path) -> WeightSource | None:
    """A diffusers folder stores diffusers names already; one file per component is mapped
    (sharded components are left to memory copies)."""
    sources = [s for s in (_component_source(pipe, path, c) for c in COMPONENTS) if s is not None]
    if not sources:
        return None
    return _ManySources(sources) if len(sources) > 1 else sources[0]


def _component_source(pipe: Any, path: Path, component: str) -> WeightSource | None:

    files = sorted((path / component).glob("*.safetensors"))
    plain = [f for f in files if not f.name.endswith(".fp16.safetensors")]
    chosen = plain or files  # what the loader picks: plain weights unless only fp16 ones exist
    if len(chosen) != 1:
        return None
    keys = set(read_header(chosen[0]).tensors)
    locations: dict[tuple[str, str], _Location] = {}
    for name in _params(pipe, component):
        # transformers >= 5.6 flattened CLIPTextModel; files written before keep `text_model.`.
        for key in (name, "text_model." + name, name.removeprefix("text_model.")):
            if key in keys:
                locations[(component, name)] = _Location(key)
                break
    return WeightSource(chosen[0], locations, label=f"diffusers folder, {component}") if locations else None


class _ManySources(WeightSource):
    """One source per component file of a diffusers folder, behind one interface."""

    def __init__(self, sources: list[WeightSource]) -> None:
        self.path = sources[0].path.parent.parent
        self.label = "diffusers folder"
        self._parts = sources

    def __len__(self) -> int:
        return sum(len(s) for s in self._parts)

    def knows(self, component: str, name: str) -> bool:
        return any(s.knows(component, name) for s in self._parts)

    def read(self, component: str, name: str, like: torch.Tensor) -> torch.Tensor | None:
        for s in self._parts:
            if s.knows(component, name):
                return s.read(component, name, like)
        return None
