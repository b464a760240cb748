"""Parse a LoRA file into per-module weight changes (ΔW), computed in fp32.

Supported maths, each with scale = alpha / rank (alpha defaults to rank, i.e. scale 1):

    LoRA / LoCon   ΔW = up @ down                 (+ CP "lora_mid": up · mid · down)
    LoHa           ΔW = (w1a @ w1b) ⊙ (w2a @ w2b)  (+ Tucker hada_t1 / hada_t2)
    LoKr           ΔW = kron(w1 | w1a @ w1b, w2 | w2a @ w2b | Tucker t2)
                   scale = alpha / rank only when a factor is decomposed, else 1 (LyCORIS)
    full diffs     ΔW = diff, Δb = diff_b; LyCORIS norm layers w_norm / b_norm
    DoRA           dora_scale (kohya / LyCORIS) or lora_magnitude_vector (peft) on top of
                   any of the above; applied by `dora_weight` against the live weight.

Files are read with safetensors only: nothing here can unpickle. Algorithms we recognise but
cannot apply exactly (GLoRA, OFT, BOFT, IA3, ...) raise LoraFormatError naming the file
instead of being dropped or half-applied; keys we do not recognise at all are kept in
`unparsed_keys` so the caller can report them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.errors import CorruptFileError, LoraFormatError, UnsafeFileError
from engine.files.lora_keys import (
    DIFFUSERS_SUFFIXES,
    LOHA_PARTS,
    LOKR_PARTS,
    LORA_PARTS,
    UNSUPPORTED,
    lora_kind,
)
from engine.files.lora_keys import split_key as split_raw_key
from engine.files.sniff import REFUSED_SUFFIXES
from engine.i18n import Text
from engine.kinds import FileKind
from engine.lora.keys import normalize_alias
from engine.lora.peft import peft_alpha

_WEIGHT_DIFF_ROLES = {"diff", "w_norm"}
_BIAS_ROLES = {"diff_b", "b_norm"}

_MSG_UNREADABLE = Text(
    "The LoRA file “{name}” could not be read ({reason}). It may be incomplete or damaged; "
    "download it again.",
    "無法讀取 LoRA 檔案「{name}」（{reason}）。檔案可能不完整或已損壞，請重新下載。",
)
_MSG_PICKLE = Text(
    "“{name}” is a pickled file ({suffix}). Such files can run code when opened, so Loracle "
    "only accepts .safetensors LoRAs.",
    "「{name}」是 pickle 格式（{suffix}）。這類檔案開啟時可能執行程式碼，Loracle 只接受 .safetensors 格式的 LoRA。",
)
_MSG_UNSUPPORTED = Text(
    "The LoRA “{name}” uses {algorithm}, which Loracle cannot apply correctly yet "
    "(for example key “{key}”).",
    "LoRA「{name}」使用了 {algorithm}，Loracle 目前無法正確套用（例如鍵值「{key}」）。",
)
_MSG_NOT_FINITE = Text(
    "The LoRA “{name}” contains broken numbers (NaN or infinity) in “{key}”; it would ruin "
    "every image.",
    "LoRA「{name}」的「{key}」含有無效數值（NaN 或無限大），會毀掉所有圖片。",
)
_MSG_INCONSISTENT = Text(
    "The LoRA “{name}” is inconsistent: the parts of “{module}” do not fit together "
    "({detail}).",
    "LoRA「{name}」內容不一致：「{module}」的各部分無法組合（{detail}）。",
)


@dataclass
class LoraModule:
    """The change one LoRA makes to one layer.

    `alias` is the normalized module name as written in the file; `tensors` holds the raw
    parts by role (CPU, stored dtype); `alpha` is None when the file has none.
    """

    alias: str
    kind: str  # "lora" | "loha" | "lokr" | "diff" | "bias"
    tensors: dict[str, torch.Tensor]
    alpha: float | None = None
    keys: list[str] = field(default_factory=list)

    # -- structure ------------------------------------------------------------------------

    @property
    def params(self) -> tuple[str, ...]:
        """Which parameters of the target layer this module changes."""
        out: list[str] = []
        if self.kind != "bias":
            out.append("weight")
        if any(role in self.tensors for role in _BIAS_ROLES):
            out.append("bias")
        return tuple(out)

    @property
    def dora_scale(self) -> torch.Tensor | None:
        return self.tensors.get("dora_scale", self.tensors.get("magnitude"))

    @property
    def is_dora(self) -> bool:
        return self.dora_scale is not None

    @property
    def is_conv(self) -> bool:
        """A 3x3 (or larger) convolution change: what makes a LoRA a LoCon."""
        shape = self.natural_shape("weight") if self.kind != "bias" else ()
        return len(shape) == 4 and any(k > 1 for k in shape[2:])

    @property
    def rank(self) -> int | None:
        t = self.tensors
        if self.kind == "lora":
            return int(t["down"].shape[0])
        if self.kind == "loha":
            return int(t["hada_w1_b"].shape[0])
        if self.kind == "lokr":
            rank = None
            if "lokr_w1_b" in t:
                rank = int(t["lokr_w1_b"].shape[0])
            if "lokr_w2_b" in t:
                rank = int(t["lokr_w2_b"].shape[0])
            return rank
        return None

    @property
    def scale(self) -> float:
        """alpha / rank, the factor every trainer bakes into the forward pass."""
        rank = self.rank
        # alpha 0 or missing means "no scaling" in kohya and LyCORIS alike.
        if rank is None or not self.alpha:
            return 1.0
        return self.alpha / rank

    def natural_shape(self, param: str) -> tuple[int, ...]:
        """The shape this module's ΔW comes out in, before reshaping onto the layer."""
        t = self.tensors
        if param == "bias":
            part = t.get("diff_b", t.get("b_norm"))
            return tuple(part.shape) if part is not None else ()
        if self.kind == "lora":
            up, down, mid = t["up"], t["down"], t.get("mid")
            kernel = tuple(mid.shape[2:]) if mid is not None else tuple(down.shape[2:])
            return (int(up.shape[0]), int(down.shape[1]), *kernel)
        if self.kind == "loha":
            w1a, w1b, t1 = t["hada_w1_a"], t["hada_w1_b"], t.get("hada_t1")
            if t1 is not None:
                return (int(w1a.shape[1]), int(w1b.shape[1]), *t1.shape[2:])
            return (int(w1a.shape[0]), int(w1b.shape[1]))
        if self.kind == "lokr":
            a, b = self._lokr_w1_shape()
            w2 = self._lokr_w2_shape()
            if len(w2) == 4:
                return (a * w2[0], b * w2[1], *w2[2:])
            return (a * w2[0], b * w2[1])
        part = t["diff"] if "diff" in t else t["w_norm"]
        return tuple(part.shape)

    def _lokr_w1_shape(self) -> tuple[int, int]:
        t = self.tensors
        if "lokr_w1" in t:
            return tuple(t["lokr_w1"].shape[:2])  # type: ignore[return-value]
        return (int(t["lokr_w1_a"].shape[0]), int(t["lokr_w1_b"].shape[1]))

    def _lokr_w2_shape(self) -> tuple[int, ...]:
        t = self.tensors
        if "lokr_w2" in t:
            return tuple(t["lokr_w2"].shape)
        if "lokr_t2" in t:
            return (int(t["lokr_w2_a"].shape[1]), int(t["lokr_w2_b"].shape[1]), *t["lokr_t2"].shape[2:])
        return (int(t["lokr_w2_a"].shape[0]), int(t["lokr_w2_b"].shape[1]))

    def fits(self, param: str, shape: tuple[int, ...]) -> bool:
        """Whether ΔW for `param` can be laid onto a parameter of `shape`.

        The output dimension must agree and the element counts must match: this accepts a
        1x1-conv LoRA on a Linear proj_in (and back) but refuses an SD 1.5 LoRA on SDXL.
        """
        natural = self.natural_shape(param)
        if not natural or not shape:
            return False
        if param == "bias":
            return math.prod(natural) == math.prod(shape)
        if natural[0] != shape[0] or math.prod(natural) != math.prod(shape):
            return False
        if self.is_dora:
            return self.dora_axis(shape) is not None
        return True

    def dora_axis(self, weight_shape: tuple[int, ...]) -> str | None:
        """"output" or "input": which channels the DoRA magnitude rescales (None: misfit).

        peft's lora_magnitude_vector is always per output channel, though conv layers store
        it as (1, out, 1, 1); kohya / LyCORIS dora_scale says its axis by its shape:
        (out, 1, ...) per output channel, (1, in, ...) per input channel (early LyCORIS).
        """
        if "magnitude" in self.tensors:
            return "output" if self.tensors["magnitude"].numel() == weight_shape[0] else None
        scale_shape = tuple(self.tensors["dora_scale"].shape)
        numel = math.prod(scale_shape)
        in_dim = weight_shape[1] if len(weight_shape) > 1 else 1
        if len(scale_shape) >= 2 and scale_shape[0] == 1 and numel == in_dim and weight_shape[0] != 1:
            return "input"
        if scale_shape and scale_shape[0] == weight_shape[0] and numel == weight_shape[0]:
            return "output"
        return None

    # -- maths ----------------------------------------------------------------------------

    def delta(
        self,
        param: str,
        shape: tuple[int, ...],
        *,
        device: torch.device | str | None = None,
        multiplier: float = 1.0,
    ) -> torch.Tensor:
        """ΔW (or Δb) in fp32 on `device`, reshaped to `shape`, times scale * multiplier.

        Scale and multiplier are folded into one factor, so the result for -w is exactly
        minus the result for +w.
        """

        def f(role: str) -> torch.Tensor:
            return self.tensors[role].to(device=device, dtype=torch.float32)

        t = self.tensors
        if param == "bias":
            raw = f("diff_b" if "diff_b" in t else "b_norm")
            factor = multiplier
        else:
            raw = self._raw_weight_delta(f)
            factor = self.scale * multiplier
        raw = raw.reshape(shape)
        if factor != 1.0:
            raw = raw * factor
        return raw

    def _raw_weight_delta(self, f: Callable[[str], torch.Tensor]) -> torch.Tensor:
        t = self.tensors
        if self.kind == "lora":
            up = f("up").flatten(1)
            if "mid" in t:
                # CP decomposition: up (out,r) · mid (r,r,kh,kw) · down (r,in)
                return torch.einsum("o a, a b h w, b i -> o i h w", up, f("mid"), f("down").flatten(1))
            return up @ f("down").flatten(1)
        if self.kind == "loha":
            if "hada_t1" in t:
                m1 = _tucker(f("hada_t1"), f("hada_w1_a"), f("hada_w1_b"))
                m2 = _tucker(f("hada_t2"), f("hada_w2_a"), f("hada_w2_b"))
            else:
                m1 = f("hada_w1_a") @ f("hada_w1_b")
                m2 = f("hada_w2_a") @ f("hada_w2_b")
            return m1 * m2
        if self.kind == "lokr":
            w1 = f("lokr_w1") if "lokr_w1" in t else f("lokr_w1_a") @ f("lokr_w1_b")
            if "lokr_w2" in t:
                w2 = f("lokr_w2")
            elif "lokr_t2" in t:
                w2 = _tucker(f("lokr_t2"), f("lokr_w2_a"), f("lokr_w2_b"))
            else:
                w2 = f("lokr_w2_a") @ f("lokr_w2_b")
            if w2.dim() == 4 and w1.dim() == 2:
                w1 = w1[:, :, None, None]
            return torch.kron(w1.contiguous(), w2.contiguous())
        return f("diff" if "diff" in t else "w_norm")


def _tucker(core: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    # LyCORIS' rebuild: core (r,r,kh,kw), wa (r,out), wb (r,in) -> (out,in,kh,kw)
    return torch.einsum("i j k l, j r, i p -> p r k l", core, wb, wa)


def dora_weight(
    module: LoraModule, weight: torch.Tensor, *, multiplier: float, device: torch.device | str | None = None
) -> torch.Tensor:
    """The change DoRA makes to `weight` (fp32, the live weight incl. earlier LoRAs).

    V = W + scale·ΔW is normalised per channel and rescaled by the learned magnitude m; the
    user weight s blends linearly as in ComfyUI's weight_decompose: W' = W + s·(m·V/‖V‖ − W).
    The norm is taken of V (the adapted weight), as in the DoRA paper, LyCORIS and peft;
    ComfyUI's output-axis branch takes ‖W‖ instead, a known bug (Comfy-Org/ComfyUI#15458).
    The axis is `LoraModule.dora_axis`.
    """
    shape = tuple(weight.shape)
    v = weight + module.delta("weight", shape, device=device)
    m = module.dora_scale.to(device=device, dtype=torch.float32)  # type: ignore[union-attr]
    out_dim = shape[0]
    in_dim = shape[1] if len(shape) > 1 else 1
    rest = [1] * (len(shape) - 1)
    eps = torch.finfo(torch.float32).eps
    if module.dora_axis(shape) == "input":
        norm = v.transpose(0, 1).reshape(in_dim, -1).norm(dim=1).reshape(1, in_dim, *rest[1:]) + eps
        m = m.reshape(1, in_dim, *rest[1:])
    else:
        norm = v.reshape(out_dim, -1).norm(dim=1).reshape(out_dim, *rest) + eps
        m = m.reshape(out_dim, *rest)
    change: torch.Tensor = v * (m / norm) - weight
    return change * multiplier if multiplier != 1.0 else change


@dataclass
class ParsedLora:
    """A LoRA file, parsed: its modules by normalized alias, and what could not be read."""

    name: str
    modules: dict[str, LoraModule]
    unparsed_keys: list[str]
    kind: FileKind
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for m in self.modules.values() for t in m.tensors.values())


def split_key(key: str) -> tuple[str, str] | None:
    """(normalized module alias, role) for a recognised key, else None."""
    split = split_raw_key(key)
    return None if split is None else (normalize_alias(split[0]), split[1])


def _classify(roles: set[str]) -> str | None:
    """The algorithm of one module from the roles present, or None if incomplete."""
    weight_kinds = []
    if roles & LORA_PARTS:
        weight_kinds.append("lora" if {"up", "down"} <= roles else None)
    if roles & LOHA_PARTS:
        complete = {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"} <= roles
        tucker_ok = ("hada_t1" in roles) == ("hada_t2" in roles)
        weight_kinds.append("loha" if complete and tucker_ok else None)
    if roles & LOKR_PARTS:
        w1 = "lokr_w1" in roles or {"lokr_w1_a", "lokr_w1_b"} <= roles
        w2 = "lokr_w2" in roles or {"lokr_w2_a", "lokr_w2_b"} <= roles
        weight_kinds.append("lokr" if w1 and w2 else None)
    if roles & _WEIGHT_DIFF_ROLES:
        weight_kinds.append("diff")
    if len(weight_kinds) > 1 or None in weight_kinds:
        return None
    if weight_kinds:
        return weight_kinds[0]
    return "bias" if roles & _BIAS_ROLES else None


def _file_kind(modules: Mapping[str, LoraModule]) -> FileKind:
    # the scanner's rule (engine/files/lora_keys.py), for callers with no stored kind
    parts = {role for m in modules.values() for role in m.tensors}
    if any(m.alpha is not None for m in modules.values()):
        parts.add("alpha")
    conv = any(m.kind == "lora" and m.is_conv for m in modules.values())
    return lora_kind(parts, conv=conv) or FileKind.UNKNOWN


def _check_consistent(name: str, module: LoraModule) -> None:
    t = module.tensors
    problem = None
    if module.rank == 0:
        problem = "rank 0"  # alpha / rank would divide by zero
    elif module.kind == "lora":
        up, down, mid = t["up"], t["down"], t.get("mid")
        rank = down.shape[0]
        if up.dim() < 2 or down.dim() < 2:
            problem = "lora_up / lora_down must be matrices"
        elif up.shape[1] != (mid.shape[0] if mid is not None else rank):
            problem = f"lora_up has rank {up.shape[1]}, lora_down has rank {rank}"
        elif mid is not None and mid.shape[1] != rank:
            problem = f"lora_mid expects rank {mid.shape[1]}, lora_down has rank {rank}"
    elif module.kind == "loha" and "hada_t1" not in t:
        if t["hada_w1_a"].shape[1] != t["hada_w1_b"].shape[0] or t["hada_w2_a"].shape[1] != t["hada_w2_b"].shape[0]:
            problem = "hada_w*_a and hada_w*_b ranks differ"
        elif (t["hada_w1_a"].shape[0], t["hada_w1_b"].shape[1]) != (t["hada_w2_a"].shape[0], t["hada_w2_b"].shape[1]):
            problem = "the two Hadamard factors have different shapes"
    if problem is not None:
        raise LoraFormatError(_MSG_INCONSISTENT, name=name, module=module.alias, detail=problem)


def _all_finite(tensor: torch.Tensor) -> bool:
    # torch has no isfinite for the float8 formats some LoRAs are stored in (one byte per
    # value: upcasting costs little).
    if tensor.element_size() == 1:
        tensor = tensor.to(torch.float16)
    return bool(torch.isfinite(tensor).all())


def load_lora(path: Path | str, *, name: str | None = None, kind: FileKind | None = None) -> ParsedLora:
    """Read a .safetensors LoRA into a ParsedLora (tensors stay on the CPU, stored dtype).

    `kind` is what the library stored at scan time; when given it is trusted, not re-derived.
    """
    path = Path(path)
    display = name or path.stem
    if path.suffix.lower() in REFUSED_SUFFIXES:
        raise UnsafeFileError(_MSG_PICKLE, name=display, suffix=path.suffix)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except FileNotFoundError as exc:
        raise CorruptFileError(_MSG_UNREADABLE, name=display, reason="file not found") from exc
    except Exception as exc:  # safetensors raises its own error type, OSError or ValueError
        raise CorruptFileError(_MSG_UNREADABLE, name=display, reason=type(exc).__name__) from exc
    return parse_state_dict(tensors, name=display, metadata=metadata, path=path, kind=kind)


def parse_state_dict(
    tensors: Mapping[str, torch.Tensor],
    *,
    name: str,
    metadata: Mapping[str, str] | None = None,
    path: Path | None = None,
    kind: FileKind | None = None,
) -> ParsedLora:
    """Group a LoRA state dict into modules (see `load_lora`)."""

    metadata = dict(metadata or {})
    grouped: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    unparsed: list[str] = []
    peft_style: set[str] = set()
    for key, tensor in tensors.items():
        split = split_key(key)
        if split is None:
            unparsed.append(key)
            continue
        if split[1] in UNSUPPORTED:
            raise LoraFormatError(_MSG_UNSUPPORTED, name=name, algorithm=UNSUPPORTED[split[1]], key=key)
        alias, role = split
        if tensor.is_floating_point() and not _all_finite(tensor):
            raise LoraFormatError(_MSG_NOT_FINITE, name=name, key=key)
        if role in grouped.get(alias, {}):
            # Two spellings of the same part in one file: ambiguous, so report both.
            unparsed.append(key)
            continue
        grouped.setdefault(alias, {})[role] = (key, tensor)
        if key.endswith(DIFFUSERS_SUFFIXES):
            peft_style.add(alias)

    modules: dict[str, LoraModule] = {}
    for alias, parts in grouped.items():
        roles = set(parts) - {"alpha", "dora_scale", "magnitude"}
        algorithm = _classify(roles)
        keys = sorted(key for key, _ in parts.values())
        if algorithm is None:
            unparsed.extend(keys)
            continue
        alpha = None
        if "alpha" in parts:
            alpha = float(parts["alpha"][1].float().flatten()[0].item())
        module_tensors = {role: t for role, (_, t) in parts.items() if role != "alpha"}
        module = LoraModule(alias=alias, kind=algorithm, tensors=module_tensors, alpha=alpha, keys=keys)
        if alpha is None and alias in peft_style and module.rank:
            module.alpha = peft_alpha(metadata, alias, module.rank)
        _check_consistent(name, module)
        modules[alias] = module
    return ParsedLora(
        name=name,
        modules=modules,
        unparsed_keys=sorted(unparsed),
        kind=kind or _file_kind(modules),
        metadata=metadata,
        path=path,
    )
