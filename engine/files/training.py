"""What a LoRA's header says about its training: kohya `ss_*` keys and `modelspec.*` keys.

Formats follow kohya-ss/sd-scripts (train_network.py writes every value as `str(v)`, so
None is "None", booleans "True"/"False", tuples "(1024, 1024)", and dicts JSON text;
library/sai_model_spec.py writes `modelspec.*`). Other trainers (OneTrainer, ai-toolkit,
SimpleTuner, merge and resize scripts) write subsets and variants of the same keys, so
every field is parsed defensively: garbage gives None or empty, never an exception.
Metadata is a claim by whoever wrote the file; the tensors are the ground truth.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.kinds import Architecture

TAG_FREQUENCY_CAP = 500

_HEX64 = re.compile(r"^(?:0x)?([0-9a-fA-F]{64})$")
_HEX8 = re.compile(r"^(?:0x)?([0-9a-fA-F]{8})$")
_NONE_STRINGS = {"", "none", "null", "nan", "undefined"}


@dataclass
class TrainingMetadata:
    base_model_version: str | None = None  # ss_base_model_version, as written
    sd_model_name: str | None = None  # ss_sd_model_name: the checkpoint it was trained on
    new_sd_model_hash: str | None = None  # SHA256 of that checkpoint, uppercase
    sd_model_hash: str | None = None  # its legacy 8-hex A1111 hash, uppercase
    output_name: str | None = None
    network_module: str | None = None  # networks.lora, lycoris.kohya, ...
    network_dim: int | None = None
    network_alpha: float | None = None
    network_args: dict[str, str] = field(default_factory=dict)
    training_comment: str | None = None
    tag_frequency: dict[str, int] = field(default_factory=dict)  # merged, top TAG_FREQUENCY_CAP
    modelspec: dict[str, str] = field(default_factory=dict)  # modelspec.* without the prefix
    trigger_words: list[str] = field(default_factory=list)
    resolution: tuple[int, int] | None = None
    prediction_type: str | None = None  # "v", "epsilon", or another lowercase word as written
    zero_terminal_snr: bool = False
    clip_skip: int | None = None
    architecture_hint: Architecture | None = None
    architecture_hint_source: str | None = None  # e.g. "ss_base_model_version=sdxl_base_v1-0"

    @property
    def has_training_info(self) -> bool:
        return any(
            (self.base_model_version, self.sd_model_name, self.new_sd_model_hash, self.network_module, self.modelspec)
        )

    def top_tags(self, n: int = 10) -> list[str]:
        """The `n` most frequent training tags, most frequent first."""
        ranked = sorted(self.tag_frequency.items(), key=lambda kv: (-kv[1], kv[0]))
        return [tag for tag, _ in ranked[: max(0, n)]]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["architecture_hint"] = self.architecture_hint.value if self.architecture_hint else None
        data["resolution"] = list(self.resolution) if self.resolution else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingMetadata:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("architecture_hint"):
            values["architecture_hint"] = Architecture(values["architecture_hint"])
        if values.get("resolution"):
            values["resolution"] = tuple(values["resolution"])
        return cls(**values)


def parse_training_metadata(metadata: Mapping[str, str]) -> TrainingMetadata:
    """Parse a safetensors header's `__metadata__`; never raises."""
    meta = TrainingMetadata()
    try:
        md = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in dict(metadata or {}).items()}
    except (TypeError, ValueError):
        return meta
    for step in _STEPS:
        try:
            step(meta, md)
        except Exception:
            continue
    return meta


# --- value helpers --------------------------------------------------------------------


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value.lower() in _NONE_STRINGS else value


# Bounds for numbers read from metadata (strangers write "1e300"): far beyond any real
# rank, alpha, step count or clip skip, and well inside what SQLite and arithmetic hold.
INT_LIMIT = 2**31
FLOAT_LIMIT = 1e12


def _int(value: str | None) -> int | None:
    f = _float(value)
    if f is None or not f.is_integer() or abs(f) > INT_LIMIT:
        return None
    return int(f)


def _float(value: str | None) -> float | None:
    text = _text(value)
    if text is None or len(text) > 64:  # no real number is written with more digits
        return None
    try:
        f = float(text)
    except ValueError:
        return None
    return f if math.isfinite(f) and abs(f) <= FLOAT_LIMIT else None


def _bool(value: str | None) -> bool:
    text = _text(value)
    return text is not None and text.lower() in {"true", "1", "yes", "on"}


def _json(value: str | None) -> Any:
    text = _text(value)
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# --- the fields -----------------------------------------------------------------------


def _identity(meta: TrainingMetadata, md: dict[str, str]) -> None:
    meta.base_model_version = _text(md.get("ss_base_model_version"))
    meta.sd_model_name = _text(md.get("ss_sd_model_name"))
    meta.output_name = _text(md.get("ss_output_name"))
    meta.network_module = _text(md.get("ss_network_module"))
    meta.training_comment = _text(md.get("ss_training_comment"))


def _hashes(meta: TrainingMetadata, md: dict[str, str]) -> None:
    m = _HEX64.match((md.get("ss_new_sd_model_hash") or "").strip())
    meta.new_sd_model_hash = m.group(1).upper() if m else None
    m = _HEX8.match((md.get("ss_sd_model_hash") or "").strip())
    meta.sd_model_hash = m.group(1).upper() if m else None


def _network(meta: TrainingMetadata, md: dict[str, str]) -> None:
    # resize scripts write "Dynamic" for both when ranks differ per module
    meta.network_dim = _int(md.get("ss_network_dim"))
    meta.network_alpha = _float(md.get("ss_network_alpha"))
    args = _json(md.get("ss_network_args"))
    if isinstance(args, dict):
        meta.network_args = {
            str(k): v if isinstance(v, str) else json.dumps(v) for k, v in args.items()
        }


def _tags(meta: TrainingMetadata, md: dict[str, str]) -> None:
    parsed = _json(md.get("ss_tag_frequency"))
    if not isinstance(parsed, dict):
        return
    merged: dict[str, int] = {}
    for per_dir in parsed.values():
        if not isinstance(per_dir, dict):
            continue
        for tag, count in per_dir.items():
            # older sd-scripts kept the space after each caption comma: " 1girl"
            name = str(tag).strip()
            n = _count(count)
            if name and n > 0:
                merged[name] = merged.get(name, 0) + n
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:TAG_FREQUENCY_CAP]
    meta.tag_frequency = dict(ranked)


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, min(value, INT_LIMIT))
    if isinstance(value, float) and math.isfinite(value):
        return max(0, min(int(value), INT_LIMIT))
    if isinstance(value, str):
        f = _float(value)
        return max(0, min(int(f), INT_LIMIT)) if f is not None else 0
    return 0


def _modelspec(meta: TrainingMetadata, md: dict[str, str]) -> None:
    meta.modelspec = {k[len("modelspec.") :]: v for k, v in md.items() if k.startswith("modelspec.")}
    phrase = _text(meta.modelspec.get("trigger_phrase"))
    if phrase:
        seen: dict[str, None] = {}
        for word in phrase.split(","):
            word = word.strip()
            if word and word.lower() not in {w.lower() for w in seen}:
                seen[word] = None
        meta.trigger_words = list(seen)


def _resolution(meta: TrainingMetadata, md: dict[str, str]) -> None:
    for raw in (md.get("modelspec.resolution"), md.get("ss_resolution")):
        found = _parse_resolution(raw)
        if found:
            meta.resolution = found
            return
    datasets = _json(md.get("ss_datasets"))
    if isinstance(datasets, list):
        for ds in datasets:
            if isinstance(ds, dict):
                found = _parse_resolution(json.dumps(ds.get("resolution")))
                if found:
                    meta.resolution = found
                    return


def _parse_resolution(raw: str | None) -> tuple[int, int] | None:
    text = _text(raw)
    if text is None:
        return None
    numbers = [int(n) for n in re.findall(r"\d+", text)[:3]]
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or not all(64 <= n <= 16384 for n in numbers):
        return None
    return numbers[0], numbers[1]


def _prediction(meta: TrainingMetadata, md: dict[str, str]) -> None:
    spec = _text(md.get("modelspec.prediction_type"))
    if spec:
        spec = spec.lower()
        meta.prediction_type = "v" if spec in {"v", "v_prediction", "v-prediction", "vpred", "v_pred"} else spec
    if _bool(md.get("ss_v_parameterization")):
        meta.prediction_type = "v"
    # kohya names v-prediction bases "sd_v2_v"; modelspec "stable-diffusion-v2-768-v"
    base = (_text(md.get("ss_base_model_version")) or "").lower()
    arch = (_text(md.get("modelspec.architecture")) or "").lower().split("/")[0]
    if meta.prediction_type is None and (base.endswith("_v") or arch.endswith("-v")):
        meta.prediction_type = "v"
    meta.zero_terminal_snr = _bool(md.get("ss_zero_terminal_snr"))
    meta.clip_skip = _int(md.get("ss_clip_skip")) or _int(md.get("modelspec.encoder_layer"))


def _architecture(meta: TrainingMetadata, md: dict[str, str]) -> None:
    candidates = (
        ("modelspec.architecture", arch_from_modelspec),
        ("ss_base_model_version", arch_from_ss_base_model_version),
    )
    for key, parse in candidates:
        value = _text(md.get(key))
        if value and not _ai_toolkit_default(md, key, value):
            arch = parse(value)
            if arch is not None:
                meta.architecture_hint = arch
                meta.architecture_hint_source = f"{key}={value}"
                return
    if _bool(md.get("ss_v2")):
        meta.architecture_hint = Architecture.SD2
        meta.architecture_hint_source = "ss_v2=True"


def _ai_toolkit_default(md: dict[str, str], key: str, value: str) -> bool:
    # ai-toolkit (ostris) long wrote "sd_1.5" for every model that was not SD 2 or SDXL,
    # so the first wave of Flux LoRAs claims SD 1.5: from it, that word says nothing
    if key != "ss_base_model_version" or value.lower() != "sd_1.5":
        return False
    software = _json(md.get("software"))
    return isinstance(software, dict) and "ai-toolkit" in str(software.get("name", "")).lower()


_STEPS = (_identity, _hashes, _network, _tags, _modelspec, _resolution, _prediction, _architecture)


# --- architecture words ---------------------------------------------------------------

# Architectures we know of but do not generate with (video models, other DiTs).
_OTHER_WORDS = (
    "flux2", "flux-2", "flux.2", "flux_2", "chroma", "lumina", "hunyuan", "wan", "hidream",
    "qwen", "kolors", "pixart", "cascade", "cosmos", "ltx", "mochi", "cogvideo", "anima",
    "zimage", "z-image", "z_image", "sana", "omnigen", "minimax", "kandinsky", "playground-v3",
    "svd", "stable-video", "animatediff", "hunyuanvideo", "cogvideox", "ltxv", "wan2",
)  # fmt: skip


def _other(text: str) -> bool:
    # whole words only: "anima" is a model, "animagine" an SDXL checkpoint
    return any(re.search(rf"(^|[^a-z0-9]){re.escape(w)}($|[^a-z])", text) for w in _OTHER_WORDS)


def arch_from_ss_base_model_version(value: str) -> Architecture | None:
    """Map kohya's ss_base_model_version ("sd_v1", "sd_v2_v", "sdxl_base_v1-0", "flux1", ...)."""
    v = value.strip().lower()
    if not v or v in _NONE_STRINGS:
        return None
    if _other(v):
        return Architecture.OTHER
    if v.startswith("sdxl") or v.startswith("sd_xl"):
        return Architecture.SDXL
    if v.startswith(("sd3", "sd_3", "sd_v3", "sd-3")):
        return Architecture.SD3
    if v.startswith("flux"):
        return Architecture.FLUX
    if v.startswith(("auraflow", "aura_flow", "aura-flow", "pony_v7", "pony-v7")):
        return Architecture.AURAFLOW
    if re.match(r"^(sd[_ ]?)?v?1([._ -]|$)", v) or v in {"sd1", "sd15", "sd_v1", "v1"}:
        return Architecture.SD1
    if re.match(r"^(sd[_ ]?)?v?2([._ -]|$)", v) or v in {"sd2", "sd21", "sd_v2", "v2"}:
        return Architecture.SD2
    return None


def arch_from_modelspec(value: str) -> Architecture | None:
    """Map modelspec.architecture ("stable-diffusion-xl-v1-base/lora", "flux-1-dev/lora", ...)."""
    v = value.strip().lower().split("/")[0]
    if not v:
        return None
    if _other(v):
        return Architecture.OTHER
    if v.startswith(("stable-diffusion-xl", "sdxl")):
        return Architecture.SDXL
    if v.startswith(("stable-diffusion-v1", "stable-diffusion-1")):
        return Architecture.SD1
    if v.startswith(("stable-diffusion-v2", "stable-diffusion-2")):
        return Architecture.SD2
    if v.startswith(("stable-diffusion-v3", "stable-diffusion-3", "sd3")):
        return Architecture.SD3
    if v.startswith(("flux-1", "flux.1", "flux1")):
        return Architecture.FLUX
    if v.startswith(("auraflow", "aura-flow", "pony-v7")):
        return Architecture.AURAFLOW
    return None
