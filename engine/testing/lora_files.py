"""Builders of small LoRA files for the tiny SDXL pipeline (tests, the demo, benchmarks).

The files use real-world key naming (kohya SGM, kohya diffusers, peft / diffusers) for the
tiny pipeline's modules, and random but seeded weights, strong enough to visibly change the
tiny model's images. The same seed gives the same numbers in every naming, so the namings
can be checked against each other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from engine.lora.formats import LoraModule
from engine.lora.keys import clip_canonical_name, sgm_unet_name, unet_block_map

VARIANTS = ("lora", "locon", "loha", "lokr", "dora")
NAMINGS = ("kohya_sgm", "kohya_diffusers", "peft", "peft_base_model")

_NETWORK_MODULE = {
    "lora": "networks.lora",
    "locon": "lycoris.kohya",
    "loha": "lycoris.kohya",
    "lokr": "lycoris.kohya",
    "dora": "lycoris.kohya",
}
_TEXT_TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")
_CONV_PARTS = ("conv1", "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv")


def lora_targets(pipe: Any, *, convs: bool, text_encoders: bool) -> list[tuple[str, str, torch.nn.Module]]:
    """(component, module name as LoRA files spell it, module) a tiny LoRA trains, in order.

    Attention layers always (what kohya's default LoRA trains); resnet / sampler convs and
    time-embedding projections too when `convs` (what makes it a LoCon); CLIP attention and
    MLP layers of both text encoders when `text_encoders`.
    """
    targets: list[tuple[str, str, torch.nn.Module]] = []
    for name, module in pipe.unet.named_modules():
        if (isinstance(module, torch.nn.Linear) and ".attentions." in name) or (convs and isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and name.endswith(_CONV_PARTS)):
            targets.append(("unet", name, module))
    if text_encoders:
        for component in ("text_encoder", "text_encoder_2"):
            for name, module in getattr(pipe, component).named_modules():
                if name.endswith(_TEXT_TARGETS):
                    targets.append((component, clip_canonical_name(getattr(pipe, component), name), module))
    return targets


def _kohya_name(component: str, name: str, naming: str, block_map: Mapping[str, str]) -> str:
    if component == "unet":
        if naming == "kohya_sgm":
            sgm = sgm_unet_name(name, block_map)
            if sgm is None:
                raise ValueError(f"no SGM name for {name}")
            name = sgm
        return "lora_unet_" + name.replace(".", "_")
    prefix = "lora_te1_" if component == "text_encoder" else "lora_te2_"
    return prefix + name.replace(".", "_")


def _peft_name(component: str, name: str, naming: str) -> str:
    if naming == "peft_base_model":
        return f"base_model.model.{name}"
    return f"{component}.{name}"


def _factor(n: int) -> int:
    for f in (4, 2):
        if n % f == 0 and n > f:
            return f
    return 1


def _weight(module: torch.nn.Module) -> torch.Tensor:
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return weight


def _shape(module: torch.nn.Module) -> tuple[int, ...]:
    return tuple(_weight(module).shape)


def _module_parts(
    variant: str, shape: tuple[int, ...], rank: int, gen: torch.Generator, tucker: bool
) -> dict[str, torch.Tensor]:
    """Raw random parts for one module, before magnitude calibration."""

    def rnd(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen)

    out, inp = shape[0], shape[1]
    kernel = shape[2:]
    big_kernel = bool(kernel) and any(k > 1 for k in kernel)
    if variant in ("lora", "locon", "dora"):
        if tucker and big_kernel:
            return {"down": rnd(rank, inp, 1, 1), "mid": rnd(rank, rank, *kernel), "up": rnd(out, rank, 1, 1)}
        if kernel:
            return {"down": rnd(rank, inp, *kernel), "up": rnd(out, rank, 1, 1)}
        return {"down": rnd(rank, inp), "up": rnd(out, rank)}
    if variant == "loha":
        if tucker and big_kernel:
            return {
                "hada_w1_a": rnd(rank, out), "hada_w1_b": rnd(rank, inp), "hada_t1": rnd(rank, rank, *kernel),
                "hada_w2_a": rnd(rank, out), "hada_w2_b": rnd(rank, inp), "hada_t2": rnd(rank, rank, *kernel),
            }
        fan_in = inp * math.prod(kernel)
        return {
            "hada_w1_a": rnd(out, rank), "hada_w1_b": rnd(rank, fan_in),
            "hada_w2_a": rnd(out, rank), "hada_w2_b": rnd(rank, fan_in),
        }
    # LoKr: w1 is the small Kronecker factor, w2 the big one.
    a, b = _factor(out), _factor(inp)
    c, d = out // a, inp // b
    if not kernel:  # linear: full w1, decomposed w2
        return {"lokr_w1": rnd(a, b), "lokr_w2_a": rnd(c, rank), "lokr_w2_b": rnd(rank, d)}
    if tucker and big_kernel:
        return {
            "lokr_w1": rnd(a, b), "lokr_w2_a": rnd(rank, c), "lokr_w2_b": rnd(rank, d),
            "lokr_t2": rnd(rank, rank, *kernel),
        }
    # conv: decomposed w1, full 4-D w2 (w1 is broadcast over the kernel)
    return {"lokr_w1_a": rnd(a, rank), "lokr_w1_b": rnd(rank, b), "lokr_w2": rnd(c, d, *kernel)}


_CALIBRATED_PART = {"up": "up", "hada_w1_a": "hada_w1_a", "lokr_w1": "lokr_w1", "lokr_w1_a": "lokr_w1_a"}


def _calibrate(parts: dict[str, torch.Tensor], kind: str, shape: tuple[int, ...], target_std: float) -> None:
    # ΔW is linear in one factor of each algorithm: scale that factor so ΔW (at scale 1)
    # has the requested spread, whatever the rank, kernel or decomposition.
    module = LoraModule(alias="calibration", kind=kind, tensors=parts)
    std = float(module.delta("weight", shape).std())
    factor = target_std / std if std > 0 else 1.0
    for role in _CALIBRATED_PART:
        if role in parts:
            parts[role] = parts[role] * factor
            return


_PEFT_SUFFIX = {"down": ".lora_A.weight", "up": ".lora_B.weight"}
_KOHYA_SUFFIX = {"down": ".lora_down.weight", "up": ".lora_up.weight", "mid": ".lora_mid.weight"}


def write_tiny_lora(
    path: Path | str,
    pipe: Any,
    *,
    variant: str = "lora",
    naming: str = "kohya_sgm",
    rank: int = 4,
    alpha: float | None = None,
    seed: int = 0,
    scale: float = 1.0,
    metadata: Mapping[str, str] | None = None,
    text_encoders: bool = True,
    extra_unmatched_keys: int = 0,
    tucker: bool = False,
    dora_on_output: bool = True,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write a LoRA for the tiny pipeline's modules and return its path.

    variant: lora (attention layers), locon (+ resnet and sampler convs), loha, lokr, dora
      (LoRA + LoCon layers with a DoRA magnitude; per output channel unless
      `dora_on_output=False`, the early LyCORIS per-input-channel layout).
    naming: kohya_sgm (`lora_unet_input_blocks_4_1_...`, what kohya's SDXL trainer writes),
      kohya_diffusers (`lora_unet_down_blocks_1_attentions_0_...`), peft (`unet.down_blocks...
      .lora_A.weight`, alpha in diffusers' `lora_adapter_metadata` header), peft_base_model
      (`base_model.model.down_blocks...`, UNet only). LoHa / LoKr need a kohya naming.
    alpha: written when given (scale = alpha / rank); None means scale 1.
    scale: multiplies every ΔW: 1.0 changes the tiny model's images clearly.
    tucker: 3x3 convs use the CP / Tucker forms (lora_mid, hada_t1/t2, lokr_t2).
    extra_unmatched_keys: this many additional keys naming layers the pipeline lacks.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}")
    peft = naming.startswith("peft")
    if peft and variant in ("loha", "lokr"):
        raise ValueError("peft naming exists only for lora, locon and dora")
    if peft and variant == "dora" and not dora_on_output:
        raise ValueError("peft DoRA magnitudes are always per output channel")
    if naming == "peft_base_model":
        text_encoders = False  # unprefixed text-encoder names would be ambiguous

    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    block_map = unet_block_map(pipe.unet.config)
    kind = {"loha": "loha", "lokr": "lokr"}.get(variant, "lora")
    tensors: dict[str, torch.Tensor] = {}
    convs = variant != "lora"
    for component, name, module in lora_targets(pipe, convs=convs, text_encoders=text_encoders):
        shape = _shape(module)
        parts = _module_parts(variant, shape, rank, gen, tucker)
        fan_in = math.prod(shape[1:])
        _calibrate(parts, kind, shape, 0.5 * scale / math.sqrt(fan_in))
        if variant == "dora":
            parts["dora_scale"] = _dora_magnitude(_weight(module).detach().float(), gen, dora_on_output)
        if peft:
            base = _peft_name(component, name, naming)
            for role, t in parts.items():
                if role == "dora_scale":
                    # peft stores a Linear's magnitude as (out,), a Conv2d's as (1, out, 1, 1)
                    magnitude = t.reshape(1, -1, 1, 1) if t.dim() == 4 else t.flatten()
                    tensors[f"{base}.lora_magnitude_vector"] = magnitude
                else:
                    tensors[base + _PEFT_SUFFIX[role]] = t
        else:
            base = _kohya_name(component, name, naming, block_map)
            for role, t in parts.items():
                tensors[base + _KOHYA_SUFFIX.get(role, "." + role)] = t
            if alpha is not None:
                tensors[f"{base}.alpha"] = torch.tensor(float(alpha))
    for i in range(extra_unmatched_keys):
        block = i // 2
        role = "down" if i % 2 == 0 else "up"
        shape = (rank, 8) if role == "down" else (8, rank)
        if peft:
            tensors[f"unet.down_blocks.9.attentions.{block}.proj_in{_PEFT_SUFFIX[role]}"] = torch.zeros(shape)
        else:
            tensors[f"lora_unet_input_blocks_99_{block}_proj_in{_KOHYA_SUFFIX[role]}"] = torch.zeros(shape)
    tensors = {k: v.to(dtype).contiguous() for k, v in tensors.items()}

    header: dict[str, str] = {}
    if peft:
        if alpha is not None:
            config: dict[str, float | bool] = {}
            for component in ("unet", "text_encoder", "text_encoder_2"):
                config[f"{component}.r"] = rank
                config[f"{component}.lora_alpha"] = alpha
                config[f"{component}.use_dora"] = variant == "dora"
            header["lora_adapter_metadata"] = json.dumps(config, sort_keys=True)
        header["format"] = "pt"
    else:
        header.update(
            {
                "ss_network_module": _NETWORK_MODULE[variant],
                "ss_network_dim": str(rank),
                "ss_network_alpha": str(alpha if alpha is not None else rank),
                "ss_base_model_version": "sdxl_base_v1-0",
            }
        )
        if variant != "lora":
            algo = {"locon": "locon", "loha": "loha", "lokr": "lokr", "dora": "locon"}[variant]
            args = {"algo": algo, "dora_wd": variant == "dora"}
            header["ss_network_args"] = json.dumps(args)
    header.update(metadata or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=header)
    return path


def _dora_magnitude(weight: torch.Tensor, gen: torch.Generator, on_output: bool) -> torch.Tensor:
    # Trained magnitudes start at the base weight's channel norms and drift from there.
    out_dim, in_dim = weight.shape[0], weight.shape[1]
    rest = [1] * (weight.dim() - 2)
    if on_output:
        norm = weight.reshape(out_dim, -1).norm(dim=1).reshape(out_dim, 1, *rest)
    else:
        norm = weight.transpose(0, 1).reshape(in_dim, -1).norm(dim=1).reshape(1, in_dim, *rest)
    magnitude: torch.Tensor = norm * (1 + 0.2 * torch.randn(norm.shape, generator=gen))
    return magnitude


def write_mismatched_lora(path: Path | str, pipe: Any, *, rank: int = 4, seed: int = 0) -> Path:
    """A LoRA shaped like an SD 1.5 one forced onto SDXL: kohya diffusers-style UNet names
    (as SD 1.5 trainers write them) whose self-attention layers happen to fit, but whose
    cross-attention to_k / to_v read 768-wide text features (CLIP-L alone) where SDXL's read
    both encoders. The fitting modules come first, so a patcher that wrote before it
    validated would be caught."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    attn_linears = [(n, m) for n, m in pipe.unet.named_modules() if isinstance(m, torch.nn.Linear) and ".attn" in n]
    fitting = [(n, m) for n, m in attn_linears if ".attn1." in n]
    misfit = [(n, m) for n, m in attn_linears if n.endswith(("attn2.to_k", "attn2.to_v"))]
    for name, module in fitting:
        out, inp = module.weight.shape
        base = "lora_unet_" + name.replace(".", "_")
        tensors[base + ".lora_down.weight"] = torch.randn(rank, inp, generator=gen) * 0.1
        tensors[base + ".lora_up.weight"] = torch.randn(out, rank, generator=gen) * 0.1
        tensors[base + ".alpha"] = torch.tensor(float(rank))
    for name, module in misfit:
        out = module.weight.shape[0]
        base = "lora_unet_" + name.replace(".", "_")
        tensors[base + ".lora_down.weight"] = torch.randn(rank, 768, generator=gen) * 0.1
        tensors[base + ".lora_up.weight"] = torch.randn(out, rank, generator=gen) * 0.1
        tensors[base + ".alpha"] = torch.tensor(float(rank))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16) for k, v in tensors.items()}, str(path),
              metadata={"ss_network_module": "networks.lora", "ss_base_model_version": "sd_v1"})
    return path


_COMPONENTS_WITH_WEIGHTS = ("unet", "text_encoder", "text_encoder_2", "vae")


def snapshot_weights(pipe: Any) -> dict[str, torch.Tensor]:
    """A clone of every parameter and buffer of the pipeline, by "component.name"."""
    out: dict[str, torch.Tensor] = {}
    for component in _COMPONENTS_WITH_WEIGHTS:
        model = getattr(pipe, component, None)
        if model is None:
            continue
        for name, tensor in model.state_dict().items():
            out[f"{component}.{name}"] = tensor.detach().clone()
    return out


def _bits(t: torch.Tensor) -> torch.Tensor:
    # Compare bit patterns, not values: 0.0 == -0.0 and NaN != NaN would hide drift.
    if t.is_floating_point():
        return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    return t


def changed_weights(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor]) -> list[str]:
    """Names whose dtype or bits differ between two snapshots (same keys expected)."""
    if before.keys() != after.keys():
        raise ValueError("snapshots of different pipelines")
    return [
        k for k in before
        if before[k].dtype != after[k].dtype or not torch.equal(_bits(before[k]), _bits(after[k]))
    ]


def assert_bit_identical(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor]) -> None:
    differing = changed_weights(before, after)
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:3]}"
