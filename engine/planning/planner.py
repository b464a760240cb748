"""Planning a draw: everything that can be refused is refused here, before any GPU work.

Order matters for cost: length limits come before any parsing (a huge prompt must not
reach a regex), names are resolved before files are read, and the prompt's weight syntax
is parsed here so a malformed `(tag:1.2.3)` never loads a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from engine.admin_settings import AdminSettings
from engine.content_rules import check_blocklist, refuse_nsfw
from engine.errors import IncompatibleError, LibraryError, LimitError, RequestError, WeightError
from engine.families import FamilyTable
from engine.i18n import Message, Text
from engine.kinds import Architecture, Category
from engine.knowledge import Knowledge
from engine.knowledge_answers import Answers
from engine.library import Library, LibraryEntry
from engine.planning.checkpoints import CheckpointChooser
from engine.planning.lora_weights import LoraStatus, decide_weight, outside_author_range, split_prompt_loras
from engine.planning.params import LANCZOS, LATENT, OUT_OF_RANGE, generation_params
from engine.planning.prompt_checks import PROMPT_EMPTY, check_prompt_syntax, check_prompt_text
from engine.planning.trigger_words import missing_trigger_warning, missing_triggers
from engine.prompt_lint import lint_prompt
from engine.requests import DrawPlan, DrawRequest, PlannedCheckpoint, PlannedLora
from engine.settings import Settings
from engine.text_input import clean_name
from engine.verdicts import Verdict, VerdictResult

BUILT_IN_UPSCALERS = (LATENT, LANCZOS)
_NOT_SDXL = Text(
    "“{name}” is a {arch} checkpoint; Loracle draws with SDXL checkpoints only.",
    "「{name}」是 {arch} 模型；Loracle 只能用 SDXL 模型繪圖。",
)
_INCOMPATIBLE = Text(
    "“{name}” is a {lora_arch} LoRA and “{checkpoint}” is a {ckpt_arch} checkpoint: their layers "
    "do not fit together, so it cannot be applied.{suits_en}",
    "「{name}」是 {lora_arch} 的 LoRA，而「{checkpoint}」是 {ckpt_arch} 模型：兩者的網路層對不上，無法套用。{suits_zh}",
)
_SUITS = (" Checkpoints in the library that suit it: {names}.", "模型庫中適合它的模型：{names}。")
_SUITS_NONE = (" No checkpoint in the library suits it.", "模型庫中沒有適合它的模型。")
_SUITS_SHOWN = 5
_SAME_LORA_TWICE = Text(
    "“{first}” and “{second}” are the same LoRA ({name}); give it once with one weight.",
    "「{first}」和「{second}」是同一個 LoRA（{name}）；請只列一次、給一個權重。",
)
_VAE_BORROWED = Text(
    "“{name}” has no VAE of its own; its images are decoded with the VAE of “{donor}” "
    "(SDXL checkpoints share one VAE design).",
    "「{name}」沒有自己的 VAE；它的圖片改用「{donor}」的 VAE 解碼（SDXL 主模型共用同一種 VAE 設計）。",
)
_NO_VAE = Text(
    "“{name}” has no VAE (the part that turns the result into pixels) baked in, and the library "
    "has no other SDXL checkpoint to borrow one from. Add any SDXL checkpoint that includes a "
    "VAE, or use a version of this one with the VAE included.",
    "「{name}」沒有內建 VAE（把結果轉成像素的部分），而模型庫裡也沒有其他 SDXL 主模型可以借用。"
    "請加入任何一個內含 VAE 的 SDXL 主模型，或改用此模型內含 VAE 的版本。",
)


class Planner:
    def __init__(
        self,
        settings: Settings,
        library: Library,
        knowledge: Knowledge,
        table: FamilyTable,
        admin: AdminSettings,
        answers: Answers,
    ) -> None:
        self.settings = settings
        self.library = library
        self.knowledge = knowledge
        self.table = table
        self.admin = admin
        self.answers = answers
        self.summary = answers.summary
        self.checkpoints = CheckpointChooser(library, admin, lambda e: answers.summary(e).family)

    def plan(self, request: DrawRequest) -> DrawPlan:
        """Resolve names, check compatibility and weights, apply limits."""
        limits = self.admin.limits()
        prompt, negative = self._check_texts(request)
        prompt, tagged = split_prompt_loras(prompt)
        loras = [*request.loras, *tagged]
        if not prompt:
            raise RequestError(PROMPT_EMPTY)
        check_prompt_syntax(prompt, "prompt")
        check_prompt_syntax(negative, "negative")
        check_blocklist((prompt, negative), self.admin.blocklist(request.scope))

        ckpt_entry = self.checkpoints.choose(request.checkpoint)
        refuse_nsfw([ckpt_entry], self.knowledge, allow_nsfw=request.allow_nsfw)
        checkpoint, warnings = self._checkpoint(ckpt_entry)

        if len(loras) > self.settings.max_loras:
            raise LimitError(OUT_OF_RANGE, what="LoRAs", low=0, high=self.settings.max_loras, value=len(loras))
        planned: list[PlannedLora] = []
        asked_as: dict[str, str] = {}  # file -> the name it was first asked for by
        for req in loras:
            entry = self.library.get_usable(clean_name(req.name), Category.LORA)
            # A file name and a display name (or two spellings) can reach the same file;
            # applied twice, its weights would add up past the clamp range.
            same = entry.sha256 or entry.rel_path  # two copies of one file count as one
            if same in asked_as:
                raise WeightError(_SAME_LORA_TWICE, first=asked_as[same], second=req.name, name=entry.name)
            asked_as[same] = req.name
            refuse_nsfw([entry], self.knowledge, allow_nsfw=request.allow_nsfw)
            lora = self._lora(entry, req.weight, ckpt_entry, request.allow_nsfw, prompt)
            warnings.extend(lora.warnings)
            planned.append(lora)

        family = self.table.family(checkpoint.family) if checkpoint.family else None
        for lint in lint_prompt(prompt, negative, family, self.table):
            warnings.append(Message(lint.text, lint.params))

        params = generation_params(request, prompt, negative, self.settings, limits, init_size=self._init_size(request))
        upscaler = self._upscaler(params.hires_upscaler) if params.hires > 1 else None
        return DrawPlan(
            request=request, checkpoint=checkpoint, loras=planned, params=params, warnings=warnings, upscaler_path=upscaler
        )

    def _init_size(self, request: DrawRequest) -> tuple[int, int] | None:
        """The stored picture's size; ImageInputError when it is gone (send it again)."""
        if request.init_image is None:
            return None
        from engine.images.input import stored_size

        return stored_size(self.settings.inputs_dir, request.init_image)

    def _upscaler(self, name: str) -> Path | None:
        """An upscaler model's file; None for the built-in "latent" and "lanczos"."""
        if name in BUILT_IN_UPSCALERS:
            return None
        return self.library.get_usable(clean_name(name), Category.UPSCALER).path

    def _check_texts(self, request: DrawRequest) -> tuple[str, str]:
        """The cleaned prompt and negative, refused when too long (before anything parses
        them) or when their weight syntax would fail on the GPU worker."""
        return check_prompt_text(request.prompt, request.negative or "", limit=self.settings.max_prompt_chars)

    def _checkpoint(self, entry: LibraryEntry) -> tuple[PlannedCheckpoint, list[Message]]:
        summary = self.summary(entry)
        if entry.architecture not in (Architecture.SDXL,):
            raise RequestError(_NOT_SDXL, name=entry.label, arch=Architecture(summary.architecture).label)
        checkpoint = PlannedCheckpoint(
            name=entry.name,
            label=entry.label,
            path=entry.path,
            format=entry.format,
            sha256=entry.sha256,
            autov2=entry.autov2,
            architecture=entry.architecture,
            base_model=summary.base_model,
            family=summary.family,
            family_label=summary.family_label,
            v_prediction=entry.v_prediction,
            facts=entry.checkpoint_facts,
        )
        warnings: list[Message] = []
        if entry.format == "safetensors" and not self.checkpoints.has_baked_vae(entry):
            donor = self.checkpoints.vae_donor(entry, summary.family)
            if donor is None:
                raise LibraryError(_NO_VAE, name=entry.label)
            checkpoint.vae_path, checkpoint.vae_from = donor.path, donor.name
            warnings.append(Message.of(_VAE_BORROWED, name=entry.label, donor=donor.label))
        return checkpoint, warnings

    def _lora(
        self, entry: LibraryEntry, weight: float | None, ckpt_entry: LibraryEntry, allow_nsfw: bool, prompt: str
    ) -> PlannedLora:
        result = self.knowledge.verdict(entry, ckpt_entry)
        s = self.settings
        recommended = self.knowledge.recommended_weight(entry)
        decision = decide_weight(entry.name, weight, recommended.value, s.lora_weight_min, s.lora_weight_max)
        lora = PlannedLora(
            name=entry.name,
            label=entry.label,
            path=entry.path,
            sha256=entry.sha256,
            autov3=entry.autov3,
            requested_weight=weight,
            applied_weight=decision.applied,
            status=decision.status,
            verdict=str(result.verdict),
            kind=entry.kind,
        )
        if result.verdict == Verdict.INCOMPATIBLE and decision.status != LoraStatus.NOT_APPLIED:
            self._refuse_incompatible(entry, ckpt_entry, result, allow_nsfw)
        if decision.note:
            lora.warnings.append(decision.note)
        if decision.status == LoraStatus.NOT_APPLIED:
            return lora
        outside = outside_author_range(entry.name, weight, recommended.low, recommended.high)
        if outside:
            lora.warnings.append(outside)
        if result.warning_text is not None:
            lora.warnings.append(Message(result.warning_text, result.params))
        missing = missing_triggers(prompt, self.knowledge.trigger_words(entry)[0])
        if missing:
            lora.warnings.append(missing_trigger_warning(entry.name, missing))
        return lora

    def _refuse_incompatible(
        self, entry: LibraryEntry, ckpt_entry: LibraryEntry, result: VerdictResult, allow_nsfw: bool
    ) -> None:
        """A LoRA whose layers cannot fit the checkpoint (an SD 1.5 LoRA on SDXL) is a
        mistake in the request, not a warning: refused, with the checkpoints that suit it."""
        suits = [
            s.checkpoint
            for s in self.answers.suits(entry, allow_nsfw=allow_nsfw)
            if s.verdict != Verdict.INCOMPATIBLE
        ][:_SUITS_SHOWN]
        if suits:
            suits_en = _SUITS[0].format(names=", ".join(f"“{n}”" for n in suits))
            suits_zh = _SUITS[1].format(names="、".join(f"「{n}」" for n in suits))
        else:
            suits_en, suits_zh = _SUITS_NONE
        raise IncompatibleError(
            _INCOMPATIBLE,
            name=entry.label,
            lora_arch=result.lora_architecture.label,
            checkpoint=ckpt_entry.label,
            ckpt_arch=result.checkpoint_architecture.label,
            suits_en=suits_en,
            suits_zh=suits_zh,
            suits=suits,
        )
