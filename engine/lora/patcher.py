"""Apply a set of LoRAs to a pipeline in place, at exactly the requested weights.

For every parameter a LoRA touches, the patcher writes W = cast(W0.float() + Σ w_i·ΔW_i),
computed in fp32 from the original W0. So:

* the result never depends on earlier jobs (no fuse/unfuse drift in half precision),
* restoring writes W0 back, bit-identical to the original,
* generation runs on plain layers: no adapter hooks, no per-step cost.

W0 comes from the checkpoint file when the loader recorded one (engine/lora/restore.py):
re-read from its memory map, converted as the load converted it, and verified bit for bit
against the parameter on first touch. Only a parameter that cannot be read back exactly
(no source: a pipeline built in memory; a tensor stored transposed; a file whose read
differs) gets a pristine copy, on the device or in RAM (`pristine_on_cpu`). `read_back=False`
keeps copies of everything: the fastest switches, for the memory of about half the model.

Moving from one LoRA set to the next recomputes only the parameters whose contributions
changed and restores those the new set no longer touches; the same set twice in a row costs
nothing. Everything is validated before the first write: a LoRA that does not fit the
model raises LoraFormatError with every weight still as it was.

Thread-safety: a LoraPatcher is not thread-safe and holds no lock. The engine calls it only
from the GPU worker thread, between generations, never while the pipeline is running. Build
one patcher per loaded pipeline: it assumes nobody else writes the weights it manages.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from engine.errors import LoraFormatError, WeightError
from engine.i18n import Text
from engine.kinds import FileKind
from engine.lora.cache import LoraCache, file_identity_key
from engine.lora.formats import LoraModule, ParsedLora, dora_weight
from engine.lora.keys import COMPONENTS, ModuleTarget, build_key_map
from engine.lora.restore import WeightSource, source_for

log = logging.getLogger(__name__)

ParamKey = tuple[str, str, str]  # (component, module name, "weight" | "bias")

_MSG_SHAPE = Text(
    "The LoRA “{name}” does not fit this checkpoint: {count} of its layers have the wrong "
    "size (for example {module}: the LoRA has {got}, the model needs {want}). It was probably "
    "made for a different kind of model, such as SD 1.5 instead of SDXL. Nothing was changed.",
    "LoRA「{name}」與此模型不相容：其中 {count} 個層的大小不符（例如 {module}：LoRA 為 {got}，"
    "模型需要 {want}）。它可能是為其他類型的模型製作的（例如 SD 1.5 而非 SDXL）。模型未作任何更改。",
)
_MSG_BAD_WEIGHT = Text(
    "The weight {weight} for the LoRA “{name}” is not a usable number.",
    "LoRA「{name}」的權重 {weight} 不是可用的數值。",
)


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA to apply: `key` is its content hash (empty: path+size+mtime is used)."""

    key: str
    path: Path
    weight: float
    name: str
    kind: FileKind | None = None  # as the library scan decided it, trusted by the parser

    @classmethod
    def from_file(cls, path: Path | str, weight: float, *, name: str | None = None, key: str = "") -> LoraSpec:
        path = Path(path)
        return cls(key=key, path=path, weight=float(weight), name=name or path.stem)


@dataclass
class LoraApplyReport:
    """What one LoRA of a set did: how many of its modules found a layer, per component,
    and the file keys that matched nothing (reported, not an error)."""

    name: str
    weight: float
    matched_modules: int
    unmatched_keys: list[str]
    targets: dict[str, int]
    key: str = ""
    kind: FileKind = FileKind.UNKNOWN
    applied: bool = True  # False for weight 0: such a LoRA is not even read


@dataclass
class PatcherStats:
    applies: int = 0
    unchanged_applies: int = 0  # calls that found the same set already applied: no tensor work
    params_written: int = 0
    params_restored: int = 0


@dataclass
class _Contribution:
    module: LoraModule
    weight: float
    cache_key: str


@dataclass
class _Plan:
    params: dict[ParamKey, list[_Contribution]] = field(default_factory=dict)
    reports: list[LoraApplyReport] = field(default_factory=list)


def contribution_delta(
    module: LoraModule,
    param: str,
    base: torch.Tensor,
    weight: float,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The fp32 change one LoRA at `weight` makes to `base` (the fp32 value so far)."""
    if param == "weight" and module.is_dora:
        return dora_weight(module, base, multiplier=weight, device=device)
    return module.delta(param, tuple(base.shape), device=device, multiplier=weight)


class LoraPatcher:
    """Applies LoRA sets to one pipeline's unet / text encoders in place (see module doc)."""

    def __init__(
        self,
        pipe: Any,
        cache: LoraCache,
        *,
        compute_device: torch.device | str | None = None,
        pristine_on_cpu: bool = False,
        read_back: bool = True,
        source: WeightSource | None = None,
    ) -> None:
        self._pipe = pipe
        self._cache = cache
        self._compute_device = torch.device(compute_device) if compute_device is not None else None
        self._pristine_on_cpu = pristine_on_cpu
        self._key_map: dict[str, ModuleTarget] = build_key_map(pipe)
        self._modules: dict[tuple[str, str], torch.nn.Module] = {}
        self._pristine: dict[ParamKey, torch.Tensor] = {}  # copies: what cannot be re-read
        self._reread: dict[ParamKey, int] = {}  # re-read from the file instead; value: bytes
        self._source = (source or source_for(pipe)) if read_back else None
        self._signatures: dict[ParamKey, tuple[tuple[str, str, float], ...]] = {}
        self._active: tuple[tuple[str, float], ...] = ()
        self._active_reports: list[LoraApplyReport] = []
        self.stats = PatcherStats()

    # -- public ---------------------------------------------------------------------------

    @property
    def pipe(self) -> Any:
        """The pipeline this patcher manages (a new pipeline needs a new patcher)."""
        return self._pipe

    @property
    def cache(self) -> LoraCache:
        return self._cache

    @property
    def active(self) -> tuple[tuple[str, float], ...]:
        """(cache key, weight) of each LoRA currently applied, in order; weight-0 ones omitted."""
        return self._active

    @property
    def touched_params(self) -> int:
        """How many parameters currently differ from (or may differ from) their originals."""
        return len(self._pristine) + len(self._reread)

    @property
    def pristine_bytes(self) -> int:
        """Memory the pristine copies take (only parameters the file cannot give back)."""
        return sum(t.numel() * t.element_size() for t in self._pristine.values())

    @property
    def reread_bytes(self) -> int:
        """Bytes of touched parameters restored from the checkpoint file: held by no copy."""
        return sum(self._reread.values())

    @property
    def source(self) -> WeightSource | None:
        return self._source

    def apply(self, loras: Sequence[LoraSpec]) -> list[LoraApplyReport]:
        """Make the pipeline's weights equal pristine + this set, and report per LoRA."""
        self.stats.applies += 1
        loras = list(loras)
        for spec in loras:
            if not math.isfinite(float(spec.weight)):
                raise WeightError(_MSG_BAD_WEIGHT, name=spec.name, weight=spec.weight)
        keyed = [(spec, spec.key or file_identity_key(spec.path)) for spec in loras]
        live = [(spec, key) for spec, key in keyed if spec.weight != 0]
        wanted = tuple((key, float(spec.weight)) for spec, key in live)

        if wanted == self._active:
            self.stats.unchanged_applies += 1
            return self._reports(keyed, iter(self._active_reports))

        parsed = [self._cache.get(key, spec.path, name=spec.name, kind=spec.kind) for spec, key in live]
        plan = self._plan(live, parsed)  # raises before anything is written
        self._write(plan)
        self._active = wanted
        self._active_reports = plan.reports
        return self._reports(keyed, iter(plan.reports))

    def restore(self) -> None:
        """Put every touched parameter back to its original (bit-identical)."""
        with torch.no_grad():
            for pk in [*self._pristine, *self._reread]:
                param = self._param(pk)
                param.data.copy_(self._original(pk, param))
                self.stats.params_restored += 1
        self._pristine.clear()
        self._reread.clear()
        self._signatures.clear()
        self._active = ()
        self._active_reports = []

    # -- planning -------------------------------------------------------------------------

    def _plan(self, live: list[tuple[LoraSpec, str]], parsed: list[ParsedLora]) -> _Plan:
        plan = _Plan()
        misfits: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = []
        for (spec, cache_key), lora in zip(live, parsed, strict=True):
            unmatched = list(lora.unparsed_keys)
            targets = {component: 0 for component in COMPONENTS}
            matched = 0
            for alias, module in lora.modules.items():
                target = self._key_map.get(alias)
                if target is None:
                    unmatched.extend(module.keys)
                    continue
                self._modules[(target.component, target.name)] = target.module
                for param in module.params:
                    tensor = getattr(target.module, param, None)
                    shape = tuple(tensor.shape) if tensor is not None else ()
                    if not module.fits(param, shape):
                        misfits.append((spec.name, f"{target.component}.{target.name}.{param}",
                                        module.natural_shape(param), shape))
                        continue
                    pk = (target.component, target.name, param)
                    plan.params.setdefault(pk, []).append(_Contribution(module, float(spec.weight), cache_key))
                matched += 1
                targets[target.component] += 1
            plan.reports.append(
                LoraApplyReport(
                    name=spec.name,
                    weight=float(spec.weight),
                    matched_modules=matched,
                    unmatched_keys=sorted(unmatched),
                    targets=targets,
                    key=cache_key,
                    kind=lora.kind,
                )
            )
        if misfits:
            name, where, got, want = misfits[0]
            count = sum(1 for m in misfits if m[0] == name)
            raise LoraFormatError(
                _MSG_SHAPE, name=name, count=count, module=where, got=_shape_text(got), want=_shape_text(want)
            )
        return plan

    # -- writing --------------------------------------------------------------------------

    def _param(self, pk: ParamKey) -> torch.nn.Parameter:
        param: torch.nn.Parameter = getattr(self._modules[(pk[0], pk[1])], pk[2])
        return param

    def _original(self, pk: ParamKey, param: torch.Tensor) -> torch.Tensor:
        saved = self._pristine.get(pk)
        if saved is not None:
            return saved
        value = self._source.read(pk[0], f"{pk[1]}.{pk[2]}", param) if self._source is not None else None
        if value is None:  # verified readable on first touch; only a changed file gets here
            raise RuntimeError(f"the original of {'.'.join(pk)} can no longer be read from the checkpoint")
        return value

    def _keep_original(self, pk: ParamKey, param: torch.Tensor, copied: list[str]) -> None:
        """On first touch: trust the file if it gives back exactly this value, else copy it."""
        if self._source is not None:
            value = self._source.read(pk[0], f"{pk[1]}.{pk[2]}", param)
            if value is not None and _same_bits(value, param.detach()):
                self._reread[pk] = param.numel() * param.element_size()
                return
            copied.append(".".join(pk))
        saved = param.detach().to("cpu", copy=True) if self._pristine_on_cpu else param.detach().clone()
        self._pristine[pk] = saved

    def _write(self, plan: _Plan) -> None:
        copied: list[str] = []
        try:
            with torch.no_grad():
                for pk in [pk for pk in (*self._pristine, *self._reread) if pk not in plan.params]:
                    param = self._param(pk)
                    param.data.copy_(self._original(pk, param))
                    self._pristine.pop(pk, None)
                    self._reread.pop(pk, None)
                    self._signatures.pop(pk, None)
                    self.stats.params_restored += 1
                for pk, contributions in plan.params.items():
                    signature = tuple((c.cache_key, c.module.alias, c.weight) for c in contributions)
                    if self._signatures.get(pk) == signature:
                        continue  # this parameter already holds exactly this sum
                    param = self._param(pk)
                    if pk not in self._pristine and pk not in self._reread:
                        self._keep_original(pk, param, copied)
                    param.data.copy_(self._merged(pk, param, contributions))
                    self._signatures[pk] = signature
                    self.stats.params_written += 1
        except BaseException:
            # A half-written set is worse than none: go back to pristine, then report.
            self.restore()
            raise
        finally:
            if copied:
                assert self._source is not None
                log.info("LoRA restore: %d weights kept as copies in memory, not re-readable exactly from %s "
                         "(e.g. %s)", len(copied), self._source.path, ", ".join(copied[:3]))

    def _merged(self, pk: ParamKey, param: torch.Tensor, contributions: list[_Contribution]) -> torch.Tensor:
        device = self._compute_device or param.device
        value = self._original(pk, param).to(device=device, dtype=torch.float32, copy=True)
        for c in contributions:
            value += contribution_delta(c.module, pk[2], value, c.weight, device=device)
        return value

    # -- reports --------------------------------------------------------------------------

    @staticmethod
    def _reports(keyed: list[tuple[LoraSpec, str]], applied: Iterator[LoraApplyReport]) -> list[LoraApplyReport]:
        out: list[LoraApplyReport] = []
        for spec, key in keyed:
            if spec.weight == 0:
                out.append(
                    LoraApplyReport(
                        name=spec.name,
                        weight=0.0,
                        matched_modules=0,
                        unmatched_keys=[],
                        targets={component: 0 for component in COMPONENTS},
                        key=key,
                        applied=False,
                    )
                )
            else:
                report = next(applied)
                out.append(replace(report, name=spec.name, unmatched_keys=list(report.unmatched_keys),
                                   targets=dict(report.targets)))
        return out


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    # Bit patterns, not values: -0.0 == 0.0 and NaN != NaN would hide or invent differences.
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    as_int = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.contiguous().view(as_int), b.contiguous().view(as_int))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape) if shape else "nothing"
