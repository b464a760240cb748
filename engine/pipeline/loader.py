"""Loading an SDXL checkpoint into a diffusers pipeline, with no model hub involved.

A CivitAI checkpoint is one .safetensors file in the original SGM layout; diffusers turns it
into a pipeline with `from_single_file`, which needs a folder of configs and tokenizers that
it would normally download. We ship that folder (`sdxl_config/`, the published SDXL base 1.0
configs plus CLIP's vocabulary) and pick it, or the tiny pipeline's, from the tensor shapes in
the file's header. What a file is (architecture, v-prediction, VAE) was decided at scan
time by engine/files and is trusted here; files that are not SDXL base checkpoints are
refused before any weights are read, with a message naming what the file is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from engine.errors import CorruptFileError, LibraryError, LoracleError, UnsafeFileError
from engine.files.classify import CheckpointFacts
from engine.files.header import SafetensorsHeader, read_header
from engine.files.modelfile import inspect_header
from engine.i18n import Text
from engine.kinds import Architecture, FileKind
from engine.pipeline.clip_vocab import write_clip_vocab
from engine.pipeline.device import ensure_vae_upcast
from engine.pipeline.parts import load_open_clip, load_vae
from engine.pipeline.single_file import (
    CLIP_G_PREFIX,
    CLIP_L_PREFIX,
    UNET_PREFIX,
)
from engine.testing import tiny_sdxl as tiny

if TYPE_CHECKING:
    import torch

# diffusers assembles a pipeline's components at runtime, so statically its attributes
# (unet, vae, scheduler, ...) are unknown: pipelines are typed as Any here.
Pipeline: TypeAlias = Any

SDXL_CONFIG_DIR = Path(__file__).with_name("sdxl_config")
CheckpointFormat = Literal["safetensors", "diffusers"]

_CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"
_CLIP_L_POS = CLIP_L_PREFIX + "text_model.embeddings.position_embedding.weight"
_CLIP_G_POS = CLIP_G_PREFIX + "positional_embedding"
_REFINER_CLIP = "conditioner.embedders.0.model."


@dataclass(frozen=True)
class CheckpointSpec:
    """Which checkpoint to load; two equal specs mean the same loaded pipeline.

    `vae_path` names where to take the VAE from when the single file has none baked in:
    another SDXL checkpoint (its `first_stage_model.*`) or a VAE file of its own. `facts`
    is the library's classification of the file, which the loader trusts.
    """

    name: str
    path: Path
    format: CheckpointFormat = "safetensors"
    sha256: str | None = None
    v_prediction: bool = False
    vae_path: Path | None = None
    facts: CheckpointFacts | None = None  # stored at scan time; None: decided at load


# ------------------------------------------------------------------ classification ---


@dataclass(frozen=True)
class SingleFileInfo:
    """What the header of a single-file checkpoint says, before any weight is read."""

    header: SafetensorsHeader
    architecture: Architecture
    variant: Literal["sdxl", "tiny"] | None  # which config folder fits; None if not SDXL
    v_prediction: bool
    zero_terminal_snr: bool
    has_vae: bool = True


def inspect_single_file(
    path: Path, *, facts: CheckpointFacts | None = None, vae_elsewhere: bool = False
) -> SingleFileInfo:
    """Check that we can draw with a single-file checkpoint; LibraryError if not.

    `facts` is what the library stored at scan time and is trusted; without it (a script
    loading a file the library never saw) the same scanner decides them now. What is
    checked here is only the layout loading needs (tensors present, sizes we have configs
    for). `vae_elsewhere`: a VAE comes from another file, so a checkpoint without one is fine.
    """
    path = Path(path)
    # Only this exact suffix: diffusers picks its reader by extension and hands anything
    # else (".sft" included) to torch.load, i.e. to the unpickler.
    if path.suffix != ".safetensors":
        raise UnsafeFileError(
            Text(
                "“{name}” is not a .safetensors file. Pickled formats (.ckpt, .pt, .bin) can run "
                "code when opened, so Loracle never loads them; use the .safetensors download.",
                "「{name}」不是 .safetensors 檔案。pickle 格式（.ckpt、.pt、.bin）在開啟時可能執行程式碼，"
                "Loracle 一律不載入；請改用 .safetensors 版本。",
            ),
            name=path.name,
        )
    header = read_header(path)
    if facts is None:
        facts = inspect_header(header).facts
    arch = facts.architecture
    if facts.kind.is_lora:
        raise LibraryError(
            Text(
                "“{name}” is a LoRA, not a checkpoint. Put it in the LoRA folder and pick a "
                "checkpoint to draw with.",
                "「{name}」是 LoRA，不是主模型（checkpoint）。請把它放進 LoRA 資料夾，並選擇一個主模型來繪圖。",
            ),
            name=path.name,
        )
    if facts.kind is not FileKind.CHECKPOINT:
        arch = Architecture.UNKNOWN
    if arch is Architecture.UNKNOWN:
        raise LibraryError(
            Text(
                "“{name}” is not a checkpoint Loracle recognises. It draws with SDXL checkpoints "
                "only (SDXL 1.0, Pony, Illustrious, NoobAI and their merges).",
                "Loracle 無法辨識「{name}」這個主模型。Loracle 只能使用 SDXL 主模型繪圖"
                "（SDXL 1.0、Pony、Illustrious、NoobAI 及其合併模型）。",
            ),
            name=path.name,
        )
    if arch is not Architecture.SDXL:
        raise LibraryError(
            Text(
                "“{name}” looks like a {arch} checkpoint. Loracle draws with SDXL checkpoints "
                "only (SDXL 1.0, Pony, Illustrious, NoobAI and their merges).",
                "「{name}」看起來是 {arch} 主模型。Loracle 只能使用 SDXL 主模型繪圖"
                "（SDXL 1.0、Pony、Illustrious、NoobAI 及其合併模型）。",
            ),
            name=path.name,
            arch=arch.label,
        )
    _require_sdxl_base(path.name, header, has_vae=facts.has_vae, vae_elsewhere=vae_elsewhere)
    return SingleFileInfo(
        header=header,
        architecture=arch,
        variant=_variant(path.name, header),
        v_prediction=facts.v_prediction,
        zero_terminal_snr=facts.v_prediction and facts.zero_terminal_snr,
        has_vae=facts.has_vae,
    )


def _require_sdxl_base(name: str, header: SafetensorsHeader, *, has_vae: bool, vae_elsewhere: bool = False) -> None:
    def refuse(en: str, zh: str) -> LibraryError:
        return LibraryError(Text(en, zh), name=name)

    if header.has_prefix(_REFINER_CLIP):
        raise refuse(
            "“{name}” is an SDXL refiner. Refiners only polish finished images; pick an SDXL "
            "base checkpoint to draw with.",
            "「{name}」是 SDXL 精修模型（refiner），只能修飾完成的圖片；請選擇 SDXL 基礎主模型來繪圖。",
        )
    conv_in = header.shape(_CONV_IN)
    if conv_in is None or len(conv_in) != 4:
        raise refuse(
            "“{name}” has no SDXL UNet (the main drawing network) in it.",
            "「{name}」裡沒有 SDXL 的 UNet（主要的繪圖網路）。",
        )
    if conv_in[1] != 4:
        raise refuse(
            "“{name}” is an SDXL inpainting or other special-purpose checkpoint. Loracle draws "
            "from text prompts only; pick a regular SDXL checkpoint.",
            "「{name}」是 SDXL 局部重繪（inpainting）或其他特殊用途的主模型。Loracle 只能以文字提示繪圖，"
            "請選擇一般的 SDXL 主模型。",
        )
    if not vae_elsewhere and not has_vae:
        raise refuse(
            "“{name}” has no VAE (the part that turns the result into pixels) baked in, and no "
            "other VAE was given to use with it. Add any SDXL checkpoint that includes a VAE to "
            "the library (Loracle borrows its VAE), or use a version of this one with the VAE included.",
            "「{name}」沒有內建 VAE（把結果轉成像素的部分），也沒有指定其他 VAE。請在模型庫加入任何一個"
            "內含 VAE 的 SDXL 主模型（Loracle 會借用它的 VAE），或改用此模型內含 VAE 的版本。",
        )
    if _CLIP_L_POS not in header.tensors or _CLIP_G_POS not in header.tensors:
        raise refuse(
            "“{name}” is missing one of SDXL's two text encoders (the parts that read the prompt). "
            "Use a full version of the checkpoint.",
            "「{name}」缺少 SDXL 兩個文字編碼器（負責理解提示詞的部分）之一。請改用完整版本的主模型。",
        )


def _variant(name: str, header: SafetensorsHeader) -> Literal["sdxl", "tiny"]:
    width = header.shape(_CONV_IN)[0]  # type: ignore[index]  # checked by _require_sdxl_base
    if width == 320:
        return "sdxl"
    if width == tiny.TINY_UNET_CONFIG["block_out_channels"][0]:
        return "tiny"
    raise LibraryError(
        Text(
            "“{name}” is an SDXL-like checkpoint of an unusual size (first layer {width} wide "
            "instead of 320), which Loracle cannot load.",
            "「{name}」是尺寸特殊的類 SDXL 主模型（第一層寬度為 {width}，而非 320），Loracle 無法載入。",
        ),
        name=name,
        width=width,
    )


# --------------------------------------------------------------------- config folders ---


class ConfigFolders:
    """The diffusers config folders `from_single_file` needs, materialised under `cache_dir`.

    Folder names carry a fingerprint of their contents, so an upgrade that changes a shipped
    config gets a fresh folder instead of a stale cached one.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)

    def __call__(self, info: SingleFileInfo) -> Path:
        return self.tiny() if info.variant == "tiny" else self.sdxl()

    def sdxl(self) -> Path:
        shipped = sorted(p for p in SDXL_CONFIG_DIR.rglob("*") if p.is_file())
        digest = hashlib.sha256()
        for p in shipped:
            digest.update(p.relative_to(SDXL_CONFIG_DIR).as_posix().encode())
            digest.update(p.read_bytes() if p.suffix == ".json" else str(p.stat().st_size).encode())

        def build(folder: Path) -> None:
            shutil.copytree(
                SDXL_CONFIG_DIR, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.gz", "LICENSE*")
            )
            for sub in ("tokenizer", "tokenizer_2"):
                write_clip_vocab(folder / sub)

        return self._materialise("sdxl-config", digest.hexdigest()[:12], build)

    def tiny(self) -> Path:
        fingerprint = json.dumps(
            [tiny.TINY_UNET_CONFIG, tiny.TINY_VAE_CONFIG, tiny.TINY_SCHEDULER_CONFIG, tiny.tiny_vocab()],
            sort_keys=True,
        )
        digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
        return self._materialise("tiny-config", digest, tiny.write_config_folder)

    def _materialise(self, stem: str, digest: str, build: Callable[[Path], object]) -> Path:
        target = self.cache_dir / f"{stem}-{digest}"
        if (target / "model_index.json").is_file():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=f".{stem}-"))
        try:
            build(staging)
            try:
                staging.rename(target)
            except OSError:
                # Another process finished first; its folder is identical.
                if not (target / "model_index.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


# ---------------------------------------------------------------------------- loading ---


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Make every Hugging Face Hub call fail fast instead of reaching the network.

    huggingface_hub reads HF_HUB_OFFLINE once at import, so the module constant is patched
    along with the environment variable.
    """
    import huggingface_hub.constants as hub_constants

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")}
    saved_flag = hub_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved_flag
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_pipeline(
    spec: CheckpointSpec,
    *,
    device: torch.device | str,
    dtype: torch.dtype,
    cache_dir: Path,
    config_dir_for: Callable[[SingleFileInfo], Path] | None = None,
) -> Pipeline:
    """Load `spec` as a StableDiffusionXLPipeline on `device` in `dtype`, fully offline.

    `config_dir_for` picks the diffusers config folder for a single file (default: the
    shipped SDXL configs or the tiny ones, materialised under `cache_dir`).
    """
    path = Path(spec.path)
    if not path.exists():
        raise LibraryError(
            Text(
                "The file for checkpoint “{name}” is gone ({path}). Rescan the library.",
                "主模型「{name}」的檔案已不存在（{path}）。請重新掃描模型庫。",
            ),
            name=spec.name,
            path=str(path),
        )
    with hub_offline(), _quiet_diffusers():
        try:
            # The file's own markers say whether a v-prediction model also wants zero
            # terminal SNR (ComfyUI's rule: `v_pred` alone is v-prediction on the usual
            # schedule, `ztsnr` adds rescaled betas). `spec.v_prediction` comes from the
            # library, which sets it from those same markers; only when the file itself
            # says nothing does it mean "v-pred + ztsnr", as NoobAI-XL v-pred uses.
            if spec.format == "diffusers":
                pipe = _load_diffusers_folder(spec, path, dtype)
                folder_config = pipe.scheduler.config
                if folder_config.get("prediction_type") == "v_prediction":
                    v_pred, zero_snr = True, bool(folder_config.get("rescale_betas_zero_snr"))
                else:
                    v_pred, zero_snr = spec.v_prediction, spec.v_prediction
            else:
                info = inspect_single_file(path, facts=spec.facts, vae_elsewhere=spec.vae_path is not None)
                folder = (config_dir_for or ConfigFolders(cache_dir))(info)
                pipe = _load_single_file(path, info, folder, dtype, spec.vae_path)
                v_pred = spec.v_prediction or info.v_prediction
                zero_snr = info.zero_terminal_snr if info.v_prediction else spec.v_prediction
        except (LoracleError, MemoryError):
            raise
        except Exception as exc:
            if type(exc).__name__ == "OutOfMemoryError":
                raise
            if "meta tensor" in str(exc):
                # diffusers leaves weights the file lacks on the meta device, then trips on them.
                raise _incomplete(spec.name) from exc
            raise CorruptFileError(
                Text(
                    "Checkpoint “{name}” could not be loaded: {reason}",
                    "無法載入主模型「{name}」：{reason}",
                ),
                name=spec.name,
                reason=f"{type(exc).__name__}: {exc}"[:300],
            ) from exc
    _check_complete(spec.name, pipe)
    if v_pred:
        apply_v_prediction(pipe, zero_terminal_snr=zero_snr)
    ensure_vae_upcast(pipe, dtype)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    from engine.lora.restore import remember_source

    # LoRA restores read original weights back from this file instead of keeping copies.
    remember_source(pipe, path, spec.format)
    return pipe


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """Loading prints progress bars and dtype notes meant for notebooks; a bot's log and a
    CLI's terminal get our own messages instead. Errors still come through."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)
        diffusers_logging.enable_progress_bar()


def apply_v_prediction(pipe: Pipeline, *, zero_terminal_snr: bool = True) -> None:
    """Switch the scheduler to v-prediction (and zero terminal SNR, as NoobAI-XL v-pred uses).

    Zero terminal SNR needs "trailing" timesteps (Lin et al., "Common Diffusion Noise
    Schedules and Sample Steps are Flawed"): SDXL's "leading" spacing starts at t=946 of
    999 for 28 steps, so the sampler would never start from the pure-noise step the
    rescaled betas exist for. Every sampler is built from this config, so all inherit it.
    """
    options: dict[str, object] = {
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": zero_terminal_snr,
    }
    if zero_terminal_snr:
        options["timestep_spacing"] = "trailing"
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **options)


def _load_single_file(
    path: Path, info: SingleFileInfo, folder: Path, dtype: torch.dtype, vae_path: Path | None = None
) -> Pipeline:
    from diffusers import StableDiffusionXLPipeline

    extra = {}
    if not info.has_vae and vae_path is not None:
        extra["vae"] = load_vae(Path(vae_path), folder / "vae", dtype)
    widths = (info.header.shape(_CLIP_L_POS) or (0,))[-1], (info.header.shape(_CLIP_G_POS) or (1,))[-1]
    if widths[0] == widths[1]:
        # diffusers tells the two text encoders apart by width alone; when they are equal
        # (only in toy models) it would fill text_encoder_2 with CLIP-L's weights.
        extra["text_encoder_2"] = load_open_clip(path, folder / "text_encoder_2", dtype)
    return StableDiffusionXLPipeline.from_single_file(
        str(path),
        config=str(folder),
        local_files_only=True,
        torch_dtype=dtype,
        add_watermarker=False,
        **extra,
    )


def _load_diffusers_folder(spec: CheckpointSpec, path: Path, dtype: torch.dtype) -> Pipeline:
    from diffusers import StableDiffusionXLPipeline

    index = path / "model_index.json"
    try:
        class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        class_name = None
    if class_name != "StableDiffusionXLPipeline":
        raise LibraryError(
            Text(
                "“{name}” is not an SDXL diffusers folder (its model_index.json names {found}).",
                "「{name}」不是 SDXL 的 diffusers 資料夾（其 model_index.json 寫的是 {found}）。",
            ),
            name=spec.name,
            found=class_name or "nothing",
        )
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        sub = path / part
        if not any(sub.glob("*.safetensors")) and any(sub.glob("*.bin")):
            raise UnsafeFileError(
                Text(
                    "The {part} of “{name}” is stored only as a pickled .bin file, which can run code "
                    "when opened; Loracle loads .safetensors only.",
                    "「{name}」的 {part} 只有 pickle 格式的 .bin 檔，開啟時可能執行程式碼；Loracle 只載入 .safetensors。",
                ),
                name=spec.name,
                part=part,
            )
    pipeline_class: Any = StableDiffusionXLPipeline  # diffusers' from_pretrained is unannotated
    return pipeline_class.from_pretrained(
        str(path),
        local_files_only=True,
        torch_dtype=dtype,
        use_safetensors=True,
        add_watermarker=False,
        variant=_fp16_only_variant(path),
    )


def _fp16_only_variant(path: Path) -> str | None:
    """"fp16" for a folder downloaded with only the `*.fp16.safetensors` weights (a
    common way to halve an SDXL download); diffusers finds those only when asked to."""
    plain = fp16 = False
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        for file in (path / part).glob("*.safetensors"):
            if file.name.endswith(".fp16.safetensors"):
                fp16 = True
            else:
                plain = True
    return "fp16" if fp16 and not plain else None


def _incomplete(name: str) -> CorruptFileError:
    return CorruptFileError(
        Text(
            "Checkpoint “{name}” is incomplete: some of its weights are missing. The file may be "
            "damaged or only partly downloaded.",
            "主模型「{name}」不完整：缺少部分權重。檔案可能已損壞或未完整下載。",
        ),
        name=name,
    )


def _check_complete(name: str, pipe: Pipeline) -> None:
    # A checkpoint missing some weights can load "successfully" with those left on the meta
    # device, and only fail at the first job; catch it here, where the file is to blame.
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, part)
        if any(t.device.type == "meta" for t in (*module.parameters(), *module.buffers())):
            raise _incomplete(name)
